/**
 * Cloud Storage for tests: patchbay's own GCS server (infra/local/gcs-server.ts) in this process, and
 * real @google-cloud/storage clients pointed at it. No credentials: a custom endpoint turns the
 * client's auth off.
 */
import { Storage } from '@google-cloud/storage';
import { type GcsServer, type GcsServerOptions, startGcsServer } from '../../infra/local/gcs-server.js';

export const GCS_PROJECT = 'demo-patchbay';

export interface TestGcs {
  server: GcsServer;
  url: string;
  /** A client using the `apiEndpoint` option (JSON calls under `/storage/v1`). */
  storage: Storage;
  close(): Promise<void>;
}

export function storageClient(url: string): Storage {
  return new Storage({ apiEndpoint: url, projectId: GCS_PROJECT });
}

export async function startTestGcs(opts: GcsServerOptions = {}): Promise<TestGcs> {
  const server = await startGcsServer(opts);
  return { server, url: server.url, storage: storageClient(server.url), close: () => server.close() };
}
