/**
 * The one typed configuration table. Every setting has a name, an environment variable, a
 * default, a validator and a description; `loadConfig` reads the environment once at start and
 * fails fast with a message naming the variable, and resolves `auto` values. The rows are
 * grouped into sections (CONFIG_SECTIONS), and each module is given only its section's type.
 * README's configuration section and `.env.example` list the same rows.
 */
import proxyaddr from 'proxy-addr';
import { z } from 'zod';

interface Setting<T> {
  env: string;
  default: T;
  schema: z.ZodType<T>;
  doc: string;
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** A token bucket `<tokens>/<window>`, e.g. `100/5s`: bursts of up to 100, refilled evenly over 5 s. */
const rate = z.union([
  z.object({ tokens: z.number().int().min(1), windowMs: z.number().int().min(1) }),
  z
    .string()
    .regex(/^[1-9][0-9]{0,8}\/[1-9][0-9]{0,8}(ms|s|m|h)$/, 'must be <tokens>/<window>, e.g. 100/5s (units ms, s, m, h)')
    .transform((v) => {
      const [, tokens, n, unit] = /^([0-9]+)\/([0-9]+)([a-z]+)$/.exec(v) as RegExpExecArray;
      return { tokens: Number(tokens), windowMs: Number(n) * (UNITS[unit as string] as number) };
    }),
]);

function validTrust(v: string): boolean {
  if (v === '' || v === 'auto' || /^[0-9]{1,2}$/.test(v)) return true;
  try {
    proxyaddr.compile(v.split(',').map((p) => p.trim()));
    return true;
  } catch {
    return false;
  }
}

/** `PATCHBAY_CORS_ORIGINS` as written; `loadConfig` resolves `auto` and `none`. */
type CorsSetting = 'auto' | '*' | 'none' | string[];

/** A serialized origin, `scheme://host[:port]`, exactly as browsers send it in `Origin`. */
export function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === v;
  } catch {
    return false;
  }
}

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

const corsOrigins: z.ZodType<CorsSetting> = z.union([
  z.enum(['auto', '*', 'none']),
  z.array(z.string().refine(isOrigin, 'must be an origin like https://app.example.com')),
  z
    .string()
    .transform(list)
    .refine(
      (l) => l.length > 0 && l.every(isOrigin),
      'must be auto, *, none, or comma-separated origins like https://app.example.com (no path, no trailing slash)',
    ),
]);

const emailList: z.ZodType<string[]> = z.union([
  z.array(z.email()),
  z
    .string()
    .transform((v) => list(v).map((e) => e.toLowerCase()))
    .refine((l) => l.every((e) => z.email().safeParse(e).success), 'must be comma-separated email addresses'),
]);

