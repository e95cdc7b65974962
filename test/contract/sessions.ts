/**
 * Sessions, guarantees, close hooks and presence (issue 15, items 7-9) over real HTTP and a real
 * SSE client, on each stack's storage (embedded: SQLite and presence in memory; Google: Firestore,
 * presence in Redis behind the Upstash REST stand-in, signals on Pub/Sub, and a second instance
 * on the same stack for the cross-instance cases).
 *
 * Sessions open, stay open by heartbeats or by an SSE stream naming them, close explicitly or by
 * timeout (the sweep). A close runs exactly once: its close hook is delivered to a real receiver
 * that verifies it with the `standardwebhooks` library, and its guarantees are applied once even
 * when the instance that closed it dies (a restart on the same storage, the sweep finishing the
 * work) or dies between a guarantee's commit and its record (the retry key makes the re-run a
 * duplicate), and likewise for a session closed by timeout after the instance holding its stream
 * was killed and the sweeper that took its close died mid-way. Presence joins, updates and leaves
 * reach two clients' streams. Refusals change nothing.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import type { Json } from '../../shared/json.js';
import { type Client, request, type TestServer } from '../helpers/server.js';
import { openSse, type SseCollector } from '../helpers/sse.js';
import { clientIn, upload, userId, waitDone } from './config.js';

export interface SessionHarness {
  srv: TestServer;
  /** Another instance on the same stack (Google), or the same server (embedded: one process holds presence). */
  peer: TestServer;
  /** Stops the server (keeping its data) and starts another on the same storage. */
  restart(): Promise<void>;
  close(): Promise<void>;
}
export type StartSessions = (overrides: Partial<Config>) => Promise<SessionHarness>;

const DOMAIN = 'rooms.example.com';
const TIMEOUT = 3000;

interface Delivery {
  headers: Record<string, string>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: payloads are inspected loosely in tests
  json: any;
}

