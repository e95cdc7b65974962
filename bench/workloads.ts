/**
 * The workloads, as a client sees them. The HTTP ones run against anything that speaks the v1
 * contract (patchbay in either mode, the transport floor); the ShareDB ones do the same work with
 * ShareDB's client and json0 ops:
 *
 *   write-single  one writer, sequential patches with ii      json0: replace a number (od/oi)
 *   write-hot     W writers appending to one scope            json0: list insert at the end (li)
 *   write-many    W writers across S scopes (no ii)           (HTTP only)
 *   fanout        N SSE subscribers on one scope; one writer sends paced patches; latency from
 *                 just before the send to the parse of the event in each subscriber
 *   catchup       SSE from since=0 on a long scope until its head arrives
 *   presence      N SSE subscribers with `?presence=1` on one scope; one session sends paced
 *                 presence updates (`PUT .../presence`, status {k}); latency from just before the
 *                 send to the parse of the `presence` event carrying k in each subscriber
 *   signing       W clients asking `GET /v1/uploads/{id}/download` of one ready private upload
 *                 (a signed URL each: HMAC embedded, Cloud Storage V4 offline on the emulators),
 *                 next to the signer alone in this process
 *
 * Every writer waits for its ack before sending again (ShareDB's client composes ops sent while
 * one is in flight, which would change the work; HTTP clients behave the same way here).
 * ShareDB's hot writers subscribe to the document (a ShareDB client that does not falls further
 * behind with every op and the server transforms each op against all it missed); patchbay's
 * hot writers do not subscribe.
 */
import { randomUUID } from 'node:crypto';
import { Connection, type Doc } from 'sharedb/lib/client/index.js';
import { WebSocket } from 'ws';
import { type HttpClient, SseStream } from './client.js';
import { quantile, sleep } from './harness.js';

export interface Throughput {
  /** Operations per second. */
  rate: number;
  ops: number;
  seconds: number;
}

export interface Latency {
  p50: number;
  p99: number;
  samples: number;
  /** Receipts expected but not seen within the grace period. */
  lost: number;
}

export const rate = (ops: number, t0: number): Throughput => {
  const seconds = (performance.now() - t0) / 1000;
  return { rate: ops / seconds, ops, seconds };
};

// ---------------------------------------------------------------------------------------------
// HTTP (patchbay, floor)

/**
 * The scope types of the write workloads: without a domain configuration they are labels only;
 * the `validated` variant's (bench/domains/default.yaml) gives each a JSON Schema.
 */
export const BENCH_TYPES = { single: 'bench-counter', hot: 'bench-list' } as const;

export async function httpWriteSingle(c: HttpClient, n: number): Promise<Throughput> {
  const { id } = await c.createScope({ n: 0 }, undefined, BENCH_TYPES.single);
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) await c.patch(id, [{ op: 'replace', path: '/n', value: i }], i);
  return rate(n, t0);
}

export async function httpWriteHot(c: HttpClient, writers: number, perWriter: number): Promise<Throughput> {
  const { id } = await c.createScope({ list: [] }, undefined, BENCH_TYPES.hot);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < perWriter; i++) await c.patch(id, [{ op: 'add', path: '/list/-', value: w }]);
    }),
  );
  return rate(writers * perWriter, t0);
}

/** Creates `count` scopes for write-many (a few at a time). */
export async function httpCreateScopes(c: HttpClient, count: number): Promise<string[]> {
  const prefix = `many-${randomUUID().slice(0, 8)}-`;
  const ids = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  for (let i = 0; i < ids.length; i += 16) await Promise.all(ids.slice(i, i + 16).map((id) => c.createScope({ n: 0 }, id)));
  return ids;
}

export async function httpWriteMany(c: HttpClient, scopes: string[], writers: number, perWriter: number): Promise<Throughput> {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      let x = (w * 2654435761) >>> 0; // a fixed pseudo-random walk per writer, the same for every system
      for (let i = 0; i < perWriter; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        await c.patch(scopes[x % scopes.length] as string, [{ op: 'replace', path: '/n', value: i }]);
      }
    }),
  );
  return rate(writers * perWriter, t0);
}

