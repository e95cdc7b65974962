/**
 * Several real API processes (`npm start`'s entry, dist/functions/serve.js) on one Google stack of
 * stand-ins (./google.ts), sharing one namespace: what Cloud Run's instances of one service are.
 * Each can be killed, terminated, paused and resumed, and started again.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { CONFIG_TABLE, type Config } from '../../shared/config.js';
import type { GoogleStack } from './google.js';
import { spawnServer } from './server.js';

export interface Instance {
  url: string;
  child: ChildProcess;
}

export interface Instances {
  /** The namespace's Firestore root collection. */
  root: string;
  list: Instance[];
  /** Starts instance `i` (again). */
  start(i: number): Promise<Instance>;
  /** Sends `signal` and, unless it is SIGSTOP/SIGCONT, waits for the process to exit. */
  signal(i: number, signal: NodeJS.Signals): Promise<void>;
  stopAll(): Promise<void>;
}

/** The settings of `config` as the environment variables a spawned server reads. */
function envOf(config: Partial<Config>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(config)) {
    const s = (CONFIG_TABLE as Record<string, { env: string }>)[key];
    if (s && value !== undefined) env[s.env] = Array.isArray(value) ? value.join(',') : String(value);
  }
  return env;
}

/** `extra`: environment for every instance; `only`: more for instance i (e.g. one configured differently). */
export async function startInstances(
  stack: GoogleStack,
  k: number,
  extra: Record<string, string> = {},
  only: (i: number) => Record<string, string> = () => ({}),
): Promise<Instances> {
  const ns = randomUUID().slice(0, 8);
  const config = stack.config(ns);
  const env = { ...envOf({ ...config, limits: 'off' }), ...extra };
  const list: Instance[] = [];
  const start = async (i: number) => {
    const inst = await spawnServer({ ...env, ...only(i) });
    list[i] = inst;
    return inst;
  };
  await Promise.all(Array.from({ length: k }, (_, i) => start(i)));
  const signal = async (i: number, sig: NodeJS.Signals) => {
    const c = list[i]?.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    if (sig === 'SIGSTOP' || sig === 'SIGCONT') {
      c.kill(sig);
      return;
    }
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(sig);
    await exited;
  };
  return {
    root: config.firestoreRoot as string,
    list,
    start,
    signal,
    async stopAll() {
      await Promise.all(
        list.map(async (inst, i) => {
          inst.child.kill('SIGCONT');
          await signal(i, 'SIGKILL');
        }),
      );
    },
  };
}
