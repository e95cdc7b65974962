/**
 * The real Pub/Sub emulator for `*.emulator.test.ts` files: started on a free port through its
 * launcher (faster than `gcloud beta emulators pubsub start`), with a throwaway data directory,
 * and stopped together with its JVM. Clients reach it through `apiEndpoint`, which puts the
 * library in emulator mode (plain gRPC, no credentials); the process-wide PUBSUB_EMULATOR_HOST is
 * left alone so files running in parallel cannot point each other at the wrong emulator.
 * Call `skipWithout('gcloud', 'the Pub/Sub emulator')` before starting it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PubSub } from '@google-cloud/pubsub';
import { freePort, spawnService } from './proc.js';

export interface PubSubEmulator {
  /** `127.0.0.1:PORT`, the value PUBSUB_EMULATOR_HOST would take. */
  host: string;
  projectId: string;
  /** A new client for this emulator; stop() closes every client made here. */
  pubsub(): PubSub;
  stop(): Promise<void>;
}

const LAUNCHER = 'platform/pubsub-emulator/bin/cloud-pubsub-emulator';
const READY = /Server started, listening on (\d+)/;

/** The launcher's path: next to the gcloud on PATH when it is a plain install, else from `gcloud info`. */
function launcherPath(): string {
  try {
    const gcloud = execFileSync('sh', ['-c', 'command -v gcloud'], { encoding: 'utf8' }).trim();
    const guess = join(dirname(dirname(realpathSync(gcloud))), LAUNCHER); // <sdk>/bin/gcloud
    if (existsSync(guess)) return guess;
  } catch {}
  const root = execFileSync('gcloud', ['info', '--format=value(installation.sdk_root)'], { encoding: 'utf8' }).trim();
  const path = join(root, LAUNCHER);
  if (!existsSync(path)) throw new Error(`the Pub/Sub emulator is not installed (${path}); run: gcloud components install pubsub-emulator`);
  return path;
}

export async function startPubSubEmulator(opts: { projectId?: string; timeoutMs?: number } = {}): Promise<PubSubEmulator> {
  // The client's auth library otherwise probes the GCE metadata server on the first call (slow,
  // and a MetadataLookupWarning per client).
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  const projectId = opts.projectId ?? `demo-patchbay-${process.pid}`;
  const launcher = launcherPath();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  // freePort() can lose its port to another process before the JVM binds it: retry on a new one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'patchbay-pubsub-'));
    const svc = spawnService(launcher, [`--host=127.0.0.1`, `--port=${port}`, `--data-dir=${dataDir}`], {
      METADATA_SERVER_DETECTION: 'none',
      // A small heap and the quick JIT tier: the machine is shared, the load is a few thousand messages.
      JAVA_OPTS: '-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1',
    });
    const killOnExit = () => {
      try {
        if (svc.child.pid !== undefined) process.kill(-svc.child.pid, 'SIGKILL');
      } catch {}
    };
    process.once('exit', killOnExit); // a crashed test run must not leave a JVM behind
    const cleanup = async () => {
      await svc.stop();
      process.removeListener('exit', killOnExit);
      rmSync(dataDir, { recursive: true, force: true });
    };
    const deadline = Date.now() + timeoutMs;
    let ready = false;
    while (Date.now() < deadline && svc.child.exitCode === null) {
      if (READY.test(svc.output())) {
        ready = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!ready) {
      const out = svc.output();
      await cleanup();
      if (attempt < 3 && /Address already in use|BindException/.test(out)) continue;
      throw new Error(`the Pub/Sub emulator did not start on port ${port} within ${timeoutMs} ms:\n${out}`);
    }
    const host = `127.0.0.1:${port}`;
    const clients: PubSub[] = [];
    return {
      host,
      projectId,
      pubsub() {
        const client = new PubSub({ projectId, apiEndpoint: host });
        clients.push(client);
        return client;
      },
      async stop() {
        await Promise.allSettled(clients.map((c) => c.close()));
        await cleanup();
      },
    };
  }
}
