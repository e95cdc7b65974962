/**
 * The workloads of the TypeScript client (client/, `@patchbay/client`; issue 16's Performance
 * section), each next to ShareDB doing the same with its own client:
 *
 *   client-pipelined  one client issues N patches to one scope without awaiting each, then waits
 *                     until all are acknowledged (`synced()`; ShareDB: N `submitOp` calls, then
 *                     every callback). Each client with its defaults: patchbay's joins the patches
 *                     made in one tick into one (its default `compose`), committed durably;
 *                     ShareDB's sends the first op and composes those made while it is in flight.
 *   client-separate   client-pipelined with `compose: false`: every patch its own durable log
 *                     record, sent in `POST /v1/batch` requests of the patches pending at each send.
 *   client-awaited    the same writer awaiting each patch's ack before the next.
 *   client-hot        W clients, each awaiting each of its appends to one list, on one scope. Every
 *                     patch carries its predicted index, so concurrent writers conflict and rebase
 *                     (fetch the missing patches, resend); ShareDB's writers are subscribed and
 *                     transformed by its server.
 *   client-hot-head   client-hot with the client's `ordering: 'head'`: appends carry no predicted
 *                     index and the server places each at its head, so writers never refuse each other.
 *   client-fanout     N clients watching one scope (`watch`); one client sends a patch every
 *                     interval and awaits its ack; latency from just before the `patch()` call to
 *                     each watcher's callback with it (ShareDB: `bench/workloads.ts` sdbFanout).
 *
 * The clients run in the load generator (one process, one core): N clients are N fetch-based
 * SSE streams there, as N browser tabs would be N processes.
 */
import { type Ack, createClient, type LiveScope, type Ordering, type PatchbayClient } from '../client/src/index.js';
import { quantile, sleep } from './harness.js';
import { type Latency, paced, rate, sdbConnect, create as sdbCreate, submit as sdbSubmit, type Throughput } from './workloads.js';

/** A client of `base` with the load generator's token (`compose` undefined: the client's default). */
const client = (base: string, token: string, compose?: boolean, ordering: Ordering = 'predicted'): PatchbayClient =>
  createClient({ url: base, token, ordering, ...(compose === undefined ? {} : { compose }) });

export async function clientWriteSingle(base: string, token: string, n: number, pipelined: boolean, compose?: boolean): Promise<Throughput> {
  const c = client(base, token, compose);
  try {
    const scope = await c.create({ state: { n: 0 } });
    const t0 = performance.now();
    if (pipelined) {
      const acks: Array<Promise<Ack>> = [];
      for (let i = 1; i <= n; i++) acks.push(scope.patch([{ op: 'replace', path: '/n', value: i }]));
      await scope.synced();
      await Promise.all(acks);
    } else {
      for (let i = 1; i <= n; i++) await scope.patch([{ op: 'replace', path: '/n', value: i }]);
    }
    const out = rate(n, t0);
    // Composed (the default), many patches share an index: the state says that all of them landed.
    if ((compose === false ? scope.ii !== n : scope.ii > n) || (scope.state as { n: number }).n !== n)
      throw new Error(`client-single: ended at ii ${scope.ii} with ${JSON.stringify(scope.state)}`);
    return out;
  } finally {
    c.close();
  }
}

/** ShareDB's client with the pipelined pattern: N ops submitted at once, then every callback. */
export async function sdbWriteSinglePipelined(url: string, n: number): Promise<Throughput> {
  const s = await sdbConnect(url);
  try {
    const doc = s.conn.get('bench', crypto.randomUUID());
    await sdbCreate(doc, { n: 0 });
    const t0 = performance.now();
    const acks: Array<Promise<void>> = [];
    for (let i = 1; i <= n; i++) acks.push(sdbSubmit(doc, [{ p: ['n'], od: i - 1, oi: i }]));
    await Promise.all(acks);
    return rate(n, t0);
  } finally {
    s.conn.close();
  }
}

export async function clientWriteHot(base: string, token: string, writers: number, perWriter: number, ordering: Ordering = 'predicted'): Promise<Throughput> {
  const clients = Array.from({ length: writers }, () => client(base, token, undefined, ordering));
  try {
    const first = await (clients[0] as PatchbayClient).create({ state: { list: [] } });
    const scopes: LiveScope[] = [first, ...clients.slice(1).map((c) => c.scope(first.id))];
    await Promise.all(scopes.map((s) => s.ready));
    const t0 = performance.now();
    await Promise.all(
      scopes.map(async (s, w) => {
        for (let i = 0; i < perWriter; i++) await s.patch([{ op: 'add', path: '/list/-', value: w }]);
      }),
    );
    const out = rate(writers * perWriter, t0);
    // `synced()` says a client's own patches are acknowledged; the others' may still be on its
    // stream. Every writer must reach the head, and all must hold the same list of every append.
    const total = writers * perWriter;
    await Promise.all(scopes.map((s) => s.synced().then(() => reaches(s, total, 10_000))));
    for (const s of scopes) {
      const list = (s.state as { list: number[] }).list;
      if (s.ii !== total || list.length !== total || JSON.stringify(list) !== JSON.stringify((first.state as { list: number[] }).list))
        throw new Error(`client-hot: a writer ended at ii ${s.ii} with ${list.length} appends, ${total} sent`);
    }
    return out;
  } finally {
    for (const c of clients) c.close();
  }
}

/** Resolves when `s` has folded in the server's state at index `ii` (checked every 10 ms; rejects after `ms`). */
async function reaches(s: LiveScope, ii: number, ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (s.ii < ii) {
    if (performance.now() > until) throw new Error(`client-hot: a writer is at ii ${s.ii} after ${ms} ms, ${ii} committed`);
    await sleep(10);
  }
}

export async function clientFanout(base: string, token: string, watchers: number, messages: number, intervalMs: number): Promise<Latency> {
  const writer = client(base, token);
  const readers = Array.from({ length: watchers }, () => client(base, token));
  const sendAt = new Float64Array(messages + 1);
  const lat: number[] = [];
  let onAll = () => {};
  try {
    const scope = await writer.create({ state: { seq: 0 } });
    const watched = readers.map((r) => r.scope(scope.id));
    await Promise.all(watched.map((s) => s.ready));
    for (const s of watched) {
      s.watch((_state, patch) => {
        const op = patch?.[0];
        if (op?.op !== 'replace' || op.path !== '/seq') return; // the first call (no patch), or a rebase
        lat.push(performance.now() - (sendAt[op.value as number] as number));
        if (lat.length === watchers * messages) onAll();
      });
    }
    const all = new Promise<void>((r) => (onAll = r));
    await paced(messages, intervalMs, async (k) => {
      sendAt[k] = performance.now();
      await scope.patch([{ op: 'replace', path: '/seq', value: k }]);
    });
    await Promise.race([all, sleep(10_000)]);
  } finally {
    writer.close();
    for (const r of readers) r.close();
  }
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), samples: lat.length, lost: watchers * messages - lat.length };
}