export async function httpFanout(c: HttpClient, subscribers: number, messages: number, intervalMs: number): Promise<Latency> {
  const { id } = await c.createScope({ seq: 0 });
  const sendAt = new Float64Array(messages + 1);
  const lat: number[] = [];
  let states = 0;
  let onState = () => {};
  let onAll = () => {};
  const streams = Array.from(
    { length: subscribers },
    () =>
      new SseStream(c.base, c.token, `/v1/scopes/${encodeURIComponent(id)}/events`, (e) => {
        if (e.type === 'state') {
          if (++states === subscribers) onState();
        } else if (e.type === 'patch') {
          const k = (JSON.parse(e.data) as { patch: Array<{ value: number }> }).patch[0]?.value as number;
          lat.push(performance.now() - (sendAt[k] as number));
          if (lat.length === subscribers * messages) onAll();
        }
      }),
  );
  try {
    await Promise.all(streams.map((s) => s.ready));
    if (states < subscribers) await withTimeout(new Promise<void>((r) => (onState = r)), 30_000, 'subscribers did not all receive their state');
    const all = new Promise<void>((r) => (onAll = r));
    await paced(messages, intervalMs, async (k) => {
      sendAt[k] = performance.now();
      await c.patch(id, [{ op: 'replace', path: '/seq', value: k }], k);
    });
    await Promise.race([all, sleep(10_000)]);
  } finally {
    for (const s of streams) s.close();
  }
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), samples: lat.length, lost: subscribers * messages - lat.length };
}

/**
 * Presence fan-out: like httpFanout, but the change is a presence update of one session (never a
 * patch), and each subscriber's stream re-reads the scope's presence on the signal. A stream may
 * coalesce updates that come faster than it re-reads (docs/uploads-and-sessions.md): those count
 * as lost, and the paced interval keeps them rare.
 */
export async function httpPresenceFanout(c: HttpClient, subscribers: number, messages: number, intervalMs: number): Promise<Latency> {
  const { id } = await c.createScope({});
  const session = (await c.ok('POST', '/v1/sessions')).id as string;
  const path = `/v1/scopes/${encodeURIComponent(id)}/presence`;
  const sendAt = new Float64Array(messages + 1);
  const lat: number[] = [];
  let synced = 0;
  let onSynced = () => {};
  let onAll = () => {};
  const streams = Array.from(
    { length: subscribers },
    () =>
      new SseStream(c.base, c.token, `/v1/scopes/${encodeURIComponent(id)}/events?presence=1`, (e) => {
        if (e.type !== 'presence') return;
        const d = JSON.parse(e.data) as { action: string; status?: { k?: number } };
        if (d.action === 'sync') {
          if (++synced === subscribers) onSynced();
        } else if ((d.action === 'join' || d.action === 'update') && typeof d.status?.k === 'number') {
          lat.push(performance.now() - (sendAt[d.status.k] as number));
          if (lat.length === subscribers * messages) onAll();
        }
      }),
  );
  try {
    await Promise.all(streams.map((s) => s.ready));
    if (synced < subscribers) await withTimeout(new Promise<void>((r) => (onSynced = r)), 30_000, 'subscribers did not all receive their presence sync');
    const all = new Promise<void>((r) => (onAll = r));
    await paced(messages, intervalMs, async (k) => {
      sendAt[k] = performance.now();
      await c.ok('PUT', path, { session, status: { k } });
    });
    await Promise.race([all, sleep(10_000)]);
  } finally {
    for (const s of streams) s.close();
    await c.call('DELETE', `/v1/sessions/${session}`);
  }
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), samples: lat.length, lost: subscribers * messages - lat.length };
}

/**
 * A ready private upload of `c`'s, for the signing workload: created, its bytes PUT through the
 * signed URL (embedded: this server; emulators: the GCS stand-in, which checks the signature),
 * then completed (the emulators send no finalize notification here).
 */
export async function httpReadyUpload(c: HttpClient): Promise<string> {
  const up = (await c.ok('POST', '/v1/uploads', { type: 'text/plain', size: 5 })) as { id: string; url: string; headers: Record<string, string> };
  const res = await fetch(up.url, { method: 'PUT', headers: up.headers, body: 'hello' });
  if (!res.ok) throw new Error(`upload PUT: ${res.status} ${await res.text()}`);
  await c.ok('POST', `/v1/uploads/${encodeURIComponent(up.id)}/complete`);
  return up.id;
}

/** Signed download URLs issued through the API: `clients` concurrent callers, `perClient` each. */
export async function httpSignDownloads(c: HttpClient, id: string, clients: number, perClient: number): Promise<Throughput> {
  const path = `/v1/uploads/${encodeURIComponent(id)}/download`;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < perClient; i++) await c.ok('GET', path);
    }),
  );
  return rate(clients * perClient, t0);
}

/** The signer alone (a FileStore's signDownload, in this process): `n` private download URLs, one after another. */
export async function signerRate(sign: (expires: number) => Promise<unknown>, n: number): Promise<Throughput> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await sign(Date.now() + 900_000);
  return rate(n, t0);
}

