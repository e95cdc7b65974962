/**
 * Running package.json's scripts as a user or a supervisor does: `npm run <script>` as its own
 * process group (so a test can signal npm alone, as systemd or Docker do, or the whole group, as
 * Ctrl-C in a terminal does), with its output kept and every process below it known.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';

export interface NpmRun {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with npm's exit code (or the signal that ended it). */
  exited: Promise<number | string | null>;
  /** The pids of every process below npm right now (the shell, node, what node spawned). */
  descendants(): number[];
  /** SIGKILLs npm's process group and every descendant still there (cleanup). */
  kill(): void;
}

/**
 * `npm run <script> --ignore-scripts -- ...args` in the repository (or `cwd`). `--ignore-scripts`
 * skips the `pre` script (the build: global-setup has built dist/ already) and runs the script
 * itself as written in package.json; `build: true` runs the `pre` script too, as a user does.
 */
export function npmRun(script: string, env: Record<string, string>, args: string[] = [], opts: { cwd?: string; build?: boolean } = {}): NpmRun {
  const child = spawn('npm', ['run', script, ...(opts.build ? [] : ['--ignore-scripts']), ...(args.length > 0 ? ['--', ...args] : [])], {
    cwd: opts.cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const seen = new Set<number>(); // so kill() also finds processes that npm's exit orphaned
  const descendants = () => {
    const now = child.pid === undefined ? [] : descendantsOf(child.pid);
    for (const pid of now) seen.add(pid);
    return now;
  };
  return {
    child,
    output: () => out,
    exited,
    descendants,
    kill: () => {
      const now = descendants();
      // an orphan npm left behind is ours only if it still runs one of our scripts (pids are reused)
      for (const pid of seen) if (now.includes(pid) || ownScript(pid)) signal(pid, 'SIGKILL');
      if (child.pid !== undefined) signal(-child.pid, 'SIGKILL');
    },
  };
}

/**
 * `npm start` (the server as a user runs it) on 127.0.0.1:`port` with its data in `dataDir`;
 * resolves once GET /healthz answers, and kills it if it never does.
 */
export async function npmStart(port: number, dataDir: string): Promise<NpmRun> {
  const run = npmRun('start', { PORT: String(port), PATCHBAY_HOST: '127.0.0.1', PATCHBAY_DATA_DIR: dataDir, PATCHBAY_LOG: 'error' });
  try {
    await until(
      async () => {
        if (run.child.exitCode !== null) throw new Error(`npm start exited: ${run.output()}`);
        return fetch(`http://127.0.0.1:${port}/healthz`).then(
          (r) => r.ok,
          () => false,
        );
      },
      'GET /healthz to answer',
      30_000,
    );
  } catch (err) {
    run.kill();
    throw err;
  }
  return run;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {}
}

function ownScript(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === process.cwd() && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dist/');
  } catch {
    return false;
  }
}

/** Whether a process with this pid exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const state = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    return state !== '' && !state.startsWith('Z');
  } catch {
    return false;
  }
}

function descendantsOf(root: number): number[] {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number) as [number, number]);
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [pid, ppid] of rows)
      if (ppid === p) {
        out.push(pid);
        walk(pid);
      }
  };
  walk(root);
  return out;
}

/** Polls `pred` every 50 ms; rejects with `what` after timeoutMs. */
export async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
