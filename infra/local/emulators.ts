/**
 * The local stand-ins for Google's services, started as real processes: the gcloud Firestore and
 * Pub/Sub emulators (through their launchers, faster than `gcloud emulators ... start`) and
 * redis-server. Used by `npm run dev:cloud` (fixed ports from firebase.json) and by the tests
 * (free ports). Each `stop()` ends the service's whole process group, so no JVM is left behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { freePort, listening, spawnService, waitForPort } from './proc.js';

export interface LocalService {
  /** `127.0.0.1:PORT`. */
  host: string;
  port: number;
  stop(): Promise<void>;
}

let sdkRoot: string | undefined;

/** A file of the gcloud SDK: next to the gcloud on PATH if possible (fast), else from `gcloud info`. */
export function gcloudComponent(relative: string, component: string): string {
  if (sdkRoot === undefined) {
    try {
      const gcloud = realpathSync(execFileSync('sh', ['-c', 'command -v gcloud'], { encoding: 'utf8' }).trim());
      const guess = dirname(dirname(gcloud)); // <root>/bin/gcloud
      if (existsSync(join(guess, 'platform'))) sdkRoot = guess;
    } catch {}
    sdkRoot ??= execFileSync('gcloud', ['info', '--format=value(installation.sdk_root)'], { encoding: 'utf8' }).trim();
  }
  const path = join(sdkRoot, relative);
  if (!existsSync(path)) throw new Error(`${component} is not installed (${path} is missing): gcloud components install ${component}`);
  return path;
}

/** Polls until `ready()` holds; fails early with the service's output if it exits. */
async function waitUntil(
  what: string,
  ready: () => Promise<boolean> | boolean,
  svc: { output(): string; child: { exitCode: number | null } },
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (svc.child.exitCode !== null) throw new Error(`${what} exited during start:\n${svc.output()}`);
    if (await ready()) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs} ms:\n${svc.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts a service and returns its stop. Stopping waits until nothing listens on its port any
 * more: a launcher can exit while the JVM it forked is still shutting down and holding the port,
 * so waiting for the launcher alone would let a caller exit with an emulator still running.
 */
async function withCleanup(svc: ReturnType<typeof spawnService>, port: number, start: () => Promise<void>): Promise<() => Promise<void>> {
  const killGroup = () => {
    try {
      if (svc.child.pid !== undefined) process.kill(-svc.child.pid, 'SIGKILL');
    } catch {}
  };
  process.once('exit', killGroup);
  const stop = async () => {
    await svc.stop();
    const deadline = Date.now() + 10_000;
    while (await listening(port)) {
      if (Date.now() > deadline) killGroup();
      if (Date.now() > deadline + 5_000) throw new Error(`port ${port} is still in use after stopping its service`);
      await new Promise((r) => setTimeout(r, 100));
    }
    process.removeListener('exit', killGroup);
  };
  try {
    await start();
  } catch (err) {
    await stop();
    throw err;
  }
  return stop;
}

/** A small heap and the quick JIT tier: a 2-core machine, light loads. */
const JAVA_OPTS = '-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1';

export async function startFirestoreEmulator(opts: { port?: number; timeoutMs?: number } = {}): Promise<LocalService> {
  const port = opts.port ?? (await freePort());
  const host = `127.0.0.1:${port}`;
  const svc = spawnService(
    gcloudComponent('platform/cloud-firestore-emulator/cloud_firestore_emulator', 'cloud-firestore-emulator'),
    ['start', '--host=127.0.0.1', `--port=${port}`],
    {
      JAVA_OPTS,
    },
  );
  const stop = await withCleanup(svc, port, () =>
    waitUntil(
      'the Firestore emulator',
      async () => {
        try {
          return (await fetch(`http://${host}/`)).ok;
        } catch {
          return false;
        }
      },
      svc,
      opts.timeoutMs ?? 60_000,
    ),
  );
  return { host, port, stop };
}

export async function startPubSubEmulator(opts: { port?: number; dataDir: string; timeoutMs?: number }): Promise<LocalService> {
  const port = opts.port ?? (await freePort());
  mkdirSync(opts.dataDir, { recursive: true }); // the launcher requires it to exist
  const svc = spawnService(
    gcloudComponent('platform/pubsub-emulator/bin/cloud-pubsub-emulator', 'pubsub-emulator'),
    ['--host=127.0.0.1', `--port=${port}`, `--data-dir=${opts.dataDir}`],
    {
      JAVA_OPTS,
      METADATA_SERVER_DETECTION: 'none',
    },
  );
  const stop = await withCleanup(svc, port, () =>
    waitUntil('the Pub/Sub emulator', () => /Server started, listening on/.test(svc.output()), svc, opts.timeoutMs ?? 60_000),
  );
  return { host: `127.0.0.1:${port}`, port, stop };
}

export async function startRedisServer(opts: { port?: number; dir?: string } = {}): Promise<LocalService> {
  const port = opts.port ?? (await freePort());
  // With a directory, data is kept there (append-only file) across restarts; without, nothing is written.
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', ''];
  if (opts.dir) {
    mkdirSync(opts.dir, { recursive: true });
    args.push('--appendonly', 'yes', '--dir', opts.dir);
  } else {
    args.push('--appendonly', 'no');
  }
  const svc = spawnService('redis-server', args);
  const stop = await withCleanup(svc, port, async () => {
    const exited = new Promise<never>((_, reject) => {
      svc.child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before listening:\n${svc.output()}`)));
    });
    exited.catch(() => {}); // only awaited while starting
    await Promise.race([waitForPort(port, '127.0.0.1', 15_000), exited]);
  });
  return { host: `127.0.0.1:${port}`, port, stop };
}
