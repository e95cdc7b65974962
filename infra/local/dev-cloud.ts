/**
 * `npm run dev:cloud`: the Google stack on this machine. Starts every local stand-in on the ports in
 * firebase.json (the Firestore and Pub/Sub emulators, redis-server behind the Upstash REST gateway,
 * the project's Cloud Storage server, the Firebase Auth emulator), points the client libraries at
 * them, and serves the same v1 API on PORT with the Google adapters, accepting the Auth emulator's
 * ID tokens (project PATCHBAY_FIREBASE_PROJECT, default the Google project, a `demo-` one). Ctrl-C stops everything it started. `--config FILE` reads
 * the ports from another firebase.json (tests use free ports).
 *
 * Kept on disk under PATCHBAY_DATA_DIR/cloud: Pub/Sub emulator data, Redis (append-only file),
 * Cloud Storage objects, the token secret, and cli.env: the environment that points the operator
 * CLI at this stack. The Firestore and Auth emulators keep their data in memory: a
 * restart starts with an empty ledger and no Firebase users.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type App, createApp } from '../../shared/app.js';
import { ConfigError, loadConfig } from '../../shared/config.js';
import { exitOnSignal, listen } from '../../shared/http/listen.js';
import { startAuthEmulator } from './auth-emulator.js';
import { startFirestoreEmulator, startPubSubEmulator, startRedisServer } from './emulators.js';
import { startGcsServer } from './gcs-server.js';
import { portFree } from './proc.js';
import { startUpstashGateway } from './upstash-gateway.js';

interface Ports {
  firestore: number;
  pubsub: number;
  storage: number;
  redis: number;
  upstash: number;
  auth: number;
}

export function emulatorPorts(file = 'firebase.json'): Ports {
  const { emulators } = JSON.parse(readFileSync(file, 'utf8')) as { emulators: Record<string, { port: number }> };
  const port = (name: string) => {
    const p = emulators[name]?.port;
    if (typeof p !== 'number') throw new ConfigError(`${file}: emulators.${name}.port is missing`);
    return p;
  };
  return {
    firestore: port('firestore'),
    pubsub: port('pubsub'),
    storage: port('storage'),
    redis: port('redis'),
    upstash: port('upstash'),
    auth: port('auth'),
  };
}

/**
 * Fails in one line, before anything starts, when PORT or an emulator port is taken (a second
 * dev:cloud, or `npm start` on the same PORT), instead of starting every emulator and then dying on
 * EADDRINUSE.
 */
async function checkPortsFree(port: number, host: string, ports: Ports): Promise<void> {
  const wanted: Array<[string, number, string]> = [
    ['PORT', port, host],
    ...Object.entries(ports).map(([name, p]): [string, number, string] => [`firebase.json emulators.${name}.port`, p, '127.0.0.1']),
  ];
  for (const [what, p, h] of wanted) {
    if (p !== 0 && !(await portFree(p, h)))
      throw new ConfigError(`dev:cloud: port ${p} (${what}) is already in use on ${h}; stop what listens there or choose another port`);
  }
}

