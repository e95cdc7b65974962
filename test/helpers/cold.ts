/**
 * Helpers for the cold-storage tests: seeding a scope's log quickly through the ledger port,
 * fault-injecting decorators for the Ledger and BlobStore ports (a crash at a chosen step, a
 * pause at a chosen call), the check of guarantee 6 (every acknowledged patch recoverable exactly
 * once, from cold storage and the hot log together), and running the operator CLI.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { App } from '../../shared/app.js';
import { CONFIG_TABLE, type Config } from '../../shared/config.js';
import type { Json } from '../../shared/json.js';
import type { BlobStore, Ledger } from '../../shared/ports/index.js';
import type { Patch, PatchRecord, PatchRequest } from '../../shared/protocol.js';
import { wrapAll } from './wrap.js';

export const INITIAL: Json = { n: 0, items: [] };

/** The i-th seeded patch; the state after patches 1..n is `stateAfter(n)`. */
export const patchFor = (i: number): PatchRequest['patch'] => [
  { op: 'replace', path: '/n', value: i },
  { op: 'add', path: '/items/-', value: i },
];
export const stateAfter = (n: number): Json => ({ n, items: Array.from({ length: n }, (_, i) => i + 1) });

/** The hash the engine records for a patch (so a retry through the engine matches a seeded record). */
export const patchHash = (patch: Patch): string => createHash('sha256').update(JSON.stringify(patch)).digest('base64url');

export interface SeedOptions {
  /** Commit time of record ii (default: now). */
  at?: (ii: number) => number;
  /** Record (session, si = ii) on each record, so it is recognisable as a retry. */
  session?: string;
  by?: string;
  /** Records per commit (default: what one Firestore transaction takes). */
  chunk?: number;
  /** The patch of record ii (default: patchFor). */
  patch?: (ii: number) => Patch;
}

/** Appends `count` records (patchFor(ii)) through `Ledger.commit`, in big commits; returns them. */
export async function seed(ledger: Ledger, id: string, count: number, opts: SeedOptions = {}): Promise<PatchRecord[]> {
  const chunk = opts.chunk ?? (opts.session ? 200 : 450);
  const out: PatchRecord[] = [];
  for (let done = 0; done < count; ) {
    const n = Math.min(chunk, count - done);
    const records = await ledger.commit(id, async (view) => {
      const rs = Array.from({ length: n }, (_, k): PatchRecord => {
        const ii = view.head.ii + 1 + k;
        const patch = opts.patch ? opts.patch(ii) : patchFor(ii);
        return {
          scope: id,
          ii,
          patch,
          at: opts.at ? opts.at(ii) : Date.now(),
          by: opts.by ?? 'seeder',
          session: opts.session ?? null,
          si: opts.session ? ii : null,
          hash: patchHash(patch),
          epoch: view.head.epoch,
        };
      });
      return { records: rs, meta: { updated: Date.now(), size: 1 }, result: rs };
    });
    out.push(...records);
    done += n;
  }
  return out;
}

const STEPS: Record<'ledger' | 'blobs', ReadonlySet<string>> = {
  blobs: new Set(['put']),
  ledger: new Set(['advanceBundled', 'trimLog']),
};

export interface CrashPlan {
  /** The n-th bundling step (1-based) to crash at: every BlobStore.put, Ledger.advanceBundled and Ledger.trimLog is a step. */
  at: number;
  /** Crash before the step reaches the backend, or after it took effect (its answer is lost). */
  when: 'before' | 'after';
  /** How the process "dies": the call throws, or never returns. Either way every later call fails. */
  how?: 'throw' | 'hang';
}

export interface Crashing {
  ledger: Ledger;
  blobs: BlobStore;
  /** The steps seen, in order (`blobs.put bundles/...`, `ledger.advanceBundled 10`, ...). */
  trace: string[];
  /** Resolves when the injected crash happened. */
  died: Promise<void>;
  readonly dead: boolean;
}

/**
 * Decorates a ledger and a blob store so that the `plan.at`-th bundling step crashes. After the
 * crash the process is dead: every call on either port fails, so nothing (not even releasing
 * the lease) happens afterwards. With no plan it only records the steps.
 */
