/**
 * `npm start` as a new user, a supervisor (systemd, Docker) or a terminal runs it: the script as
 * written in package.json, through npm.
 * - README's quick start curl block (between its markers) works against it, and works again when
 *   run a second time;
 * - SIGTERM or SIGINT to the npm process alone (what a supervisor sends) stops the server: the
 *   port stops listening and every process below npm exits within a few seconds;
 * - Ctrl-C (SIGINT to the whole process group, so the server gets it twice: once from the
 *   terminal, once forwarded by npm) stops it cleanly, exit code 0;
 * - a PORT already in use is said in one line, with a non-zero exit.
 * `npm run patchbay -- --help` lists every command and flag (exit 0), a usage error points to it
 * (exit 2), and on a fresh clone (no dist/) the script builds first instead of failing with
 * "Cannot find module".
 * `npm run dev:cloud` with PORT or an emulator port taken says which, in one line, before it
 * starts anything (it used to start every emulator, then die with an EADDRINUSE stack).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, type NpmRun, npmRun, npmStart, until } from './helpers/npm.js';
import { freePort, hasTool, listening } from './helpers/proc.js';
import { tempDir } from './helpers/server.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(): Promise<{ run: NpmRun; port: number }> {
  const dir = tempDir('patchbay-npm-start-');
  dirs.push(dir);
  const port = await freePort();
  return { run: await npmStart(port, dir), port };
}

/** Sends `signal` (to npm alone, or to its whole process group) and checks everything stopped. */
async function stop(run: NpmRun, port: number, signal: NodeJS.Signals, to: 'npm' | 'group'): Promise<void> {
  const below = run.descendants();
  expect(below.length).toBeGreaterThan(0);
  try {
    process.kill(to === 'npm' ? (run.child.pid as number) : -(run.child.pid as number), signal);
    await until(async () => !(await listening(port)), `port ${port} to stop listening`, 5000);
    await until(() => below.every((pid) => !alive(pid)), `processes ${below.join(', ')} to exit`, 5000);
    const code = await Promise.race([run.exited, new Promise((r) => setTimeout(() => r('npm still running'), 5000))]);
    expect(code, run.output()).toBe(0);
  } finally {
    run.kill();
  }
}

/** README's quick start curl block, between its markers. */
function quickStart(): string {
  const readme = readFileSync('README.md', 'utf8');
  const m = /<!-- quickstart:begin -->\s*```sh\n([\s\S]*?)```\s*<!-- quickstart:end -->/.exec(readme);
  if (!m?.[1]) throw new Error('README.md has no quick start block between <!-- quickstart:begin --> and <!-- quickstart:end -->');
  return m[1];
}

/** Runs the block with bash against localhost:port; the background `curl -N` is stopped once it has printed the patch. */
async function runQuickStart(port: number): Promise<string> {
  const script = quickStart().replaceAll('localhost:8080', `localhost:${port}`);
  const bash = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  bash.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  bash.stderr.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const code = await new Promise<number | null>((r) => bash.once('exit', (c) => r(c)));
  try {
    expect(code, out).toBe(0);
    // the watcher prints the state, then the patch (or, had it connected late, the patched state)
    await until(() => /event: state/.test(out) && (/event: patch/.test(out) || /"count":1/.test(out)), 'the watcher to print the patch', 10_000);
  } finally {
    try {
      process.kill(-(bash.pid as number), 'SIGTERM'); // the background curl -N
    } catch {}
  }
  return out;
}

