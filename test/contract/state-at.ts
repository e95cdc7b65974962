/**
 * `GET /v1/scopes/{id}/at/{ii}`: a scope's state at any past index, the same on every stack
 * (test/history.test.ts embedded, test/google.emulator.test.ts on the emulators).
 * Guarantee 2 (state = initial state + patches 1..ii, whatever served it): every index 0..head
 * answers exactly that fold, also after the bundler has written snapshots and bundles and trimmed
 * the hot log (so the rebuild starts at a snapshot and reads bundles). The scope's read rules: a
 * reader gets it, a public scope needs no token, a caller who may not read it gets 404 as for a
 * missing scope, no token 401. Guarantee 3: bad input (an index past head, not an index, a bad
 * id) is a coded 400 and changes nothing: the head, the state, the log and the hot cache are as
 * before (a past state is never put in the cache). PATCHBAY_RATE_STATE_AT limits it (429).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bundler } from '../../shared/cold/bundler.js';
import { INITIAL, patchFor, stateAfter } from '../helpers/cold.js';
import type { Client, TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

/** Small cold sizes: 23 patches make 2 bundles and a snapshot at 15, and trim all but the last 3. */
const SMALL = { bundlePatches: 10, snapshotEvery: 15, retainPatches: 3, retainMinutes: 0, trimChunk: 7 };
const N = 23;

export function stateAtContract(stack: string, start: StartServer): void {
  describe(`state at a past index (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;
    let id: string;
    beforeAll(async () => {
      srv = await start(SMALL);
      alice = await srv.client();
      bob = await srv.client();
      const created = await alice.request('POST', '/v1/scopes', { body: { state: INITIAL } });
      expect(created.status).toBe(201);
      id = created.json.id;
      for (let i = 1; i <= N; i++) expect((await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: patchFor(i), ii: i } })).status).toBe(200);
      const bundler = new Bundler(srv.app.adapters.ledger, srv.app.adapters.blobs, srv.app.config, { logError: () => {} });
      await bundler.run();
      const head = await srv.app.adapters.ledger.getHead(id);
      expect(head?.trimmed, 'the bundler trimmed the hot log').toBeGreaterThanOrEqual(15);
    }, 120_000);
    afterAll(() => srv?.close());

    /** What a refused request must leave as it was: the scope, its log, and the hot cache. */
    async function stored(): Promise<unknown> {
      const scope = await alice.request('GET', `/v1/scopes/${id}`);
      const log = await alice.request('GET', `/v1/scopes/${id}/patches`);
      const cache = await srv.app.adapters.cache.get(id);
      return { scope: scope.json, etag: scope.headers.get('etag'), log: log.text, cache: cache?.ii ?? null };
    }

    it('answers the fold of patches 1..ii at every index 0..head, across snapshot, bundles and the log tail', async () => {
      for (let ii = 0; ii <= N; ii++) {
        const res = await alice.request('GET', `/v1/scopes/${id}/at/${ii}`);
        expect(res.status, res.text).toBe(200);
        expect(res.json).toEqual({ id, ii, state: stateAfter(ii) });
        expect(res.headers.get('etag')).toBe(`"${ii}"`);
      }
    });

    it("never puts a past state in the hot cache (it holds the head's or nothing)", async () => {
      await alice.request('GET', `/v1/scopes/${id}/at/4`);
      const cached = await srv.app.adapters.cache.get(id);
      if (cached) expect(cached.ii).toBe(N);
      expect((await alice.request('GET', `/v1/scopes/${id}`)).json).toMatchObject({ ii: N, state: stateAfter(N) });
    });

    it('follows the read rules: 404 for a caller who may not read, as for a missing scope; 401 without a token; a public scope needs none', async () => {
      const stranger = await bob.request('GET', `/v1/scopes/${id}/at/3`);
      expect(stranger.status).toBe(404);
      expect(stranger.json.error.code).toBe('scope_not_found');
      const missing = await bob.request('GET', '/v1/scopes/no-such-scope/at/0');
      expect(missing.status).toBe(404);
      expect(missing.json.error).toEqual({ ...stranger.json.error, message: missing.json.error.message, id: 'no-such-scope' });
      const anon = await alice.request('GET', `/v1/scopes/${id}/at/3`, { token: null });
      expect(anon.status).toBe(401);
      expect(anon.json.error.code).toBe('unauthorized');
      const pub = await alice.request('POST', '/v1/scopes', { body: { state: { v: 0 }, access: { visibility: 'public' } } });
      await alice.request('POST', `/v1/scopes/${pub.json.id}/patches`, { body: { patch: [{ op: 'replace', path: '/v', value: 1 }] } });
      const open = await alice.request('GET', `/v1/scopes/${pub.json.id}/at/0`, { token: null });
      expect(open.status).toBe(200);
      expect(open.json.state).toEqual({ v: 0 });
    });

    it('400s an index past head (with head), a non-index and a bad id, changing nothing', async () => {
      const before = await stored();
      const past = await alice.request('GET', `/v1/scopes/${id}/at/${N + 1}`);
      expect(past.status).toBe(400);
      expect(past.json.error).toMatchObject({ code: 'invalid_request', head: N });
      for (const bad of ['abc', '01', '-1', '1.5', '99999999999999999999']) {
        const res = await alice.request('GET', `/v1/scopes/${id}/at/${bad}`);
        expect(res.status, bad).toBe(400);
        expect(res.json.error.code).toBe('invalid_request');
      }
      const badId = await alice.request('GET', `/v1/scopes/${'x'.repeat(129)}/at/1`);
      expect(badId.status).toBe(400);
      expect(await stored()).toEqual(before);
    });

    it('429s past PATCHBAY_RATE_STATE_AT, per user', async () => {
      const limited = await start({ limits: 'on', rateStateAt: { tokens: 2, windowMs: 60_000 } });
      try {
        const c = await limited.client();
        const s = (await c.request('POST', '/v1/scopes', { body: { state: { a: 1 }, access: { visibility: 'authenticated' } } })).json.id as string;
        expect((await c.request('GET', `/v1/scopes/${s}/at/0`)).status).toBe(200);
        expect((await c.request('GET', `/v1/scopes/${s}/at/0`)).status).toBe(200);
        const third = await c.request('GET', `/v1/scopes/${s}/at/0`);
        expect(third.status).toBe(429);
        expect(third.json.error).toMatchObject({ code: 'rate_limited', limit: 'stateAt' });
        const other = await limited.client(); // another user has its own bucket
        expect((await other.request('GET', `/v1/scopes/${s}/at/0`)).status).toBe(200);
      } finally {
        await limited.close();
      }
    });
  });
}
