/**
 * Cloud Storage for tests: patchbay's own GCS server (infra/local/gcs-server.ts) in this process, and
 * real @google-cloud/storage clients pointed at it. No credentials: a custom endpoint turns the
 * client's auth off.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

/** A service account's key as `openssl genrsa` and a JSON key file give it: what signs V4 URLs offline. */
export interface SigningKey {
  client_email: string;
  private_key: string;
}

/** A new RSA service-account key (2048 bits), and optionally its JSON key file under `dir`. */
export function signingKey(email = 'uploads@demo-patchbay.iam.gserviceaccount.com', dir?: string): SigningKey & { file?: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = { client_email: email, private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
  if (dir === undefined) return key;
  const file = join(dir, 'signing-key.json');
  writeFileSync(file, JSON.stringify({ type: 'service_account', ...key }));
  return { ...key, file };
}

/**
 * Cloud Storage's finalize notification of an object, as Pub/Sub push delivers it (a
 * `JSON_API_V1` payload: the object's resource, read from the server as the JSON API has it),
 * posted to a `push` function at `pushUrl`; answers the push's status.
 */
export async function postFinalize(pushUrl: string, gcsUrl: string, bucket: string, object: string): Promise<number> {
  const res = await fetch(`${gcsUrl}/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(object)}`);
  if (res.status !== 200) throw new Error(`no object ${object}: ${res.status}`);
  const resource = (await res.json()) as { generation: string };
  const envelope = {
    message: {
      data: Buffer.from(JSON.stringify(resource)).toString('base64'),
      attributes: {
        notificationConfig: `projects/_/buckets/${bucket}/notificationConfigs/1`,
        eventType: 'OBJECT_FINALIZE',
        payloadFormat: 'JSON_API_V1',
        bucketId: bucket,
        objectId: object,
        objectGeneration: String(resource.generation),
        eventTime: new Date().toISOString(),
      },
      messageId: String(Date.now()),
      publishTime: new Date().toISOString(),
    },
    subscription: 'projects/demo-patchbay/subscriptions/uploads',
  };
  const push = await fetch(`${pushUrl}/push/uploads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(envelope) });
  await push.text();
  return push.status;
}