/** SSE from since=0 until event `head` arrives; every event 1..head must arrive once, in order. */
export async function httpCatchup(c: HttpClient, id: string, head: number): Promise<Throughput> {
  let next = 1;
  let done = () => {};
  let fail = (_: Error) => {};
  const finished = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const t0 = performance.now();
  const stream = new SseStream(c.base, c.token, `/v1/scopes/${encodeURIComponent(id)}/events?since=0`, (e) => {
    if (e.type !== 'patch') return;
    if (Number(e.id) !== next) fail(new Error(`catch-up: expected ${next}, got ${e.id}`));
    if (next++ === head) done();
  });
  try {
    await stream.ready;
    await withTimeout(finished, 600_000, 'catch-up did not finish');
  } finally {
    stream.close();
  }
  return rate(head, t0);
}

// ---------------------------------------------------------------------------------------------
// ShareDB (its client over a ws WebSocket)

interface SdbClient {
  conn: Connection;
  ws: WebSocket;
}

export async function sdbConnect(url: string): Promise<SdbClient> {
  const ws = new WebSocket(url);
  const conn = new Connection(ws);
  if (conn.state !== 'connected') {
    await withTimeout(new Promise<void>((resolve) => conn.on('state', (s) => s === 'connected' && resolve())), 30_000, 'ShareDB connection did not open');
  }
  return { conn, ws };
}

const cb =
  (resolve: () => void, reject: (e: Error) => void) =>
  (err?: Error | null): void =>
    err ? reject(err) : resolve();
export const create = (doc: Doc, data: unknown) => new Promise<void>((res, rej) => doc.create(data, cb(res, rej)));
const subscribe = (doc: Doc) => new Promise<void>((res, rej) => doc.subscribe(cb(res, rej)));
export const submit = (doc: Doc, op: unknown[]) => new Promise<void>((res, rej) => doc.submitOp(op, cb(res, rej)));

function closeAll(clients: SdbClient[]): void {
  for (const c of clients) c.conn.close();
}

export async function sdbWriteSingle(url: string, n: number): Promise<Throughput> {
  const client = await sdbConnect(url);
  try {
    const doc = client.conn.get('bench', randomUUID());
    await create(doc, { n: 0 });
    const t0 = performance.now();
    for (let i = 1; i <= n; i++) await submit(doc, [{ p: ['n'], od: i - 1, oi: i }]);
    return rate(n, t0);
  } finally {
    closeAll([client]);
  }
}

export async function sdbWriteHot(url: string, writers: number, perWriter: number): Promise<Throughput> {
  const id = randomUUID();
  const clients = await Promise.all(Array.from({ length: writers }, () => sdbConnect(url)));
  try {
    const docs = clients.map((c) => c.conn.get('bench', id));
    await create(docs[0] as Doc, { list: [] });
    await Promise.all(docs.map(subscribe));
    const t0 = performance.now();
    await Promise.all(
      docs.map(async (doc, w) => {
        for (let i = 0; i < perWriter; i++) await submit(doc, [{ p: ['list', (doc.data.list as unknown[]).length], li: w }]);
      }),
    );
    return rate(writers * perWriter, t0);
  } finally {
    closeAll(clients);
  }
}

export async function sdbFanout(url: string, subscribers: number, messages: number, intervalMs: number): Promise<Latency> {
  const id = randomUUID();
  const writer = await sdbConnect(url);
  const subs = await Promise.all(Array.from({ length: subscribers }, () => sdbConnect(url)));
  const sendAt = new Float64Array(messages + 1);
  const lat: number[] = [];
  let onAll = () => {};
  try {
    const doc = writer.conn.get('bench', id);
    await create(doc, { seq: 0 });
    await Promise.all(
      subs.map(async (s) => {
        const d = s.conn.get('bench', id);
        await subscribe(d);
        d.on('op', (op) => {
          const k = (op[0] as { oi: number }).oi;
          lat.push(performance.now() - (sendAt[k] as number));
          if (lat.length === subscribers * messages) onAll();
        });
      }),
    );
    const all = new Promise<void>((r) => (onAll = r));
    await paced(messages, intervalMs, async (k) => {
      sendAt[k] = performance.now();
      await submit(doc, [{ p: ['seq'], od: k - 1, oi: k }]);
    });
    await Promise.race([all, sleep(10_000)]);
  } finally {
    closeAll([writer, ...subs]);
  }
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), samples: lat.length, lost: subscribers * messages - lat.length };
}

// ---------------------------------------------------------------------------------------------

/** Calls `send(k)` for k = 1..count, the k-th no earlier than k * intervalMs after the start. */
export async function paced(count: number, intervalMs: number, send: (k: number) => Promise<void>): Promise<void> {
  const t0 = performance.now();
  for (let k = 1; k <= count; k++) {
    const wait = t0 + k * intervalMs - performance.now();
    if (wait > 0) await sleep(wait);
    await send(k);
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
