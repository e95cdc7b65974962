/**
 * Fan-out over SSE (guarantee 4: each subscriber sees each patch once, in order, gaps filled from
 * the log) on the stream path's fast lane: a live patch is written to every stream within the
 * bus's dispatch, as one frame built once per event and sent at once (not at the next tick), and
 * a stream waits (holding its events in its bounded queue) only when its socket's buffer is full.
 * Real sockets, real clients.
 */
import { createServer, type IncomingMessage, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchFrame, SseWriter } from '../shared/http/sse.js';
import type { PatchEvent } from '../shared/protocol.js';
import { type Client, startServer, type TestServer } from './helpers/server.js';
import { openSse, patchIndices, type SseCollector } from './helpers/sse.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('SSE fan-out (embedded)', () => {
  let srv: TestServer;
  let alice: Client;
  beforeAll(async () => {
    srv = await startServer({ sseMaxMs: 60_000 });
    alice = await srv.client();
  });
  afterAll(() => srv.close());

  const scope = async (state: unknown): Promise<string> => (await alice.request('POST', '/v1/scopes', { body: { state } })).json.id;
  const send = (id: string, patch: unknown[]) => alice.request('POST', `/v1/scopes/${id}/patches`, { body: { patch } });

  it('gives each of many streams every patch once, in order, also when patches are committed in groups', async () => {
    const id = await scope({ n: 0 });
    const streams: SseCollector[] = Array.from({ length: 25 }, () => openSse(`${srv.url}/v1/scopes/${id}/events`, alice.token));
    try {
      for (const s of streams) await s.waitFor((ev) => ev.length >= 1);
      // Concurrent writers: their patches queue behind each other's commits and are committed
      // (and published) several to a group, so each stream is handed runs of events at once.
      await Promise.all(range(4).map(async () => Promise.all(range(15).map((i) => send(id, [{ op: 'replace', path: '/n', value: i }])))));
      for (let i = 0; i < 20; i++) expect((await send(id, [{ op: 'replace', path: '/n', value: i }])).status).toBe(200);
      for (const s of streams) await s.waitFor((ev) => patchIndices(ev).length >= 80);
      await new Promise((r) => setTimeout(r, 100)); // nothing more may arrive
      for (const s of streams) {
        expect(patchIndices(s.events)).toEqual(range(80));
        expect(s.events.filter((e) => e.type === 'state')).toHaveLength(1);
      }
    } finally {
      for (const s of streams) s.close();
    }
  });

  it('keeps delivering to the other streams when one client hangs up mid-stream', async () => {
    const id = await scope({ n: 0 });
    const streams = Array.from({ length: 5 }, () => openSse(`${srv.url}/v1/scopes/${id}/events`, alice.token));
    try {
      for (const s of streams) await s.waitFor((ev) => ev.length >= 1);
      for (let i = 1; i <= 10; i++) await send(id, [{ op: 'replace', path: '/n', value: i }]);
      streams[2]?.close();
      for (let i = 11; i <= 30; i++) await send(id, [{ op: 'replace', path: '/n', value: i }]);
      for (const [k, s] of streams.entries()) {
        if (k === 2) continue;
        await s.waitFor((ev) => patchIndices(ev).length >= 30);
        expect(patchIndices(s.events)).toEqual(range(30));
      }
    } finally {
      for (const s of streams) s.close();
    }
  });

  it('holds a stream whose reader stopped reading and, once it reads again, sends every patch once, in order', async () => {
    // 300 patches of 64 KiB (19 MiB) overrun the socket buffers of a paused reader many times, so
    // the stream waits for drain while later events queue behind it.
    const big = 'x'.repeat(64 * 1024);
    const id = await scope({ s: '' });
    const { res, close } = await rawStream(`${srv.url}/v1/scopes/${id}/events`, alice.token);
    try {
      res.pause();
      for (let i = 1; i <= 300; i++) expect((await send(id, [{ op: 'replace', path: '/s', value: `${i}:${big}` }])).status).toBe(200);
      const chunks: string[] = [];
      let last = false; // the last event has begun
      const done = new Promise<void>((resolve) => {
        res.on('data', (chunk: string) => {
          last ||= `${(chunks[chunks.length - 1] ?? '').slice(-16)}${chunk}`.includes('\nid: 300\n');
          chunks.push(chunk);
          if (last && chunk.endsWith('\n\n')) resolve();
        });
      });
      res.resume();
      await done;
      const text = chunks.join('');
      const events = [...text.matchAll(/^event: patch\nid: (\d+)\ndata: (.*)$/gm)].map((m) => ({ id: Number(m[1]), data: JSON.parse(m[2] as string) }));
      expect(events.map((e) => e.id)).toEqual(range(300));
      for (const e of events) expect(e.data.ii === e.id && e.data.patch[0].value === `${e.id}:${big}`).toBe(true);
    } finally {
      close();
    }
  });
});

