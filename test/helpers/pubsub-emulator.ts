/**
 * The real Pub/Sub emulator for one test file (infra/local/emulators.ts starts it on a free port, with a
 * throwaway data directory), and clients for it. Clients reach it through `apiEndpoint`, which puts
 * the library in emulator mode (plain gRPC, no credentials); the process-wide PUBSUB_EMULATOR_HOST
 * is left alone so files running in parallel cannot point each other at the wrong emulator.
 * Call `skipWithout('gcloud', 'the Pub/Sub emulator')` before starting it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PubSub } from '@google-cloud/pubsub';
import { startPubSubEmulator as startProcess } from '../../infra/local/emulators.js';

export interface PubSubEmulator {
  /** `127.0.0.1:PORT`, the value PUBSUB_EMULATOR_HOST would take. */
  host: string;
  projectId: string;
  /** A new client for this emulator; stop() closes every client made here. */
  pubsub(): PubSub;
  stop(): Promise<void>;
}

export async function startPubSubEmulator(opts: { projectId?: string; timeoutMs?: number } = {}): Promise<PubSubEmulator> {
  // The client's auth library otherwise probes the GCE metadata server on the first call (slow,
  // and a MetadataLookupWarning per client).
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  const projectId = opts.projectId ?? `demo-patchbay-${process.pid}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'patchbay-pubsub-'));
  let emulator: Awaited<ReturnType<typeof startProcess>> | undefined;
  // A free port can be taken by another process before the JVM binds it: try a new one.
  for (let attempt = 1; emulator === undefined; attempt++) {
    try {
      emulator = await startProcess({ dataDir, timeoutMs: opts.timeoutMs });
    } catch (err) {
      if (attempt >= 3 || !/Address already in use|BindException/.test(String(err))) {
        rmSync(dataDir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const started = emulator;
  const clients: PubSub[] = [];
  return {
    host: started.host,
    projectId,
    pubsub() {
      const client = new PubSub({ projectId, apiEndpoint: started.host });
      clients.push(client);
      return client;
    },
    async stop() {
      await Promise.allSettled(clients.map((c) => c.close()));
      await started.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