describe('npm start', () => {
  it.skipIf(!hasTool('curl'))("runs README's quick start twice; SIGTERM to npm alone stops the server", async () => {
    const { run, port } = await start();
    try {
      for (const _ of [1, 2]) {
        const out = await runQuickStart(port);
        expect(out).not.toMatch(/"error"/);
        expect(out).toMatch(/\{"id":"[^"]+","ii":1\}/);
      }
    } catch (err) {
      run.kill();
      throw err;
    }
    await stop(run, port, 'SIGTERM', 'npm');
  });

  it('SIGINT to npm alone stops the server', async () => {
    const { run, port } = await start();
    await stop(run, port, 'SIGINT', 'npm');
  });

  it('Ctrl-C (SIGINT to the process group, delivered twice to the server) stops it cleanly', async () => {
    const { run, port } = await start();
    await stop(run, port, 'SIGINT', 'group');
  });

  it('says in one line that PORT is taken, and exits non-zero', async () => {
    const dir = tempDir('patchbay-npm-start-');
    dirs.push(dir);
    await withPortTaken(async (port) => {
      const run = npmRun('start', { PORT: String(port), PATCHBAY_HOST: '127.0.0.1', PATCHBAY_DATA_DIR: dir, PATCHBAY_LOG: 'error' });
      expect(await run.exited).not.toBe(0);
      expect(run.output()).toContain(`PORT: port ${port} is already in use on 127.0.0.1`);
      expect(run.output()).not.toMatch(/\n\s+at /); // no stack trace
    });
  });
});

/** Runs `use` with a free port taken by a listener of ours. */
async function withPortTaken(use: (port: number) => Promise<void>): Promise<void> {
  const blocker = createServer();
  const port = await freePort();
  await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
  try {
    await use(port);
  } finally {
    blocker.close();
  }
}

describe('npm run dev:cloud', () => {
  it('says in one line which port is taken (PORT, then the emulator ports), before starting anything', async () => {
    const dir = tempDir('patchbay-devcloud-port-');
    dirs.push(dir);
    const names = ['firestore', 'pubsub', 'storage', 'redis', 'upstash', 'auth'];
    const ports = await Promise.all(names.map(() => freePort()));
    await withPortTaken(async (taken) => {
      const config = `${dir}/firebase.json`;
      /** The emulator ports, with the one named `busy` on the taken port. */
      const emulators = (busy: string | null) => Object.fromEntries(names.map((n, i) => [n, { port: n === busy ? taken : ports[i] }]));
      const cases: Array<[string, Record<string, string>, string | null, string]> = [
        ['PORT', { PORT: String(taken), PATCHBAY_HOST: '127.0.0.1' }, null, `port ${taken} (PORT) is already in use`],
        ['pubsub', { PORT: '0' }, 'pubsub', `port ${taken} (firebase.json emulators.pubsub.port) is already in use`],
        ['auth', { PORT: '0' }, 'auth', `port ${taken} (firebase.json emulators.auth.port) is already in use`],
      ];
      for (const [what, env, busy, message] of cases) {
        writeFileSync(config, JSON.stringify({ emulators: emulators(busy) }));
        const started = Date.now();
        const run = npmRun('dev:cloud', { ...env, PATCHBAY_DATA_DIR: `${dir}/data`, PATCHBAY_LOG: 'error' }, ['--config', config]);
        try {
          expect(await run.exited, what).not.toBe(0);
        } finally {
          run.kill();
        }
        expect(run.output(), what).toContain(`dev:cloud: ${message}`);
        expect(run.output(), what).not.toMatch(/\n\s+at |emulator on/); // no stack, nothing started
        expect(Date.now() - started, what).toBeLessThan(15_000);
      }
    });
  });
});

describe('npm run patchbay', () => {
  const run = async (args: string[], opts: { cwd?: string; build?: boolean } = {}) => {
    const r = npmRun('patchbay', {}, args, opts);
    const code = await r.exited;
    return { code, output: r.output() };
  };

  /** The entry itself, without npm's few seconds of start-up. */
  const node = (args: string[]) => {
    const r = spawnSync(process.execPath, ['dist/functions/cli.js', ...args], { encoding: 'utf8' });
    return { code: r.status, output: r.stdout + r.stderr };
  };

  it('--help lists every command and flag and exits 0; a usage error points to --help and exits 2', async () => {
    for (const args of [['--help'], ['-h'], ['help'], ['bundle', '--help']]) {
      const { code, output } = args[0] === '--help' ? await run(args) : node(args);
      expect(code, args.join(' ')).toBe(0);
      for (const command of ['bundle [scope]', 'rebuild [scope]', 'help'])
        expect(output).toMatch(new RegExp(`^\\s+${command.replace(/[[\]]/g, '\\$&')}\\s`, 'm'));
      for (const flag of ['--all', '--check', '--progress', '-h, --help']) expect(output).toMatch(new RegExp(`^\\s+${flag}\\s`, 'm'));
      for (const v of ['PATCHBAY_MODE', 'PATCHBAY_DATA_DIR', 'cli.env']) expect(output).toContain(v);
    }
    for (const [args, problem] of [
      [[], 'no command given'],
      [['frobnicate'], 'unknown command "frobnicate"'],
      [['bundle', '--bogus'], 'unknown flag --bogus'],
      [['bundle', '--check'], '--check is not a flag of bundle'],
    ] as const) {
      const { code, output } = node([...args]);
      expect(code, args.join(' ')).toBe(2);
      expect(output).toContain(`patchbay: ${problem}`);
      expect(output).toContain('run "npm run patchbay -- --help" for every command and flag');
    }
  });

  it('builds first on a fresh clone (no dist/)', async () => {
    const clone = tempDir('patchbay-clone-');
    dirs.push(clone);
    for (const f of ['package.json', 'tsconfig.json', 'shared', 'functions', 'infra', 'bench', 'client']) cpSync(f, `${clone}/${f}`, { recursive: true });
    symlinkSync(`${process.cwd()}/node_modules`, `${clone}/node_modules`);
    const { code, output } = await run(['--help'], { cwd: clone, build: true });
    expect(code, output).toBe(0);
    expect(output).toMatch(/^commands:$/m);
    expect(existsSync(`${clone}/dist/functions/cli.js`)).toBe(true);
  }, 120_000);
});
