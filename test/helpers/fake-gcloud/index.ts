/**
 * The deploy tests' handle on the simulated gcloud (fake.mjs): a state directory, the PATH that
 * puts the fake first, runners for the deployer (a real child process, or in-process for the
 * long failure sweep), and readers of the state and of the recorded mutating calls.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Runner } from '../../../infra/deploy/gcloud.js';
// @ts-expect-error: plain JavaScript (it runs as the `gcloud` program), no declarations
import { readState as read, runFake } from './fake.mjs';
// @ts-expect-error: plain JavaScript, no declarations
import { checkFlags as check, flagsOf as flags, keptSections as kept, plain as strip } from './help.mjs';

export const FAKE_DIR = dirname(fileURLToPath(import.meta.url));
export const HELP_DIR = join(FAKE_DIR, '../../fixtures/gcloud-help');

// biome-ignore lint/suspicious/noExplicitAny: the simulated state is JSON, inspected loosely
export type FakeState = Record<string, any>;

export const readState = read as (dir: string) => FakeState;
export const checkFlags = check as (help: string, args: string[]) => string | null;
export const flagsOf = flags as (help: string) => Map<string, boolean>;
export const keptSections = kept as (text: string) => string;
export const plain = strip as (text: string) => string;
export const fake = runFake as (argv: string[], opts: { env: NodeJS.ProcessEnv; stdin?: string }) => { code: number; stdout: string; stderr: string };

export function stateDir(): string {
  return mkdtempSync(join(tmpdir(), 'patchbay-fake-gcloud-'));
}

/** The environment that makes `gcloud` the fake, on `dir`. */
export function fakeEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${FAKE_DIR}:${process.env.PATH}`, FAKE_GCLOUD_STATE: dir, ...extra };
}

/** The fake called in this process (same code, no process start): for runs repeated many times. */
export function inProcessRunner(env: NodeJS.ProcessEnv): Runner {
  return async (args, input) => fake(args, { env, stdin: input ?? '' });
}

/** The mutating calls recorded so far, as argv arrays. */
export function calls(dir: string): string[][] {
  const p = join(dir, 'calls.jsonl');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as string[]);
}

/** Restarts the count FAKE_GCLOUD_FAIL_AT refers to. */
export function resetAttempts(dir: string): void {
  rmSync(join(dir, 'attempts'), { force: true });
}
