/**
 * Benchmark plumbing: child processes (the server under test, the baselines, the workers), CPU
 * pinning, and the small statistics the report needs.
 *
 * Pinning on a 2-core machine: the load generator (this process) runs on CPU 0, every server it
 * measures (patchbay, the transport floor, ShareDB) and the bench worker run on CPU 1, one at a
 * time under load, so a subject and its baseline always get the same core and the client never
 * competes with them. The Firestore/Pub/Sub emulators, redis-server and the stand-in gateways are
 * left unpinned: they play remote services. `--no-pin` (or a machine without `taskset` or with
 * fewer than 2 CPUs) turns pinning off.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';

export interface Pinning {
  client: string | null;
  server: string | null;
}

export function choosePinning(wanted: boolean): Pinning {
  if (!wanted || availableParallelism() < 2) return { client: null, server: null };
  try {
    execFileSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' });
  } catch {
    return { client: null, server: null };
  }
  return { client: '0', server: '1' };
}

/** Moves this process (all its threads) onto `cpus`. */
export function pinSelf(cpus: string | null): void {
  if (cpus === null) return;
  execFileSync('taskset', ['-a', '-pc', cpus, String(process.pid)], { stdio: 'ignore' });
}

export interface NodeChild {
  child: ChildProcess;
  /** The first JSON line the child printed with a `port` or `ready` field. */
  info: Record<string, unknown>;
  url: string;
  output(): string;
  /** SIGTERM, then SIGKILL after stopTimeoutMs (10 s); resolves when it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `node <script> ...args` (pinned to `cpu` when given) and waits for its ready line: a JSON
 * object with `port` (serve.js, floor, ShareDB) or `ready`.
 */
export async function startNode(
  script: string,
  args: string[],
  opts: { env?: Record<string, string>; cpu?: string | null; nodeArgs?: string[]; timeoutMs?: number; cwd?: string; stopTimeoutMs?: number } = {},
): Promise<NodeChild> {
  const nodeCmd = [process.execPath, ...(opts.nodeArgs ?? []), script, ...args];
  const [cmd, ...argv] = opts.cpu ? ['taskset', '-c', opts.cpu, ...nodeCmd] : nodeCmd;
  const child = spawn(cmd as string, argv, {
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: opts.cwd,
  });
  let out = '';
  const keep = (c: Buffer) => {
    out = (out + c.toString()).slice(-20_000);
  };
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start within ${opts.timeoutMs ?? 60_000} ms:\n${out}`)), opts.timeoutMs ?? 60_000);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      keep(Buffer.from(`${line}\n`));
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (typeof parsed === 'object' && parsed !== null && ('port' in parsed || 'ready' in parsed)) {
          clearTimeout(timer);
          resolve(parsed);
        }
      } catch {}
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code}) before it was ready:\n${out}`));
    });
  });
  return {
    child,
    info,
    url: typeof info.port === 'number' ? `http://127.0.0.1:${info.port}` : '',
    output: () => out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.stopTimeoutMs ?? 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A long-lived child that answers JSON-line requests on stdin with JSON-line replies on stdout
 * (`{id, ok, value}` / `{id, ok: false, error}`): the bench worker.
 */
export class Rpc {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(readonly proc: NodeChild) {
    const lines = createInterface({ input: proc.child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      let msg: { id?: number; ok?: boolean; value?: unknown; error?: string };
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof msg.id !== 'number') return;
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.ok) w.resolve(msg.value);
      else w.reject(new Error(msg.error ?? 'worker error'));
    });
    proc.child.once('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`worker exited (${code}):\n${proc.output()}`));
      this.waiting.clear();
    });
  }

  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.child.stdin?.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics

export function median(xs: number[]): number {
  return quantile(xs, 0.5);
}

/** Linear interpolation between closest ranks (R-7, what numpy and spreadsheets use). */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (s[lo] as number) + ((s[hi] as number) - (s[lo] as number)) * (pos - lo);
}

/** (max - min) / median, as a fraction: how far apart the rounds were. */
export function spread(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = median(xs);
  return m === 0 ? 0 : (Math.max(...xs) - Math.min(...xs)) / m;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
