/**
 * The internal endpoints check their callers' OIDC tokens (shared/http/internal-auth.ts), over a
 * real socket, with Google's verification (google-auth-library) against keys generated here
 * (test/helpers/oidc.ts): a token Google signed for this endpoint's audience, for an allowed and
 * verified service-account email, is accepted; every other request is refused with 401
 * `unauthorized` and changes nothing (guarantee 3): the push consumer handles nothing and its
 * cursor stays where it was. The refusal is logged at WARNING with its reason and without the token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../shared/app.js';
import type { PatchEvent } from '../shared/protocol.js';
import { type OidcIssuer, SERVICE_ACCOUNT, startOidcIssuer } from './helpers/oidc.js';
import { request, serveHandler, testConfig } from './helpers/server.js';

const BASE = 'https://europe-west1-demo-patchbay.cloudfunctions.net';
const AUDIENCE = `${BASE}/push/recorder`;

let issuer: OidcIssuer;
let app: App;
let close: () => void;
let url: string;
const lines: Array<Record<string, unknown>> = [];
const seen: Array<[string, number]> = [];

beforeAll(async () => {
  issuer = await startOidcIssuer();
  const config = testConfig({
    logLevel: 'info',
    oidc: 'on',
    oidcAudience: BASE,
    oidcEmails: [SERVICE_ACCOUNT, 'scheduler@demo-patchbay.iam.gserviceaccount.com'],
    oidcCertsUrl: issuer.certsUrl,
  });
  app = await createApp(config, {
    sweeper: false,
    deliverLocally: false, // deliveries come through the push function only
    consumers: { recorder: async (e: PatchEvent) => void seen.push([e.scope, e.ii]) },
    logTo: (l) => lines.push(JSON.parse(l)),
  });
  ({ url, close } = await serveHandler(app.push));
});
afterAll(async () => {
  close();
  await app.close();
  await issuer.close();
});

async function onePatch(): Promise<PatchEvent> {
  const { id } = await app.engine.createScope('owner', { state: { n: 0 } });
  await app.engine.submit(id, 'owner', { patch: [{ op: 'replace', path: '/n', value: 1 }] });
  for await (const r of app.engine.readLog(id, 1, 1)) return { scope: id, ii: r.ii, patch: r.patch, at: r.at, by: r.by };
  throw new Error('no patch');
}

const wrap = (e: PatchEvent) => ({
  message: { data: Buffer.from(JSON.stringify(e)).toString('base64'), attributes: { scope: e.scope, ii: String(e.ii) }, messageId: `${e.scope}-${e.ii}` },
  subscription: 'projects/demo-patchbay/subscriptions/patchbay-recorder',
});
const deliver = (e: PatchEvent, authorization?: string, path = '/push/recorder') =>
  request(url, 'POST', path, { body: wrap(e), headers: authorization === undefined ? {} : { authorization } });
const seenOf = (id: string) => seen.filter(([s]) => s === id).map(([, ii]) => ii);

describe('push with OIDC checks on', () => {
  it('accepts a Google-signed token for its audience from an allowed service account', async () => {
    const e = await onePatch();
    const res = await deliver(e, `Bearer ${await issuer.token(AUDIENCE)}`);
    expect(res.status).toBe(204);
    expect(seenOf(e.scope)).toEqual([1]);
    expect(await app.adapters.ledger.getCursor('recorder', e.scope)).toBe(1);
    // Cloud Functions strip the function name from the path: the audience is the same.
    const again = await deliver(e, `Bearer ${await issuer.token(AUDIENCE, { claims: { iss: 'accounts.google.com' } })}`, '/recorder');
    expect(again.status).toBe(204);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const refusals: Array<[string, () => Promise<string | undefined>, string]> = [
    ['no Authorization header', async () => undefined, 'no token'],
    ['a Basic credential', async () => 'Basic dXNlcjpwYXNz', 'not a bearer token'],
    ['a malformed token', async () => 'Bearer not-a-jwt', 'malformed token'],
    ['a token for another consumer', async () => `Bearer ${await issuer.token(`${BASE}/push/other`)}`, 'wrong audience'],
    ['a token for the sweep function', async () => `Bearer ${await issuer.token(`${BASE}/sweep`)}`, 'wrong audience'],
    ['a token for another host', async () => `Bearer ${await issuer.token('https://evil.example/push/recorder')}`, 'wrong audience'],
    [
      'a token from another issuer',
      async () => `Bearer ${await issuer.token(AUDIENCE, { claims: { iss: 'https://securetoken.google.com/demo' } })}`,
      'wrong issuer',
    ],
    // google-auth-library allows 5 minutes of clock skew: this one expired 10 minutes ago.
    ['an expired token', async () => `Bearer ${await issuer.token(AUDIENCE, { claims: { iat: now() - 4200, exp: now() - 600 } })}`, 'expired'],
    ['a forged signature', async () => `Bearer ${await issuer.token(AUDIENCE, { forged: true })}`, 'bad signature'],
    ['an unknown key id', async () => `Bearer ${await issuer.token(AUDIENCE, { kid: 'no-such-key' })}`, 'unknown key id'],
    [
      'an email not in the allow-list',
      async () => `Bearer ${await issuer.token(AUDIENCE, { claims: { email: 'intruder@demo-patchbay.iam.gserviceaccount.com' } })}`,
      'email not allowed',
    ],
    ['no email', async () => `Bearer ${await issuer.token(AUDIENCE, { claims: { email: undefined } })}`, 'email not allowed'],
    ['email_verified false', async () => `Bearer ${await issuer.token(AUDIENCE, { claims: { email_verified: false } })}`, 'email not verified'],
  ];

  it.each(refusals)('refuses %s with 401, handling nothing, logged at WARNING without the token', async (_, authorization, reason) => {
    const e = await onePatch();
    const auth = await authorization();
    const res = await deliver(e, auth);
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('unauthorized');
    expect(JSON.stringify(res.json)).not.toContain(reason); // the reason is for the log
    expect(seenOf(e.scope)).toEqual([]);
    expect(await app.adapters.ledger.getCursor('recorder', e.scope)).toBe(0);
    const id = res.headers.get('x-request-id');
    const line = lines.find((l) => l.requestId === id);
    expect(line).toMatchObject({ severity: 'WARNING', status: 401, route: 'push' });
    expect(String(line?.reason)).toContain(reason);
    const token = auth?.split(' ')[1];
    if (token !== undefined) for (const l of lines) expect(JSON.stringify(l)).not.toContain(token);
  });

  it("checks Cloud Storage's upload notifications (POST /push/uploads) the same way", async () => {
    // Not a finalize event: acknowledged and ignored once the token passes, refused without one.
    const note = {
      message: { attributes: { eventType: 'OBJECT_DELETE', bucketId: 'b', objectId: 'o' }, messageId: 'n1' },
      subscription: 'projects/p/subscriptions/uploads',
    };
    const post = (authorization?: string) =>
      request(url, 'POST', '/push/uploads', { body: note, headers: authorization === undefined ? {} : { authorization } });
    expect((await post()).status).toBe(401);
    expect((await post(`Bearer ${await issuer.token(AUDIENCE)}`)).status).toBe(401); // another consumer's audience
    expect((await post(`Bearer ${await issuer.token(`${BASE}/push/uploads`)}`)).status).toBe(204);
    // A finalize event without its object resource is not a notification patchbay can act on: 400.
    const bare = { message: { attributes: { eventType: 'OBJECT_FINALIZE', payloadFormat: 'NONE' }, messageId: 'n2' } };
    const res = await request(url, 'POST', '/push/uploads', { body: bare, headers: { authorization: `Bearer ${await issuer.token(`${BASE}/push/uploads`)}` } });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_request');
  });

  it('refuses before telling whether a consumer exists or which methods it takes', async () => {
    const e = await onePatch();
    expect((await deliver(e, undefined, '/push/nobody')).status).toBe(401);
    expect((await request(url, 'GET', '/push/recorder')).status).toBe(401);
    const forNobody = `Bearer ${await issuer.token(`${BASE}/push/nobody`)}`;
    expect((await deliver(e, forNobody, '/push/nobody')).status).toBe(404);
  });

  it('answers 503 (Pub/Sub retries) when Google certificates cannot be fetched, handling nothing', async () => {
    const down = await startOidcIssuer();
    await down.close();
    const errors: string[] = [];
    const other = await createApp(
      testConfig({ logLevel: 'error', oidc: 'on', oidcAudience: BASE, oidcEmails: [SERVICE_ACCOUNT], oidcCertsUrl: down.certsUrl }),
      {
        sweeper: false,
        deliverLocally: false,
        adapters: app.adapters,
        consumers: { recorder: async (ev: PatchEvent) => void seen.push([ev.scope, ev.ii]) },
        logTo: (l) => errors.push(l),
      },
    );
    const srv = await serveHandler(other.push);
    try {
      const e = await onePatch();
      const res = await request(srv.url, 'POST', '/push/recorder', {
        body: wrap(e),
        headers: { authorization: `Bearer ${await down.token(AUDIENCE)}` },
      });
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('unavailable');
      expect(seenOf(e.scope)).toEqual([]);
      expect(errors.join('\n')).toContain('cannot fetch Google certificates');
    } finally {
      srv.close();
    }
  });
});
