/**
 * The client's shared connection (client/src/mux.ts) against the real server through a real
 * proxy (test/helpers/proxy.ts): a client watching 20 scopes holds one stream; scopes added and
 * closed while it is open; behind a proxy that buffers SSE it falls back to long polling of
 * history and receives every patch of every scope, in order, once (guarantee 4 as the client
 * sees it), then returns to the stream when the proxy lets it through. Reconnect delays are
 * randomised (full jitter). Run on both stacks: test/client-mux.test.ts (embedded) and
 * test/google.emulator.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type LiveScope, type TabMode } from '../../client/src/index.js';
import { backoff } from '../../client/src/stream.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import type { Client, TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function clientMuxContract(stack: string, start: StartServer): void {
  describe(`client: many scopes, one connection (${stack})`, () => {
    let srv: TestServer;
    let proxy: TestProxy;
    let writer: Client;

    beforeAll(async () => {
      srv = await start({ sseHeartbeatMs: 100, sseMaxMs: 60_000, historyWaitMaxMs: 2000 });
      proxy = await startProxy(srv.url);
      writer = await srv.client();
    });
    afterAll(async () => {
      await proxy.close();
      await srv.close();
    });

    const newScope = async (state: unknown = { n: [] }) =>
      (await writer.request('POST', '/v1/scopes', { body: { state, access: { visibility: 'public' } } })).json.id as string;
    const append = async (id: string, value: number) => {
      const res = await writer.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/n/-', value }] } });
      expect(res.status).toBe(200);
    };

    it('watches 20 scopes over one stream, adding and closing scopes on it', async () => {
      proxy.buffer = false;
      const before = { total: proxy.streamsTotal, open: srv.app.limits.openStreams };
      const ids = await Promise.all(Array.from({ length: 20 }, () => newScope()));
      const client = createClient({ url: proxy.url });
      try {
        const scopes = ids.map((id) => client.scope(id));
        await Promise.all(scopes.map((s) => s.ready));
        expect(client.transportMode).toBe('stream');
        expect(proxy.streamsOpen).toBe(1);
        expect(srv.app.limits.openStreams - before.open).toBe(1);
        await Promise.all(ids.map((id) => append(id, 1)));
        await until(() => scopes.every((s) => s.ii === 1), 'a patch on every scope');
        // A 21st scope joins the open stream; closing ten leaves it open for the rest.
        const late = await newScope();
        const s21 = client.scope(late);
        await s21.ready;
        for (const s of scopes.slice(0, 10)) s.close();
        const again = client.scope(ids[0] as string); // closed just now, followed again at once: removed, then added
        await again.ready;
        await append(late, 7);
        await append(ids[15] as string, 2);
        await append(ids[0] as string, 2);
        await until(() => s21.ii === 1 && scopes[15]?.ii === 2 && again.ii === 2, 'the added scope, a kept one and the one followed again live');
        expect(s21.state).toEqual({ n: [7] });
        expect(proxy.streamsTotal - before.total).toBe(1); // never a second stream
        expect(srv.app.limits.openStreams - before.open).toBe(1);
      } finally {
        client.close();
      }
      await until(() => srv.app.limits.openStreams === before.open, 'the stream released after close');
    });

    it('a scope it may not read fails alone (scope_not_found); the others stay live on the stream', async () => {
      proxy.buffer = false;
      const open = await newScope();
      const privateId = (await writer.request('POST', '/v1/scopes', { body: { state: {} } })).json.id as string;
      const client = createClient({ url: proxy.url });
      try {
        const a = client.scope(open);
        const p = client.scope(privateId);
        await expect(p.ready).rejects.toMatchObject({ code: 'scope_not_found' });
        await a.ready;
        await append(open, 1);
        await until(() => a.ii === 1, 'the readable scope live');
      } finally {
        client.close();
      }
    });

    it('behind a proxy that buffers SSE: falls back to long polling and receives every patch, then streams again', async () => {
      proxy.buffer = true;
      const ids = await Promise.all(Array.from({ length: 3 }, () => newScope()));
      const modes: TabMode[] = [];
      const client = createClient({ url: proxy.url, multiplex: { heartbeatTimeoutMs: 600, pollWaitMs: 1500, streamRetryMs: 2500 } });
      client.on('transport', (m) => modes.push(m));
      const seen = new Map<string, number[]>();
      const scopes: LiveScope[] = ids.map((id) => {
        const s = client.scope(id);
        seen.set(id, []);
        s.watch(() => {
          const list = seen.get(id) as number[];
          if (list.at(-1) !== s.ii) list.push(s.ii); // the first state may be reported twice (watch, then ready)
        });
        return s;
      });
      try {
        await Promise.all(scopes.map((s) => s.ready)); // the state came by polling: the stream shows nothing
        expect(modes).toContain('polling');
        // Writes while polling, spread over one retry of the (still buffered) stream.
        const perScope = 12;
        for (let i = 1; i <= perScope; i++) {
          for (const id of ids) await append(id, i);
          await new Promise((r) => setTimeout(r, 250));
        }
        await until(() => scopes.every((s) => s.ii === perScope), 'every patch by polling');
        expect(proxy.streamsTotal).toBeGreaterThanOrEqual(2); // it tried the stream again, and fell back again
        // The proxy lets streams through again: the next retry streams, and loses nothing across the switch.
        proxy.buffer = false;
        await until(() => client.transportMode === 'stream', 'back on the stream', 10_000);
        for (const id of ids) await append(id, perScope + 1);
        await until(() => scopes.every((s) => s.ii === perScope + 1), 'the patch after the switch');
        for (const s of scopes) {
          // Every index, in order, none skipped (a patch applied twice would show in the state).
          expect(seen.get(s.id)).toEqual(Array.from({ length: perScope + 2 }, (_, i) => i));
          expect(s.state).toEqual({ n: Array.from({ length: perScope + 1 }, (_, i) => i + 1) });
          const server = await writer.request('GET', `/v1/scopes/${s.id}`);
          expect(server.json).toMatchObject({ ii: s.ii, state: s.state });
        }
      } finally {
        client.close();
        proxy.buffer = false;
      }
    });

    it('watches the presence of 3 scopes on its one connection (the scopes’ own streams without multiplex)', async () => {
      proxy.buffer = false;
      await until(() => srv.app.limits.openStreams === 0, 'the earlier tests’ streams released');
      const before = { total: proxy.streamsTotal, open: srv.app.limits.openStreams };
      const ids = await Promise.all(Array.from({ length: 3 }, () => newScope()));
      const session = (await writer.request('POST', '/v1/sessions')).json.id as string;
      const join = async (id: string, status: unknown) =>
        expect((await writer.request('PUT', `/v1/scopes/${id}/presence`, { body: { session, status } })).status).toBe(200);
      await join(ids[0] as string, 'early'); // present before the watch: in the first list
      const client = createClient({ url: proxy.url, token: writer.token });
      const seen = new Map<string, Array<Array<[string, unknown]>>>(ids.map((id) => [id, []]));
      const last = (id: string) => seen.get(id)?.at(-1);
      try {
        const scope = client.scope(ids[1] as string); // followed for its state as well
        await scope.ready;
        const stops = ids.map((id) => client.watchPresence(id, (present) => seen.get(id)?.push(present.map((p) => [p.session, p.status]))));
        await until(() => ids.every((id) => last(id) !== undefined), 'a first list for every scope');
        expect(last(ids[0] as string)).toEqual([[session, 'early']]);
        expect(last(ids[2] as string)).toEqual([]);
        for (const id of ids) await join(id, `in ${id}`);
        await until(() => ids.every((id) => JSON.stringify(last(id)) === JSON.stringify([[session, `in ${id}`]])), 'each join (or update) seen');
        await append(ids[1] as string, 1);
        await until(() => scope.ii === 1, 'the followed scope still live');
        expect(proxy.streamsOpen).toBe(1);
        expect(proxy.streamsTotal - before.total).toBe(1);
        expect(srv.app.limits.openStreams - before.open).toBe(1);
        stops[2]?.(); // no longer watched: its leave is not heard
        expect((await writer.request('DELETE', `/v1/sessions/${session}`, { body: {} })).status).toBe(200);
        await until(() => last(ids[0] as string)?.length === 0 && last(ids[1] as string)?.length === 0, 'the leaves');
        await new Promise((r) => setTimeout(r, 300));
        expect(last(ids[2] as string)).toEqual([[session, `in ${ids[2]}`]]);
        expect(proxy.streamsTotal - before.total).toBe(1);
      } finally {
        client.close();
      }
      await until(() => srv.app.limits.openStreams === before.open, 'the stream released after close');
      const single = createClient({ url: proxy.url, token: writer.token, multiplex: false });
      const lists: unknown[] = [];
      try {
        const total = proxy.streamsTotal;
        const stops = ids.map((id) => single.watchPresence(id, (present) => lists.push(present)));
        await until(() => lists.length >= 3, 'a first list from each own stream');
        expect(proxy.streamsTotal - total).toBe(3);
        for (const stop of stops) stop();
      } finally {
        single.close();
      }
    });

    it('presence of a scope it may not read fails alone (scope_not_found); the other watches go on on the stream', async () => {
      proxy.buffer = false;
      const open = await newScope();
      const privateId = (await writer.request('POST', '/v1/scopes', { body: { state: {} } })).json.id as string;
      const client = createClient({ url: proxy.url }); // another (anonymous) user
      const lists: unknown[][] = [];
      const errors: string[] = [];
      try {
        client.watchPresence(open, (present) => lists.push(present));
        client.watchPresence(
          privateId,
          () => errors.push('told presence'),
          (err) => errors.push(err.code),
        );
        await until(() => errors.length > 0 && lists.length > 0, 'the refusal and the readable scope’s list');
        expect(errors).toEqual(['scope_not_found']);
        const session = (await writer.request('POST', '/v1/sessions')).json.id as string;
        expect((await writer.request('PUT', `/v1/scopes/${open}/presence`, { body: { session } })).status).toBe(200);
        await until(() => lists.at(-1)?.length === 1, 'the join on the readable scope');
        expect((await writer.request('DELETE', `/v1/sessions/${session}`, { body: {} })).status).toBe(200);
        expect(errors).toEqual(['scope_not_found']);
        expect(client.transportMode).toBe('stream');
      } finally {
        client.close();
      }
    });

    it('waits a random delay under a doubling cap before reconnecting (full jitter)', () => {
      for (const attempt of [0, 3, 10]) {
        const cap = Math.min(10_000, 250 * 2 ** attempt);
        const delays = Array.from({ length: 200 }, () => backoff(attempt));
        expect(Math.min(...delays)).toBeGreaterThanOrEqual(50);
        expect(Math.max(...delays)).toBeLessThanOrEqual(Math.max(50, cap));
        expect(new Set(delays.map((d) => Math.round(d))).size).toBeGreaterThan(20); // spread, not one instant
      }
    });
  });
}
