/**
 * The real Firestore emulator for one test file (infra/local/emulators.ts starts it on a free port), and
 * clients for it. Use one emulator and one project id per test file; `reset()` wipes the project
 * between tests, `stop()` terminates the clients and kills the launcher and its JVM.
 *
 * Guard a file with `describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))` from
 * ./proc.ts: skipped locally when gcloud is missing, a failure in CI.
 */
import { Firestore } from '@google-cloud/firestore';
import { startFirestoreEmulator as startProcess } from '../../infra/local/emulators.js';

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

/** Starts an emulator; `projectId` should be unique to the test file. */
export async function startFirestoreEmulator(projectId = `demo-patchbay-${process.pid}`): Promise<FirestoreEmulator> {
  // The client otherwise probes the GCE metadata server (a warning, and sometimes seconds).
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  const emulator = await startProcess();
  const { host } = emulator;
  // The Node client lets FIRESTORE_EMULATOR_HOST override the host we pass: refuse a different one.
  const envHost = process.env.FIRESTORE_EMULATOR_HOST;
  if (envHost && envHost !== host) {
    await emulator.stop();
    throw new Error(`FIRESTORE_EMULATOR_HOST=${envHost} is set; unset it so tests use their own emulator`);
  }
  const clients: Firestore[] = [];
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
    async stop() {
      await Promise.allSettled(clients.splice(0).map((c) => c.terminate()));
      await emulator.stop();
    },
  };
}
