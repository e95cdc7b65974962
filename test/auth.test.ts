/**
 * Auth remembers the tokens it has verified (a client sends the same token with every request).
 * What must not change with that: an expired token is refused even after it was accepted, a
 * token is accepted only for the audience it was verified for, and a tampered or foreign token is
 * refused however similar to a known one. Each token acts only in the domain it was issued for.
 */
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../shared/config.js';
import { Auth } from '../shared/http/auth.js';
import { requestDomain, resolveDomain } from '../shared/http/domain.js';

const secret = new TextEncoder().encode('auth-test-secret-auth-test-secret!!');
const config = loadConfig({});

const sign = (exp: number, aud = 'patchbay', key = secret) =>
  new SignJWT({ anon: true }).setProtectedHeader({ alg: 'HS256' }).setSubject('u1').setIssuer('patchbay').setAudience(aud).setExpirationTime(exp).sign(key);

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );

describe('auth', () => {
  it('refuses a token once it has expired, even though it was accepted before', async () => {
    const auth = new Auth(secret, config);
    const token = await sign(Math.floor(Date.now() / 1000) + 2);
    expect(await auth.fromHeader(`Bearer ${token}`)).toEqual({ id: 'u1', kind: 'anonymous', domain: 'default' });
    expect(await auth.fromHeader(`Bearer ${token}`)).toEqual({ id: 'u1', kind: 'anonymous', domain: 'default' });
    await new Promise((r) => setTimeout(r, 2100));
    expect(await code(auth.fromHeader(`Bearer ${token}`))).toBe('unauthorized');
  });

  it('accepts a known token only for its own audience, and never a tampered or foreign one', async () => {
    const auth = new Auth(secret, config);
    const exp = Math.floor(Date.now() / 1000) + 600;
    const user = await sign(exp);
    const { ticket } = await auth.issueTicket({ id: 'u1', kind: 'anonymous', domain: 'default' }, 'scope-a');
    expect(await code(auth.fromHeader(`Bearer ${user}`))).toBe('ok');
    expect(await code(auth.fromTicket(ticket, 'scope-a'))).toBe('ok');
    expect(await code(auth.fromTicket(user, 'scope-a'))).toBe('unauthorized'); // a user token is no ticket
    expect(await code(auth.fromHeader(`Bearer ${ticket}`))).toBe('unauthorized'); // nor a ticket a token
    expect(await code(auth.fromTicket(ticket, 'scope-b'))).toBe('unauthorized'); // bound to its scope
    const [h, p, sig] = user.split('.') as [string, string, string];
    const flipped = `${sig.slice(0, -2)}${sig.endsWith('AA') ? 'BA' : 'AA'}`;
    expect(await code(auth.fromHeader(`Bearer ${h}.${p}.${flipped}`))).toBe('unauthorized');
    const foreign = await sign(exp, 'patchbay', new TextEncoder().encode('another-secret-another-secret-another!!'));
    expect(await code(auth.fromHeader(`Bearer ${foreign}`))).toBe('unauthorized');
    expect(await code(auth.fromHeader(`Bearer ${user}`))).toBe('ok');
  });

  it('keeps the reconnect grace for an expired ticket it had accepted', async () => {
    const auth = new Auth(secret, config);
    const ticket = await new SignJWT({ scope: 's', anon: false })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u1')
      .setIssuer('patchbay')
      .setAudience('patchbay:stream')
      .setExpirationTime(Math.floor(Date.now() / 1000) + 1)
      .sign(secret);
    expect(await code(auth.fromTicket(ticket, 's'))).toBe('ok');
    await new Promise((r) => setTimeout(r, 2100));
    expect(await code(auth.fromTicket(ticket, 's'))).toBe('unauthorized');
    expect(await code(auth.fromTicket(ticket, 's', 60))).toBe('ok');
  });
});

describe('tokens and domains (shared/http/domain.ts)', () => {
  const auth = new Auth(secret, config);
  const headers = (h: Record<string, string>) => requestDomain(h);

  it('a token acts only in the domain it was issued for; a browser’s domain is its Origin’s host', async () => {
    const { token, user } = await auth.issueAnonymous('app.example.com');
    expect(user).toMatchObject({ kind: 'anonymous', domain: 'app.example.com', anonymous: true });
    const bearer = `Bearer ${token}`;
    expect((await auth.fromHeader(bearer)).domain).toBe('app.example.com');
    expect((await auth.fromHeader(bearer, headers({ origin: 'https://APP.example.com:443' }))).domain).toBe('app.example.com');
    expect((await auth.fromHeader(bearer, headers({ 'x-patchbay-domain': 'app.example.com' }))).domain).toBe('app.example.com');
    await expect(auth.fromHeader(bearer, headers({ origin: 'https://evil.example' }))).rejects.toMatchObject({ code: 'forbidden' });
    await expect(auth.fromHeader(bearer, headers({ origin: 'http://app.example.com:8080' }))).rejects.toMatchObject({ code: 'forbidden' });
    await expect(auth.fromHeader(bearer, headers({ 'x-patchbay-domain': 'other.example' }))).rejects.toMatchObject({ code: 'forbidden' });
    const u = await auth.fromHeader(bearer);
    const { ticket } = await auth.issueTicket(u, 's');
    expect(await auth.fromTicket(ticket, 's')).toEqual({ id: u.id, kind: 'anonymous', domain: 'app.example.com' });
  });

  it('reads Origin and X-Patchbay-Domain strictly: a page cannot name another domain, opaque origins have none', () => {
    expect(headers({})).toEqual({ origin: null, named: null });
    expect(headers({ origin: 'http://localhost:5173' })).toEqual({ origin: 'localhost:5173', named: null });
    expect(() => headers({ origin: 'null' })).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => headers({ origin: 'file:///x' })).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => headers({ 'x-patchbay-domain': 'Not A Domain' })).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    expect(() => headers({ origin: 'https://a.example', 'x-patchbay-domain': 'b.example' })).toThrow(expect.objectContaining({ code: 'forbidden' }));
    expect(resolveDomain(headers({}))).toBe('default');
    expect(resolveDomain(headers({ 'x-patchbay-domain': 'b.example' }))).toBe('b.example');
  });

  it('refuses tokens of unknown issuers, and Firebase tokens when no Firebase project is configured', async () => {
    const other = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setIssuer('someone').setAudience('patchbay').sign(secret);
    await expect(auth.fromHeader(`Bearer ${other}`)).rejects.toMatchObject({ code: 'unauthorized', message: /unknown token issuer/ });
    const fb = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u')
      .setIssuer('https://securetoken.google.com/demo-x')
      .setAudience('demo-x')
      .sign(secret);
    await expect(auth.fromHeader(`Bearer ${fb}`)).rejects.toMatchObject({ code: 'unauthorized', message: /PATCHBAY_FIREBASE_PROJECT/ });
  });
});