export function crashing(ports: { ledger: Ledger; blobs: BlobStore }, plan: CrashPlan | null): Crashing {
  let steps = 0;
  let dead = false;
  let signal: () => void = () => {};
  const died = new Promise<void>((r) => {
    signal = r;
  });
  const trace: string[] = [];
  const die = (): Promise<never> => {
    dead = true;
    signal();
    return plan?.how === 'hang' ? new Promise<never>(() => {}) : Promise.reject(new Error('injected crash'));
  };
  const crashing = <T extends object>(target: T, name: 'ledger' | 'blobs'): T =>
    wrapAll(target, async (prop, real, args) => {
      if (dead) throw new Error('crashed process');
      if (STEPS[name].has(prop)) {
        steps++;
        trace.push(`${name}.${prop} ${String(args[name === 'blobs' ? 0 : 3])}`);
        if (plan && steps === plan.at) {
          if (plan.when === 'before') return die();
          await real(...args);
          return die();
        }
      }
      return real(...args);
    });
  return {
    ledger: crashing(ports.ledger, 'ledger'),
    blobs: crashing(ports.blobs, 'blobs'),
    trace,
    died,
    get dead() {
      return dead;
    },
  };
}

/** Decorates a port so that its `nth` call of `method` waits (before reaching the backend) until released. */
export function pausing<T extends object>(target: T, method: string, nth: number) {
  let calls = 0;
  let reachedSignal: () => void = () => {};
  const reached = new Promise<void>((r) => {
    reachedSignal = r;
  });
  let release: () => void = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  const port = wrapAll(target, async (prop, real, args) => {
    if (prop === method && ++calls === nth) {
      reachedSignal();
      await released;
    }
    return real(...args);
  });
  return { port, reached, release };
}

/**
 * Guarantee 6, checked: patches 1..n are recoverable exactly once and unchanged.
 * - the whole log through the engine (cold + hot) is `original`, in order, each once;
 * - cold storage holds 1..bundled and the hot log exactly trimmed+1..n, with trimmed <= bundled;
 * - every snapshot is the fold of the log up to its index;
 * - the state rebuilt without the cache (it is emptied) is the fold of the whole log.
 */
export async function expectRecoverable(app: Pick<App, 'engine' | 'adapters'>, id: string, original: PatchRecord[]): Promise<void> {
  const { engine } = app;
  const { ledger, cache } = app.adapters;
  const n = original.length;
  const all: PatchRecord[] = [];
  for await (const r of await engine.history(id, 1, undefined)) all.push(r);
  expect(all.map((r) => r.ii)).toEqual(original.map((r) => r.ii));
  expect(all).toEqual(original);

  const head = await ledger.getHead(id);
  if (!head) throw new Error(`scope ${id} is gone`);
  expect(head.ii).toBe(n);
  expect(head.trimmed).toBeLessThanOrEqual(head.bundled);
  expect(head.bundled).toBeLessThanOrEqual(head.ii);
  const hot = await ledger.readLog(id, 1, n, n + 10);
  expect(hot.map((r) => r.ii)).toEqual(original.slice(head.trimmed).map((r) => r.ii));
  const cold: PatchRecord[] = [];
  for await (const r of engine.cold.records(id, 1, head.bundled)) cold.push(r);
  expect(cold).toEqual(original.slice(0, head.bundled));

  for (const ii of await engine.cold.listSnapshots(id)) {
    expect(await engine.cold.readSnapshot(id, ii), `snapshot ${ii}`).toEqual(stateAfter(ii));
  }
  await cache.delete(id);
  expect(await engine.stateAt(id, n)).toEqual(stateAfter(n));
}

/** The environment variables that give a process these settings (for spawning the CLI or a function). */
export function envFor(config: Partial<Config>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(config)) {
    const setting = (CONFIG_TABLE as Record<string, { env: string }>)[key];
    if (setting && value !== undefined) env[setting.env] = String(value);
  }
  return env;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout's JSON lines. */
  // biome-ignore lint/suspicious/noExplicitAny: CLI output is inspected loosely
  lines: any[];
}

/** Runs the operator CLI (dist/functions/cli.js) with these arguments and environment. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['dist/functions/cli.js', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => {
      const lines = stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => {
          try {
            return JSON.parse(l);
          } catch {
            return l;
          }
        });
      resolve({ code, stdout, stderr, lines });
    });
  });
}