/** An http(s) URL with no query or fragment, without its trailing slash. */
const baseUrl = z
  .string()
  .refine((v) => {
    if (v === '') return true;
    try {
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && u.search === '' && u.hash === '';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL without query, e.g. https://REGION-PROJECT.cloudfunctions.net')
  .transform((v) => v.replace(/\/+$/, ''));

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
  firebaseProject: setting(
    'PATCHBAY_FIREBASE_PROJECT',
    '',
    z.string().regex(/^([a-z0-9][a-z0-9-]{2,61}[a-z0-9])?$/, 'must be a Firebase project id'),
    'Firebase project whose ID tokens (any sign-in provider it enables) are accepted as bearer tokens, verified with the Admin SDK; users are `firebase:<uid>`. Empty: Firebase tokens are refused. Works in both modes.',
  ),
  firebaseAuthEmulatorHost: setting(
    'FIREBASE_AUTH_EMULATOR_HOST',
    '',
    z.string(),
    'host:port of a Firebase Auth emulator (local development and tests). The Admin SDK then accepts unsigned tokens, so with a PATCHBAY_FIREBASE_PROJECT that is not a `demo-` project the process refuses to start.',
  ),
  maxBodyBytes: setting('PATCHBAY_MAX_BODY_BYTES', 1024 * KiB, int(1024), 'Largest request body accepted (413 `too_large`).'),
  maxDiscardBytes: setting(
    'PATCHBAY_MAX_DISCARD_BYTES',
    32 * 1024 * KiB,
    int(0),
    'A refused request body (too large, unauthorized...) is still read and dropped up to this many more bytes, so a client that is still sending receives the error response instead of a reset connection; a longer body gets the response and a closed connection.',
  ),
  headersTimeoutMs: setting(
    'PATCHBAY_HEADERS_TIMEOUT_MS',
    10_000,
    int(100),
    "`npm start`: a request's headers must arrive within this long (else Node answers 408 and closes).",
  ),
  bodyTimeoutMs: setting(
    'PATCHBAY_BODY_TIMEOUT_MS',
    30_000,
    int(100),
    'A request body must arrive within this long once reading starts (408 `request_timeout`). SSE streams are not affected: their requests have no body (see `PATCHBAY_SSE_MAX_MS`).',
  ),
  maxPatchBytes: setting('PATCHBAY_MAX_PATCH_BYTES', 256 * KiB, int(16), 'Largest patch, as JSON text (413 `too_large`).'),
  maxOps: setting('PATCHBAY_MAX_OPS', 1000, int(1), 'Most operations in one patch (413 `too_large`).'),
  maxBatch: setting(
    'PATCHBAY_MAX_BATCH',
    100,
    int(1, 10_000),
    'Most patches in one `POST /v1/batch` (413 `too_large`); each still counts as a write for the rate limits.',
  ),
  maxStateBytes: setting('PATCHBAY_MAX_STATE_BYTES', 512 * KiB, int(16), 'Largest scope state, as JSON text, initial or after a patch (413 `too_large`).'),
  maxPathDepth: setting('PATCHBAY_MAX_PATH_DEPTH', 32, int(1, 1000), 'Most segments in a JSON Pointer of a patch (413 `too_large`).'),
  maxValueDepth: setting('PATCHBAY_MAX_VALUE_DEPTH', 64, int(1, 1000), 'Deepest nesting of a JSON value in a patch or state (413 `too_large`).'),
  maxAccessUsers: setting(
    'PATCHBAY_MAX_ACCESS_USERS',
    100,
    int(0, 10_000),
    "Most users a scope's access may list, readers and writers together (413 `too_large`, `maxAccessUsers`). The list lives in the scope's head, read by every commit.",
  ),
  maxListPage: setting(
    'PATCHBAY_MAX_LIST_PAGE',
    100,
    int(1, 1000),
    'Most scopes in one page of `GET /v1/scopes`, and the page size when the request names no `limit` (a larger `limit` is 400 `invalid_request`).',
  ),
  maxConfigBytes: setting(
    'PATCHBAY_MAX_CONFIG_BYTES',
    256 * KiB,
    int(1024, 320 * KiB),
    "Largest domain configuration, as YAML or JSON text (413 `too_large`, `maxConfigBytes`). Its scope types' JSON Schemas are compiled once per configuration. At most 320 KiB: each version is kept as one record of the record store.",
  ),
  domainConfigDir: setting(
    'PATCHBAY_DOMAIN_CONFIG_DIR',
    '',
    z.string(),
    "A directory of static domain configurations, one file per domain named `<domain>.yaml`, `.yml` or `.json` (docs/domains.md), read once at start; a file that does not parse stops the process with its line and column. Empty: none. Until configurations are uploaded and versioned, this is how a domain's scope types are validated.",
  ),
  webhookMaxAttempts: setting(
    'PATCHBAY_WEBHOOK_MAX_ATTEMPTS',
    10,
    int(1, 1000),
    "Failed deliveries of one patch to one webhook before it is dead-lettered (a `webhook-dead` record the domain's admin lists) and delivery goes on with the scope's next patch. Retries back off from 1 s doubling to 60 s (embedded), or as the push subscription's retry policy says (google): 10 is about 4 minutes embedded.",
  ),
  webhookTimeoutMs: setting(
    'PATCHBAY_WEBHOOK_TIMEOUT_MS',
    10_000,
    int(100, 120_000),
    'A webhook must answer a delivery within this (connect to end of body), or the attempt fails. Redirects are not followed: a 3xx fails too.',
  ),
  webhookMaxResponseBytes: setting(
    'PATCHBAY_WEBHOOK_MAX_RESPONSE_BYTES',
    256 * KiB,
    int(0, 4 * 1024 * KiB),
    "Largest webhook response body read (its write-back patches, docs/domains.md); past it the delivery counts as delivered and the write-back is refused, recorded in the webhook's state.",
  ),
  webhookPrivateAddresses: setting(
    'PATCHBAY_WEBHOOK_PRIVATE_ADDRESSES',
    'auto' as 'auto' | 'allow' | 'refuse',
    z.enum(['auto', 'allow', 'refuse']),
    'Whether webhooks may be delivered to loopback, private, link-local (the metadata server) and other non-public addresses, checked on the address actually connected to: `refuse`, `allow`, or `auto` (`refuse` in google mode, `allow` in embedded mode, where a receiver on localhost is the normal case).',
  ),
  sessionTimeoutMs: setting(
    'PATCHBAY_SESSION_TIMEOUT_MS',
    60_000,
    int(1000, 3_600_000),
    'A session (`POST /v1/sessions`) closes this long after its last heartbeat or its last SSE stream naming it (`?session=`), with reason `timeout`: its guarantees run, its close hooks are delivered and its presence leaves (docs/uploads-and-sessions.md). The sweep finds such sessions, so they close within about one PATCHBAY_SWEEP_INTERVAL_MS after this.',
  ),
  sessionMaxPerUser: setting(
    'PATCHBAY_SESSION_MAX_PER_USER',
    10,
    int(1, 1000),
    'Most sessions one user may hold open at once (403 `quota_exceeded`, `sessionMaxPerUser`).',
  ),
  sessionMaxGuarantees: setting(
    'PATCHBAY_SESSION_MAX_GUARANTEES',
    16,
    int(0, 100),
    "Most guarantees one session may hold (413 `too_large`, `sessionMaxGuarantees`); each guarantee's patch is also held to PATCHBAY_MAX_PATCH_BYTES.",
  ),
  sessionMaxInfoBytes: setting(
    'PATCHBAY_SESSION_MAX_INFO_BYTES',
    4096,
    int(0, 64 * KiB),
    "Largest `info` a session's close may carry (`DELETE /v1/sessions/{id}`), as JSON text (413 `too_large`, `sessionMaxInfoBytes`); it is kept on the session record and sent in every close hook.",
  ),
  sessionClosedKeepMs: setting(
    'PATCHBAY_SESSION_CLOSED_KEEP_MS',
    3_600_000,
    int(0, 7 * 24 * 3_600_000),
    "How long a closed session's record is kept (ms) before the sweep deletes it: until then a late heartbeat or write naming it learns `409 session_closed`, and `GET /v1/sessions/{id}` shows what its close did; after, `404 session_not_found`.",
  ),
  presenceMaxStatusBytes: setting(
    'PATCHBAY_PRESENCE_MAX_STATUS_BYTES',
    1024,
    int(0, 64 * KiB),
    'Largest presence status (`PUT /v1/scopes/{id}/presence`), as JSON text (413 `too_large`, `presenceMaxStatusBytes`).',
  ),
  presenceMaxScopes: setting(
    'PATCHBAY_PRESENCE_MAX_SCOPES',
    32,
    int(1, 1000),
    'Most scopes one session may be present in at once (413 `too_large`, `presenceMaxScopes`).',
  ),
  presenceMaxListed: setting(
    'PATCHBAY_PRESENCE_MAX_LISTED',
    1000,
    int(1, 10_000),
    'Most presence entries `GET /v1/scopes/{id}/presence` answers and a stream with `?presence=1` follows, per scope (the oldest first; later joiners are not shown).',
  ),
  rateSession: setting(
    'PATCHBAY_RATE_SESSION',
    { tokens: 120, windowMs: 60_000 },
    rate,
    'Session requests per user (open, heartbeat, close, guarantees), as `<tokens>/<window>` (`120/1m`). 429 `rate_limited`.',
  ),
  ratePresence: setting(
    'PATCHBAY_RATE_PRESENCE',
    { tokens: 600, windowMs: 60_000 },
    rate,
    'Presence updates (`PUT /v1/scopes/{id}/presence`) per user, as `<tokens>/<window>` (`600/1m`: 10 a second sustained, for cursors). 429 `rate_limited`.',
  ),
  rateStreamControl: setting(
    'PATCHBAY_RATE_STREAM_CONTROL',
    { tokens: 120, windowMs: 60_000 },
    rate,
    'Changes to a multiplexed stream (`POST /v1/events/{stream}`: scopes added or removed) per user or, without a token, per address, as `<tokens>/<window>` (`120/1m`). 429 `rate_limited`.',
  ),
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
  limits: setting(
    'PATCHBAY_LIMITS',
    'on' as 'on' | 'off',
    z.enum(['on', 'off']),
    '`off` turns every per-client limit off: the rate limits, the per-user quotas and the per-user stream cap (benchmarks, trusted single-tenant deployments). The per-instance stream cap stays.',
  ),
  rateSignIn: setting(
    'PATCHBAY_RATE_SIGNIN',
    { tokens: 30, windowMs: 600_000 },
    rate,
    '`POST /v1/auth/anonymous` per client address (an IPv6 address counts by its /64): a token bucket written `<tokens>/<window>` (`30/10m`: bursts of 30, then one every 20 s). 429 `rate_limited`.',
  ),
  rateCreate: setting(
    'PATCHBAY_RATE_CREATE',
    { tokens: 60, windowMs: 60_000 },
    rate,
    'Scope creation per user, as `<tokens>/<window>` (`60/1m`). 429 `rate_limited`.',
  ),
  rateWrite: setting(
    'PATCHBAY_RATE_WRITE',
    { tokens: 100, windowMs: 5_000 },
    rate,
    'Patches per user, as `<tokens>/<window>` (`100/5s`: bursts of 100, 20 per second sustained). 429 `rate_limited`.',
  ),
  rateList: setting(
    'PATCHBAY_RATE_LIST',
    { tokens: 60, windowMs: 60_000 },
    rate,
    "Pages of `GET /v1/scopes` (a user's scopes) per user, as `<tokens>/<window>` (`60/1m`). 429 `rate_limited`.",
  ),
  rateStateAt: setting(
    'PATCHBAY_RATE_STATE_AT',
    { tokens: 120, windowMs: 60_000 },
    rate,
    "A scope's state at a past index (`GET /v1/scopes/{id}/at/{ii}`, each a rebuild from the nearest snapshot, bundles and the log) per user, or per client address for a public scope read without a token, as `<tokens>/<window>` (`120/1m`). 429 `rate_limited`.",
  ),
  rateQuery: setting(
    'PATCHBAY_RATE_QUERY',
    { tokens: 120, windowMs: 60_000 },
    rate,
    'Named queries (`POST /v1/domains/{domain}/queries/{name}`) per user, as `<tokens>/<window>` (`120/1m`). 429 `rate_limited`.',
  ),
  rateServiceTokens: setting(
    'PATCHBAY_RATE_SERVICE_TOKENS',
    { tokens: 20, windowMs: 3_600_000 },
    rate,
    'Service tokens a domain admin may mint (`POST /v1/domains/{domain}/tokens`) per user, as `<tokens>/<window>` (`20/1h`). 429 `rate_limited`.',
  ),
  rateWriteKiB: setting(
    'PATCHBAY_RATE_WRITE_KIB',
    { tokens: 8192, windowMs: 60_000 },
    rate,
    "Bytes of patches per user, in KiB, as `<tokens>/<window>` (`8192/1m`: bursts of 8 MiB, 8 MiB a minute sustained, about 136 KiB/s). Each patch takes its JSON size in KiB, rounded up (at least 1; a patch above the burst takes the whole burst). It bounds how fast one user fills the log, which the bytes quota does not (replacing a value keeps the state's size). 429 `rate_limited`.",
  ),
  rateClaim: setting(
    'PATCHBAY_RATE_CLAIM',
    { tokens: 30, windowMs: 600_000 },
    rate,
    'Domain claims started or re-checked (`POST /v1/domains/{domain}/claim`) per user, as `<tokens>/<window>` (`30/10m`). Each takes one token and may make the server look the domain up once. 429 `rate_limited`.',
  ),
  rateUpload: setting(
    'PATCHBAY_RATE_UPLOAD',
    { tokens: 30, windowMs: 60_000 },
    rate,
    'Uploads started (`POST /v1/uploads`) per user, as `<tokens>/<window>` (`30/1m`). 429 `rate_limited`.',
  ),
  quotaFileBytes: setting(
    'PATCHBAY_QUOTA_FILE_BYTES',
    1024 * 1024 * KiB,
    int(0),
    'Most bytes of uploaded files one user may hold (pending uploads count their declared size; 403 `quota_exceeded`; 0: no quota). Counted like the other quotas (embedded: in memory, from zero at each start; Google: in Upstash).',
  ),
  quotaScopes: setting('PATCHBAY_QUOTA_SCOPES', 1000, int(0), 'Most scopes one user may own (403 `quota_exceeded`; 0: no quota).'),
  quotaBytes: setting(
    'PATCHBAY_QUOTA_BYTES',
    64 * 1024 * KiB,
    int(0),
    "Most bytes of state (JSON text, summed over the scopes a user owns) before the user's creates and patches are refused (403 `quota_exceeded`; 0: no quota). Patches of only `remove` and `test` operations are still accepted, so a user over it can shrink their scopes.",
  ),
  sseMaxPerUser: setting(
    'PATCHBAY_SSE_MAX_PER_USER',
    32,
    int(0),
    'Most concurrent SSE streams of one user, over all instances (429 `rate_limited`; 0: no cap).',
  ),
  sseMaxPerInstance: setting('PATCHBAY_SSE_MAX_PER_INSTANCE', 1000, int(0), 'Most concurrent SSE streams one instance serves (503 `unavailable`; 0: no cap).'),
  trustProxy: setting(
    'PATCHBAY_TRUST_PROXY',
    'auto',
    z.string().refine(validTrust, 'must be auto, empty, a hop count, or addresses and subnets (loopback, 10.0.0.0/8, ...)'),
    'Which proxies may name the client address in `X-Forwarded-For`: `auto` (`1` in google mode, where Cloud Run and Cloud Functions put one Google front end before the service and its socket address is the same for every client; empty in embedded mode), empty (none: the socket address counts), a hop count (`1` directly on Cloud Run or Cloud Functions, `2` behind a Google load balancer), or addresses and subnets (`loopback`, `10.0.0.0/8`, ...; the `proxy-addr` syntax).',
  ),
  limitsPrefix: setting(
    'PATCHBAY_LIMITS_PREFIX',
    'pb:limits:',
    z.string().min(1),
    'Key prefix of rate-limit buckets, usage counters and stream slots in Redis (google mode).',
  ),
  sseMaxMs: setting('PATCHBAY_SSE_MAX_MS', 300_000, int(1000), 'An SSE stream ends cleanly after this long (keep it below the platform request timeout).'),
  sseHeartbeatMs: setting('PATCHBAY_SSE_HEARTBEAT_MS', 15_000, int(100), 'Interval of SSE heartbeat comment lines.'),
  sseRetryMs: setting('PATCHBAY_SSE_RETRY_MS', 1000, int(0), '`retry:` hint sent to SSE clients.'),
  sseMaxScopes: setting(
    'PATCHBAY_SSE_MAX_SCOPES',
    100,
    int(1, 1000),
    'Most scopes one multiplexed stream (`GET /v1/events`) carries, at open and after additions (413 `too_large`). The stream takes one stream slot whatever its number of scopes.',
  ),
  historyWaitMaxMs: setting(
    'PATCHBAY_HISTORY_WAIT_MAX_MS',
    25_000,
    int(0, 600_000),
    'Longest a history request with `wait` (long polling) is held waiting for a patch; a longer `wait` is cut to this (0: `wait` is ignored). Keep it below the platform request timeout.',
  ),
  publishMarkMs: setting(
    'PATCHBAY_PUBLISH_MARK_MS',
    100,
    int(0, 60_000),
    'Published watermarks are written at most this often per scope (one ledger write instead of one per group).',
  ),
  scopeLeaders: setting(
    'PATCHBAY_SCOPE_LEADERS',
    true as boolean,
    bool,
    "Google mode: each scope is committed by one instance at a time, its leader, which holds the scope's write lease; the others hand their requests to it (docs/architecture.md, 'Scope leaders'). Off: every instance commits to every scope (hot scopes then contend across instances). Embedded mode has one process, always the leader.",
  ),
  writeLeaseMs: setting(
    'PATCHBAY_WRITE_LEASE_MS',
    10_000,
    int(1000, 600_000),
    "How long a scope's write lease lasts; its leader renews it every third of this while it writes. A leader that dies or stops answering is replaced after at most this long.",
  ),
  writeLeaseIdleMs: setting(
    'PATCHBAY_WRITE_LEASE_IDLE_MS',
    5_000,
    int(0, 600_000),
    "A leader releases a scope's write lease after this long without a write to it, so the scope's next writer's instance leads it (0: release as soon as its queue is empty).",
  ),
  handoverBus: setting(
    'PATCHBAY_HANDOVER_BUS',
    true as boolean,
    bool,
    "Google mode, with scope leaders: a request handed to a scope's leader, and its answer, travel on the bus (Pub/Sub, signed with a key derived from PATCHBAY_JWT_SECRET); one not answered within PATCHBAY_HANDOVER_INBOX_AFTER_MS goes to the scope's inbox in Firestore, the durable way (docs/architecture.md, 'Scope leaders'). Off: the inbox alone (a Firestore write and a listener each way).",
  ),
  handoverInboxAfterMs: setting(
    'PATCHBAY_HANDOVER_INBOX_AFTER_MS',
    3_000,
    int(0, 600_000),
    "With PATCHBAY_HANDOVER_BUS: how long a request handed over on the bus waits for the leader's answer there before the lease is asked again (a leader that left: this instance takes it) and, while another instance still leads, the request is written to the scope's inbox, the durable way any later leader answers (a lost message, a bus that fails). Longer than a loaded leader's commit: an inbox write for a request that is merely slow adds Firestore load where it hurts. 0: the lease is asked again and the document written at once.",
  ),
  handoverTimeoutMs: setting(
    'PATCHBAY_HANDOVER_TIMEOUT_MS',
    30_000,
    int(1000, 600_000),
    "A request handed to a scope's leader and not answered within this is refused with `503 unavailable` (the leader may still commit it: a retry with the same (session, si) is recognised).",
  ),
  sweepIntervalMs: setting('PATCHBAY_SWEEP_INTERVAL_MS', 10_000, int(100), 'How often the outbox sweeper looks for committed but unpublished patches.'),
  domainCacheMs: setting(
    'PATCHBAY_DOMAIN_CACHE_MS',
    10_000,
    int(0, 600_000),
    "How long an instance keeps a domain's record (admins, origins) before reading it again: the most a change made on another instance takes to apply here.",
  ),
  claimTimeoutMs: setting(
    'PATCHBAY_CLAIM_TIMEOUT_MS',
    900_000,
    int(1000, 7 * 24 * 3_600_000),
    'A domain claim is checked (when it starts, when its claimant asks again, and by every `sweep`) for this long, then fails with `timeout` (15 minutes: new DNS records often take minutes to be seen).',
  ),
  claimLocalhost: setting(
    'PATCHBAY_CLAIM_LOCALHOST',
    'auto' as 'auto' | 'on' | 'off',
    z.enum(['auto', 'on', 'off']),
    'Whether a claim of `localhost` or `*.localhost` (with any port) succeeds at once, without a check, for any signed-in user: local development. `auto`: `on` in embedded mode, `off` in google mode (where such claims are refused).',
  ),
  claimAnonymous: setting(
    'PATCHBAY_CLAIM_ANONYMOUS',
    false as boolean,
    bool,
    "Whether anonymous users may claim domains (other than localhost). Off: an anonymous identity lives only as long as its token, and a domain's admin should not be lost with it (403 `forbidden`).",
  ),
  claimMaxPending: setting(
    'PATCHBAY_CLAIM_MAX_PENDING',
    5,
    int(1, 1000),
    'Most claims one user may have pending (being checked) at once (403 `quota_exceeded`, quota `claims`).',
  ),
  serviceTokenMaxTtlSeconds: setting(
    'PATCHBAY_SERVICE_TOKEN_MAX_TTL_S',
    90 * 24 * 3600,
    int(60),
    'Longest lifetime a domain admin may give a service token (`POST /v1/domains/{domain}/tokens`, `ttlSeconds`; 400 `invalid_request` past it).',
  ),
  serviceTokenCheckMs: setting(
    'PATCHBAY_SERVICE_TOKEN_CHECK_MS',
    10_000,
    int(0, 600_000),
    "How long an instance trusts its last look at a service token's record (it exists, it is not revoked) before reading it again: a revoked token stops working on every instance within this long (at once on the instance that revoked it). 0: every request reads the record.",
  ),
  maxServiceTokens: setting(
    'PATCHBAY_MAX_SERVICE_TOKENS',
    50,
    int(1, 1000),
    'Most live (unrevoked, unexpired) service tokens one domain may hold (403 `quota_exceeded`, `serviceTokens`).',
  ),
  sweepAgeMs: setting('PATCHBAY_SWEEP_AGE_MS', 5_000, int(0), 'A commit younger than this is left to its own writer by the sweeper.'),
  deleteRetentionMs: setting(
    'PATCHBAY_DELETE_RETENTION_MS',
    30 * 24 * 3_600_000,
    int(0),
    "How long a deleted scope's id stays reserved (its tombstone is kept; nobody, its former owner included, can create a scope under it). Then the sweeper removes the tombstone and the id is free. Default 30 days.",
  ),
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
  corsOrigins: setting(
    'PATCHBAY_CORS_ORIGINS',
    'auto' as CorsSetting,
    corsOrigins,
    'Which browser origins may call the API cross-origin: a comma-separated list of origins (`https://app.example.com,http://localhost:5173`; a listed origin is echoed in `Access-Control-Allow-Origin`, with `Vary: Origin`), `*` (any origin), `none`, or `auto` (`*` in embedded mode, for local development; `none` in google mode). A preflight from any other origin gets no CORS headers.',
  ),
  oidc: setting(
    'PATCHBAY_OIDC',
    'auto' as 'auto' | 'on' | 'off',
    z.enum(['auto', 'on', 'off']),
    'Whether the internal endpoints (`push`, `sweep`, `bundle`) require a Google-signed OIDC token (`Authorization: Bearer`), as a second line behind IAM. `auto`: `on` in google mode (then `PATCHBAY_OIDC_AUDIENCE` and `PATCHBAY_OIDC_EMAILS` must be set, or the instance does not start), `off` in embedded mode. Set `off` only for local development: the Pub/Sub emulator sends no token.',
  ),
  oidcAudience: setting(
    'PATCHBAY_OIDC_AUDIENCE',
    '',
    baseUrl,
    'Base URL of the internal endpoints, e.g. `https://REGION-PROJECT.cloudfunctions.net`: a token must be issued for `<base>/push/<consumer>`, `<base>/sweep` or `<base>/bundle`, the audiences Pub/Sub push and Cloud Scheduler put in their tokens by default.',
  ),
  oidcEmails: setting(
    'PATCHBAY_OIDC_EMAILS',
    [] as string[],
    emailList,
    "Comma-separated service-account emails whose OIDC tokens the internal endpoints accept (the push subscriptions' and Cloud Scheduler jobs' service accounts); the token must say `email_verified`.",
  ),
  oidcCertsUrl: setting(
    'PATCHBAY_OIDC_CERTS_URL',
    'https://www.googleapis.com/oauth2/v1/certs',
    z.url({ protocol: /^https?$/ }),
    "Where Google's token-signing certificates (PEM, by key id) are fetched; they are cached as long as the answer's `Cache-Control: max-age` says. Change it only for tests.",
  ),
  gcpProject: setting('PATCHBAY_GCP_PROJECT', '', z.string(), 'Google Cloud project id (google mode; required there).'),
  mirrorUrl: setting(
    'PATCHBAY_MIRROR_URL',
    '',
    z.string().refine((v) => v === '' || /^postgres(ql)?:\/\//.test(v), 'must be a postgres:// URL'),
    'The Postgres database of the queryable mirror on the Google stack (`postgres://user:password@host:port/db`; the user creates schemas and roles). Empty: no mirror there. Embedded mode uses PGlite under `<dataDir>/mirror`.',
  ),
  mirrorQueryTimeoutMs: setting('PATCHBAY_MIRROR_QUERY_TIMEOUT_MS', 5_000, int(1, 600_000), 'Statement timeout of a named query.'),
  mirrorMaxRows: setting('PATCHBAY_MIRROR_MAX_ROWS', 1_000, int(0, 100_000), 'Most rows a named query returns (more are cut, with `truncated: true`).'),
  liveQueryIntervalMs: setting(
    'PATCHBAY_LIVE_QUERY_INTERVAL_MS',
    250,
    int(0, 60_000),
    'A live query (`GET /v1/domains/{domain}/queries/{name}/events`) runs again at most once per this interval; changes meanwhile are merged into its next run.',
  ),
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
  maxUploadBytes: setting(
    'PATCHBAY_MAX_UPLOAD_BYTES',
    32 * 1024 * KiB,
    int(1),
    'Largest uploaded file (`POST /v1/uploads` with a larger `size`: 413 `too_large`; a larger object that lands is deleted and its upload marked `failed`).',
  ),
  uploadTypes: setting(
    'PATCHBAY_UPLOAD_TYPES',
    ['*/*'],
    z.string().transform(list),
    'MIME types an upload may have, comma-separated; `type/*` allows a whole type, `*/*` any (415 `unsupported_media_type` otherwise).',
  ),
  uploadUrlTtlSeconds: setting(
    'PATCHBAY_UPLOAD_URL_TTL_S',
    900,
    int(1, 7 * 24 * 3600),
    'How long an upload URL works, in seconds; an upload not finished by then (plus PATCHBAY_UPLOAD_GRACE_S) becomes `expired`.',
  ),
  uploadGraceSeconds: setting(
    'PATCHBAY_UPLOAD_GRACE_S',
    300,
    int(0),
    'Time after an upload URL expires before the sweep marks its upload `expired` (a PUT that started in time may still be finishing).',
  ),
  downloadUrlTtlSeconds: setting('PATCHBAY_DOWNLOAD_URL_TTL_S', 900, int(1, 7 * 24 * 3600), 'How long a download URL works, in seconds.'),
  publicDownloadUrlTtlSeconds: setting(
    'PATCHBAY_PUBLIC_DOWNLOAD_URL_TTL_S',
    7 * 24 * 3600,
    int(0, 7 * 24 * 3600),
    "How long a public upload's download URL works, in seconds (at most 7 days, Cloud Storage's limit for V4 URLs). Such a URL is the same for every caller for half that time (its signing time is rounded down to a multiple of it), and its file may be cached publicly (`Cache-Control: public, max-age=<half>`), so browsers and CDNs reuse it; it keeps working until it expires even if the scope is made private meanwhile. 0: public files get short URLs like private ones (PATCHBAY_DOWNLOAD_URL_TTL_S, `Cache-Control: private`).",
  ),
  publicUrl: setting(
    'PATCHBAY_PUBLIC_URL',
    '',
    z.string().refine((v) => v === '' || isOrigin(v), 'must be an origin, scheme://host[:port]'),
    "The server's origin as clients reach it, for the embedded signed file URLs (empty: the request's `Host`, over http).",
  ),
  gcsSigningKeyFile: setting(
    'PATCHBAY_GCS_SIGNING_KEY_FILE',
    '',
    z.string(),
    "A service-account JSON key file ({client_email, private_key}) that signs Cloud Storage URLs offline (google mode; development and tests). Empty (deployed): the runtime's service account signs through IAM signBlob, which needs roles/iam.serviceAccountTokenCreator on itself.",
  ),
  logLevel: setting(
    'PATCHBAY_LOG',
    'info' as 'info' | 'error' | 'off',
    z.enum(['info', 'error', 'off']),
    'Request log: one JSON line per request (`info`), errors only, or none.',
  ),
};

type Table = typeof CONFIG_TABLE;
/** Every setting as the table parses it (`PATCHBAY_ACK_AFTER` may still be `auto`). */
export type Settings = { [K in keyof Table]: Table[K]['default'] };
/** The resolved ack point (`auto` is decided by `loadConfig`, so no module asks which cloud it runs on). */
export type AckAfter = 'commit' | 'publish';
/**
 * The origins that may call the API cross-origin, resolved: `*` (any) or a list (empty: none).
 * Read by shared/http/cors.ts.
 */
export type CorsOrigins = '*' | string[];
/** The configuration as `loadConfig` returns it: every setting, with `auto` values resolved. */
export type Config = Omit<Settings, 'ackAfter' | 'oidc' | 'corsOrigins' | 'claimLocalhost'> & {
  ackAfter: AckAfter;
  oidc: 'on' | 'off';
  corsOrigins: CorsOrigins;
  claimLocalhost: 'on' | 'off';
};

/**
 * The table's rows grouped by the part of the service that reads them; each module's
 * configuration type is made of its section(s) only. Every row is in exactly one section
 * (test/config.test.ts): a new row goes into the list of the module that reads it.
 */
export const CONFIG_SECTIONS = {
  /** The process: where it listens, which adapters, where embedded data lives, the request log. */
  server: ['port', 'host', 'mode', 'dataDir', 'corsOrigins', 'logLevel', 'headersTimeoutMs', 'bodyTimeoutMs'],
  /** Tokens and stream tickets (shared/http/auth.ts). */
  auth: ['jwtSecret', 'tokenTtlSeconds', 'ticketTtlSeconds', 'anonymousAuth', 'firebaseProject', 'firebaseAuthEmulatorHost'],
  /** Who may call the internal endpoints: `push`, `sweep`, `bundle` (shared/http/internal-auth.ts). */
  oidc: ['oidc', 'oidcAudience', 'oidcEmails', 'oidcCertsUrl'],
  /** Guarantee 7's limits: the handler checks the body, the engine patches and states. */
  limits: [
    'maxBodyBytes',
    'maxDiscardBytes',
    'maxPatchBytes',
    'maxOps',
    'maxBatch',
    'maxStateBytes',
    'maxPathDepth',
    'maxValueDepth',
    'maxAccessUsers',
    'maxListPage',
  ],
  /** The write path, the near cache and the outbox (shared/engine/). */
  engine: [
    'maxGroup',
    'ackAfter',
    'nearCacheBytes',
    'publishMarkMs',
    'sweepIntervalMs',
    'sweepAgeMs',
    'deleteRetentionMs',
    'scopeLeaders',
    'writeLeaseMs',
    'writeLeaseIdleMs',
    'handoverBus',
    'handoverInboxAfterMs',
    'handoverTimeoutMs',
  ],
  /** Rate limits, per-user quotas and stream caps (shared/http/limits.ts and its LimitStore). */
  quotas: [
    'limits',
    'rateSignIn',
    'rateCreate',
    'rateWrite',
    'rateWriteKiB',
    'rateList',
    'rateStateAt',
    'rateQuery',
    'rateClaim',
    'rateServiceTokens',
    'rateSession',
    'ratePresence',
    'rateUpload',
    'rateStreamControl',
    'quotaScopes',
    'quotaBytes',
    'quotaFileBytes',
    'sseMaxPerUser',
    'sseMaxPerInstance',
    'trustProxy',
    'limitsPrefix',
  ],
  /** Domains: their records, claims and settings (shared/domains/). */
  domains: [
    'domainCacheMs',
    'claimTimeoutMs',
    'claimLocalhost',
    'claimAnonymous',
    'claimMaxPending',
    'serviceTokenMaxTtlSeconds',
    'serviceTokenCheckMs',
    'maxServiceTokens',
    'maxConfigBytes',
    'domainConfigDir',
  ],
  /** Webhooks: delivery of committed patches to a domain's endpoints (shared/domains/webhooks.ts). */
  webhooks: ['webhookMaxAttempts', 'webhookTimeoutMs', 'webhookMaxResponseBytes', 'webhookPrivateAddresses'],
  /** Sessions, their guarantees and close hooks, and presence (shared/sessions/). */
  sessions: [
    'sessionTimeoutMs',
    'sessionMaxPerUser',
    'sessionMaxGuarantees',
    'sessionMaxInfoBytes',
    'sessionClosedKeepMs',
    'presenceMaxStatusBytes',
    'presenceMaxScopes',
    'presenceMaxListed',
  ],
  /** The queryable mirror and named queries (shared/mirror/, the Mirror port's adapters). */
  mirror: ['mirrorUrl', 'mirrorQueryTimeoutMs', 'mirrorMaxRows', 'liveQueryIntervalMs'],
  /** Uploads and downloads by signed URL (shared/uploads/, the FileStore port's adapters). */
  uploads: [
    'maxUploadBytes',
    'uploadTypes',
    'uploadUrlTtlSeconds',
    'uploadGraceSeconds',
    'downloadUrlTtlSeconds',
    'publicDownloadUrlTtlSeconds',
    'publicUrl',
    'gcsSigningKeyFile',
  ],
  /** Live streams (shared/http/routes/events.ts, mux.ts) and long polling (history.ts). */
  sse: ['sseMaxMs', 'sseHeartbeatMs', 'sseRetryMs', 'sseMaxScopes', 'historyWaitMaxMs'],
  /** Cold storage, retention and the bundler (shared/cold/). */
  cold: [
    'bundlePatches',
    'bundleMaxBytes',
    'snapshotEvery',
    'retainPatches',
    'retainMinutes',
    'bundleIntervalMs',
    'bundleLeaseMs',
    'bundleBudgetMs',
    'trimChunk',
  ],
  /** The embedded adapters (shared/adapters/embedded/). */
  embedded: ['cacheBytes', 'sqliteSync'],
  /** The Google adapters and emulators (shared/adapters/google/). */
  google: [
    'gcpProject',
    'firestoreDatabase',
    'firestoreRoot',
    'firestoreDirect',
    'pubsubTopic',
    'pubsubSubscriptionPrefix',
    'bucket',
    'upstashUrl',
    'upstashToken',
    'cachePrefix',
    'cacheTtlSeconds',
    'firestoreEmulatorHost',
    'pubsubEmulatorHost',
    'storageEmulatorHost',
  ],
} as const satisfies Record<string, ReadonlyArray<keyof Table>>;

type Sections = typeof CONFIG_SECTIONS;
/** The settings of one section. */
export type Section<S extends keyof Sections> = Pick<Config, Sections[S][number]>;
export type ServerConfig = Section<'server'>;
export type AuthConfig = Section<'auth'>;
export type LimitsConfig = Section<'limits'>;
export type SseConfig = Section<'sse'>;
export type QuotaConfig = Section<'quotas'>;
export type ColdConfig = Section<'cold'>;
export type EmbeddedConfig = Section<'embedded'>;
export type GoogleConfig = Section<'google'>;
export type OidcConfig = Section<'oidc'>;
export type DomainsConfig = Section<'domains'>;
export type WebhooksConfig = Section<'webhooks'>;
export type MirrorConfig = Section<'mirror'>;
export type SessionsConfig = Section<'sessions'>;
export type UploadsConfig = Section<'uploads'>;
/** What the engine reads: its section, the limits, the snapshot spacing its rebuilds use, and the secret that signs hand-over messages (./engine/handover-bus.ts). */
export type EngineConfig = Section<'engine'> & LimitsConfig & Pick<ColdConfig, 'snapshotEvery'> & Pick<Section<'auth'>, 'jwtSecret'>;
/** What the HTTP handler reads: the limits, the SSE section, CORS, timeouts, and the project (trace ids in logs). */
export type HttpConfig = LimitsConfig &
  SseConfig &
  Pick<ServerConfig, 'corsOrigins' | 'headersTimeoutMs' | 'bodyTimeoutMs'> &
  Pick<GoogleConfig, 'gcpProject'> &
  Pick<DomainsConfig, 'maxConfigBytes'>;

export class ConfigError extends Error {}

/** Settings that were removed, and what replaced them. */
const RETIRED: Record<string, string> = {
  PATCHBAY_CORS_ORIGIN: 'use PATCHBAY_CORS_ORIGINS (a list of origins, *, none or auto)',
  PATCHBAY_CACHE_MAX_SCOPES: 'the embedded cache is bounded by bytes now: use PATCHBAY_CACHE_BYTES',
};

/** Reads every setting from `env` (default: process.env); throws a ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Settings> = {}): Config {
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
  // A handed request must have time to reach the inbox (the durable way) before it is refused.
  if (out.handoverBus === true && (out.handoverInboxAfterMs as number) >= (out.handoverTimeoutMs as number)) {
    problems.push(
      `${CONFIG_TABLE.handoverInboxAfterMs.env} must be less than ${CONFIG_TABLE.handoverTimeoutMs.env} (a request must reach the inbox before it is refused)`,
    );
  }
  // Variables that are gone: setting one stops the process instead of being silently ignored.
  for (const [name, instead] of Object.entries(RETIRED)) if (env[name] !== undefined) problems.push(`${name} is no longer read: ${instead}`);
  // Secure by default: in google mode the internal endpoints check OIDC tokens, and a deployment
  // that does not say whose tokens to accept stops here instead of accepting anything.
  if (out.oidc === 'auto') out.oidc = out.mode === 'google' ? 'on' : 'off';
  if (out.oidc === 'on') {
    const why = 'when PATCHBAY_OIDC is on (the default in google mode; set PATCHBAY_OIDC=off only for local development)';
    if (out.oidcAudience === '') problems.push(`PATCHBAY_OIDC_AUDIENCE must be set ${why}`);
    if ((out.oidcEmails as string[]).length === 0) problems.push(`PATCHBAY_OIDC_EMAILS must be set ${why}`);
  }
  // The Admin SDK checks no signature while FIREBASE_AUTH_EMULATOR_HOST is set: only for demo-
  // projects, which exist only on emulators (shared/adapters/google/firebase-identity.ts).
  if (out.firebaseAuthEmulatorHost !== '' && out.firebaseProject !== '' && !String(out.firebaseProject).startsWith('demo-')) {
    problems.push(
      `${CONFIG_TABLE.firebaseAuthEmulatorHost.env} is set: allowed only when ${CONFIG_TABLE.firebaseProject.env} is a demo- project (emulator tokens are unsigned)`,
    );
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  if (out.trustProxy === 'auto') out.trustProxy = out.mode === 'google' ? '1' : '';
  if (out.corsOrigins === 'auto') out.corsOrigins = out.mode === 'google' ? [] : '*';
  if (out.corsOrigins === 'none') out.corsOrigins = [];
  // PATCHBAY_ACK_AFTER=auto: `publish` on Google, where Cloud Functions and Cloud Run throttle an
  // instance's CPU once it has answered; `commit` elsewhere.
  if (out.ackAfter === 'auto') out.ackAfter = out.mode === 'google' ? 'publish' : 'commit';
  // Localhost claims pass unchecked: for local development, never on a deployment unless asked.
  if (out.claimLocalhost === 'auto') out.claimLocalhost = out.mode === 'google' ? 'off' : 'on';
  return out as Config;
}
