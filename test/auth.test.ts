/**
 * Auth remembers the tokens it has verified (a client sends the same token with every request).
 * What must not change with that: an expired token is refused even after it was accepted, a
 * token is accepted only for the audience it was verified for, and a tampered or foreign token is
 * refused however similar to a known one.
 */
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../shared/config.js';
import { Auth } from '../shared/http/auth.js';

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
    expect(await auth.fromHeader(`Bearer ${token}`)).toEqual({ id: 'u1', anonymous: true });
    expect(await auth.fromHeader(`Bearer ${token}`)).toEqual({ id: 'u1', anonymous: true });
    await new Promise((r) => setTimeout(r, 2100));
    expect(await code(auth.fromHeader(`Bearer ${token}`))).toBe('unauthorized');
  });

  it('accepts a known token only for its own audience, and never a tampered or foreign one', async () => {
    const auth = new Auth(secret, config);
    const exp = Math.floor(Date.now() / 1000) + 600;
    const user = await sign(exp);
    const { ticket } = await auth.issueTicket({ id: 'u1', anonymous: true }, 'scope-a');
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
