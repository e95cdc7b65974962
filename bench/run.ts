/**
 * `npm run bench` (full) and `npm run bench -- --quick` (a smoke test for CI, under 2 minutes):
 * the workloads of workloads.ts end to end over HTTP and SSE against patchbay in embedded mode and
 * on the local emulators, each next to its baselines measured in the same run, in interleaved
 * rounds (round r runs every system once, in a shuffled order of its own, so drift in the machine's
 * load hits subject and baseline alike). Writes latest.{json,md} and chart.svg to bench/results
 * (full runs: the committed results) or bench/results/quick (quick runs; git ignores it).
 *
 * Processes (see harness.ts for the pinning): this load generator; the server under test
 * (`node dist/functions/serve.js`, a child); the transport floor (floor.ts) and ShareDB
 * (sharedb-server.ts), children; the bench worker (worker.ts), a child that builds long scopes
 * through the ledger port and runs rebuild and the raw Firestore baselines; in emulator mode the
 * stand-ins (stack.ts), a child that starts the emulators, redis-server and the gateways.
 *
 * Options: --quick, --modes embedded,emulator, --only write-single,fanout,presence,signing,..., --rounds N,
 * --no-pin, --out DIR (default bench/results, or bench/results/quick with --quick).
 *
 * Nothing here asserts a threshold: targets are reported with each result.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Storage } from '@google-cloud/storage';
import { FsBlobStore } from '../shared/adapters/embedded/fs-blobs.js';
import { SignedFiles } from '../shared/adapters/embedded/signed-files.js';
import { GcsFiles } from '../shared/adapters/google/gcs-files.js';
import { HttpClient } from './client.js';
import { clientFanout, clientWriteHot, clientWriteSingle, sdbWriteSinglePipelined } from './client-workloads.js';
import { choosePinning, log, median, type NodeChild, pinSelf, Rpc, spread, startNode } from './harness.js';
import { type Entry, judge, type Mode, type Results, type Target, writeResults } from './report.js';
import { type Fleet, retriedSoFar, scaleHot, scaleMany, startFleet } from './scale-out.js';
import {
  httpCatchup,
  httpCreateScopes,
  httpFanout,
  httpPresenceFanout,
  httpReadyUpload,
  httpSignDownloads,
  httpWriteHot,
  httpWriteMany,
  httpWriteSingle,
  type Latency,
  sdbFanout,
  sdbWriteHot,
  sdbWriteSingle,
  signerRate,
  type Throughput,
} from './workloads.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    modes: { type: 'string', default: 'embedded,emulator' },
    only: { type: 'string', default: '' },
    rounds: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    /** Default: bench/results for a full run, bench/results/quick (ignored by git) for --quick, so a smoke test never overwrites the committed results. */
    out: { type: 'string' },
    /** KEY=VALUE for the server under test (repeatable), for experiments, e.g. PATCHBAY_SQLITE_SYNC=normal. */
    'server-env': { type: 'string', multiple: true, default: [] },
    /**
     * NAME:KEY=VALUE,KEY=VALUE (repeatable): one more server under test with extra environment,
     * measured in the same interleaved rounds as the default one (write and fan-out workloads), so
     * an experiment's before and after come from the same minutes of the same machine.
     */
    variant: { type: 'string', multiple: true, default: [] },
  },
});
const VARIANTS = (args.variant as string[]).map((v) => {
  const [name, kvs = ''] = v.split(/:(.*)/s) as [string, string?];
  return {
    name,
    env: Object.fromEntries(
      kvs
        .split(',')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  };
});
const SERVER_ENV = Object.fromEntries((args['server-env'] as string[]).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

/** Per-client limits of every server under test (recorded in the results' meta). */
const LIMITS = SERVER_ENV.PATCHBAY_LIMITS ?? 'off';

const QUICK = args.quick === true;
const OUT = args.out ?? (QUICK ? 'bench/results/quick' : 'bench/results');
const ROUNDS = args.rounds ? Number(args.rounds) : QUICK ? 1 : 3;
/** Full runs discard one whole round of every workload first; quick runs only warm up briefly. */
const WARM_ROUNDS = QUICK ? 0 : 1;
const WORKLOADS = [
  'write-single',
  'write-hot',
  'write-many',
  'fanout',
  'presence',
  'signing',
  'rebuild',
  'catchup',
  // Through the TypeScript client (client-workloads.ts), embedded mode only.
  'client-pipelined',
  'client-separate',
  'client-awaited',
  'client-hot',
  'client-hot-head',
  'client-fanout',
  // Scale-out (emulator mode only): K API processes on one set of emulators.
  'scale-hot',
  'scale-many',
] as const;
type Workload = (typeof WORKLOADS)[number];
const only = new Set((args.only as string).split(',').filter(Boolean));
const wanted = (w: Workload) => only.size === 0 || only.has(w);

interface ModeSizes {
  single: number;
  /** Sequential read-modify-write transactions of the raw Firestore baseline. */
  rmw: number;
  hotWriters: number;
  hotPerWriter: number;
  manyScopes: number;
  manyWriters: number;
  manyPerWriter: number;
  fanSubscribers: number;
  fanMessages: number;
  fanIntervalMs: number;
  /** Patches in the hot-log copy of the long scope. */
  longPatches: number;
  /** Patches in the bundled copy, and how often the bundler runs while it is built. */
  coldPatches: number;
  bundleEvery: number;
  warmSingle: number;
  /**
   * The pipelined client workloads (client-pipelined, client-separate): bursts of `single` patches
   * per round, one after another, each on a new scope; the round's throughput is all of them over
   * their time. One 2,000-patch burst lasts 10-20 ms, short enough for the JIT and the garbage
   * collector of either side to decide it; ShareDB repeats its bursts alike.
   */
  bursts: number;
  /** Signed download URLs: concurrent API callers, requests each, and URLs from the signer alone. */
  signClients: number;
  signPerClient: number;
  signerN: number;
  /** Scale-out (emulator only): writers on one hot scope over K instances, and patches each. */
  scaleWriters: number;
  scalePerWriter: number;
  /** Scale-out write-many: writers over this many scopes, over 1 or 4 instances. */
  scaleManyScopes: number;
  scaleManyWriters: number;
  scaleManyPerWriter: number;
}

const SIZES: Record<Mode, ModeSizes> = QUICK
  ? {
      embedded: {
        single: 300,
        rmw: 0,
        hotWriters: 32,
        hotPerWriter: 10,
        manyScopes: 1000,
        manyWriters: 64,
        manyPerWriter: 5,
        fanSubscribers: 100,
        fanMessages: 50,
        fanIntervalMs: 20,
        longPatches: 20_000,
        coldPatches: 20_000,
        bundleEvery: 20_000,
        warmSingle: 100,
        bursts: 2,
        signClients: 8,
        signPerClient: 25,
        signerN: 2000,
        scaleWriters: 32,
        scalePerWriter: 2,
        scaleManyScopes: 50,
        scaleManyWriters: 32,
        scaleManyPerWriter: 2,
      },
      emulator: {
        single: 40,
        rmw: 40,
        hotWriters: 32,
        hotPerWriter: 3,
        manyScopes: 200,
        manyWriters: 64,
        manyPerWriter: 2,
        fanSubscribers: 100,
        fanMessages: 20,
        fanIntervalMs: 20,
        longPatches: 2_000,
        coldPatches: 2_000,
        bundleEvery: 2_000,
        warmSingle: 10,
        bursts: 1,
        signClients: 8,
        signPerClient: 10,
        signerN: 500,
        scaleWriters: 32,
        scalePerWriter: 3,
        scaleManyScopes: 100,
        scaleManyWriters: 64,
        scaleManyPerWriter: 2,
      },
    }
  : {
      embedded: {
        single: 2000,
        rmw: 0,
        hotWriters: 32,
        hotPerWriter: 100,
        manyScopes: 1000,
        manyWriters: 64,
        manyPerWriter: 50,
        fanSubscribers: 100,
        fanMessages: 500,
        fanIntervalMs: 20,
        longPatches: 100_000,
        coldPatches: 100_000,
        bundleEvery: 100_000,
        warmSingle: 500,
        bursts: 10,
        signClients: 16,
        signPerClient: 250,
        signerN: 20000,
        scaleWriters: 32,
        scalePerWriter: 2,
        scaleManyScopes: 50,
        scaleManyWriters: 32,
        scaleManyPerWriter: 2,
      },
      emulator: {
        single: 300,
        rmw: 500,
        hotWriters: 32,
        hotPerWriter: 25,
        manyScopes: 1000,
        manyWriters: 64,
        manyPerWriter: 10,
        fanSubscribers: 100,
        fanMessages: 200,
        fanIntervalMs: 20,
        // The hot-log copy has 10,000, not 100,000: the Firestore emulator's cost per log page grows
        // with the size of the log collection (a 100,000-patch fold took over 10 minutes here).
        // The bundled copy has the issue's 100,000: the bundler runs every 5,000 patches while it
        // is built, as its timer would, so the hot log never grows past 6,000 documents.
        longPatches: 10_000,
        coldPatches: 100_000,
        bundleEvery: 5_000,
        warmSingle: 50,
        bursts: 1,
        signClients: 16,
        signPerClient: 50,
        signerN: 5000,
        scaleWriters: 32,
        scalePerWriter: 25,
        scaleManyScopes: 400,
        scaleManyWriters: 64,
        scaleManyPerWriter: 10,
      },
    };

const TARGETS: Partial<Record<string, Target>> = {
  'embedded/write-single/floor': { on: 'ratio', op: '>=', threshold: 0.7, text: '≥ 0.7× transport floor' },
  'emulator/write-single/firestore-rmw': { on: 'ratio', op: '>=', threshold: 0.8, text: '≥ 0.8× raw emulator transactions' },
  'emulator/write-hot/firestore-rmw': { on: 'ratio', op: '>=', threshold: 5, text: '≥ 5× raw emulator transactions' },
  'embedded/write-hot/sharedb': { on: 'ratio', op: '>=', threshold: 2, text: '≥ 2× ShareDB' },
  'embedded/fanout/p99/sharedb': { on: 'ratio', op: '<=', threshold: 1, text: "≤ ShareDB's p99" },
  'embedded/client-pipelined/sharedb': { on: 'ratio', op: '>=', threshold: 1, text: '≥ ShareDB (in-memory), same pattern' },
  'embedded/rebuild/raw-fold': { on: 'value', op: '>=', threshold: 200_000, text: '≥ 200,000 patches/s' },
  'emulator/rebuild/raw-fold': { on: 'value', op: '>=', threshold: 200_000, text: '≥ 200,000 patches/s' },
  'embedded/catchup/floor': { on: 'value', op: '>=', threshold: 50_000, text: '≥ 50,000 patches/s' },
  'emulator/catchup/floor': { on: 'value', op: '>=', threshold: 50_000, text: '≥ 50,000 patches/s' },
  'emulator/scale-hot/K=1': { on: 'ratio', op: '>=', threshold: 0.8, text: '≥ 0.8× one instance' },
  'emulator/scale-hot/p99/K=1': { on: 'value', op: '<=', threshold: 500, text: 'cross-instance p99 ≤ 500 ms' },
  'emulator/scale-many/K=1': { on: 'ratio', op: '>=', threshold: 2, text: '≥ 2× one instance' },
};

/**
 * A variant's cost against patchbay as it is, measured in the same rounds; the targets are the
 * `validated` variant's (issue 13: validation before commit costs at most 15% throughput).
 */
const VARIANT_TARGETS: Partial<Record<string, Target>> = {
  'validated/write-single': { on: 'ratio', op: '>=', threshold: 0.85, text: '≥ 0.85× patchbay without validation' },
  'validated/write-hot': { on: 'ratio', op: '>=', threshold: 0.85, text: '≥ 0.85× patchbay without validation' },
};

const HOT_LOG = 'hot log';

type Metrics = Record<string, number>;
interface System {
  name: string;
  run(): Promise<Metrics>;
}

const entries: Entry[] = [];
const notes: string[] = [];

/**
 * The systems in an order of their own for round r: a seeded shuffle, so no system always runs
 * right after the same other one (a server that leaves dirty pages behind slows the fsyncs of
 * whichever runs next), and the same order every run.
 */
function shuffled<T>(xs: T[], r: number): T[] {
  const out = [...xs];
  let seed = (r + 1) * 2654435761;
  for (let i = out.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const j = seed % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/**
 * Runs every system `rounds` times, interleaved in a shuffled order per round, after WARM_ROUNDS discarded rounds
 * (the JIT of every process, the emulators' JVMs and the OS caches warm up for minutes, not
 * requests); returns each system's measured rounds per metric.
 */
async function compare(label: string, systems: System[], rounds = ROUNDS): Promise<Map<string, Record<string, number[]>>> {
  const out = new Map<string, Record<string, number[]>>(systems.map((s) => [s.name, {}]));
  for (let w = 0; w < WARM_ROUNDS; w++) {
    for (const s of systems) {
      await s.run();
      log(`${label} warm-up ${s.name}`);
    }
  }
  for (let r = 0; r < rounds; r++) {
    const order = shuffled(systems, r);
    for (const s of order) {
      const m = await s.run();
      const rec = out.get(s.name) as Record<string, number[]>;
      for (const [k, v] of Object.entries(m)) rec[k] = [...(rec[k] ?? []), v];
      log(
        `${label} round ${r + 1}/${rounds} ${s.name}: ${Object.entries(m)
          .map(([k, v]) => `${k}=${v.toFixed(k === 'throughput' ? 0 : 2)}`)
          .join(' ')}`,
      );
    }
  }
  return out;
}

/** Each variant's throughput against patchbay's in the same rounds (`--variant`). */
function recordVariants(mode: Mode, name: Workload, results: Map<string, Record<string, number[]>>, subjects: Array<{ name: string }>): void {
  for (const x of subjects) {
    if (x.name === 'patchbay') continue;
    const v = x.name.slice(9, -1);
    record(mode, name, results, x.name, 'patchbay', 'throughput', 'patches/s', { target: VARIANT_TARGETS[`${v}/${name}`] });
  }
}

function record(
  mode: Mode,
  name: Workload,
  results: Map<string, Record<string, number[]>>,
  subject: string,
  baseline: string,
  metric: string,
  unit: string,
  extra: { source?: string; note?: string; baselineLabel?: string; patches?: number; target?: Target } = {},
): void {
  const variant = subject.startsWith('patchbay[') ? subject.slice(9, -1) : undefined;
  const s = results.get(subject)?.[metric];
  const b = results.get(baseline)?.[metric];
  if (!s || !b) return;
  const better = metric === 'throughput' ? 'higher' : 'lower';
  const value = median(s);
  const base = median(b);
  const label = extra.baselineLabel ?? baseline;
  const target = extra.target ?? TARGETS[`${mode}/${name}/${metric === 'throughput' ? '' : `${metric}/`}${label}`];
  entries.push(
    judge({
      name,
      ...(variant ? { variant } : {}),
      mode,
      metric,
      unit,
      value,
      baseline: { name: label, value: base },
      ratio: value / base,
      better,
      rounds: s,
      baselineRounds: b,
      spread: spread(s),
      baselineSpread: spread(b),
      ...(target ? { target } : {}),
      size: workloadSize(mode, name, extra.patches),
      ...(extra.source ? { source: extra.source } : {}),
      ...(extra.note ? { note: extra.note } : {}),
    }),
  );
}

/** What one round of a workload did, said next to its result (quick and full runs differ a lot). */
function workloadSize(mode: Mode, name: Workload, patches = 0): string {
  const z = SIZES[mode];
  const n = (k: number) => k.toLocaleString('en-US');
  const what = {
    'write-single': `${n(z.single)} sequential patches`,
    'write-hot': `${z.hotWriters} writers × ${n(z.hotPerWriter)} patches`,
    'write-many': `${z.manyWriters} writers × ${n(z.manyPerWriter)} patches over ${n(z.manyScopes)} scopes`,
    fanout: `${z.fanSubscribers} subscribers, ${n(z.fanMessages)} patches every ${z.fanIntervalMs} ms`,
    presence: `${z.fanSubscribers} subscribers, ${n(z.fanMessages)} presence updates every ${z.fanIntervalMs} ms (baseline: as many patches, same stream count)`,
    signing: `${z.signClients} callers × ${n(z.signPerClient)} download URLs (signer alone: ${n(z.signerN)} URLs)`,
    rebuild: `${n(patches)} patches`,
    catchup: `${n(patches)} patches`,
    'client-pipelined': `${z.bursts} × ${n(z.single)} patches issued at once, then synced()`,
    'client-separate': `${z.bursts} × ${n(z.single)} patches issued at once, then synced(), compose: false`,
    'client-awaited': `${n(z.single)} sequential patches, each awaited`,
    'client-hot': `${z.hotWriters} clients × ${n(z.hotPerWriter)} patches`,
    'client-hot-head': `${z.hotWriters} clients × ${n(z.hotPerWriter)} patches, ordering: 'head'`,
    'client-fanout': `${z.fanSubscribers} watching clients, ${n(z.fanMessages)} patches every ${z.fanIntervalMs} ms`,
    'scale-hot': `${z.scaleWriters} writers × ${n(z.scalePerWriter)} patches on one scope, spread over the instances, a stream on each`,
    'scale-many': `${z.scaleManyWriters} writers × ${n(z.scaleManyPerWriter)} patches over ${n(z.scaleManyScopes)} scopes, spread over the instances`,
  }[name];
  return `${what}, ${ROUNDS} round${ROUNDS === 1 ? '' : 's'} (${QUICK ? 'quick' : 'full'} run)`;
}

const tput = (t: Throughput): Metrics => ({ throughput: t.rate });
const lat = (l: Latency): Metrics => ({ p50: l.p50, p99: l.p99, lost: l.lost });

interface Baselines {
  floor: NodeChild;
  floorClient: HttpClient;
  sharedbUrl: string;
}

async function runMode(mode: Mode, base: Baselines, pinServer: string | null): Promise<void> {
  const z = SIZES[mode];
  const dataDir = mkdtempSync(join(tmpdir(), `patchbay-bench-${mode}-`));
  const stops: Array<() => Promise<void>> = [];
  try {
    let env: Record<string, string> = {
      PORT: '0',
      PATCHBAY_HOST: '127.0.0.1',
      PATCHBAY_LOG: 'error',
      PATCHBAY_DATA_DIR: dataDir,
      PATCHBAY_MODE: 'embedded',
      // The load generator is one user on one address (32-100 writers on one token, 100 streams):
      // the per-client limits would throttle it. --server-env PATCHBAY_LIMITS=on measures them.
      PATCHBAY_LIMITS: LIMITS,
    };
    if (mode === 'emulator') {
      log('emulator mode: starting the Firestore and Pub/Sub emulators, redis-server, the Upstash gateway and the GCS server');
      const stack = await startNode('dist/bench/stack.js', [], { timeoutMs: 120_000, stopTimeoutMs: 60_000 });
      stops.push(stack.stop);
      env = { ...env, ...(stack.info.env as Record<string, string>), PATCHBAY_FIRESTORE_ROOT: 'bench' };
    }
    env = { ...env, ...SERVER_ENV };
    const server = await startNode('dist/functions/serve.js', [], { env, cpu: pinServer });
    stops.push(server.stop);
    const worker = new Rpc(await startNode('dist/bench/worker.js', [], { env, cpu: pinServer }));
    stops.push(worker.proc.stop);
    await worker.call('init', { env });
    const subject = await HttpClient.signIn(server.url);
    stops.push(async () => subject.close());
    const subjects: Array<{ name: string; client: HttpClient }> = [{ name: 'patchbay', client: subject }];
    for (const v of VARIANTS) {
      const dir = mkdtempSync(join(tmpdir(), `patchbay-bench-${mode}-${v.name}-`));
      stops.push(async () => rmSync(dir, { recursive: true, force: true }));
      const ns = v.name.replace(/[^A-Za-z0-9]/g, '');
      const venv = {
        ...env,
        PATCHBAY_DATA_DIR: dir,
        PATCHBAY_FIRESTORE_ROOT: `bench${ns}`,
        PATCHBAY_CACHE_PREFIX: `pb:${ns}:`,
        PATCHBAY_PUBSUB_TOPIC: `patches-${ns}`,
        PATCHBAY_PUBSUB_SUBSCRIPTION_PREFIX: `sse-${ns}`,
        ...v.env,
      };
      const vs = await startNode('dist/functions/serve.js', [], { env: venv, cpu: pinServer });
      stops.push(vs.stop);
      const vc = await HttpClient.signIn(vs.url);
      stops.push(async () => vc.close());
      subjects.push({ name: `patchbay[${v.name}]`, client: vc });
      log(`${mode}: variant ${v.name} (${JSON.stringify(v.env)}) at ${vs.url}`);
    }
    log(`${mode}: server under test at ${server.url}`);

    const floorC = base.floorClient;
    const sdb = base.sharedbUrl;

    if (mode === 'emulator') {
      // The emulators' JVMs run several times faster after a few hundred transactions.
      log('emulator: warming up the emulators');
      await worker.call('rmwSingle', { n: QUICK ? 40 : 400 });
      await httpWriteSingle(subject, QUICK ? 20 : 200);
    }

    if (wanted('write-single')) {
      const systems: System[] =
        mode === 'embedded'
          ? [
              { name: 'floor', run: async () => tput(await httpWriteSingle(floorC, z.single)) },
              { name: 'sharedb', run: async () => tput(await sdbWriteSingle(sdb, z.single)) },
              ...subjects.map((x) => ({ name: x.name, run: async () => tput(await httpWriteSingle(x.client, z.single)) })),
            ]
          : [
              { name: 'firestore-rmw', run: async () => tput(await worker.call<Throughput>('rmwSingle', { n: z.rmw })) },
              ...subjects.map((x) => ({ name: x.name, run: async () => tput(await httpWriteSingle(x.client, z.single)) })),
            ];
      if (QUICK) await httpWriteSingle(subject, z.warmSingle);
      if (QUICK && mode === 'embedded') {
        await httpWriteSingle(floorC, z.warmSingle);
        await sdbWriteSingle(sdb, z.warmSingle);
      }
      const r = await compare(`${mode} write-single`, systems);
      for (const x of subjects) {
        for (const b of mode === 'embedded' ? ['floor', 'sharedb'] : ['firestore-rmw']) record(mode, 'write-single', r, x.name, b, 'throughput', 'patches/s');
      }
      recordVariants(mode, 'write-single', r, subjects);
    }

    if (wanted('write-hot')) {
      const w = z.hotWriters;
      const per = z.hotPerWriter;
      const systems: System[] =
        mode === 'embedded'
          ? [
              { name: 'floor', run: async () => tput(await httpWriteHot(floorC, w, per)) },
              { name: 'sharedb', run: async () => tput(await sdbWriteHot(sdb, w, per)) },
              ...subjects.map((x) => ({ name: x.name, run: async () => tput(await httpWriteHot(x.client, w, per)) })),
            ]
          : [
              { name: 'firestore-rmw', run: async () => tput(await worker.call<Throughput>('rmwSingle', { n: z.rmw })) },
              ...subjects.map((x) => ({ name: x.name, run: async () => tput(await httpWriteHot(x.client, w, per)) })),
            ];
      if (QUICK) await httpWriteHot(subject, w, Math.max(2, Math.round(per / 5)));
      if (QUICK && mode === 'embedded') {
        await httpWriteHot(floorC, w, Math.max(2, Math.round(per / 5)));
        await sdbWriteHot(sdb, w, Math.max(2, Math.round(per / 5)));
      }
      const r = await compare(`${mode} write-hot`, systems);
      const note =
        mode === 'emulator'
          ? 'baseline: sequential read-modify-write transactions on one document (the rate one hot document allows without queueing)'
          : undefined;
      for (const x of subjects) {
        for (const b of mode === 'embedded' ? ['floor', 'sharedb'] : ['firestore-rmw'])
          record(mode, 'write-hot', r, x.name, b, 'throughput', 'patches/s', note ? { note } : {});
      }
      recordVariants(mode, 'write-hot', r, subjects);
    }

    if (wanted('write-many')) {
      const w = z.manyWriters;
      const per = z.manyPerWriter;
      log(`${mode} write-many: creating ${z.manyScopes} scopes`);
      const systems: System[] = [];
      for (const x of subjects) {
        const scopes = await httpCreateScopes(x.client, z.manyScopes);
        systems.push({ name: x.name, run: async () => tput(await httpWriteMany(x.client, scopes, w, per)) });
        if (QUICK) await httpWriteMany(x.client, scopes, w, 2);
      }
      if (mode === 'embedded') {
        const floorScopes = await httpCreateScopes(floorC, z.manyScopes);
        systems.unshift({ name: 'floor', run: async () => tput(await httpWriteMany(floorC, floorScopes, w, per)) });
        if (QUICK) await httpWriteMany(floorC, floorScopes, w, 2);
      } else {
        systems.unshift({
          name: 'firestore-rmw-many',
          run: async () => tput(await worker.call<Throughput>('rmwMany', { writers: w, perWriter: per, docs: z.manyScopes })),
        });
      }
      const r = await compare(`${mode} write-many`, systems);
      for (const x of subjects) {
        if (mode === 'embedded') record(mode, 'write-many', r, x.name, 'floor', 'throughput', 'patches/s');
        else
          record(mode, 'write-many', r, x.name, 'firestore-rmw-many', 'throughput', 'patches/s', {
            note: `baseline: ${w} concurrent writers doing read-modify-write transactions across ${z.manyScopes} documents`,
          });
      }
    }

    if (wanted('fanout')) {
      const { fanSubscribers: n, fanMessages: m, fanIntervalMs: iv } = z;
      const systems: System[] = [
        { name: 'floor', run: async () => lat(await httpFanout(floorC, n, m, iv)) },
        { name: 'sharedb', run: async () => lat(await sdbFanout(sdb, n, m, iv)) },
        ...subjects.map((x) => ({ name: x.name, run: async () => lat(await httpFanout(x.client, n, m, iv)) })),
      ];
      if (QUICK) {
        await httpFanout(subject, n, Math.min(20, m), iv);
        await httpFanout(floorC, n, Math.min(20, m), iv);
        await sdbFanout(sdb, n, Math.min(20, m), iv);
      }
      const r = await compare(`${mode} fanout`, systems);
      const lost = (r.get('patchbay')?.lost ?? []).reduce((a, b) => a + b, 0);
      if (lost > 0) notes.push(`${mode} fanout: ${lost} receipts did not arrive within 10 s of the last send`);
      for (const x of subjects) for (const metric of ['p50', 'p99']) for (const b of ['floor', 'sharedb']) record(mode, 'fanout', r, x.name, b, metric, 'ms');
    }

    if (wanted('presence')) {
      // Presence updates against patches, to the same number of streams on the same server in the
      // same rounds: what a presence change costs to reach its watchers next to a committed patch.
      const { fanSubscribers: n, fanMessages: m, fanIntervalMs: iv } = z;
      const systems: System[] = [
        { name: 'patch-fanout', run: async () => lat(await httpFanout(subject, n, m, iv)) },
        { name: 'patchbay', run: async () => lat(await httpPresenceFanout(subject, n, m, iv)) },
      ];
      if (QUICK) await httpPresenceFanout(subject, n, Math.min(10, m), iv);
      const r = await compare(`${mode} presence`, systems);
      const lost = (r.get('patchbay')?.lost ?? []).reduce((a, b) => a + b, 0);
      if (lost > 0)
        notes.push(
          `${mode} presence: ${lost} presence updates did not arrive as their own event (coalesced by a stream that re-read late, or not within 10 s)`,
        );
      for (const metric of ['p50', 'p99'])
        record(mode, 'presence', r, 'patchbay', 'patch-fanout', metric, 'ms', {
          note: 'presence update (PUT …/presence) to the `presence` event in each stream opened with ?presence=1; baseline: patch fan-out to as many streams, same server, same rounds',
        });
    }

    if (wanted('signing')) {
      // Issuance through the API (auth, the scope's head, the signature) next to the signer alone.
      const upload = await httpReadyUpload(subject);
      const signer = await signerFor(mode, env);
      const { signClients: w, signPerClient: per, signerN } = z;
      const systems: System[] = [
        { name: 'signer', run: async () => tput(await signerRate(signer, signerN)) },
        { name: 'patchbay', run: async () => tput(await httpSignDownloads(subject, upload, w, per)) },
      ];
      if (QUICK) await httpSignDownloads(subject, upload, w, 5);
      const r = await compare(`${mode} signing`, systems);
      record(mode, 'signing', r, 'patchbay', 'signer', 'throughput', 'URLs/s', {
        note:
          mode === 'embedded'
            ? 'GET /v1/uploads/{id}/download of a private upload (HMAC-SHA256 token); baseline: SignedFiles.signDownload alone, one after another, in the load generator'
            : 'GET /v1/uploads/{id}/download of a private upload (Cloud Storage V4, RSA-SHA256 offline with PATCHBAY_GCS_SIGNING_KEY_FILE); baseline: GcsFiles.signDownload alone, one after another, in the load generator',
      });
    }

    if (mode === 'embedded') await runClientWorkloads(mode, z, server.url, subject.token, sdb);

    if (wanted('rebuild') || wanted('catchup')) {
      const n = z.longPatches;
      const nCold = z.coldPatches;
      const count = (k: number) => `${k.toLocaleString('en-US')} patches`;
      // Two copies of the same long scope: one left in the hot log, one bundled and trimmed by the
      // cold-storage Bundler (all but the last PATCHBAY_RETAIN_PATCHES read back from bundles).
      const hot = `long-${n}`;
      const cold = `long-${nCold}-bundled`;
      log(`${mode}: building a ${n}-patch scope and a ${nCold}-patch scope through the ledger port, bundling the second every ${z.bundleEvery}`);
      const builtHot = await worker.call<{ seconds: number }>('buildLong', { id: hot, n, owner: subject.userId });
      const builtCold = await worker.call<{ seconds: number; bundleSeconds: number; bundles: number; snapshots: number; trimmedTo: number }>('buildLong', {
        id: cold,
        n: nCold,
        owner: subject.userId,
        bundle: true,
        bundleEvery: z.bundleEvery,
      });
      log(
        `${mode}: built in ${builtHot.seconds.toFixed(1)} s and ${builtCold.seconds.toFixed(1)} s; bundled ${builtCold.bundles} bundles and ${builtCold.snapshots} snapshots, trimmed to ${builtCold.trimmedTo}, in ${builtCold.bundleSeconds.toFixed(1)} s`,
      );
      const coldSource = `bundles + ${nCold - builtCold.trimmedTo}-patch tail`;
      const sources: Array<{ system: string; id: string; n: number; source: string }> = [
        { system: 'patchbay', id: hot, n, source: HOT_LOG },
        { system: 'patchbay-bundled', id: cold, n: nCold, source: coldSource },
      ];

      if (wanted('rebuild')) {
        const systems: System[] = [
          { name: 'raw-fold', run: async () => tput(await worker.call<Throughput>('rawFold', { id: hot })) },
          ...sources.map((x) => ({ name: x.system, run: async () => tput(await worker.call<Throughput>('rebuild', { id: x.id })) })),
        ];
        if (QUICK) for (const x of sources) await worker.call('rebuild', { id: x.id });
        const r = await compare(`${mode} rebuild`, systems);
        for (const x of sources) {
          record(mode, 'rebuild', r, x.system, 'raw-fold', 'throughput', 'patches/s', {
            source: x.source,
            patches: x.n,
            note:
              x.source === HOT_LOG
                ? `Engine.stateAt after deleting the cache entry: ${count(n)} folded from the initial state, in the worker process. Baseline: the same patches read from the hot copy page by page with bare queries and folded with fast-json-patch directly.`
                : `rebuildState with snapshots off (${count(nCold)}: ${builtCold.bundles} bundles, then the hot tail), in the worker process; a cache miss (Engine.stateAt) starts from the latest of ${builtCold.snapshots} snapshots instead. Baseline as for the hot log (${count(n)}).`,
          });
        }
      }

      if (wanted('catchup')) {
        const floorN = Math.max(n, nCold);
        const floorId = `long-${floorN}-${mode}`;
        await floorC.ok('POST', '/bench/seed', { id: floorId, n: floorN });
        const systems: System[] = [
          { name: 'floor', run: async () => tput(await httpCatchup(floorC, floorId, floorN)) },
          ...sources.map((x) => ({ name: x.system, run: async () => tput(await httpCatchup(subject, x.id, x.n)) })),
        ];
        if (QUICK) for (const x of sources) await httpCatchup(subject, x.id, x.n);
        const r = await compare(`${mode} catchup`, systems);
        for (const x of sources) {
          record(mode, 'catchup', r, x.system, 'floor', 'throughput', 'patches/s', {
            source: x.source,
            patches: x.n,
            note: `SSE since=0 until event ${x.n} (${count(x.n)}). Baseline: the floor replaying ${count(floorN)} of the same events from memory.`,
          });
        }
      }
    }

    if (mode === 'emulator' && (wanted('scale-hot') || wanted('scale-many'))) await runScaleOut(env, z, pinServer);
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * The client's workloads (client-workloads.ts) against the server under test, each next to ShareDB
 * with the same pattern, in the same interleaved rounds. Embedded mode only: the issue's
 * comparisons are with ShareDB, which keeps everything in memory on this machine.
 */
async function runClientWorkloads(mode: Mode, z: ModeSizes, url: string, token: string, sdb: string): Promise<void> {
  const warm = Math.max(20, Math.round(z.single / 10));
  const { hotWriters: w, hotPerWriter: per, fanSubscribers: fan, fanMessages: m, fanIntervalMs: iv } = z;
  /** `z.bursts` runs of `one` one after another (one at a warm-up size): all their patches over all their time. */
  const bursts = async (full: boolean, one: () => Promise<Throughput>): Promise<Throughput> => {
    let ops = 0;
    let seconds = 0;
    for (let i = 0; i < (full ? z.bursts : 1); i++) {
      const t = await one();
      ops += t.ops;
      seconds += t.seconds;
    }
    return { rate: ops / seconds, ops, seconds };
  };
  /** Each workload: ShareDB's and patchbay's run at full size (`full`) or a warm-up size, and how it is recorded. */
  const runs: Array<{ name: Workload; sharedb: (full: boolean) => Promise<Metrics>; patchbay: (full: boolean) => Promise<Metrics>; note?: string }> = [
    {
      name: 'client-pipelined',
      sharedb: async (full) => tput(await bursts(full, () => sdbWriteSinglePipelined(sdb, full ? z.single : warm))),
      patchbay: async (full) => tput(await bursts(full, () => clientWriteSingle(url, token, full ? z.single : warm, true))),
      note: "each client with its defaults: patchbay's joins the patches made in one tick into one patch (one index and log entry, replaces of one path folded), committed durably (fsync); ShareDB's (in memory) sends the first op and composes the ops made while it is in flight into one",
    },
    {
      name: 'client-separate',
      sharedb: async (full) => tput(await bursts(full, () => sdbWriteSinglePipelined(sdb, full ? z.single : warm))),
      patchbay: async (full) => tput(await bursts(full, () => clientWriteSingle(url, token, full ? z.single : warm, true, false))),
      note: 'client-pipelined with compose: false: every patch its own log record, committed durably (fsync), sent in POST /v1/batch requests of the patches pending at each send; ShareDB as in client-pipelined',
    },
    {
      name: 'client-awaited',
      sharedb: async (full) => tput(await sdbWriteSingle(sdb, full ? z.single : warm)),
      patchbay: async (full) => tput(await clientWriteSingle(url, token, full ? z.single : warm, false)),
    },
    {
      name: 'client-hot',
      sharedb: async (full) => tput(await sdbWriteHot(sdb, w, full ? per : 2)),
      patchbay: async (full) => tput(await clientWriteHot(url, token, w, full ? per : 2)),
      note: 'each patch carries its predicted index: concurrent writers conflict, fetch the missing patches and resend (no transformation); ShareDB transforms on its server',
    },
    {
      name: 'client-hot-head',
      sharedb: async (full) => tput(await sdbWriteHot(sdb, w, full ? per : 2)),
      patchbay: async (full) => tput(await clientWriteHot(url, token, w, full ? per : 2, 'head')),
      note: "client-hot with ordering: 'head': appends carry no index and the server applies each at its head, as ShareDB's server transforms an append to the end",
    },
    {
      name: 'client-fanout',
      sharedb: async (full) => lat(await sdbFanout(sdb, fan, full ? m : Math.min(20, m), iv)),
      patchbay: async (full) => lat(await clientFanout(url, token, fan, full ? m : Math.min(20, m), iv)),
    },
  ];
  for (const x of runs) {
    if (!wanted(x.name)) continue;
    if (QUICK) {
      await x.patchbay(false);
      await x.sharedb(false);
    }
    const r = await compare(`${mode} ${x.name}`, [
      { name: 'sharedb', run: () => x.sharedb(true) },
      { name: 'patchbay', run: () => x.patchbay(true) },
    ]);
    if (x.name !== 'client-fanout') {
      record(mode, x.name, r, 'patchbay', 'sharedb', 'throughput', 'patches/s', x.note ? { note: x.note } : {});
      continue;
    }
    const lost = (r.get('patchbay')?.lost ?? []).reduce((a, b) => a + b, 0);
    if (lost > 0) notes.push(`${mode} client-fanout: ${lost} watcher callbacks did not come within 10 s of the last send`);
    for (const metric of ['p50', 'p99']) record(mode, x.name, r, 'patchbay', 'sharedb', metric, 'ms');
  }
}

/** The signer of `mode` alone, in this process: HMAC embedded, Cloud Storage V4 with the stack's key on the emulators. */
async function signerFor(mode: Mode, env: Record<string, string>): Promise<(expires: number) => Promise<unknown>> {
  if (mode === 'embedded') {
    // Signing reads no blob: the store is the mode's data directory, removed with it.
    const files = new SignedFiles(new FsBlobStore(join(env.PATCHBAY_DATA_DIR as string, 'signer')), randomBytes(32));
    return (expires) => files.signDownload('uploads/00000000-0000-0000-0000-000000000000', { expires, contentType: 'text/plain' });
  }
  const key = JSON.parse(readFileSync(env.PATCHBAY_GCS_SIGNING_KEY_FILE as string, 'utf8')) as { client_email: string; private_key: string };
  const storage = new Storage({ projectId: env.PATCHBAY_GCP_PROJECT, credentials: key });
  const files = new GcsFiles(storage.bucket(env.PATCHBAY_BUCKET as string));
  return (expires) => files.signDownload('uploads/00000000-0000-0000-0000-000000000000', { expires, contentType: 'text/plain' });
}

/**
 * Scale-out (issue 18): K ∈ {1, 2, 4} API processes on the emulator stack, each K on a namespace
 * of its own, measured in the same interleaved rounds (bench/scale-out.ts).
 */
async function runScaleOut(env: Record<string, string>, z: ModeSizes, pinServer: string | null): Promise<void> {
  const ks = [1, 2, 4];
  const fleets = new Map<number, Fleet>();
  try {
    for (const k of ks) {
      log(`emulator scale-out: starting ${k} API process${k === 1 ? '' : 'es'}`);
      fleets.set(k, await startFleet(k, env, `scale${k}`, pinServer));
    }
    const fleet = (k: number) => (fleets.get(k) as Fleet).clients;
    if (wanted('scale-hot')) {
      for (const k of ks) await scaleHot(fleet(k), z.scaleWriters, 1); // each fleet's emulator connections and leases warm up
      const systems: System[] = ks.map((k) => ({
        name: `K=${k}`,
        run: async () => {
          const before = retriedSoFar();
          const r = await scaleHot(fleet(k), z.scaleWriters, z.scalePerWriter);
          const retried = retriedSoFar() - before;
          return { throughput: r.rate, p50: r.p50, p99: r.p99, acked50: r.acked50, acked99: r.acked99, lost: r.lost, retried };
        },
      }));
      const r = await compare('emulator scale-hot', systems);
      const lost = ks.flatMap((k) => r.get(`K=${k}`)?.lost ?? []).reduce((a, b) => a + b, 0);
      if (lost > 0) notes.push(`emulator scale-hot: ${lost} cross-instance receipts did not arrive within 10 s of the last ack`);
      noteRetries('emulator scale-hot', r, ks);
      for (const k of ks) {
        record('emulator', 'scale-hot', r, `K=${k}`, 'K=1', 'throughput', 'acks/s', {
          note: `${k} API process${k === 1 ? '' : 'es'} on one emulator stack; baseline: one process, same rounds.`,
        });
        for (const metric of ['p50', 'p99']) record('emulator', 'scale-hot', r, `K=${k}`, 'K=1', metric, 'ms');
        // The same receipts from the writer's ack: what cross-instance delivery adds after the write itself.
        for (const metric of ['acked50', 'acked99']) record('emulator', 'scale-hot', r, `K=${k}`, 'K=1', metric, 'ms');
      }
    }
    if (wanted('scale-many')) {
      const scopes = await httpCreateScopes(fleet(1)[0] as HttpClient, z.scaleManyScopes);
      const scopes4 = await httpCreateScopes(fleet(4)[0] as HttpClient, z.scaleManyScopes);
      // The fleets are on different namespaces, so each writes its own copy of the scopes (same user).
      const systems: System[] = [
        { name: 'K=1', run: () => counted(() => scaleMany(fleet(1), scopes, z.scaleManyWriters, z.scaleManyPerWriter)) },
        { name: 'K=4', run: () => counted(() => scaleMany(fleet(4), scopes4, z.scaleManyWriters, z.scaleManyPerWriter)) },
      ];
      const r = await compare('emulator scale-many', systems);
      noteRetries('emulator scale-many', r, [1, 4]);
      record('emulator', 'scale-many', r, 'K=4', 'K=1', 'throughput', 'patches/s', { note: '4 API processes against 1, same rounds.' });
    }
  } finally {
    for (const f of fleets.values()) await f.stop().catch(() => {});
  }
}

/** A scale-out round's throughput with the writes it retried after a 503 (bench/scale-out.ts). */
async function counted(run: () => Promise<Throughput>): Promise<Metrics> {
  const before = retriedSoFar();
  const t = await run();
  return { ...tput(t), retried: retriedSoFar() - before };
}

/** Puts a scale-out workload's retried writes (503 answers, resent under the same key) in the notes. */
function noteRetries(workload: string, r: Map<string, Record<string, number[]>>, ks: number[]): void {
  for (const k of ks) {
    const n = (r.get(`K=${k}`)?.retried ?? []).reduce((a, b) => a + b, 0);
    if (n > 0) notes.push(`${workload} K=${k}: ${n} writes answered 503 and retried under the same (session, si)`);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadStart = loadavg();
  const cores = availableParallelism(); // before pinning narrows it
  const pin = choosePinning(args['no-pin'] !== true);
  pinSelf(pin.client);
  const pinning =
    pin.client === null
      ? 'none (all processes float over all cores)'
      : `load generator on CPU ${pin.client}; the server under test, the transport floor, ShareDB and the bench worker on CPU ${pin.server} (one of them busy at a time); emulators, redis-server and the stand-in gateways unpinned`;
  log(`${QUICK ? 'quick' : 'full'} run, ${ROUNDS} round(s); pinning: ${pinning}`);

  const floor = await startNode('dist/bench/floor.js', [], { cpu: pin.server });
  const sharedb = await startNode('dist/bench/sharedb-server.js', [], { cpu: pin.server });
  const floorClient = await HttpClient.signIn(floor.url);
  const modes = (args.modes as string).split(',').filter(Boolean) as Mode[];
  try {
    for (const mode of modes) {
      if (mode !== 'embedded' && mode !== 'emulator') throw new Error(`unknown mode ${mode}`);
      await runMode(mode, { floor, floorClient, sharedbUrl: `ws://127.0.0.1:${sharedb.info.port}` }, pin.server);
    }
  } finally {
    floorClient.close();
    await floor.stop();
    await sharedb.stop();
  }

  // PATCHBAY_BENCH_COMMIT names the code when running from a copy (e.g. a `git archive` of HEAD).
  let commit = process.env.PATCHBAY_BENCH_COMMIT ?? 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'shared', 'functions', 'infra', 'bench'], { encoding: 'utf8' }).trim();
    if (dirty !== '') commit += ' (with uncommitted changes)';
  } catch {}
  for (const v of VARIANTS)
    notes.push(`Variant ${v.name}: a second server under test with ${JSON.stringify(v.env)}, measured in the same rounds (an experiment).`);
  if (Object.keys(SERVER_ENV).length > 0) notes.push(`The server under test ran with ${JSON.stringify(SERVER_ENV)} (an experiment, not the defaults).`);
  notes.push(
    `patchbay runs with its defaults (PATCHBAY_SQLITE_SYNC=full: every commit is fsynced) except PATCHBAY_LOG=error (no per-request log line) and PATCHBAY_LIMITS=${LIMITS} (per-client rate limits, quotas and per-user stream cap ${LIMITS === 'off' ? 'off: one load generator is one user on one address' : 'on, at their defaults'}; the per-instance stream cap, PATCHBAY_SSE_MAX_PER_INSTANCE, stays); ShareDB keeps everything in memory, the floor persists nothing.`,
  );
  notes.push(
    'Fan-out: one writer sends a patch every fanIntervalMs and waits for its ack; latency runs from just before the send to the parse of the event in each of the subscribers, all in the load generator.',
  );
  const results: Results = {
    meta: {
      date: new Date().toISOString(),
      quick: QUICK,
      commit,
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown',
      cores,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      loadavgStart: loadStart,
      loadavgEnd: loadavg(),
      pinning,
      durationSeconds: (Date.now() - started) / 1000,
      sizes: { rounds: ROUNDS, ...Object.fromEntries(modes.map((m) => [m, SIZES[m]])) },
      serverEnv: SERVER_ENV,
      limits: LIMITS,
      notes,
    },
    workloads: entries,
  };
  writeResults(OUT, results);
  log(`wrote ${OUT}/latest.json, latest.md and chart.svg in ${results.meta.durationSeconds.toFixed(0)} s`);
  for (const e of entries) {
    log(
      `${`${e.name}${e.variant ? ` [${e.variant}]` : ''}`.padEnd(12)} ${e.mode.padEnd(8)} ${e.metric.padEnd(10)} ${e.value.toFixed(1).padStart(10)} vs ${e.baseline.name} ${e.baseline.value.toFixed(1)} = ${e.ratio.toFixed(2)}x${e.target ? `; target ${e.target.text}: ${e.met ? 'met' : 'MISSED'}` : ''}; ${e.size}${e.source ? `; from the ${e.source}` : ''}`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
