/**
 * The deployer's only way to the cloud: the `gcloud` CLI found on PATH, run as a child process
 * (node:child_process; no SDK, so what it does is what an operator could type). Reads ask for
 * `--format=json`; a read of something missing is `null` (gcloud exits 1 and says NOT_FOUND or
 * "not found"), any other failure throws GcloudError with gcloud's own message. Every mutating
 * call goes through `mutate`, which the dry modes (`--plan`, `--check`) never reach, and which
 * logs the command (never a secret: values travel on stdin).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `gcloud <args>` with `input` on stdin. */
export type Runner = (args: string[], input?: string) => Promise<RunResult>;

/** The gcloud on `env.PATH`, as a child process. */
export function spawnRunner(env: NodeJS.ProcessEnv = process.env): Runner {
  return (args, input) =>
    new Promise((resolve, reject) => {
      const child = spawn('gcloud', args, { env: { ...env, CLOUDSDK_CORE_DISABLE_PROMPTS: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString();
      });
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      child.once('error', (err) => reject(new GcloudError(args, -1, `cannot run gcloud: ${err.message} (is it on PATH?)`)));
      child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(input ?? '');
    });
}

export class GcloudError extends Error {
  constructor(
    readonly args: string[],
    readonly code: number,
    readonly stderr: string,
  ) {
    super(`gcloud ${args.join(' ')} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`);
  }
}

/** What gcloud prints for a resource that does not exist (exit code 1 for every such case). */
const NOT_FOUND = /NOT_FOUND|not found|does not exist|was not found|404/i;

/** A mutating command: its arguments and, for secret values, what goes to stdin. */
export interface Command {
  args: string[];
  input?: string;
  /**
   * Files the command reads (lifecycle, CORS, env vars), by name: written to a private temporary
   * directory for the call, and `{file:NAME}` in an argument becomes its path.
   */
  files?: Record<string, string>;
}

export class Gcloud {
  /** Every mutating command run so far, in order (for the summary and the tests). */
  readonly done: Command[] = [];

  constructor(
    private readonly run: Runner,
    readonly project: string,
    private readonly onCommand: (line: string) => void = () => {},
  ) {}

  /** A read that must succeed, as parsed JSON. */
  async json<T>(args: string[]): Promise<T> {
    const full = [...args, `--project=${this.project}`, '--format=json'];
    const r = await this.run(full);
    if (r.code !== 0) throw new GcloudError(full, r.code, r.stderr);
    return (r.stdout.trim() === '' ? null : JSON.parse(r.stdout)) as T;
  }

  /** A describe: the resource as JSON, or null when gcloud says it does not exist. */
  async describe<T>(args: string[]): Promise<T | null> {
    const full = [...args, `--project=${this.project}`, '--format=json'];
    const r = await this.run(full);
    if (r.code === 1 && NOT_FOUND.test(r.stderr)) return null;
    if (r.code !== 0) throw new GcloudError(full, r.code, r.stderr);
    return JSON.parse(r.stdout) as T;
  }

  /** A read whose output is text (a secret's value): never logged. */
  async text(args: string[]): Promise<string | null> {
    const full = [...args, `--project=${this.project}`];
    const r = await this.run(full);
    if (r.code === 1 && NOT_FOUND.test(r.stderr)) return null;
    if (r.code !== 0) throw new GcloudError(full, r.code, r.stderr);
    return r.stdout;
  }

  /** A mutating call; throws on failure. */
  async mutate(cmd: Command): Promise<void> {
    const shown = [...cmd.args, `--project=${this.project}`, '--quiet'];
    this.onCommand(`gcloud ${shown.map(quote).join(' ')}`);
    const dir = cmd.files ? mkdtempSync(join(tmpdir(), 'patchbay-deploy-')) : undefined;
    try {
      const full = dir ? shown.map((a) => a.replace(/\{file:([a-z.-]+)\}/g, (_m, n: string) => join(dir, n))) : shown;
      for (const [name, text] of Object.entries(cmd.files ?? {})) writeFileSync(join(dir as string, name), text, { mode: 0o600 });
      const r = await this.run(full, cmd.input);
      if (r.code !== 0) throw new GcloudError(shown, r.code, r.stderr);
      this.done.push(cmd);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** A shell-safe rendering of one argument, for the log lines. */
export function quote(a: string): string {
  return /^[A-Za-z0-9_./:=@,+-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
}
