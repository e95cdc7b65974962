/**
 * Firebase ID tokens as bearer tokens, against the real Firebase Auth emulator (firebase-tools)
 * and the real Admin SDK (firebase-admin), on both stacks (embedded; Google on its emulators):
 * - a token of the configured project is accepted: the user is `firebase:<uid>` (the same for
 *   every token of that user), owns the scopes it creates and may patch them, and `GET /v1/me`
 *   shows the profile the token carries; the scope's domain is the request's (Origin, else
 *   X-Patchbay-Domain, else `default`);
 * - tampered, expired, and other projects' tokens are 401 and change nothing (guarantee 3), and a
 *   token accepted once is refused after it expires (the verified-token cache re-checks expiry);
 * - the emulator's unsigned tokens are never accepted by a server not configured for the emulator.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../shared/config.js';
import { type FirebaseEmulator, forge, type Minted, skipWithoutFirebase, startFirebaseEmulator } from './helpers/firebase.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { skipWithout } from './helpers/proc.js';
import { type Res, request, startServer, type TestServer } from './helpers/server.js';

const skip = skipWithoutFirebase();
const skipGoogle = skip || skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

let fb: FirebaseEmulator;
beforeAll(async () => {
  if (!skip) fb = await startFirebaseEmulator();
}, 180_000);
afterAll(() => fb?.stop());

const now = () => Math.floor(Date.now() / 1000);

function firebaseContract(stack: string, start: (overrides: Partial<Config>) => Promise<TestServer>): void {
  describe(`Firebase ID tokens (${stack})`, () => {
    let srv: TestServer;
    let ann: Minted;
    const annLogin = { email: `ann-${randomUUID()}@example.com`, password: 'secret-1' };
    beforeAll(async () => {
      srv = await start(fb.config());
      ann = await fb.signUp({ ...annLogin, displayName: 'Ann' });
    }, 60_000);
    afterAll(() => srv?.close());

    const as = (token: string, method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) =>
      request(srv.url, method, path, { ...opts, token });

    async function snapshot(id: string) {
      const scope = await as(ann.idToken, 'GET', `/v1/scopes/${id}`);
      const log = await as(ann.idToken, 'GET', `/v1/scopes/${id}/patches`);
      return { scope: scope.json, log: log.text };
    }

    it('accepts an emulator token: the user creates and patches a scope, and GET /v1/me shows the profile', async () => {
      const me = await as(ann.idToken, 'GET', '/v1/me');
      expect(me.status).toBe(200);
      expect(me.json).toEqual({
        id: `firebase:${ann.uid}`,
        kind: 'firebase',
        domain: 'default',
        anonymous: false,
        profile: { name: 'Ann', email: annLogin.email, emailVerified: false, provider: 'password' },
      });
      const created = await as(ann.idToken, 'POST', '/v1/scopes', { body: { state: { n: 0 } } });
      expect(created.status).toBe(201);
      expect(created.json.meta).toMatchObject({ owner: `firebase:${ann.uid}`, domain: 'default' });
      const patched = await as(ann.idToken, 'POST', `/v1/scopes/${created.json.id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 1 }] } });
      expect(patched.json).toEqual({ id: created.json.id, ii: 1 });
      // Another token of the same user (a fresh sign-in) is the same user: the id is stable.
      await new Promise((r) => setTimeout(r, 1100)); // a token of the next second: another text (emulator tokens are unsigned)
      const again = await fb.signIn(annLogin);
      expect(again.idToken).not.toBe(ann.idToken);
      expect((await as(again.idToken, 'POST', `/v1/scopes/${created.json.id}/patches`, { body: { patch: [] } })).json.ii).toBe(2);
      // A browser's stream: a ticket for the Firebase user opens it; the ID token itself never goes in a URL.
      const { ticket } = (await as(ann.idToken, 'POST', `/v1/scopes/${created.json.id}/events/ticket`)).json;
      const events = `${srv.url}/v1/scopes/${created.json.id}/events`;
      const open = await fetch(`${events}?ticket=${ticket}`, { signal: AbortSignal.timeout(5000) });
      expect(open.status).toBe(200);
      await open.body?.cancel();
      expect((await request(srv.url, 'GET', `/v1/scopes/${created.json.id}/events?ticket=${ann.idToken}`)).status).toBe(401);
    });

    it('shows every profile field a token carries (name, verified email, picture, provider)', async () => {
      const uid = `bo-${randomUUID().slice(0, 8)}`;
      const bo = await fb.withProfile({ uid, displayName: 'Bo', email: `${uid}@example.com`, photoURL: 'https://example.com/bo.png' });
      expect((await as(bo.idToken, 'GET', '/v1/me')).json).toEqual({
        id: `firebase:${uid}`,
        kind: 'firebase',
        domain: 'default',
        anonymous: false,
        profile: { name: 'Bo', email: `${uid}@example.com`, emailVerified: true, picture: 'https://example.com/bo.png', provider: 'custom' },
      });
    });

    it('a Firebase user acts in the domain of the page (Origin) or the one a server names; a scope of another domain is 403', async () => {
      const page = { origin: 'https://app.example.com' };
      const created = await as(ann.idToken, 'POST', '/v1/scopes', { body: { state: { n: 0 } }, headers: page });
      expect(created.json.meta.domain).toBe('app.example.com');
      expect((await as(ann.idToken, 'GET', '/v1/me', { headers: page })).json.domain).toBe('app.example.com');
      const id = created.json.id as string;
      const patch = { patch: [{ op: 'replace', path: '/n', value: 5 }] };
      const before = await snapshot(id);
      const elsewhere = await as(ann.idToken, 'POST', `/v1/scopes/${id}/patches`, { body: patch, headers: { origin: 'https://other.example' } });
      expect(elsewhere.status).toBe(403);
      expect(elsewhere.json.error).toMatchObject({ code: 'forbidden', domain: 'app.example.com', requested: 'other.example' });
      expect((await as(ann.idToken, 'POST', `/v1/scopes/${id}/patches`, { body: patch })).status).toBe(403); // `default`
      expect(await snapshot(id)).toEqual(before);
      const server = { 'x-patchbay-domain': 'app.example.com' };
      expect((await as(ann.idToken, 'POST', `/v1/scopes/${id}/patches`, { body: patch, headers: server })).json.ii).toBe(1);
    });

    it('refuses tampered and expired tokens (401), changing nothing', async () => {
      const { json } = await as(ann.idToken, 'POST', '/v1/scopes', { body: { state: { n: 0 } } });
      const before = await snapshot(json.id);
      const t = ann.idToken;
      const bad: Array<[string, string]> = [
        ['expired', forge(t, { iat: now() - 7200, auth_time: now() - 7200, exp: now() - 3600 })],
        ['another user', forge(t, { sub: 'nobody', user_id: 'nobody' })],
        ['another audience', forge(t, { aud: 'demo-someone-else' })],
        ['a signature where the emulator signs none', forge(t, {}, { alg: 'RS256', kid: 'k' }, 'c2lnbmF0dXJl')],
        ['truncated', t.slice(0, t.length - 12)],
      ];
      for (const [what, token] of bad) {
        const res: Res = await as(token, 'POST', `/v1/scopes/${json.id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 9 }] } });
        expect(res.status, what).toBe(401);
        expect(res.json.error.code, what).toBe('unauthorized');
        expect((await as(token, 'GET', '/v1/me')).status, what).toBe(401);
      }
      expect(await snapshot(json.id)).toEqual(before);
    });

    it('refuses a token once it has expired, even though it was accepted (and remembered) before', async () => {
      const soon = forge(ann.idToken, { exp: now() + 2 });
      expect((await as(soon, 'GET', '/v1/me')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 2100));
      expect((await as(soon, 'GET', '/v1/me')).status).toBe(401);
    });

    it('refuses the tokens of another Firebase project, and every Firebase token where none is configured', async () => {
      const other = await start({ ...fb.config(), firebaseProject: 'demo-another-project' });
      const none = await start({});
      try {
        for (const s of [other, none]) {
          const res = await request(s.url, 'POST', '/v1/scopes', { token: ann.idToken, body: {} });
          expect(res.status).toBe(401);
          expect(res.json.error.code).toBe('unauthorized');
        }
        expect((await request(none.url, 'GET', '/v1/me', { token: ann.idToken })).json.error.message).toMatch(/PATCHBAY_FIREBASE_PROJECT/);
        expect((await request(other.url, 'GET', '/v1/me', { token: ann.idToken })).json.error.message).toMatch(/another project/);
      } finally {
        await Promise.all([other.close(), none.close()]);
      }
    });
  });
}

describe.skipIf(skip)('Firebase Authentication on the Auth emulator', () => {
  firebaseContract('embedded', (overrides) => startServer(overrides));

  describe('outside emulator mode (a real project)', () => {
    it('never accepts an unsigned emulator token, and will not start while the emulator variable is set', async () => {
      const minted = await fb.signUp({ email: `c-${randomUUID()}@example.com`, password: 'secret-1' });
      const real = { firebaseProject: fb.projectId, firebaseAuthEmulatorHost: '' };
      // With FIREBASE_AUTH_EMULATOR_HOST in the environment the Admin SDK would check no signature.
      await expect(startServer(real)).rejects.toThrow(/FIREBASE_AUTH_EMULATOR_HOST/);
      const saved = process.env.FIREBASE_AUTH_EMULATOR_HOST;
      delete process.env.FIREBASE_AUTH_EMULATOR_HOST;
      const srv = await startServer(real);
      try {
        const res = await request(srv.url, 'GET', '/v1/me', { token: minted.idToken });
        expect(res.status).toBe(401);
        expect(res.json.error.message).toMatch(/RS256, not none/);
        // The variable appearing after start (the SDK reads it on every call) changes nothing.
        process.env.FIREBASE_AUTH_EMULATOR_HOST = saved;
        const later = await request(srv.url, 'GET', '/v1/me', { token: forge(minted.idToken, {}, { alg: 'RS256', kid: 'k' }, 'c2ln') });
        expect(later.status).toBe(401);
        expect(later.json.error.message).toMatch(/no emulator is configured/);
      } finally {
        process.env.FIREBASE_AUTH_EMULATOR_HOST = saved;
        await srv.close();
      }
    });
  });
});

describe.skipIf(skipGoogle)('Firebase Authentication on the Google stack', () => {
  let stack: GoogleStack;
  beforeAll(async () => {
    stack = await startGoogleStack();
  }, 180_000);
  afterAll(() => stack?.stop());

  firebaseContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
});
