/**
 * The one typed configuration table. Every setting has a name, an environment variable, a
 * default, a validator and a description; `loadConfig` reads the environment once at start and
 * fails fast with a message naming the variable. README's configuration section and
 * `.env.example` list the same rows.
 */
import { z } from 'zod';

interface Setting<T> {
  env: string;
  default: T;
  schema: z.ZodType<T>;
  doc: string;
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');

function setting<T>(env: string, def: T, schema: z.ZodType<T>, doc: string): Setting<T> {
  return { env, default: def, schema, doc };
}

const KiB = 1024;

export const CONFIG_TABLE = {
  port: setting('PORT', 8080, int(0, 65535), 'TCP port `npm start` listens on (0 picks a free one).'),
  host: setting('PATCHBAY_HOST', '0.0.0.0', z.string().min(1), 'Interface `npm start` binds.'),
  mode: setting(
    'PATCHBAY_MODE',
    'embedded' as 'embedded' | 'google',
    z.enum(['embedded', 'google']),
    'Adapter set: `embedded` (SQLite, local files, in-process bus) or `google` (Firestore, Redis, Pub/Sub, GCS).',
  ),
  dataDir: setting('PATCHBAY_DATA_DIR', './data', z.string().min(1), 'Where embedded mode keeps its database, blobs and generated secret.'),
  jwtSecret: setting(
    'PATCHBAY_JWT_SECRET',
    '',
    z.string().refine((s) => s === '' || s.length >= 32, 'must be at least 32 characters'),
    'HMAC secret for tokens (32+ chars). Empty: generated once into `<dataDir>/jwt-secret`.',
  ),
  tokenTtlSeconds: setting('PATCHBAY_TOKEN_TTL_S', 30 * 24 * 3600, int(60), 'Lifetime of tokens from `/v1/auth/anonymous`.'),
  ticketTtlSeconds: setting('PATCHBAY_TICKET_TTL_S', 60, int(5, 3600), 'Lifetime of a stream ticket (browser SSE credential).'),
  anonymousAuth: setting('PATCHBAY_ANONYMOUS_AUTH', true as boolean, bool, 'Whether `POST /v1/auth/anonymous` issues tokens.'),
  maxBodyBytes: setting('PATCHBAY_MAX_BODY_BYTES', 1024 * KiB, int(1024), 'Largest request body accepted (413 `too_large`).'),
  maxPatchBytes: setting('PATCHBAY_MAX_PATCH_BYTES', 256 * KiB, int(16), 'Largest patch, as JSON text (413 `too_large`).'),
  maxOps: setting('PATCHBAY_MAX_OPS', 1000, int(1), 'Most operations in one patch (413 `too_large`).'),
  maxStateBytes: setting('PATCHBAY_MAX_STATE_BYTES', 512 * KiB, int(16), 'Largest scope state, as JSON text, initial or after a patch (413 `too_large`).'),
  maxPathDepth: setting('PATCHBAY_MAX_PATH_DEPTH', 32, int(1, 1000), 'Most segments in a JSON Pointer of a patch (413 `too_large`).'),
  maxValueDepth: setting('PATCHBAY_MAX_VALUE_DEPTH', 64, int(1, 1000), 'Deepest nesting of a JSON value in a patch or state (413 `too_large`).'),
  maxGroup: setting('PATCHBAY_MAX_GROUP', 256, int(1, 10000), 'Most patches committed in one group (one ledger transaction) for a hot scope.'),
  ackAfter: setting(
    'PATCHBAY_ACK_AFTER',
    'auto' as 'auto' | 'commit' | 'publish',
    z.enum(['auto', 'commit', 'publish']),
    "When a patch is acknowledged: `commit` (as soon as it is committed; the cache put and the publish follow), `publish` (after its publish too; the cache put goes out alongside and is not waited for), `auto` (`commit` in embedded mode, `publish` in google mode, where Cloud Functions and Cloud Run throttle an instance's CPU once it has answered, which would hold back work left after the ack; set `commit` there only with CPU always allocated).",
  ),
  nearCacheBytes: setting(
    'PATCHBAY_NEAR_CACHE_BYTES',
    64 * 1024 * KiB,
    int(0),
    'Each instance keeps the states it committed last, up to this many bytes of memory (estimated from their shape; see README, Limits), so a commit on a scope whose head it wrote skips the hot cache read. 0 turns it off.',
  ),
  sseMaxMs: setting('PATCHBAY_SSE_MAX_MS', 300_000, int(1000), 'An SSE stream ends cleanly after this long (keep it below the platform request timeout).'),
  sseHeartbeatMs: setting('PATCHBAY_SSE_HEARTBEAT_MS', 15_000, int(100), 'Interval of SSE heartbeat comment lines.'),
  sseRetryMs: setting('PATCHBAY_SSE_RETRY_MS', 1000, int(0), '`retry:` hint sent to SSE clients.'),
  publishMarkMs: setting(
    'PATCHBAY_PUBLISH_MARK_MS',
    100,
    int(0, 60_000),
    'Published watermarks are written at most this often per scope (one ledger write instead of one per group).',
  ),
  sweepIntervalMs: setting('PATCHBAY_SWEEP_INTERVAL_MS', 10_000, int(100), 'How often the outbox sweeper looks for committed but unpublished patches.'),
  sweepAgeMs: setting('PATCHBAY_SWEEP_AGE_MS', 5_000, int(0), 'A commit younger than this is left to its own writer by the sweeper.'),
  bundlePatches: setting(
    'PATCHBAY_BUNDLE_PATCHES',
    1000,
    int(1, 1_000_000),
    "Cold storage: patches per bundle. The bundler writes a scope's bundles once this many patches are unbundled (earlier only for patches leaving the retention window).",
  ),
  bundleMaxBytes: setting(
    'PATCHBAY_BUNDLE_MAX_BYTES',
    8 * 1024 * KiB,
    int(1024),
    'Cold storage: a bundle is cut before its uncompressed NDJSON passes this size (a single larger patch gets a bundle of its own). Bounds reader memory.',
  ),
  snapshotEvery: setting(
    'PATCHBAY_SNAPSHOT_EVERY',
    10_000,
    int(1),
    'Cold storage: the bundler writes a snapshot of the state at every multiple of this index; rebuilds start from the latest one.',
  ),
  retainPatches: setting(
    'PATCHBAY_RETAIN_PATCHES',
    1000,
    int(0),
    "Retention: the hot log (ledger) keeps at least a scope's last N patches; older bundled patches are trimmed from it. Retries are recognised only inside the retention window.",
  ),
  retainMinutes: setting(
    'PATCHBAY_RETAIN_MINUTES',
    60,
    int(0),
    'Retention: the hot log also keeps every patch younger than this many minutes (0: age keeps nothing).',
  ),
  bundleIntervalMs: setting(
    'PATCHBAY_BUNDLE_INTERVAL_MS',
    60_000,
    int(0),
    'How often a long-running process (`npm start`) runs the bundler (0: never; Cloud Functions use the `bundle` function on Cloud Scheduler instead).',
  ),
  bundleLeaseMs: setting(
    'PATCHBAY_BUNDLE_LEASE_MS',
    120_000,
    int(1000),
    "Lease the bundler takes on each scope it works on (renewed while it works); a crashed bundler's scope is free again after this long.",
  ),
  bundleBudgetMs: setting(
    'PATCHBAY_BUNDLE_BUDGET_MS',
    240_000,
    int(1000),
    "A bundler run starts no new scope after this long (keep it below the `bundle` function's timeout); the next run goes on from there.",
  ),
  trimChunk: setting(
    'PATCHBAY_TRIM_CHUNK',
    500,
    int(1, 100_000),
    "Most hot-log records one trim transaction removes (Firestore also stops at one transaction's writes: a delete per record and per retry record).",
  ),
  cacheBytes: setting(
    'PATCHBAY_CACHE_BYTES',
    128 * 1024 * KiB,
    int(0),
    "Embedded hot cache: bytes of memory (estimated from the states' shape; see README, Limits) the cached states may hold; the least recently used are dropped. 0 turns it off.",
  ),
  sqliteSync: setting(
    'PATCHBAY_SQLITE_SYNC',
    'full' as 'full' | 'normal',
    z.enum(['full', 'normal']),
    'SQLite `synchronous` pragma: `full` survives power loss, `normal` only process crashes.',
  ),
  corsOrigin: setting('PATCHBAY_CORS_ORIGIN', '*', z.string(), '`Access-Control-Allow-Origin` sent on every response (empty: no CORS headers).'),
  gcpProject: setting('PATCHBAY_GCP_PROJECT', '', z.string(), 'Google Cloud project id (google mode; required there).'),
  firestoreDatabase: setting('PATCHBAY_FIRESTORE_DATABASE', '(default)', z.string().min(1), 'Firestore database id.'),
  firestoreRoot: setting('PATCHBAY_FIRESTORE_ROOT', 'scopes', z.string().regex(/^[A-Za-z0-9_-]{1,100}$/), 'Top-level Firestore collection of scope heads.'),
  firestoreDirect: setting(
    'PATCHBAY_FIRESTORE_DIRECT',
    true as boolean,
    bool,
    "Whether a commit first tries one batch conditional on the head version this instance wrote last (one round trip, no read) before a transaction (docs/architecture.md, 'Firestore commits').",
  ),
  pubsubTopic: setting(
    'PATCHBAY_PUBSUB_TOPIC',
    'patchbay-patches',
    z.string().regex(/^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$/),
    'Pub/Sub topic every committed patch is published to.',
  ),
  pubsubSubscriptionPrefix: setting(
    'PATCHBAY_PUBSUB_SUBSCRIPTION_PREFIX',
    'patchbay-sse',
    z.string().regex(/^[A-Za-z][A-Za-z0-9._~+%-]{2,200}$/),
    'Prefix of the per-instance streaming-pull subscriptions that feed SSE.',
  ),
  bucket: setting('PATCHBAY_BUCKET', '', z.string(), 'Cloud Storage bucket for bundles, snapshots and uploads (google mode; required there).'),
  upstashUrl: setting('UPSTASH_REDIS_REST_URL', '', z.string(), 'Upstash Redis REST URL (google mode; required there).'),
  upstashToken: setting('UPSTASH_REDIS_REST_TOKEN', '', z.string(), 'Upstash Redis REST token (google mode; required there).'),
  cachePrefix: setting('PATCHBAY_CACHE_PREFIX', 'pb:state:', z.string().min(1), 'Key prefix of hot-cache entries in Redis.'),
  cacheTtlSeconds: setting('PATCHBAY_CACHE_TTL_S', 7 * 24 * 3600, int(0), 'Expiry of hot-cache entries in Redis (0: none).'),
  firestoreEmulatorHost: setting(
    'FIRESTORE_EMULATOR_HOST',
    '',
    z.string(),
    'host:port of a Firestore emulator (read by the client library; local development).',
  ),
  pubsubEmulatorHost: setting('PUBSUB_EMULATOR_HOST', '', z.string(), 'host:port of a Pub/Sub emulator (read by the client library; local development).'),
  storageEmulatorHost: setting('STORAGE_EMULATOR_HOST', '', z.string(), 'URL of a local Cloud Storage server (read by the client library; local development).'),
  logLevel: setting(
    'PATCHBAY_LOG',
    'info' as 'info' | 'error' | 'off',
    z.enum(['info', 'error', 'off']),
    'Request log: one JSON line per request (`info`), errors only, or none.',
  ),
};

type Table = typeof CONFIG_TABLE;
export type Config = { [K in keyof Table]: Table[K]['default'] };

export class ConfigError extends Error {}

/** Reads every setting from `env` (default: process.env); throws a ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, s] of Object.entries(CONFIG_TABLE) as Array<[string, Setting<unknown>]>) {
    if (key in overrides) {
      out[key] = (overrides as Record<string, unknown>)[key];
      continue;
    }
    const raw = env[s.env];
    if (raw === undefined || raw === '') {
      out[key] = s.default;
      continue;
    }
    const parsed = s.schema.safeParse(raw);
    if (parsed.success) out[key] = parsed.data;
    else problems.push(`${s.env}=${JSON.stringify(raw)}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  }
  if (out.mode === 'google') {
    for (const key of ['gcpProject', 'bucket', 'upstashUrl', 'upstashToken', 'jwtSecret'] as const) {
      if (out[key] === '') problems.push(`${CONFIG_TABLE[key].env} must be set when PATCHBAY_MODE=google`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  return out as Config;
}
