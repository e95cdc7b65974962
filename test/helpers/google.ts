/**
 * The whole Google stack on local stand-ins for one test file: the Firestore and Pub/Sub emulators,
 * redis-server behind the Upstash REST gateway, the project's Cloud Storage server. The client
 * libraries find them through the *_EMULATOR_HOST variables, set for this test process (vitest
 * runs each file in its own process). `config(ns)` gives a namespace of its own (collection, topic,
 * subscriptions, cache keys) to each server a test starts.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { startFirestoreEmulator, startPubSubEmulator, startRedisServer } from '../../infra/local/emulators.js';
import { startGcsServer } from '../../infra/local/gcs-server.js';
import { startUpstashGateway } from '../../infra/local/upstash-gateway.js';
import type { Config } from '../../shared/config.js';
import { signingKey } from './gcs.js';
import { tempDir } from './server.js';

export interface GoogleStack {
  projectId: string;
  /** The Cloud Storage stand-in's URL. */
  gcsUrl: string;
  pubsubHost: string;
  /** Settings for a server with its own namespace on this stack. */
  config(ns?: string): Partial<Config>;
  stop(): Promise<void>;
}

export async function startGoogleStack(): Promise<GoogleStack> {
  process.env.METADATA_SERVER_DETECTION = 'none';
  const projectId = `demo-patchbay-${process.pid}`;
  const dir = tempDir('patchbay-google-');
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [firestore, pubsub, redis] = await Promise.all([startFirestoreEmulator(), startPubSubEmulator({ dataDir: `${dir}/pubsub` }), startRedisServer()]);
    stops.push(firestore.stop, pubsub.stop, redis.stop);
    const token = 'test-token';
    const gateway = await startUpstashGateway({ redisUrl: `redis://${redis.host}`, port: 0, token });
    stops.push(gateway.close);
    // The uploads' signed URLs are signed offline with this key, and the stand-in verifies them with it.
    const key = signingKey(undefined, dir);
    const gcs = await startGcsServer({ port: 0, buckets: ['patchbay-test'], signers: { [key.client_email]: key.private_key } });
    stops.push(gcs.close);
    process.env.FIRESTORE_EMULATOR_HOST = firestore.host;
    process.env.PUBSUB_EMULATOR_HOST = pubsub.host;
    process.env.STORAGE_EMULATOR_HOST = gcs.url;
    return {
      projectId,
      gcsUrl: gcs.url,
      pubsubHost: pubsub.host,
      config: (ns = randomUUID().slice(0, 8)) => ({
        mode: 'google',
        gcpProject: projectId,
        firestoreRoot: `scopes-${ns}`,
        pubsubTopic: `patches-${ns}`,
        pubsubSubscriptionPrefix: `sse-${ns}`,
        bucket: 'patchbay-test',
        gcsSigningKeyFile: key.file as string,
        upstashUrl: gateway.url,
        upstashToken: token,
        cachePrefix: `pb:${ns}:`,
        jwtSecret: 'test-secret-test-secret-test-secret!!',
        // The Pub/Sub emulator sends no OIDC token with its pushes (test/oidc.test.ts checks the tokens).
        oidc: 'off',
      }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
