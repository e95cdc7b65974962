/**
 * Cold-storage throughput on one long scope (default 100,000 patches), embedded and on the local
 * emulators: `npm run build && node dist/bench/cold.js [--n 100000] [--modes embedded,emulator]`.
 *
 *   commit    appending the patches through Ledger.commit in big commits (setup, reported)
 *   bundle    Bundler.bundleScope over the whole backlog with nothing trimmed yet: read the hot
 *             log, write 1,000-patch bundles and a snapshot every 10,000, move the pointer after
 *             each bundle (retention set to keep everything, so this is bundling alone)
 *   trim      Bundler.bundleScope again with the default retention: trim all but the last 1,000
 *   pipeline  both in one run, on a second scope: what the scheduled bundler does to a backlog
 *   rebuild   the state at head from the initial state, with no cache and no snapshot: every
 *             patch read back from the bundles (and the 1,000-patch tail from the ledger),
 *             checked and applied (rebuildState with snapshots off)
 *   snapshot  the same state from the latest snapshot (what a cache miss costs in practice)
 *   history   Engine.readLog over the whole log (what GET /patches and SSE catch-up read)
 *
 * Patches look like a small app's: replace a counter, append to a ten-item list, drop its oldest.
 * Throughput is patches per second of wall time. Nothing is asserted. The emulator mode starts the
 * Firestore emulator and the project's GCS server (a child process) itself. The emulator is much
 * slower than Firestore (ENVIRONMENT.md), and it answers range queries by scanning: a 1,000-record
 * page of a 100,000-record log takes about a second there, which is most of `bundle` (it reads
 * the log page by page). Those numbers bound the code path, not production.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Firestore } from '@google-cloud/firestore';
import { Storage } from '@google-cloud/storage';
import { startFirestoreEmulator } from '../infra/local/emulators.js';
import { freePort, waitForPort } from '../infra/local/proc.js';
import { FsBlobStore, MemoryCache, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { FirestoreLedger } from '../shared/adapters/google/firestore/ledger.js';
import { GcsBlobStore } from '../shared/adapters/google/gcs-blobs.js';
import { Bundler, type ScopeReport } from '../shared/cold/bundler.js';
import { rebuildState } from '../shared/cold/rebuild.js';
import { ColdStore } from '../shared/cold/store.js';
import { loadConfig } from '../shared/config.js';
import { Engine } from '../shared/engine/engine.js';
import type { Json } from '../shared/json.js';
import type { BlobStore, Ledger } from '../shared/ports/index.js';
import type { Patch, PatchRecord } from '../shared/protocol.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '100000' }, modes: { type: 'string', default: 'embedded,emulator' } } });
const N = Number(values.n);
const MODES = (values.modes as string).split(',');

const config = loadConfig({}, { retainMinutes: 0 });

function patchFor(ii: number): Patch {
  const ops: Patch = [{ op: 'replace', path: '/n', value: ii }];
  if (ii > 10) ops.push({ op: 'remove', path: '/recent/0' });
  ops.push({ op: 'add', path: '/recent/-', value: { ii, text: `item ${ii}`, done: ii % 3 === 0 } });
  return ops;
}

function expected(n: number): Json {
  const recent: Json[] = [];
  for (let ii = Math.max(1, n - 9); ii <= n; ii++) recent.push({ ii, text: `item ${ii}`, done: ii % 3 === 0 });
  return { n, recent };
}

async function commitAll(ledger: Ledger, id: string, n: number, chunk: number): Promise<void> {
  for (let done = 0; done < n; ) {
    const count = Math.min(chunk, n - done);
    await ledger.commit(id, async (view) => ({
      records: Array.from({ length: count }, (_, k): PatchRecord => {
        const ii = view.head.ii + 1 + k;
        return { scope: id, ii, patch: patchFor(ii), at: Date.now(), by: 'bench', session: null, si: null, hash: 'bench', epoch: view.head.epoch };
      }),
      meta: { updated: Date.now(), size: 100 },
      result: null,
    }));
    done += count;
  }
}

interface Row {
  mode: string;
  step: string;
  patches: number;
  ms: number;
  perSecond: number | null;
  note?: string;
}
const rows: Row[] = [];

async function timed<T>(mode: string, step: string, patches: number, run: () => Promise<T>, note?: (r: T) => string): Promise<T> {
  const t0 = performance.now();
  const r = await run();
  const ms = performance.now() - t0;
  const perSecond = patches > 0 ? Math.round(patches / (ms / 1000)) : null;
  const row: Row = { mode, step, patches, ms: Math.round(ms), perSecond, ...(note && { note: note(r) }) };
  rows.push(row);
  console.log(JSON.stringify(row));
  return r;
}

async function measure(mode: string, ledger: Ledger, blobs: BlobStore, chunk: number): Promise<void> {
  const id = `bench-${mode}-${Date.now()}`;
  await ledger.createScope({
    id,
    meta: { owner: 'bench', domain: 'default', name: null, type: null, created: 0, updated: 0, size: 13 },
    initial: { n: 0, recent: [] },
  });
  await timed(mode, 'commit', N, () => commitAll(ledger, id, N, chunk));
  const note = (r: ScopeReport) => `${r.bundles} bundles, ${r.snapshots} snapshots, ${r.trimmed} trimmed`;
  const keepAll = new Bundler(ledger, blobs, { ...config, retainPatches: N }, { holder: 'bench' });
  await timed(mode, 'bundle', N, () => keepAll.bundleScope(id), note);
  const bundler = new Bundler(ledger, blobs, config, { holder: 'bench' });
  await timed(mode, 'trim', N - config.retainPatches, () => bundler.bundleScope(id), note);
  const cold = new ColdStore(blobs);
  const full = await timed(mode, 'rebuild', N, () => rebuildState(ledger, cold, id, N, { snapshotGap: Number.POSITIVE_INFINITY }));
  if (JSON.stringify(full) !== JSON.stringify(expected(N))) throw new Error(`${mode}: the rebuilt state is wrong`);
  const latest = await timed(
    mode,
    'snapshot',
    0,
    () => rebuildState(ledger, cold, id, N),
    () => `the state at ${N} from the latest snapshot`,
  );
  if (JSON.stringify(latest) !== JSON.stringify(expected(N))) throw new Error(`${mode}: the state from the snapshot is wrong`);
  const engine = new Engine(
    {
      ledger,
      blobs,
      cache: new MemoryCache(),
      bus: { publish: async () => {}, subscribe: async () => async () => {}, signal: async () => {}, close: async () => {} },
    },
    config,
  );
  await timed(mode, 'history', N, async () => {
    let next = 1;
    for await (const r of engine.readLog(id, 1, N)) if (r.ii !== next++) throw new Error(`${mode}: history out of order at ${r.ii}`);
    return next - 1;
  });

  const second = `${id}-pipeline`;
  await ledger.createScope({
    id: second,
    meta: { owner: 'bench', domain: 'default', name: null, type: null, created: 0, updated: 0, size: 13 },
    initial: { n: 0, recent: [] },
  });
  await commitAll(ledger, second, N, chunk);
  await timed(mode, 'pipeline', N, () => bundler.bundleScope(second), note);
}

async function embedded(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-cold-'));
  const ledger = new SqliteLedger(join(dir, 'patchbay.sqlite'));
  try {
    await measure('embedded', ledger, new FsBlobStore(join(dir, 'blobs')), 10_000);
  } finally {
    await ledger.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function emulator(): Promise<void> {
  process.env.METADATA_SERVER_DETECTION = 'none';
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-gcs-'));
  const fs = await startFirestoreEmulator();
  const port = await freePort();
  const gcs: ChildProcess = spawn(process.execPath, ['dist/infra/local/gcs-server.js', '--port', String(port), '--dir', dir, '--bucket', 'bench'], {
    stdio: 'ignore',
  });
  const db = new Firestore({ projectId: 'demo-patchbay-bench-cold', host: fs.host, ssl: false });
  try {
    await waitForPort(port);
    const storage = new Storage({ apiEndpoint: `http://127.0.0.1:${port}`, projectId: 'demo-patchbay-bench-cold' });
    // The emulator's JVM gets about 3x faster over its first few hundred transactions: warm it up.
    await commitAll(new FirestoreLedger(db, { root: 'warmup' }), await warmScope(new FirestoreLedger(db, { root: 'warmup' })), 5000, 450);
    await measure('emulator', new FirestoreLedger(db, { root: 'bench' }), new GcsBlobStore(storage.bucket('bench')), 450);
  } finally {
    await db.terminate();
    gcs.kill();
    await fs.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function warmScope(ledger: Ledger): Promise<string> {
  await ledger.createScope({ id: 'warm', meta: { owner: 'b', domain: 'default', name: null, type: null, created: 0, updated: 0, size: 2 }, initial: {} });
  return 'warm';
}

if (MODES.includes('embedded')) await embedded();
if (MODES.includes('emulator')) await emulator();
console.log(`\n| mode | step | patches | ms | patches/s | |\n|---|---|---:|---:|---:|---|`);
for (const r of rows) console.log(`| ${r.mode} | ${r.step} | ${r.patches} | ${r.ms} | ${r.perSecond ?? ''} | ${r.note ?? ''} |`);
