/**
 * Many scopes on one connection (shared/http/routes/mux.ts) and long polling of history
 * (`wait`, shared/http/routes/history.ts), on a real socket.
 *
 * Guarantee 4 per scope on a multiplexed stream: each scope's patches arrive once, in order,
 * resumable from the position the client gives for it; scopes added while it is open arrive from
 * their position, removed ones stop. A rejected open or change (bad input, a scope the caller may
 * not read, a position past the head, too many scopes) is answered with a coded error and
 * changes nothing: no stream, and nothing reaches an open one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MuxReader, muxPatches, openMux } from '../helpers/mux-sse.js';
import type { Client, TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `startPeers`: two instances of one deployment (google: one Firestore root and Pub/Sub topic),
 * to check that a change sent to one instance reaches a stream served by the other.
 */
export function muxContract(stack: string, start: StartServer, startPeers?: () => Promise<[TestServer, TestServer]>): void {
  describe(`multiplexed streams and long polling (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;

    beforeAll(async () => {
      srv = await start({ sseMaxMs: 20_000, sseHeartbeatMs: 200, sseRetryMs: 50, sseMaxScopes: 25, historyWaitMaxMs: 3000 });
      alice = await srv.client();
      bob = await srv.client();
    });
    afterAll(() => srv.close());

    async function newScope(owner: Client = alice, state: unknown = { n: 0 }): Promise<string> {
      const res = await owner.request('POST', '/v1/scopes', { body: { state } });
      expect(res.status).toBe(201);
      return res.json.id;
    }
    const send = async (id: string, n: number, who: Client = alice) => {
      const res = await who.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: n }] } });
      expect(res.status).toBe(200);
    };
    const mux = (query: string, token: string | null = alice.token, headers: Record<string, string> = {}) =>
      openMux(`${srv.url}/v1/events?${query}`, token, headers);
    const control = (stream: string, body: unknown, who: Client = alice) => who.request('POST', `/v1/events/${stream}`, { body });

    it('carries several scopes on one stream: states, then each patch with its scope and id scope@ii, from per-scope positions', async () => {
      const a = await newScope();
      const b = await newScope();
      await send(b, 1);
      await send(b, 2);
      const m = mux(`scopes=${a},${b}@1`);
      try {
        await m.waitFor((ev) => ev.some((e) => e.type === 'state') && muxPatches(ev).length >= 1);
        expect(m.status).toBe(200);
        expect(m.events[0]?.type).toBe('stream');
        expect(m.events[0]?.data.stream).toMatch(/^[0-9a-f]{32}$/);
        expect(m.events.find((e) => e.type === 'state')).toEqual({ type: 'state', id: `${a}@0`, data: { scope: a, ii: 0, state: { n: 0 } } });
        await send(a, 1);
        await send(b, 3);
        await send(a, 2);
        await m.waitFor((ev) => muxPatches(ev).length >= 4);
        // Each scope's patches once and in order; the order across scopes is not promised (on
        // Google each scope's events reach the stream through its own delivery).
        const got = muxPatches(m.events);
        expect(got).toHaveLength(4);
        expect(got.filter(([s]) => s === a)).toEqual([
          [a, 1],
          [a, 2],
        ]);
        expect(got.filter(([s]) => s === b)).toEqual([
          [b, 2],
          [b, 3],
        ]);
        const p = m.events.find((e) => e.type === 'patch' && e.data.scope === a);
        expect(p?.id).toBe(`${a}@1`);
        expect(Object.keys(p?.data).sort()).toEqual(['at', 'by', 'ii', 'patch', 'scope']);
        expect(p?.data.patch).toEqual([{ op: 'replace', path: '/n', value: 1 }]);
      } finally {
        m.close();
      }
    });

    it('Last-Event-ID (scope@ii) raises its scope position: a browser’s own reconnect misses nothing', async () => {
      const a = await newScope();
      for (let i = 1; i <= 4; i++) await send(a, i);
      const m = mux(`scopes=${a}@1`, alice.token, { 'last-event-id': `${a}@3` });
      try {
        await m.waitFor((ev) => muxPatches(ev).length >= 1);
        await send(a, 5);
        await m.waitFor((ev) => muxPatches(ev).length >= 2);
        expect(muxPatches(m.events)).toEqual([
          [a, 4],
          [a, 5],
        ]);
      } finally {
        m.close();
      }
    });

    it('holds one stream slot for 20 scopes', async () => {
      const ids = await Promise.all(Array.from({ length: 20 }, () => newScope()));
      const before = srv.app.limits.openStreams;
      const m = mux(`scopes=${ids.join(',')}`);
      try {
        await m.waitFor((ev) => ev.filter((e) => e.type === 'state').length === 20);
        expect(srv.app.limits.openStreams - before).toBe(1);
        await Promise.all(ids.map((id) => send(id, 1)));
        await m.waitFor((ev) => muxPatches(ev).length === 20);
        expect(new Set(muxPatches(m.events).map(([s]) => s))).toEqual(new Set(ids));
      } finally {
        m.close();
        await m.ended;
      }
    });

    it('adds and removes scopes while open (POST /v1/events/{stream})', async () => {
      const a = await newScope();
      const c = await newScope();
      await send(c, 1);
      await send(c, 2);
      const m = mux(`scopes=${a}`);
      try {
        const stream = await m.stream();
        const added = await control(stream, { add: [{ scope: c, since: 1 }] });
        expect(added.status).toBe(202);
        expect(added.json).toEqual({ stream, add: [c], remove: [], watch: [], unwatch: [] });
        await m.waitFor((ev) => ev.some((e) => e.type === 'added'));
        expect(muxPatches(m.events)).toEqual([[c, 2]]); // its catch-up comes before `added`
        await send(c, 3);
        await m.waitFor((ev) => muxPatches(ev).length >= 2);
        expect((await control(stream, { remove: [a] })).status).toBe(202);
        await m.waitFor((ev) => ev.some((e) => e.type === 'removed'));
        expect(m.events.find((e) => e.type === 'removed')?.data).toEqual({ scope: a });
        await send(a, 1); // no longer carried
        await send(c, 4);
        await m.waitFor((ev) => muxPatches(ev).some(([s, ii]) => s === c && ii === 4));
        expect(muxPatches(m.events)).toEqual([
          [c, 2],
          [c, 3],
          [c, 4],
        ]);
        // An add without a position starts with the state; one already carried changes nothing.
        expect((await control(stream, { add: [{ scope: a }, { scope: c }] })).status).toBe(202);
        await m.waitFor((ev) => ev.filter((e) => e.type === 'added').length >= 2);
        expect(m.events.filter((e) => e.type === 'state').map((e) => [e.data.scope, e.data.ii])).toEqual([
          [a, 0],
          [a, 1],
        ]);
      } finally {
        m.close();
      }
    });

    it('ignores changes sent by another user, and refuses bad changes with nothing reaching the stream', async () => {
      const a = await newScope();
      const mine = await newScope();
      const bobs = await newScope(bob);
      const m = mux(`scopes=${a}`);
      try {
        const stream = await m.stream();
        expect((await control(stream, { add: [{ scope: bobs }] }, bob)).status).toBe(202); // bob may read his scope, but it is not his stream
        expect((await control(stream, { add: [{ scope: bobs }] })).json.error).toMatchObject({ code: 'scope_not_found', scope: bobs });
        expect((await control(stream, { add: [{ scope: mine, since: 5 }] })).json.error).toMatchObject({ code: 'out_of_sync', head: 0, scope: mine });
        expect((await control(stream, {})).status).toBe(400);
        expect((await control(stream, { add: [{ scope: 'bad/id' }] })).status).toBe(400);
        expect((await control('not-a-stream', { remove: [a] })).status).toBe(400);
        const many = await control(stream, { remove: Array.from({ length: 26 }, (_, i) => `s${i}`) });
        expect(many.status).toBe(413);
        expect(many.json.error).toMatchObject({ code: 'too_large', limit: 'sseMaxScopes' });
        expect((await alice.request('POST', `/v1/events/${stream}`, { body: { add: [{ scope: mine }] }, token: null })).status).toBe(401);
        expect((await control(stream, { add: [{ scope: mine }] })).status).toBe(202);
        await m.waitFor((ev) => ev.some((e) => e.type === 'added'));
        expect(m.events.filter((e) => ['added', 'removed', 'state'].includes(e.type)).map((e) => [e.type, e.data.scope])).toEqual([
          ['state', a],
          ['state', mine],
          ['added', mine],
        ]);
      } finally {
        m.close();
      }
    });

    describe('presence on the shared stream (presence=a,b; add with presence)', () => {
      const openSession = async (c: Client) => {
        const res = await c.request('POST', '/v1/sessions');
        expect(res.status).toBe(201);
        return res.json.id as string;
      };
      const join = async (c: Client, scope: string, session: string, status?: unknown) =>
        expect((await c.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session, ...(status === undefined ? {} : { status }) } })).status).toBe(200);
      /** The presence events seen, as [scope, action, session or the sessions a sync lists]. */
      const presence = (m: MuxReader) =>
        m.events
          .filter((e) => e.type === 'presence')
          .map((e) => [e.data.scope, e.data.action, e.data.action === 'sync' ? e.data.present.map((p: { session: string }) => p.session) : e.data.session]);

      it('sends sync then join, update and leave for the named scopes only, each naming its scope; an add turns it on or off', async () => {
        const a = await newScope();
        const b = await newScope();
        const c = await newScope();
        const m = mux(`scopes=${a},${b}&presence=${a}`);
        try {
          const stream = await m.stream();
          await m.waitFor((ev) => ev.some((e) => e.type === 'presence'));
          expect(m.events.find((e) => e.type === 'presence')?.data).toEqual({ scope: a, action: 'sync', present: [] });
          const s = await openSession(alice);
          await join(alice, a, s, { cursor: 1 });
          await m.waitFor(() => presence(m).length >= 2);
          const joined = m.events.filter((e) => e.type === 'presence')[1];
          expect(joined?.id).toBe('');
          expect(joined?.data).toMatchObject({ scope: a, action: 'join', user: expect.any(String), session: s, status: { cursor: 1 } });
          expect(Object.keys(joined?.data).sort()).toEqual(['action', 'scope', 'session', 'since', 'status', 'user']);
          await join(alice, a, s, { cursor: 2 });
          await m.waitFor(() => presence(m).length >= 3);
          await join(alice, b, s); // b's presence is not carried: nothing
          // b turned on (already carried: a sync, no `added`), c added with its presence.
          expect(
            (
              await control(stream, {
                add: [
                  { scope: b, presence: true },
                  { scope: c, presence: true },
                ],
              })
            ).status,
          ).toBe(202);
          await m.waitFor(() => presence(m).length >= 5);
          await m.waitFor((ev) => ev.some((e) => e.type === 'added'));
          expect(m.events.filter((e) => e.type === 'added').map((e) => e.data.scope)).toEqual([c]);
          await join(alice, c, s);
          await m.waitFor(() => presence(m).length >= 6);
          // a turned off: its leave is not sent; b's and c's are.
          expect((await control(stream, { add: [{ scope: a, presence: false }] })).status).toBe(202);
          await sleep(300); // the change reaches the stream (through the bus on Google)
          expect((await alice.request('DELETE', `/v1/sessions/${s}`, { body: {} })).status).toBe(200);
          await m.waitFor(() => presence(m).length >= 8);
          await sleep(300);
          const seen = presence(m);
          expect(seen.slice(0, 3)).toEqual([
            [a, 'sync', []],
            [a, 'join', s],
            [a, 'update', s],
          ]);
          expect(seen.slice(3, 5).sort()).toEqual(
            [
              [b, 'sync', [s]],
              [c, 'sync', []],
            ].sort(),
          );
          expect(seen[5]).toEqual([c, 'join', s]);
          expect(seen.slice(6).sort()).toEqual(
            [
              [b, 'leave', s],
              [c, 'leave', s],
            ].sort(),
          );
          expect(m.events.filter((e) => e.type === 'state')).toHaveLength(3); // the scopes' own events go on as before
        } finally {
          m.close();
        }
      }, 30_000);

      it('a removed scope, or one whose reader loses access, stops its presence', async () => {
        const shared = await newScope(bob);
        expect((await bob.request('PUT', `/v1/scopes/${shared}/access`, { body: { visibility: 'public' } })).status).toBe(200);
        const a = await newScope();
        const m = mux(`scopes=${shared},${a}&presence=${a},${shared}`);
        try {
          const stream = await m.stream();
          await m.waitFor(() => presence(m).length >= 2);
          const sb = await openSession(bob);
          await join(bob, shared, sb);
          await m.waitFor(() => presence(m).length >= 3);
          expect((await bob.request('PUT', `/v1/scopes/${shared}/access`, { body: { visibility: 'private' } })).status).toBe(200);
          await m.waitFor((ev) => ev.some((e) => e.type === 'removed'));
          await join(bob, shared, sb, 'after'); // alice may no longer read it: she hears nothing of it
          expect((await control(stream, { remove: [a] })).status).toBe(202);
          await m.waitFor((ev) => ev.filter((e) => e.type === 'removed').length >= 2);
          const sa = await openSession(alice);
          await join(alice, a, sa);
          await sleep(500);
          expect(presence(m).sort()).toEqual(
            [
              [a, 'sync', []],
              [shared, 'sync', []],
              [shared, 'join', sb],
            ].sort(),
          );
        } finally {
          m.close();
        }
      }, 30_000);

      it('refuses bad presence with a coded error, the same for a scope that exists and one that does not; nothing opens or changes', async () => {
        const a = await newScope();
        const bobs = await newScope(bob);
        const before = srv.app.limits.openStreams;
        const cases: Array<[string, number, string]> = [
          [`scopes=${a}&presence=`, 400, 'invalid_request'],
          [`scopes=${a}&presence=${a},${a}`, 400, 'invalid_request'],
          [`scopes=${a}&presence=bad/id`, 400, 'invalid_request'],
          [`scopes=${a},${bobs}&presence=${a},${bobs}`, 404, 'scope_not_found'],
          [`scopes=${a},nope-${a}&presence=nope-${a}`, 404, 'scope_not_found'],
        ];
        for (const [query, status, code] of cases) {
          const m = mux(query);
          await m.ended;
          expect([query, m.status]).toEqual([query, status]);
          expect((m.error as { error: { code: string } }).error.code).toBe(code);
        }
        // Naming a scope not in `scopes` is refused before any lookup: bob's scope and none at all answer alike.
        const answers = await Promise.all(
          [`scopes=${a}&presence=${bobs}`, `scopes=${a}&presence=nope-${a}`].map(async (q) => {
            const m = mux(q);
            await m.ended;
            const e = (m.error as { error: { code: string; message: string } }).error;
            return [m.status, e.code, e.message.replace(/"[^"]*"/, 'X')];
          }),
        );
        expect(answers[0]).toEqual(answers[1]);
        expect(answers[0]?.[0]).toBe(400);
        expect(srv.app.limits.openStreams).toBe(before);
        const m = mux(`scopes=${a}`);
        try {
          const stream = await m.stream();
          await m.waitFor((ev) => ev.some((e) => e.type === 'state'));
          expect((await control(stream, { add: [{ scope: bobs, presence: true }] })).json.error).toMatchObject({ code: 'scope_not_found', scope: bobs });
          expect((await control(stream, { add: [{ scope: a, presence: 'yes' }] })).json.error).toMatchObject({ code: 'invalid_request' });
          expect((await control(stream, { add: [{ scope: a, presence: true }] }, bob)).json.error).toMatchObject({ code: 'scope_not_found', scope: a });
          await sleep(300);
          expect(m.events.map((e) => e.type)).toEqual(['stream', 'state']);
        } finally {
          m.close();
        }
      });
    });

    it('opens with no scope at all (to be filled by changes) and carries one added later', async () => {
      const a = await newScope();
      for (const query of ['', 'scopes=']) {
        const m = mux(query);
        try {
          const stream = await m.stream();
          await sleep(200);
          expect(m.events.map((e) => e.type)).toEqual(['stream']);
          expect((await control(stream, { add: [{ scope: a }] })).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'added'));
          expect(m.events.map((e) => e.type)).toEqual(['stream', 'state', 'added']);
        } finally {
          m.close();
        }
      }
    });

    it('refuses a bad open with a coded error naming the scope, and opens nothing', async () => {
      const a = await newScope();
      const bobs = await newScope(bob);
      const before = srv.app.limits.openStreams;
      const cases: Array<[string, string | null, number, string]> = [
        [`scopes=${a},${a}`, alice.token, 400, 'invalid_request'],
        [`scopes=${a}@x`, alice.token, 400, 'invalid_request'],
        [`scopes=${a},${bobs}`, alice.token, 404, 'scope_not_found'],
        [`scopes=${a}`, null, 401, 'unauthorized'],
        [`scopes=${a}@3`, alice.token, 409, 'out_of_sync'],
        [`scopes=${Array.from({ length: 26 }, (_, i) => `s${i}`).join(',')}`, alice.token, 413, 'too_large'],
        [`scopes=${a}&presence=1`, alice.token, 400, 'invalid_request'],
      ];
      for (const [query, token, status, code] of cases) {
        const m = mux(query, token);
        await m.ended;
        expect([query, m.status]).toEqual([query, status]);
        expect((m.error as { error: { code: string } }).error.code).toBe(code);
      }
      const notFound = mux(`scopes=${a},${bobs}`);
      await notFound.ended;
      expect((notFound.error as { error: { scope: string } }).error.scope).toBe(bobs);
      expect(srv.app.limits.openStreams).toBe(before);
    });

    it('a scope whose reader loses access is removed from the stream with scope_not_found; the others go on', async () => {
      const shared = await newScope(bob);
      expect((await bob.request('PUT', `/v1/scopes/${shared}/access`, { body: { visibility: 'public' } })).status).toBe(200);
      const a = await newScope();
      const m = mux(`scopes=${shared},${a}`);
      try {
        await m.waitFor((ev) => ev.filter((e) => e.type === 'state').length === 2);
        expect((await bob.request('PUT', `/v1/scopes/${shared}/access`, { body: { visibility: 'private' } })).status).toBe(200);
        await m.waitFor((ev) => ev.some((e) => e.type === 'removed'));
        expect(m.events.find((e) => e.type === 'removed')?.data).toMatchObject({ scope: shared, error: { code: 'scope_not_found' } });
        await send(a, 1);
        await m.waitFor((ev) => muxPatches(ev).length >= 1);
        expect(muxPatches(m.events)).toEqual([[a, 1]]);
      } finally {
        m.close();
      }
    });

    it('an added scope past PATCHBAY_SSE_MAX_SCOPES is refused on the stream (removed, too_large)', async () => {
      const ids = await Promise.all(Array.from({ length: 26 }, () => newScope()));
      const m = mux(`scopes=${ids.slice(0, 25).join(',')}`);
      try {
        const stream = await m.stream();
        expect((await control(stream, { add: [{ scope: ids[25] as string }] })).status).toBe(202);
        await m.waitFor((ev) => ev.some((e) => e.type === 'removed'));
        expect(m.events.find((e) => e.type === 'removed')?.data).toMatchObject({ scope: ids[25], error: { code: 'too_large' } });
      } finally {
        m.close();
      }
    });

    it.skipIf(!startPeers)('a change sent to another instance reaches the stream (through the bus)', async () => {
      const [one, two] = await (startPeers as () => Promise<[TestServer, TestServer]>)();
      try {
        const carol = await one.client();
        const mk = async () => (await carol.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json.id as string;
        const a = await mk();
        const c = await mk();
        const m = openMux(`${one.url}/v1/events?scopes=${a}`, carol.token);
        try {
          const stream = await m.stream();
          const res = await fetch(`${two.url}/v1/events/${stream}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${carol.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ add: [{ scope: c }] }),
          });
          expect(res.status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'added'), 20_000);
          expect(m.events.filter((e) => e.type === 'state').map((e) => e.data.scope)).toEqual([a, c]);
          await carol.request('POST', `/v1/scopes/${c}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 1 }] } });
          await m.waitFor((ev) => muxPatches(ev).length >= 1, 20_000);
          expect(muxPatches(m.events)).toEqual([[c, 1]]);
        } finally {
          m.close();
        }
      } finally {
        await one.close();
        await two.close();
      }
    });

    describe('long polling: GET /v1/scopes/{id}/patches?wait=ms', () => {
      const history = async (id: string, query: string, who: Client = alice) => {
        const res = await who.request('GET', `/v1/scopes/${id}/patches?${query}`);
        return {
          status: res.status,
          lines: res.text
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l)),
        };
      };

      it('answers at once when patches after `from` exist', async () => {
        const id = await newScope();
        await send(id, 1);
        const t0 = Date.now();
        const r = await history(id, 'from=1&wait=2500');
        expect(r.status).toBe(200);
        expect(r.lines.map((l) => l.ii)).toEqual([1]);
        expect(Date.now() - t0).toBeLessThan(2000);
      });

      it('holds the request until a patch is committed, then answers with it', async () => {
        const id = await newScope();
        await send(id, 1);
        const t0 = Date.now();
        const pending = history(id, 'from=2&wait=10000');
        await new Promise((r) => setTimeout(r, 300));
        await send(id, 2);
        const r = await pending;
        expect(r.status).toBe(200);
        expect(r.lines.map((l) => [l.ii, l.patch])).toEqual([[2, [{ op: 'replace', path: '/n', value: 2 }]]]);
        const took = Date.now() - t0;
        expect(took).toBeGreaterThanOrEqual(300);
        expect(took).toBeLessThan(2900); // before PATCHBAY_HISTORY_WAIT_MAX_MS (3000) would have answered
      });

      it('answers empty after the wait, cut to PATCHBAY_HISTORY_WAIT_MAX_MS, and releases its slot', async () => {
        const id = await newScope();
        const before = srv.app.limits.openStreams;
        let t0 = Date.now();
        expect(await history(id, 'from=1&wait=400')).toEqual({ status: 200, lines: [] });
        expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
        t0 = Date.now();
        expect(await history(id, 'from=1&wait=60000')).toEqual({ status: 200, lines: [] });
        const took = Date.now() - t0;
        expect(took).toBeGreaterThanOrEqual(2900);
        expect(took).toBeLessThan(10_000);
        expect(srv.app.limits.openStreams).toBe(before);
      });

      it('refuses a stranger at once (404) and a bad wait (400)', async () => {
        const id = await newScope();
        const t0 = Date.now();
        expect((await history(id, 'from=1&wait=2500', bob)).status).toBe(404);
        expect(Date.now() - t0).toBeLessThan(2000);
        expect((await history(id, 'from=1&wait=-1')).status).toBe(400);
      });
    });
  });
}