describe('SseWriter.frame and patchFrame', () => {
  it('frames each patch event as its own text, whatever was framed before', () => {
    const text = (e: PatchEvent) => `event: patch\nid: ${e.ii}\ndata: ${JSON.stringify({ ii: e.ii, patch: e.patch, at: e.at, by: e.by })}\n\n`;
    const a: PatchEvent = { scope: 's', ii: 7, patch: [{ op: 'add', path: '/a', value: 'é' }], at: 1, by: 'u' };
    const b: PatchEvent = { scope: 's', ii: 8, patch: [{ op: 'remove', path: '/a' }], at: 2, by: 'u' };
    const a2: PatchEvent = { ...a, patch: [{ op: 'add', path: '/a', value: 'other' }] }; // same ii, another event
    for (const e of [a, a, b, a, a2, b, b]) expect(patchFrame(e)).toBe(text(e));
  });

  it('sends the first frame of a tick at once, and later frames of that tick together at the next', async () => {
    let writer: SseWriter | undefined;
    let socket: Socket | null = null;
    const server: Server = createServer((_req, res) => {
      writer = new SseWriter(res);
      writer.start(1000);
      socket = res.socket;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { res, close } = await rawStream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, '');
    try {
      let text = '';
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      const w = writer as SseWriter;
      const s = socket as unknown as Socket;
      const frame = (n: number) => `event: patch\nid: ${n}\ndata: ${n}\n\n`;
      await new Promise((r) => setImmediate(r));
      expect(w.frame(frame(1))).toBeUndefined();
      expect(s.writableLength).toBe(0); // handed to the kernel, not held for the next tick
      w.frame(frame(2));
      w.frame(frame(3));
      expect(s.writableCorked).toBe(1); // held: they leave together
      expect(s.writableLength).toBeGreaterThan(0);
      await new Promise((r) => process.nextTick(r));
      expect(s.writableLength).toBe(0);
      w.frame(frame(4)); // a new tick: at once again
      expect(s.writableLength).toBe(0);
      const deadline = Date.now() + 5000;
      while (!text.includes('id: 4') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))).toEqual([1, 2, 3, 4]);
    } finally {
      close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('returns nothing while the socket takes frames, then a promise that resolves on drain', async () => {
    let writer: SseWriter | undefined;
    const server: Server = createServer((_req, res) => {
      writer = new SseWriter(res);
      writer.start(1000);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { res, close } = await rawStream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, '');
    try {
      res.pause();
      const w = writer as SseWriter;
      const frame = `event: patch\ndata: "${'y'.repeat(8_000)}"\n\n`;
      expect(w.frame(frame)).toBeUndefined();
      let sent = 1;
      let wait: Promise<void> | undefined;
      while (wait === undefined && sent < 20_000) {
        wait = w.frame(frame);
        sent++;
      }
      expect(wait).toBeInstanceOf(Promise); // the buffers of a paused reader fill up
      let received = 0;
      res.on('data', (chunk: string) => {
        received += chunk.length;
      });
      res.resume();
      await wait;
      expect(received).toBeGreaterThan(0);
    } finally {
      close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

/** A GET whose response the test reads (or pauses) by hand: a client that stops reading. */
async function rawStream(url: string, token: string): Promise<{ res: IncomingMessage; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, agent: false }, (res) => {
      res.setEncoding('utf8');
      resolve({ res, close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}
