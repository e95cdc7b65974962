/**
 * The scale-out workloads (issue 18): several API processes sharing one set of emulators and
 * stand-ins, as Cloud Run's instances of one service share Firestore, Pub/Sub, Redis and storage.
 *
 *   scale-hot   W writers on one hot scope, writer w sending through instance w mod K, and one
 *               stream on every instance; throughput (acks/s) and the delivery latency of each
 *               patch to the streams of the other instances (from just before the send to the
 *               parse of the event; for K = 1, the one instance's stream), and the same receipts
 *               measured from the writer's ack instead (`acked`: what delivery adds after the
 *               write; negative when the event arrived before the ack did)
 *   scale-many  W writers across S scopes (no ii), writer w through instance w mod K
 *
 * Every write carries its writer's (session, si), and a 503 `unavailable` (a leader that did not
 * answer in time, an instance shedding load) is retried with the same key after a short backoff,
 * as the client library does: the server recognises a retry of a committed patch, so no patch is
 * counted twice. Retries are counted and reported (`retried`), never hidden.
 *
 * `startInstances` starts K servers with a namespace of their own on the stack (collection,
 * topic, subscriptions, cache keys), so runs for different K never share a scope or a lease.
 */
import { HttpClient, SseStream } from './client.js';
import { type NodeChild, quantile, startNode } from './harness.js';
import type { Latency, Throughput } from './workloads.js';

export interface Fleet {
  /** One client per instance, all with the same user's token. */
  clients: HttpClient[];
  stop(): Promise<void>;
}

/** Starts `k` API processes on one namespace of the stack (`env`: the stack's and the bench's). */
export async function startFleet(k: number, env: Record<string, string>, ns: string, cpu: string | null): Promise<Fleet> {
  const fenv = {
    ...env,
    PATCHBAY_FIRESTORE_ROOT: `bench${ns}`,
    PATCHBAY_CACHE_PREFIX: `pb:${ns}:`,
    PATCHBAY_PUBSUB_TOPIC: `patches-${ns}`,
    PATCHBAY_PUBSUB_SUBSCRIPTION_PREFIX: `sse-${ns}`,
  };
  const procs: NodeChild[] = await Promise.all(Array.from({ length: k }, () => startNode('dist/functions/serve.js', [], { env: fenv, cpu })));
  const first = await HttpClient.signIn(procs[0]?.url as string);
  const clients = [first, ...procs.slice(1).map((p) => new HttpClient(p.url, first.token))];
  return {
    clients,
    async stop() {
      for (const c of clients) c.close();
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

/** Writes retried after a 503 since the process started (reported per round as a difference). */
let retries = 0;
export const retriedSoFar = (): number => retries;

/**
 * One patch under (session, si), retried on 503 with the same key (50 ms doubling to 1.6 s, at
 * most 12 tries); any other failure, or the last 503, throws.
 */
async function send(c: HttpClient, id: string, patch: unknown[], session: string, si: number): Promise<void> {
  const path = `/v1/scopes/${encodeURIComponent(id)}/patches`;
  for (let attempt = 0; ; attempt++) {
    const r = await c.call('POST', path, { patch, session, si });
    if (r.status >= 200 && r.status < 300) return;
    if (r.status !== 503 || attempt === 11) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    retries++;
    await sleep(Math.min(1600, 50 * 2 ** attempt));
  }
}

export interface ScaleHot extends Throughput, Latency {
  /** p50 and p99 of each receipt's time after its writer's ack (ms). */
  acked50: number;
  acked99: number;
}

export async function scaleHot(clients: HttpClient[], writers: number, perWriter: number): Promise<ScaleHot> {
  const k = clients.length;
  const first = clients[0] as HttpClient;
  const { id } = await first.createScope({ list: [] });
  const run = crypto.randomUUID().slice(0, 8);
  const total = writers * perWriter;
  const sendAt = new Float64Array(total);
  const via = new Int32Array(total);
  const ackAt = new Float64Array(total);
  const lat: number[] = [];
  /** Each receipt counted in `lat`: its patch and when it arrived. */
  const got: Array<[number, number]> = [];
  // Every stream sees every patch; the receipts counted are those on another instance than the sender's.
  const expected = k === 1 ? total : total * (k - 1);
  let onAll = () => {};
  let states = 0;
  let onStates = () => {};
  const streams = clients.map(
    (c, s) =>
      new SseStream(c.base, c.token, `/v1/scopes/${encodeURIComponent(id)}/events`, (e) => {
        if (e.type === 'state') {
          if (++states === k) onStates();
          return;
        }
        if (e.type !== 'patch') return;
        const m = (JSON.parse(e.data) as { patch: Array<{ value: number }> }).patch[0]?.value as number;
        if (k > 1 && via[m] === s) return;
        const now = performance.now();
        lat.push(now - (sendAt[m] as number));
        got.push([m, now]);
        if (lat.length === expected) onAll();
      }),
  );
  try {
    await Promise.all(streams.map((s) => s.ready));
    if (states < k) await Promise.race([new Promise<void>((r) => (onStates = r)), sleep(30_000)]);
    const all = new Promise<void>((r) => (onAll = r));
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const c = clients[w % k] as HttpClient;
        for (let i = 0; i < perWriter; i++) {
          const m = w * perWriter + i;
          via[m] = w % k;
          sendAt[m] = performance.now();
          await send(c, id, [{ op: 'add', path: '/list/-', value: m }], `hot-${run}-${w}`, i + 1);
          ackAt[m] = performance.now();
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    await Promise.race([all, sleep(10_000)]);
    const acked = got.map(([m, t]) => t - (ackAt[m] as number));
    return {
      rate: total / seconds,
      ops: total,
      seconds,
      p50: quantile(lat, 0.5),
      p99: quantile(lat, 0.99),
      acked50: quantile(acked, 0.5),
      acked99: quantile(acked, 0.99),
      samples: lat.length,
      lost: expected - lat.length,
    };
  } finally {
    for (const s of streams) s.close();
  }
}

export async function scaleMany(clients: HttpClient[], scopes: string[], writers: number, perWriter: number): Promise<Throughput> {
  const run = crypto.randomUUID().slice(0, 8);
  const sent = new Map<string, number>();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const c = clients[w % clients.length] as HttpClient;
      let x = (w * 2654435761) >>> 0;
      for (let i = 0; i < perWriter; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        // One session per writer and scope: si counts that writer's patches to that scope.
        const scope = scopes[x % scopes.length] as string;
        const key = `many-${run}-${w}-${x % scopes.length}`;
        const si = (sent.get(key) ?? 0) + 1;
        sent.set(key, si);
        await send(c, scope, [{ op: 'replace', path: '/n', value: i }], key, si);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { rate: (writers * perWriter) / seconds, ops: writers * perWriter, seconds };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
