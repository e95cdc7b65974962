/**
 * Starts the real Firestore emulator (the gcloud launcher, not a mock) on a free port for one test
 * file, and hands out clients for it. Use one emulator and one project id per test file;
 * `reset()` wipes the project between tests, `stop()` kills the launcher and its JVM.
 *
 * Guard a file with `describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))` from
 * ./proc.ts: skipped locally when gcloud is missing, a failure in CI.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Firestore } from '@google-cloud/firestore';
import { freePort, spawnService, waitForPort } from './proc.js';

export interface FirestoreEmulator {
  /** host:port of the emulator. */
  host: string;
  projectId: string;
  /** A new client for this emulator and project (no credentials needed); stop() terminates it. */
  firestore(): Firestore;
  /** Deletes every document of the project. */
  reset(): Promise<void>;
  /** Terminates the clients, then kills the launcher and its JVM. */
  stop(): Promise<void>;
}

const LAUNCHER = join('platform', 'cloud-firestore-emulator', 'cloud_firestore_emulator');
let sdkRoot: string | undefined;

/** The gcloud SDK root, computed once: from gcloud's real path if that works (fast), else `gcloud info` (about 1-4 s). */
function launcher(): string {
  if (sdkRoot === undefined) {
    let root: string | undefined;
    try {
      const gcloud = realpathSync(execFileSync('sh', ['-c', 'command -v gcloud'], { encoding: 'utf8' }).trim());
      const guess = dirname(dirname(gcloud)); // <root>/bin/gcloud
      if (existsSync(join(guess, LAUNCHER))) root = guess;
    } catch {}
    root ??= execFileSync('gcloud', ['info', '--format=value(installation.sdk_root)'], { encoding: 'utf8' }).trim();
    sdkRoot = root;
  }
  const path = join(sdkRoot, LAUNCHER);
  if (!existsSync(path)) throw new Error(`the Firestore emulator is not installed (${path} is missing): gcloud components install cloud-firestore-emulator`);
  return path;
}

async function waitReady(host: string, output: () => string, exited: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited()) throw new Error(`the Firestore emulator exited during start:\n${output()}`);
    try {
      const res = await fetch(`http://${host}/`);
      if (res.ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the Firestore emulator did not answer on ${host} after ${timeoutMs} ms:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts an emulator; `projectId` should be unique to the test file. */
export async function startFirestoreEmulator(projectId = `demo-patchbay-${process.pid}`): Promise<FirestoreEmulator> {
  // The client otherwise probes the GCE metadata server (a warning, and sometimes seconds).
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  // The Node client lets FIRESTORE_EMULATOR_HOST override the host we pass: refuse a different one.
  const envHost = process.env.FIRESTORE_EMULATOR_HOST;
  if (envHost && envHost !== host) throw new Error(`FIRESTORE_EMULATOR_HOST=${envHost} is set; unset it so tests use their own emulator`);
  const svc = spawnService(launcher(), ['start', `--host=127.0.0.1`, `--port=${port}`]);
  const clients: Firestore[] = [];
  const stop = async () => {
    await Promise.allSettled(clients.splice(0).map((c) => c.terminate()));
    await svc.stop();
  };
  try {
    await waitForPort(port, '127.0.0.1', 60_000);
    await waitReady(host, svc.output, () => svc.child.exitCode !== null);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host,
    projectId,
    firestore() {
      const db = new Firestore({ projectId, host, ssl: false });
      clients.push(db);
      return db;
    },
    async reset() {
      const res = await fetch(`http://${host}/emulator/v1/projects/${projectId}/databases/(default)/documents`, { method: 'DELETE' });
      if (!res.ok) throw new Error(`resetting the Firestore emulator failed: ${res.status} ${await res.text()}`);
    },
    stop,
  };
}
