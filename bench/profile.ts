/**
 * Profiles the server under test: starts `node --cpu-prof dist/functions/serve.js` (embedded by
 * default), runs one workload against it from this process, stops it (SIGTERM, so the profile is
 * written) and prints where its CPU time went: self time by function, time by module (package or
 * source file) and inclusive time of the steps of the write and fan-out paths.
 *
 *   node dist/bench/profile.js --workload write-single|write-hot|write-many|fanout|catchup|client-pipelined [--n 3000]
 *     [--env PATCHBAY_SQLITE_SYNC=normal ...] [--keep DIR] [--top 30] [--no-pin]
 *
 * Emulator mode is not profiled here (its time is spent waiting on the emulators, which a CPU
 * profile of the server does not show); run.ts measures it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { HttpClient } from './client.js';
import { clientWriteSingle } from './client-workloads.js';
import { choosePinning, pinSelf, Rpc, startNode } from './harness.js';
import { httpCatchup, httpCreateScopes, httpFanout, httpWriteHot, httpWriteMany, httpWriteSingle } from './workloads.js';

interface Frame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: Frame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Steps of the request paths, matched by function name (and file, where names repeat). */
const STEPS: Array<[string, RegExp, RegExp?]> = [
  ['shared/http (the whole request)', /.*/, /shared\/http\//],
  ['auth: jose (sync part of jwtVerify)', /^jwtVerify$/],
  ['auth: any jose or WebCrypto frame', /.*/, /node_modules\/jose\/|node:internal\/crypto\//],
  ['body: readJson', /^readJson$/],
  ['body: zod safeParse', /^safeParse$/],
  ['body: jsonDepth guard', /^jsonDepth$/],
  ['engine.submit', /^submit$/, /engine\.js/],
  ['  checkPatch', /^checkPatch$/],
  ['  sha256 of the patch', /^(createHash|digest|update)$/, /node:internal\/crypto/],
  ['engine.commitGroup', /^commitGroup$/],
  ['  ledger.commit (SQLite)', /^commit$/, /embedded\/sqlite\/log\.js/],
  ['    better-sqlite3 transaction (incl. fsync)', /^(immediate|transaction)$/],
  ['    plan', /^plan$/, /engine\.js/],
  ['      stateAt', /^stateAt$/],
  ['      runGroup', /^runGroup$/],
  ['        cloneJson', /^cloneJson$/],
  ['        applyPatch', /^applyPatch$/, /shared\/patch\.js/],
  ['      checkState (jsonBytes + depth)', /^checkState$/],
  ['  cache.put', /^put$/, /memory-cache\.js/],
  ['  publish (bus + watermark note)', /^publish$/, /engine\.js/],
  ['    markPublished (SQLite)', /^markPublished$/, /embedded\/sqlite\/outbox\.js/],
  ['stream: openStream', /^openStream$/],
  ['stream: pump', /^pump$/],
  ['stream: SseWriter.event', /^event$/, /sse\.js/],
  ['stream: JSON.stringify of events', /^stringify$/],
  ['response: sendJson', /^sendJson$/, /respond\.js/],
  ['request log (logger.request)', /^request$/, /log\.js/],
  ['garbage collector', /^\(garbage collector\)$/],
  ['idle', /^\(idle\)$/],
];

function moduleOf(url: string): string {
  if (url === '') return '(native/vm)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  if (url.startsWith('node:'))
    return url
      .replace(/^node:internal\/(deps\/)?/, 'node:')
      .split('/')
      .slice(0, 2)
      .join('/');
  const src = /\/dist\/(.*)\.js$/.exec(url);
  return src ? (src[1] as string) : url;
}

export function summarize(profile: CpuProfile, top = 30): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const modules = new Map<string, number>();
  const steps = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000; // ms
    total += dt;
    const node = byId.get(id) as ProfileNode;
    const f = node.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${moduleOf(f.url)}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    modules.set(moduleOf(f.url), (modules.get(moduleOf(f.url)) ?? 0) + dt);
    // Inclusive time of each step: count the sample once per step found on its stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const fr = (byId.get(cur) as ProfileNode).callFrame;
      for (const [label, name, file] of STEPS) {
        if (seen.has(label)) continue;
        if (name.test(fr.functionName) && (file === undefined || file.test(fr.url))) seen.add(label);
      }
    }
    for (const s of seen) steps.set(s, (steps.get(s) ?? 0) + dt);
  });
  const rows = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${v.toFixed(0).padStart(7)} ms  ${k}`)
      .join('\n');
  const busy = total - (self.get('(idle) (native/vm):0') ?? 0);
  const stepRows = STEPS.map(([label]) => {
    const v = steps.get(label) ?? 0;
    return `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${v.toFixed(0).padStart(7)} ms  ${label}`;
  }).join('\n');
  return [
    `profile: ${total.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms busy (not idle)`,
    `\nself time by function (top ${top}):\n${rows(self, top)}`,
    `\nself time by module:\n${rows(modules, 20)}`,
    `\ninclusive time of the request-path steps:\n${stepRows}`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      workload: { type: 'string', default: 'write-single' },
      n: { type: 'string', default: '3000' },
      env: { type: 'string', multiple: true, default: [] },
      keep: { type: 'string' },
      top: { type: 'string', default: '30' },
      'no-pin': { type: 'boolean', default: false },
      /** Profile the transport floor instead of patchbay (same workload), to compare. */
      floor: { type: 'boolean', default: false },
      /** Instead of a CPU profile, time every port call (trace.ts): where a request waits. */
      trace: { type: 'boolean', default: false },
      /** embedded (default) or emulator (starts the stand-ins, as run.ts does). */
      mode: { type: 'string', default: 'embedded' },
    },
  });
  const pin = choosePinning(a['no-pin'] !== true);
  pinSelf(pin.client);
  const dataDir = mkdtempSync(join(tmpdir(), 'patchbay-profile-'));
  const profDir = a.keep ?? join(dataDir, 'prof');
  const env: Record<string, string> = { PORT: '0', PATCHBAY_HOST: '127.0.0.1', PATCHBAY_LOG: 'error', PATCHBAY_DATA_DIR: join(dataDir, 'data') };
  for (const kv of a.env as string[]) {
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const n = Number(a.n);
  let stack: Awaited<ReturnType<typeof startNode>> | undefined;
  if (a.mode === 'emulator') {
    stack = await startNode('dist/bench/stack.js', [], { timeoutMs: 120_000, stopTimeoutMs: 60_000 });
    Object.assign(env, stack.info.env as Record<string, string>, { PATCHBAY_FIRESTORE_ROOT: 'profile' });
  }
  const script = a.floor ? 'dist/bench/floor.js' : a.trace ? 'dist/bench/trace.js' : 'dist/functions/serve.js';
  const server = await startNode(script, [], { env, cpu: pin.server, nodeArgs: a.trace ? [] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  const c = await HttpClient.signIn(server.url);
  try {
    const t0 = performance.now();
    let result: unknown;
    switch (a.workload) {
      case 'write-single':
        await httpWriteSingle(c, 200);
        result = await httpWriteSingle(c, n);
        break;
      case 'write-hot':
        result = await httpWriteHot(c, 32, Math.ceil(n / 32));
        break;
      case 'write-many': {
        const scopes = await httpCreateScopes(c, 1000);
        result = await httpWriteMany(c, scopes, 64, Math.ceil(n / 64));
        break;
      }
      case 'client-pipelined':
        await clientWriteSingle(server.url, c.token, 200, true);
        result = await clientWriteSingle(server.url, c.token, n, true);
        break;
      case 'fanout':
        result = await httpFanout(c, 100, Math.ceil(n / 10), 20);
        break;
      case 'catchup': {
        // The long scope is written through the ledger port by the bench worker (same data dir).
        const worker = new Rpc(await startNode('dist/bench/worker.js', [], { env, cpu: pin.server }));
        await worker.call('init', { env });
        await worker.call('buildLong', { id: 'long', n, owner: c.userId });
        await worker.proc.stop();
        const runs: unknown[] = [];
        for (let i = 0; i < 4; i++) runs.push(await httpCatchup(c, 'long', n));
        result = runs;
        break;
      }
      default:
        throw new Error(`unknown workload ${a.workload}`);
    }
    console.log(`${a.workload}: ${JSON.stringify(result)} (${((performance.now() - t0) / 1000).toFixed(1)} s, env ${JSON.stringify(a.env)})`);
  } finally {
    c.close();
    await server.stop();
    await stack?.stop();
  }
  if (a.trace) {
    const line = server
      .output()
      .split('\n')
      .find((l) => l.startsWith('{"trace"'));
    const trace = (JSON.parse(line ?? '{"trace":{}}') as { trace: Record<string, { count: number; mean: number; p50: number; p99: number; total: number }> })
      .trace;
    console.log('port call                          count    mean ms   p50 ms   p99 ms   total ms');
    for (const [k, v] of Object.entries(trace).sort((x, y) => y[1].total - x[1].total)) {
      console.log(
        `${k.padEnd(34)} ${String(v.count).padStart(6)} ${v.mean.toFixed(2).padStart(9)} ${v.p50.toFixed(2).padStart(8)} ${v.p99.toFixed(2).padStart(8)} ${v.total.toFixed(0).padStart(10)}`,
      );
    }
    rmSync(dataDir, { recursive: true, force: true });
    return;
  }
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${profDir}`);
  console.log(summarize(JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile, Number(a.top)));
  if (a.keep) console.log(`profile kept in ${join(profDir, file)}`);
  rmSync(dataDir, { recursive: true, force: true });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