function secret(file: string): string {
  try {
    writeFileSync(file, randomBytes(48).toString('base64url'), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return readFileSync(file, 'utf8').trim();
}

/**
 * The local service account that signs the uploads' Cloud Storage URLs (a JSON key file, made once
 * and kept with the data), which the GCS server trusts: as deployed, minus IAM.
 */
function signingKey(file: string): { client_email: string; private_key: string } {
  try {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const key = {
      type: 'service_account',
      client_email: 'uploads@demo-patchbay.iam.gserviceaccount.com',
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    };
    writeFileSync(file, JSON.stringify(key), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}

async function main(): Promise<void> {
  const base = loadConfig(); // validates what the user set before anything starts
  const dir = resolve(base.dataDir, 'cloud');
  mkdirSync(dir, { recursive: true });
  const { values: args } = parseArgs({ options: { config: { type: 'string', default: 'firebase.json' } } });
  const ports = emulatorPorts(args.config);
  await checkPortsFree(base.port, base.host, ports);
  const stops: Array<() => Promise<void>> = [];
  const log = (message: string) => console.log(JSON.stringify({ severity: 'INFO', message }));
  let app: App | undefined;
  const stopAll = async () => {
    if (app) await app.close().catch(() => {});
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
  try {
    const firestore = await startFirestoreEmulator({ port: ports.firestore });
    stops.push(firestore.stop);
    log(`Firestore emulator on ${firestore.host}`);
    const pubsub = await startPubSubEmulator({ port: ports.pubsub, dataDir: join(dir, 'pubsub') });
    stops.push(pubsub.stop);
    log(`Pub/Sub emulator on ${pubsub.host}`);
    const redis = await startRedisServer({ port: ports.redis, dir: join(dir, 'redis') });
    stops.push(redis.stop);
    const token = 'dev-token';
    const gateway = await startUpstashGateway({ redisUrl: `redis://${redis.host}`, port: ports.upstash, token });
    stops.push(gateway.close);
    log(`redis-server on ${redis.host}, Upstash REST gateway on ${gateway.url}`);
    const bucket = base.bucket || 'patchbay-dev';
    const keyFile = join(dir, 'gcs-signing-key.json');
    const key = signingKey(keyFile);
    const gcs = await startGcsServer({ port: ports.storage, dir: join(dir, 'gcs'), buckets: [bucket], signers: { [key.client_email]: key.private_key } });
    stops.push(gcs.close);
    log(`Cloud Storage server on ${gcs.url}, bucket ${bucket}`);

    const project = base.gcpProject || 'demo-patchbay';
    const firebaseProject = base.firebaseProject || project;
    const auth = await startAuthEmulator({ port: ports.auth, projectId: firebaseProject });
    stops.push(auth.stop);
    log(`Firebase Auth emulator on ${auth.host}, project ${firebaseProject}`);

    const stack = {
      PATCHBAY_MODE: 'google',
      PATCHBAY_GCP_PROJECT: project,
      PATCHBAY_BUCKET: bucket,
      UPSTASH_REDIS_REST_URL: gateway.url,
      UPSTASH_REDIS_REST_TOKEN: token,
      PATCHBAY_JWT_SECRET: base.jwtSecret || secret(join(dir, 'jwt-secret')),
      FIRESTORE_EMULATOR_HOST: firestore.host,
      PUBSUB_EMULATOR_HOST: pubsub.host,
      STORAGE_EMULATOR_HOST: gcs.url,
      PATCHBAY_GCS_SIGNING_KEY_FILE: keyFile,
      PATCHBAY_FIREBASE_PROJECT: firebaseProject,
      FIREBASE_AUTH_EMULATOR_HOST: auth.host,
      METADATA_SERVER_DETECTION: 'none',
      // No OIDC checks on the internal endpoints: the Pub/Sub emulator sends no token.
      PATCHBAY_OIDC: 'off',
    };
    const env = { ...process.env, ...stack };
    // For the operator CLI (and other tools) against this stack: `set -a; . <dir>/cli.env`.
    writeFileSync(
      join(dir, 'cli.env'),
      Object.entries(stack)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
      { mode: 0o600 },
    );
    // The client libraries read the emulator hosts from the environment.
    Object.assign(process.env, env);
    const config = loadConfig(env);
    app = await createApp(config);
    const http = await listen(app.handler, config.port, config.host, config);
    stops.push(http.close);
    const port = http.port;
    console.log(
      JSON.stringify({ severity: 'INFO', message: `patchbay listening on http://localhost:${port} (google stack on local emulators, data in ${dir})`, port }),
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
  exitOnSignal(async () => {
    log('stopping');
    await stopAll();
  });
}

main().catch((err) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