async function startReceiver() {
  const r = { url: '', got: [] as Delivery[], status: 204, close: () => {} };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (r.status < 300) r.got.push({ headers: req.headers as Record<string, string>, body, json: JSON.parse(body) });
      res.writeHead(r.status);
      res.end();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(pred: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export function sessionsContract(stack: string, start: StartSessions): void {
  describe(`sessions, guarantees, close hooks and presence (${stack})`, () => {
    let h: SessionHarness;
    let rx: Awaited<ReturnType<typeof startReceiver>>;
    let secret = '';
    const streams: SseCollector[] = [];
    /** A new user of the domain, on the current server. */
    const someone = () => clientIn(h.srv.url, DOMAIN);
    const openSession = async (c: Client) => {
      const res = await c.request('POST', '/v1/sessions');
      expect(res.status).toBe(201);
      expect(res.json.id).toMatch(/^sess_[0-9a-f]{32}$/);
      return res.json.id as string;
    };
    const createScope = async (c: Client, state: Json, readers: string[] = []) => {
      const res = await c.request('POST', '/v1/scopes', { body: { state, access: { visibility: 'private', readers, writers: [] } } });
      expect(res.status).toBe(201);
      return res.json.id as string;
    };
    const stateOf = async (c: Client, id: string) => (await c.request('GET', `/v1/scopes/${id}`)).json;
    const hooksFor = (session: string) => rx.got.filter((d) => d.json.data.session === session);
    // biome-ignore lint/suspicious/noExplicitAny: test records are inspected loosely
    const recordOf = async (id: string): Promise<any> => (await h.srv.app.adapters.records.get('session', id))?.value;

    beforeAll(async () => {
      rx = await startReceiver();
      h = await start({
        sessionTimeoutMs: TIMEOUT,
        sessionMaxPerUser: 3,
        sessionMaxGuarantees: 3,
        sessionMaxInfoBytes: 256,
        presenceMaxStatusBytes: 64,
        domainCacheMs: 0,
      });
      const admin = await someone();
      await h.srv.app.domains.addAdmin(DOMAIN, userId(admin));
      const config = `webhooks:
  - name: closes
    url: ${rx.url}/closes
    events: [session.closed]
`;
      const res = await upload(admin, config, 0, DOMAIN);
      expect(res.status).toBe(202);
      streams.push(await waitDone(h.srv, admin, res.json.report));
      const hooks = await admin.request('GET', `/v1/domains/${DOMAIN}/webhooks`);
      expect(hooks.json.webhooks[0]).toMatchObject({ name: 'closes' });
      secret = hooks.json.webhooks[0].secret;
    }, 60_000);
    afterAll(async () => {
      for (const s of streams) s.close();
      await h?.close();
      rx?.close();
    });

    it('opens, keeps alive by heartbeats, and closes once with a signed close hook; strangers get 404 and nothing changes', async () => {
      const [a, stranger] = await Promise.all([someone(), someone()]);
      const id = await openSession(a);
      const before = await a.request('GET', `/v1/sessions/${id}`);
      expect(before.json).toMatchObject({ id, state: 'open', guarantees: [], present: [] });
      for (const path of [`/v1/sessions/${id}`, `/v1/sessions/${id}/heartbeat`]) {
        const res = await stranger.request(path.endsWith('heartbeat') ? 'POST' : 'GET', path);
        expect(res.status).toBe(404);
        expect(res.json.error.code).toBe('session_not_found');
      }
      expect((await stranger.request('DELETE', `/v1/sessions/${id}`)).status).toBe(404);
      expect((await a.request('GET', `/v1/sessions/${id}`)).json).toEqual(before.json);
      // Heartbeats carry it past its timeout.
      let expires = before.json.expires as number;
      for (let i = 0; i < 3; i++) {
        await sleep(TIMEOUT / 2);
        const hb = await a.request('POST', `/v1/sessions/${id}/heartbeat`);
        expect(hb.status).toBe(200);
        expect(hb.json.expires).toBeGreaterThan(expires);
        expires = hb.json.expires;
      }
      await h.srv.app.sweep();
      expect((await a.request('GET', `/v1/sessions/${id}`)).json.state).toBe('open');
      const closed = await a.request('DELETE', `/v1/sessions/${id}`, { body: { reason: 'logout', info: { page: '/home' } } });
      expect(closed.status).toBe(200);
      expect(closed.json).toMatchObject({ id, state: 'closed', reason: 'logout' });
      // Once: a second close, a heartbeat and a sweep change nothing and send nothing.
      expect((await a.request('DELETE', `/v1/sessions/${id}`)).json.error.code).toBe('session_closed');
      expect((await a.request('POST', `/v1/sessions/${id}/heartbeat`)).status).toBe(409);
      await h.srv.app.sweep();
      await sleep(200);
      const got = hooksFor(id);
      expect(got).toHaveLength(1);
      const d = got[0] as Delivery;
      expect(new Webhook(secret).verify(d.body, d.headers)).toMatchObject({ type: 'session.closed' });
      expect(d.headers['webhook-id']).toBe(`session:${id}`);
      expect(d.json.data).toEqual({
        session: id,
        user: userId(a),
        domain: DOMAIN,
        reason: 'logout',
        opened: before.json.opened,
        closed: closed.json.closed,
        info: { page: '/home' },
      });
      expect(() => new Webhook(secret).verify(d.body.replace('logout', 'logoff'), d.headers)).toThrow();
    });

    it('closes a silent session by timeout (reason timeout), and keeps one alive while an SSE stream names it', async () => {
      const a = await someone();
      const scope = await createScope(a, {});
      const [silent, streamed] = [await openSession(a), await openSession(a)];
      const sse = openSse(`${h.srv.url}/v1/scopes/${scope}/events?session=${streamed}&presence=1`, a.token);
      streams.push(sse);
      await sse.waitFor((evs) => evs.some((e) => e.type === 'presence' && e.data.action === 'sync'));
      await sleep(TIMEOUT + 500);
      await h.srv.app.sweep();
      expect((await a.request('GET', `/v1/sessions/${silent}`)).json).toMatchObject({ state: 'closed', reason: 'timeout' });
      expect((await a.request('GET', `/v1/sessions/${streamed}`)).json.state).toBe('open');
      await waitFor(() => hooksFor(silent).length === 1, 'the timeout close hook');
      expect(hooksFor(silent)[0]?.json.data.reason).toBe('timeout');
      sse.close();
      await sleep(TIMEOUT + 500);
      await h.srv.app.sweep();
      expect((await a.request('GET', `/v1/sessions/${streamed}`)).json).toMatchObject({ state: 'closed', reason: 'timeout' });
      // A stream naming a closed session, or someone else's, is refused before it starts.
      expect((await a.request('GET', `/v1/scopes/${scope}/events?session=${streamed}`)).status).toBe(409);
    }, 30_000);

    it("ties writes to sessions: a session id must be the writer's open session; other retry keys are as before", async () => {
      const [a, b] = await Promise.all([someone(), someone()]);
      const scope = await createScope(a, { n: 0 });
      const mine = await openSession(a);
      const theirs = await openSession(b);
      const write = (session: string, si: number) =>
        a.request('POST', `/v1/scopes/${scope}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: si }], session, si } });
      expect((await write(mine, 1)).status).toBe(200);
      expect((await write('my-tab-7', 1)).status).toBe(200);
      const before = await stateOf(a, scope);
      expect((await write(theirs, 1)).json.error.code).toBe('session_not_found');
      expect((await write(`sess_${'0'.repeat(32)}`, 1)).status).toBe(404);
      await a.request('DELETE', `/v1/sessions/${mine}`);
      expect((await write(mine, 2)).json.error.code).toBe('session_closed');
      expect(await stateOf(a, scope)).toEqual(before);
    });

    it('refuses a fourth open session, oversize input and unknown guarantees, changing nothing', async () => {
      const a = await someone();
      const ids = [await openSession(a), await openSession(a), await openSession(a)];
      const fourth = await a.request('POST', '/v1/sessions');
      expect(fourth.status).toBe(403);
      expect(fourth.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'sessions' });
      const id = ids[0] as string;
      const before = (await a.request('GET', `/v1/sessions/${id}`)).text;
      const scope = await createScope(a, { log: [] });
      const add = { scope, patch: [{ op: 'add', path: '/log/-', value: 'x' }] };
      for (let i = 0; i < 3; i++) expect((await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: add })).status).toBe(201);
      const full = (await a.request('GET', `/v1/sessions/${id}`)).text;
      expect((await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: add })).json.error).toMatchObject({
        code: 'too_large',
        limit: 'sessionMaxGuarantees',
      });
      expect((await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: { scope } })).status).toBe(400);
      expect((await a.request('DELETE', `/v1/sessions/${id}/guarantees/g_0000000000000000`)).status).toBe(404);
      expect((await a.request('DELETE', `/v1/sessions/${id}`, { body: { info: 'x'.repeat(300) } })).json.error).toMatchObject({
        code: 'too_large',
        limit: 'sessionMaxInfoBytes',
        max: 256,
      });
      expect((await a.request('DELETE', `/v1/sessions/${id}`, { body: { reason: 1 } })).status).toBe(400);
      expect((await a.request('GET', `/v1/sessions/${id}`)).text).toBe(full);
      expect(full).not.toBe(before);
      // Closing one frees a slot.
      await a.request('DELETE', `/v1/sessions/${ids[1]}`);
      expect((await a.request('POST', '/v1/sessions')).status).toBe(201);
    });

    it('runs guarantees once at close as the owner, cancelled ones not, and refuses a scope the user cannot read', async () => {
      const [a, b] = await Promise.all([someone(), someone()]);
      const room = await createScope(a, { members: { x: true } }, [userId(b)]);
      const hidden = await createScope(a, {});
      const id = await openSession(a);
      const kept = await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: { scope: room, patch: [{ op: 'remove', path: '/members/x' }] } });
      expect(kept.status).toBe(201);
      const dropped = await a.request('POST', `/v1/sessions/${id}/guarantees`, {
        body: { scope: room, patch: [{ op: 'add', path: '/dropped', value: true }] },
      });
      expect((await a.request('DELETE', `/v1/sessions/${id}/guarantees/${dropped.json.id}`)).status).toBe(204);
      const bs = await openSession(b);
      const before = (await b.request('GET', `/v1/sessions/${bs}`)).text;
      expect((await b.request('POST', `/v1/sessions/${bs}/guarantees`, { body: { scope: hidden, patch: [{ op: 'add', path: '/y', value: 1 }] } })).status).toBe(
        404,
      );
      expect((await b.request('GET', `/v1/sessions/${bs}`)).text).toBe(before);
      const closed = await a.request('DELETE', `/v1/sessions/${id}`);
      expect(closed.json.ran).toEqual([{ id: kept.json.id, scope: room, ok: true, ii: 1 }]);
      expect((await stateOf(a, room)).state).toEqual({ members: {} });
    });

    it('finishes a close after the closing instance died: the guarantee once, the close hook delivered by the sweep', async () => {
      const a = await someone();
      const scope = await createScope(a, { log: [] });
      const id = await openSession(a);
      await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: { scope, patch: [{ op: 'add', path: '/log/-', value: 'bye' }] } });
      expect((await a.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session: id } })).status).toBe(200);
      rx.status = 500; // the close hook fails on the closing instance
      const closed = await a.request('DELETE', `/v1/sessions/${id}`, { body: { reason: 'crash-test' } });
      expect(closed.json).toMatchObject({ state: 'closing', hooksPending: true });
      expect((await a.request('GET', `/v1/scopes/${scope}/presence`)).json.present).toEqual([]); // left already: the hooks may take a while
      expect((await stateOf(a, scope)).state).toEqual({ log: ['bye'] });
      // The instance dies after its guarantee committed but before it recorded so: the record is as the compare-and-set left it.
      const rec = await h.srv.app.adapters.records.get('session', id);
      expect(rec).not.toBeNull();
      const died = { ...(rec?.value as object), ran: [], lease: 0 };
      expect(await h.srv.app.adapters.records.put('session', id, died, rec?.rev as number)).not.toBeNull();
      await h.restart();
      rx.status = 204;
      await sleep(1100); // the sweep looks at a closing session when its lease lapses: the failed hook's retry, 1 s on
      const swept = await h.srv.app.sweep();
      expect(swept.sessions.finished).toBeGreaterThanOrEqual(1); // with the sessions earlier tests left to time out
      const after = await recordOf(id);
      expect(after).toMatchObject({ state: 'closed', hooksDone: ['closes'] });
      expect(after.ran).toEqual([expect.objectContaining({ ok: true, ii: 1 })]); // the re-run was a duplicate of ii 1
      await waitFor(() => hooksFor(id).length === 1, 'the close hook');
      const d = hooksFor(id)[0] as Delivery;
      expect(new Webhook(secret).verify(d.body, d.headers)).toMatchObject({ data: { session: id, reason: 'crash-test' } });
      await h.srv.app.sweep();
      await sleep(200);
      expect(hooksFor(id)).toHaveLength(1);
      const view = (await request(h.srv.url, 'GET', `/v1/scopes/${scope}`, { token: a.token })).json;
      expect(view).toMatchObject({ ii: 1, state: { log: ['bye'] } });
    }, 30_000);

    it('closes by timeout a session whose instance was killed, and again after its sweeper died mid-close: the guarantee once, one signed hook, a leave', async () => {
      const a = await someone();
      const scope = await createScope(a, { log: [] });
      const id = await openSession(a);
      await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: { scope, patch: [{ op: 'add', path: '/log/-', value: 'gone' }] } });
      expect((await a.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session: id, status: 'here' } })).status).toBe(200);
      // The session lives on the stream that names it, on the instance about to be killed; another instance (Google) watches the scope.
      const held = openSse(`${h.srv.url}/v1/scopes/${scope}/events?session=${id}`, a.token);
      streams.push(held);
      await held.waitFor((evs) => evs.some((e) => e.type === 'state'));
      const separatePeer = h.peer !== h.srv; // embedded: one process, its presence in memory dies with it
      const watcher = openSse(`${h.peer.url}/v1/scopes/${scope}/events?presence=1`, a.token);
      streams.push(watcher);
      const leaves = () => watcher.events.filter((e) => e.type === 'presence' && e.data.action === 'leave' && e.data.session === id);
      if (separatePeer) await watcher.waitFor((evs) => evs.some((e) => e.type === 'presence' && e.data.action === 'sync' && e.data.present.length === 1));
      rx.status = 500; // the close hook fails for now
      await h.restart(); // the instance is gone, and its stream with it: nothing keeps the session alive
      held.close();
      await sleep(TIMEOUT + 500);
      const first = await h.srv.app.sweep();
      expect(first.sessions.timedOut).toBeGreaterThanOrEqual(1);
      const closing = await recordOf(id);
      expect(closing).toMatchObject({ state: 'closing', reason: 'timeout', ran: [expect.objectContaining({ ok: true, ii: 1 })] });
      if (separatePeer) await watcher.waitFor(() => leaves().length === 1);
      // That sweeper dies after the guarantee committed but before it recorded so, and before the hook went out.
      const rec = await h.srv.app.adapters.records.get('session', id);
      expect(await h.srv.app.adapters.records.put('session', id, { ...(rec?.value as object), ran: [], lease: 0 }, rec?.rev as number)).not.toBeNull();
      await h.restart();
      rx.status = 204;
      await sleep(1100); // the sweep looks at a closing session when its lease lapses: the failed hook's retry, 1 s on
      // Sweeps on two instances race to finish it: one takes the lease.
      await Promise.all([h.srv.app.sweep(), h.peer.app.sweep()]);
      await waitFor(() => hooksFor(id).length >= 1, 'the timeout close hook');
      await Promise.all([h.srv.app.sweep(), h.peer.app.sweep()]);
      await sleep(300);
      expect(hooksFor(id)).toHaveLength(1);
      const d = hooksFor(id)[0] as Delivery;
      expect(new Webhook(secret).verify(d.body, d.headers)).toMatchObject({
        type: 'session.closed',
        data: { session: id, reason: 'timeout', user: userId(a) },
      });
      const after = await recordOf(id);
      expect(after).toMatchObject({ state: 'closed', reason: 'timeout', hooksDone: ['closes'] });
      expect(after.ran).toEqual([expect.objectContaining({ ok: true, ii: 1 })]); // the re-run was recognised as the same write
      const view = (await request(h.srv.url, 'GET', `/v1/scopes/${scope}`, { token: a.token })).json;
      expect(view).toMatchObject({ ii: 1, state: { log: ['gone'] } });
      expect((await request(h.srv.url, 'GET', `/v1/scopes/${scope}/presence`, { token: a.token })).json.present).toEqual([]);
      if (separatePeer) expect(leaves()).toHaveLength(1);
    }, 40_000);

    it('closes once when a close and sweeps on two instances race for an expired session', async () => {
      const a = await someone();
      const scope = await createScope(a, { log: [] });
      const id = await openSession(a);
      await a.request('POST', `/v1/sessions/${id}/guarantees`, { body: { scope, patch: [{ op: 'add', path: '/log/-', value: 'once' }] } });
      await sleep(TIMEOUT + 300);
      const [closed] = await Promise.all([a.request('DELETE', `/v1/sessions/${id}`, { body: { reason: 'raced' } }), h.srv.app.sweep(), h.peer.app.sweep()]);
      expect([200, 409]).toContain(closed.status); // the close won, or a sweep closed it first (timeout)
      await waitFor(() => hooksFor(id).length >= 1, 'the close hook');
      await Promise.all([h.srv.app.sweep(), h.peer.app.sweep()]);
      await sleep(300);
      expect(hooksFor(id)).toHaveLength(1);
      const rec = await recordOf(id);
      expect(rec).toMatchObject({ state: 'closed', reason: closed.status === 200 ? 'raced' : 'timeout' });
      expect(hooksFor(id)[0]?.json.data.reason).toBe(rec.reason);
      expect((await stateOf(a, scope)).state).toEqual({ log: ['once'] });
    }, 30_000);

    it('shows who is watching to readers only, and streams join, update and leave (close and timeout) to two clients', async () => {
      const [a, b, stranger] = await Promise.all([someone(), someone(), someone()]);
      const scope = await createScope(a, {}, [userId(b)]);
      const onA = openSse(`${h.srv.url}/v1/scopes/${scope}/events?presence=1`, a.token);
      const onB = openSse(`${h.peer.url}/v1/scopes/${scope}/events?presence=1`, b.token);
      streams.push(onA, onB);
      const presence = (s: SseCollector) => s.events.filter((e) => e.type === 'presence').map((e) => [e.data.action, e.data.session, e.data.status ?? null]);
      await onA.waitFor((evs) => evs.some((e) => e.type === 'presence'));
      await onB.waitFor((evs) => evs.some((e) => e.type === 'presence'));
      expect(onB.events.find((e) => e.type === 'presence')?.data).toEqual({ action: 'sync', present: [] });
      const sa = await openSession(a);
      const sb = await openSession(b);
      const put = (c: Client, session: string, status?: Json) =>
        c.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session, ...(status === undefined ? {} : { status }) } });
      // Each change is awaited on both streams before the next: changes made faster than a stream
      // re-reads may reach it coalesced (a join and an update as one join with the latest status).
      const seenBy = async (n: number) => {
        for (const s of [onA, onB]) await s.waitFor(() => presence(s).length >= n);
      };
      const joined = await put(a, sa, { cursor: 1 });
      expect(joined.status).toBe(200);
      expect(joined.json).toMatchObject({ joined: true, entry: { user: userId(a), session: sa, status: { cursor: 1 } } });
      await seenBy(2);
      expect((await put(a, sa, { cursor: 2 })).json.joined).toBe(false);
      await seenBy(3);
      expect((await put(b, sb)).status).toBe(200);
      await seenBy(4);
      const want = [
        ['sync', undefined, null],
        ['join', sa, { cursor: 1 }],
        ['update', sa, { cursor: 2 }],
        ['join', sb, null],
      ];
      expect(presence(onA)).toEqual(want);
      expect(presence(onB)).toEqual(want);
      const listed = await b.request('GET', `/v1/scopes/${scope}/presence`);
      expect(listed.json.present.map((e: { session: string }) => e.session)).toEqual([sa, sb]);
      expect(listed.json.present[0]).toMatchObject({ user: userId(a), status: { cursor: 2 }, since: expect.any(Number) });
      // Refusals: a stranger (404, as for the scope), someone else's session, a closed one, an oversize status; nothing changes.
      const ss = await openSession(stranger);
      expect((await stranger.request('GET', `/v1/scopes/${scope}/presence`)).status).toBe(404);
      expect((await put(stranger, ss, 1)).json.error.code).toBe('scope_not_found');
      expect((await put(b, sa, 1)).json.error.code).toBe('session_not_found');
      expect((await put(a, sa, 'x'.repeat(100))).json.error).toMatchObject({ code: 'too_large', limit: 'presenceMaxStatusBytes' });
      expect((await a.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session: sa, extra: 1 } })).status).toBe(400);
      expect((await b.request('GET', `/v1/scopes/${scope}/presence`)).text).toBe(listed.text);
      // A closes its session: a leave; B goes silent: a leave once its session times out.
      await a.request('DELETE', `/v1/sessions/${sa}`);
      for (const s of [onA, onB]) await s.waitFor(() => presence(s).length >= 5);
      expect(presence(onB)[4]).toEqual(['leave', sa, { cursor: 2 }]);
      expect((await put(a, sa, 3)).json.error.code).toBe('session_closed');
      await sleep(TIMEOUT + 500);
      await h.srv.app.sweep();
      for (const s of [onA, onB]) await s.waitFor(() => presence(s).length >= 6);
      expect(presence(onA)[5]).toEqual(['leave', sb, null]);
      expect((await a.request('GET', `/v1/scopes/${scope}/presence`)).json.present).toEqual([]);
      // Presence never enters the patch log.
      expect((await stateOf(a, scope)).ii).toBe(0);
      expect(onA.events.some((e) => e.type === 'patch')).toBe(false);
    }, 40_000);

    it('sends a webhook whose events are [session.closed] no patches, though the domain committed many', async () => {
      const a = await someone();
      const scope = await createScope(a, { n: 0 });
      expect((await a.request('POST', `/v1/scopes/${scope}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 1 }] } })).status).toBe(200);
      await sleep(500);
      expect(rx.got.length).toBeGreaterThan(0);
      expect(rx.got.filter((d) => d.json.type !== 'session.closed')).toEqual([]);
    });
  });
}
