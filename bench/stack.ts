/**
 * Emulator mode's stand-ins, in a process of their own so the Upstash gateway and the Cloud
 * Storage server (both Node servers in the data path of every write) never share the load
 * generator's event loop: the Firestore and Pub/Sub emulators and redis-server (infra/local/emulators.ts)
 * plus the gateway and the GCS server, as test/helpers/google.ts starts them (with a local
 * service-account key that signs upload URLs and that the GCS server trusts). Prints one line
 * `{"ready": true, "env": {...}}` with the variables the server under test needs; SIGTERM stops
 * everything it started.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFirestoreEmulator, startPubSubEmulator, startRedisServer } from '../infra/local/emulators.js';
import { startGcsServer } from '../infra/local/gcs-server.js';
import { startUpstashGateway } from '../infra/local/upstash-gateway.js';

const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-stack-'));
const stops: Array<() => Promise<void>> = [];
const stopAll = async () => {
  // In parallel: each emulator may take seconds to let go of its port, and the parent waits.
  await Promise.all(stops.map((s) => s().catch(() => {})));
  rmSync(dir, { recursive: true, force: true });
};

try {
  const [firestore, pubsub, redis] = await Promise.all([startFirestoreEmulator(), startPubSubEmulator({ dataDir: join(dir, 'pubsub') }), startRedisServer()]);
  stops.push(firestore.stop, pubsub.stop, redis.stop);
  const token = 'bench-token';
  const gateway = await startUpstashGateway({ redisUrl: `redis://${redis.host}`, port: 0, token });
  stops.push(gateway.close);
  const bucket = 'patchbay-bench';
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = {
    type: 'service_account',
    client_email: 'uploads@demo-patchbay-bench.iam.gserviceaccount.com',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
  const keyFile = join(dir, 'signing-key.json');
  writeFileSync(keyFile, JSON.stringify(key), { mode: 0o600 });
  const gcs = await startGcsServer({ port: 0, buckets: [bucket], signers: { [key.client_email]: key.private_key } });
  stops.push(gcs.close);
  const env = {
    PATCHBAY_MODE: 'google',
    PATCHBAY_GCP_PROJECT: `demo-patchbay-bench-${process.pid}`,
    PATCHBAY_BUCKET: bucket,
    UPSTASH_REDIS_REST_URL: gateway.url,
    UPSTASH_REDIS_REST_TOKEN: token,
    PATCHBAY_JWT_SECRET: 'bench-secret-bench-secret-bench-secret!!',
    FIRESTORE_EMULATOR_HOST: firestore.host,
    PUBSUB_EMULATOR_HOST: pubsub.host,
    STORAGE_EMULATOR_HOST: gcs.url,
    PATCHBAY_GCS_SIGNING_KEY_FILE: keyFile,
    METADATA_SERVER_DETECTION: 'none',
    // The benchmark calls no internal endpoint, and the Pub/Sub emulator sends no OIDC token.
    PATCHBAY_OIDC: 'off',
  };
  console.log(JSON.stringify({ ready: true, env }));
} catch (err) {
  console.error(err);
  await stopAll();
  process.exit(1);
}

const stop = async () => {
  await stopAll();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
