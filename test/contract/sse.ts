/**
 * SSE (BRIEF §3, guarantee 4): every subscriber sees every patch of a scope once, in index order,
 * across reconnects; a lost connection resumes where it stopped. Checked with a real
 * EventSource client over a real socket, including the server ending streams at their maximum
 * duration (a forced reconnect that the client resumes with Last-Event-ID).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client, TestServer } from '../helpers/server.js';
import { openSse, patchIndices } from '../helpers/sse.js';
import type { StartServer } from './http.js';

export function sseContract(stack: string, start: StartServer): void {
  describe(`SSE contract (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;

    beforeAll(async () => {
      srv = await start({ sseMaxMs: 1500, sseHeartbeatMs: 200, sseRetryMs: 50 });
      alice = await srv.client();
    });
    afterAll(() => srv.close());

    async function newScope(state: unknown = { n: 0 }): Promise<string> {
      const res = await alice.request('POST', '/v1/scopes', { body: { state } });
      expect(res.status).toBe(201);
      return res.json.id;
    }

    const send = (id: string, n: number) => alice.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: n }] } });

    describe('SSE', () => {
      it('sends the state, then each patch with id = ii', async () => {
        const id = await newScope();
        await send(id, 1);
        const sse = openSse(`${srv.url}/v1/scopes/${id}/events`, alice.token);
        try {
          await sse.waitFor((ev) => ev.length >= 1);
          expect(sse.events[0]).toEqual({ type: 'state', id: '1', data: { ii: 1, state: { n: 1 } } });
          await send(id, 2);
          await send(id, 3);
          await sse.waitFor((ev) => patchIndices(ev).length >= 2);
          expect(patchIndices(sse.events)).toEqual([2, 3]);
          const p = sse.events[1];
          expect(p?.id).toBe('2');
          expect(Object.keys(p?.data).sort()).toEqual(['at', 'by', 'ii', 'patch']);
          expect(p?.data.patch).toEqual([{ op: 'replace', path: '/n', value: 2 }]);
        } finally {
          sse.close();
        }
      });

      it('resumes with ?since=n: every patch after n, then live', async () => {
        const id = await newScope();
        for (let i = 1; i <= 5; i++) await send(id, i);
        const sse = openSse(`${srv.url}/v1/scopes/${id}/events?since=2`, alice.token);
        try {
          await sse.waitFor((ev) => patchIndices(ev).length >= 3);
          await send(id, 6);
          await sse.waitFor((ev) => patchIndices(ev).length >= 4);
          expect(sse.events.every((e) => e.type === 'patch')).toBe(true);
          expect(patchIndices(sse.events)).toEqual([3, 4, 5, 6]);
        } finally {
          sse.close();
        }
      });

      it('resumes with a Last-Event-ID header', async () => {
        const id = await newScope();
        for (let i = 1; i <= 3; i++) await send(id, i);
        const res = await fetch(`${srv.url}/v1/scopes/${id}/events`, { headers: { authorization: `Bearer ${alice.token}`, 'last-event-id': '1' } });
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        let text = '';
        while (!text.includes('id: 3')) text += new TextDecoder().decode((await reader.read()).value);
        await reader.cancel();
        expect(text).not.toContain('event: state');
        expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))).toEqual([2, 3]);
      });

      it('keeps every patch once and in order across server-ended streams and reconnects', async () => {
        const id = await newScope();
        const sse = openSse(`${srv.url}/v1/scopes/${id}/events`, alice.token);
        try {
          await sse.waitFor((ev) => ev.length >= 1);
          // Write for longer than two stream lifetimes (1.5 s each): the client must reconnect.
          const total = 60;
          for (let i = 1; i <= total; i++) {
            await send(id, i);
            await new Promise((r) => setTimeout(r, 60));
          }
          await sse.waitFor((ev) => patchIndices(ev).length >= total, 20_000);
          expect(sse.opens).toBeGreaterThanOrEqual(2);
          expect(patchIndices(sse.events)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
          expect(sse.events.filter((e) => e.type === 'state')).toHaveLength(1);
        } finally {
          sse.close();
        }
      });

      it('sends heartbeats and ends at the maximum duration with a retry hint', async () => {
        const id = await newScope();
        const started = Date.now();
        const res = await fetch(`${srv.url}/v1/scopes/${id}/events`, { headers: { authorization: `Bearer ${alice.token}` } });
        expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
        const text = await res.text(); // resolves only because the server ends the stream
        expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
        expect(text.startsWith('retry: 50\n')).toBe(true);
        expect(text).toContain(': hb\n');
        expect(
          text
            .trimEnd()
            .split('\n')
            .filter((l) => l.startsWith('retry:')),
        ).toHaveLength(2);
      });

      it('rejects a position past head with out_of_sync, and garbage positions with 400', async () => {
        const id = await newScope();
        const past = await alice.request('GET', `/v1/scopes/${id}/events?since=5`);
        expect(past.status).toBe(409);
        expect(past.json.error).toMatchObject({ code: 'out_of_sync', head: 0 });
        const bad = await alice.request('GET', `/v1/scopes/${id}/events`, { headers: { 'last-event-id': 'x' } });
        expect(bad.status).toBe(400);
        const missing = await alice.request('GET', '/v1/scopes/nope/events');
        expect(missing.status).toBe(404);
      });
    });

    describe('stream tickets (browser EventSource)', () => {
      it('opens a stream with a short-lived ticket and no Authorization header', async () => {
        const id = await newScope();
        const t = await alice.request('POST', `/v1/scopes/${id}/events/ticket`);
        expect(t.status).toBe(200);
        expect(t.json.expiresIn).toBe(60);
        const sse = openSse(`${srv.url}/v1/scopes/${id}/events?ticket=${t.json.ticket}`);
        try {
          await sse.waitFor((ev) => ev.length >= 1);
          await send(id, 1);
          await sse.waitFor((ev) => patchIndices(ev).length >= 1);
          expect(patchIndices(sse.events)).toEqual([1]);
        } finally {
          sse.close();
        }
      });

      it('refuses a ticket for another scope, and a bearer token in the URL', async () => {
        const a = await newScope();
        const b = await newScope();
        const t = await alice.request('POST', `/v1/scopes/${a}/events/ticket`);
        const other = await alice.request('GET', `/v1/scopes/${b}/events?ticket=${t.json.ticket}`, { token: null });
        expect(other.status).toBe(401);
        const token = await alice.request('GET', `/v1/scopes/${a}/events?ticket=${alice.token}`, { token: null });
        expect(token.status).toBe(401);
        expect((await alice.request('POST', '/v1/scopes/nope/events/ticket')).status).toBe(404);
      });
    });
  });
}
