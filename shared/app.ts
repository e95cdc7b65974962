/**
 * Builds the service from a configuration: adapters for the mode, the engine, auth, the HTTP
 * handler, the cold-storage bundler, and the background timers (outbox sweeper, bundler). Every
 * entry point (the Cloud Functions, `npm start`, the operator CLI) calls this and nothing else.
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { embeddedAdapters } from './adapters/embedded/index.js';
import { MemoryLimits, seedUsage } from './adapters/embedded/memory-limits.js';
import { SignedFiles } from './adapters/embedded/signed-files.js';
import { Bundler } from './cold/bundler.js';
import type { Config } from './config.js';
import { type ActiveConfigs, configsFromDir, StaticConfigs } from './domains/active.js';
import { APPLY_CONSUMER, ConfigService, isReport } from './domains/apply.js';
import { type ClaimProbe, NetClaimProbe } from './domains/claim-check.js';
import { type ClaimSweep, Claims } from './domains/claims.js';
import { ConfigVersions } from './domains/config-versions.js';
import { Domains } from './domains/domains.js';
import { LiveQueries } from './domains/live-queries.js';
import { domainMirrorStatus } from './domains/mirror-status.js';
import { MIRROR_CONSUMER, mirrored, mirrorTablesOf, prepareFixed } from './domains/mirror-step.js';
import { NamedQueries } from './domains/queries.js';
import { domainRules } from './domains/rules.js';
import { ServiceTokens } from './domains/service-tokens.js';
import { StoredConfigs } from './domains/stored-configs.js';
import { Tags } from './domains/tags.js';
import { WEBHOOKS_CONSUMER, Webhooks, webhookScope } from './domains/webhooks.js';
import { Consumer, type PatchHandler } from './engine/consumer.js';
import { Engine } from './engine/engine.js';
import { LocalDelivery } from './engine/local-delivery.js';
import { PatchbayError } from './errors.js';
import { Auth, loadSecret } from './http/auth.js';
import { createHandler, type Handler } from './http/handler.js';
import { InternalAuth } from './http/internal-auth.js';
import { Limits, rateRules } from './http/limits.js';
import { createPushHandler } from './http/push.js';
import { createLogger, type Logger } from './log.js';
import { type MirrorSync, mirrorSync } from './mirror/consumer.js';
import { LagRecorder } from './mirror/lag.js';
import { LazyMirror } from './mirror/lazy.js';
import type { FileStore } from './ports/files.js';
import type { Adapters, IdentityProvider } from './ports/index.js';
import type { LimitStore } from './ports/limits.js';
import type { Mirror } from './ports/mirror.js';
import type { PresenceStore } from './ports/presence.js';
import type { PatchEvent } from './protocol.js';
import { CloseHooks } from './sessions/close-hooks.js';
import { Presence } from './sessions/presence.js';
import { Sessions } from './sessions/sessions.js';
import { decodeNotification } from './uploads/notifications.js';
import { uploadRules } from './uploads/rules.js';
import { UPLOADS_PUSH, Uploads } from './uploads/uploads.js';

export interface App {
  config: Config;
  engine: Engine;
  auth: Auth;
  adapters: Adapters;
  handler: Handler;
  /** Rate limits, quotas and stream caps (shared/http/limits.ts). */
  limits: Limits;
  /** Domains: admins and settings (shared/domains/domains.ts). */
  domains: Domains;
  /** Domain claims (shared/domains/claims.ts). */
  claims: Claims;
  /**
   * Background work that must not wait for a request: the outbox sweeper and the pending domain
   * claims' checks. What the `sweep` function runs; a long-running process runs it on its timer.
   */
  sweep(): Promise<{
    published: number;
    deleted: number;
    claims: ClaimSweep;
    sessions: { timedOut: number; finished: number; purged: number };
    uploads: number;
  }>;
  /** Sessions, their guarantees and close hooks, and presence (shared/sessions/). */
  sessions: Sessions;
  /** Service tokens of the domains' workers (shared/domains/service-tokens.ts). */
  serviceTokens: ServiceTokens;
  /** The `push` function: Pub/Sub push deliveries for the registered consumers. */
  push: Handler;
  /** Who may call the internal endpoints (`push`, `sweep`, `bundle`): OIDC tokens, PATCHBAY_OIDC. */
  internal: InternalAuth;
  consumers: Consumer[];
  /** In-process delivery to the consumers (embedded mode), or null when Pub/Sub push delivers to them. */
  delivery: LocalDelivery | null;
  /** The cold-storage bundler (also what the `bundle` function and `patchbay bundle` run). */
  bundler: Bundler;
  logger: Logger;
  /** The domains' active configurations the commit rules read (AppOptions.configs, else PATCHBAY_DOMAIN_CONFIG_DIR, else the uploaded ones). */
  configs: ActiveConfigs;
  /** Uploading and applying configuration versions (shared/domains/apply.ts). */
  domainConfigs: ConfigService;
  /** The domains' webhooks: the `webhooks` consumer's handler and their delivery state (shared/domains/webhooks.ts). */
  webhooks: Webhooks;
  /** The queryable mirror (embedded: PGlite, opened on first use; google: Postgres), or null when the deployment has none. */
  mirror: Mirror | null;
  /** The domains' named queries over the mirror (shared/domains/queries.ts). */
  queries: NamedQueries;
  /** Uploads and downloads by signed URL (shared/uploads/uploads.ts). */
  uploads: Uploads;
  close(): Promise<void>;
}

export async function adaptersFor(config: Config, logger: Logger): Promise<Adapters> {
  if (config.mode === 'embedded') return embeddedAdapters(config);
  // Loaded only here, so embedded mode never loads a Google SDK.
  const { googleAdapters } = await import('./adapters/google/index.js');
  return googleAdapters(config, logger);
}

/**
 * Where the limit counters live: in memory in embedded mode (usage seeded from the stored scopes,
 * so quotas survive restarts), in Upstash Redis in google mode (shared by every instance).
 */
export async function limitStoreFor(config: Config, adapters: Adapters): Promise<LimitStore> {
  if (config.mode === 'embedded') {
    const store = new MemoryLimits(rateRules(config));
    if (config.limits === 'on') await seedUsage(adapters.ledger, store);
    return store;
  }
  const { UpstashLimits } = await import('./adapters/google/upstash-limits.js');
  return new UpstashLimits({ url: config.upstashUrl, token: config.upstashToken }, { prefix: config.limitsPrefix, rules: rateRules(config) });
}

/**
 * The queryable mirror: PGlite under `<dataDir>/mirror` in embedded mode, opened on first use (it
 * takes seconds to start, so a server whose domains declare no mirror never pays for it);
 * Postgres at PATCHBAY_MIRROR_URL in google mode (`pg` loaded only then), else none.
 */
export async function mirrorFor(config: Config, logger: Logger): Promise<Mirror | null> {
  if (config.mode === 'embedded') {
    const dir = join(config.dataDir, 'mirror');
    const { PGliteMirror } = await import('./adapters/embedded/pglite-mirror.js');
    return new LazyMirror(
      () => new PGliteMirror(dir),
      () => existsSync(dir),
    );
  }
  if (config.mirrorUrl === '') return null;
  const { PostgresMirror } = await import('./adapters/google/postgres-mirror.js');
  return new PostgresMirror({ url: config.mirrorUrl, onError: (err) => logger.error({ message: 'mirror connection failed', err: String(err) }) });
}

/**
 * Where presence lives: in memory in embedded mode (one process holds every stream), in Upstash
 * Redis in google mode (shared by every instance).
 */
export async function presenceStoreFor(config: Config): Promise<PresenceStore> {
  if (config.mode === 'embedded') {
    const { MemoryPresence } = await import('./adapters/embedded/memory-presence.js');
    return new MemoryPresence();
  }
  const { UpstashPresence } = await import('./adapters/google/upstash-presence.js');
  return new UpstashPresence({ url: config.upstashUrl, token: config.upstashToken }, config.limitsPrefix);
}

/**
 * The file store of uploads: HMAC-signed URLs this server answers, over the blob store (embedded),
 * or Cloud Storage V4 signed URLs (google mode; @google-cloud/storage is loaded only then).
 */
export async function fileStoreFor(config: Config, adapters: Adapters): Promise<FileStore> {
  if (config.mode === 'embedded') return new SignedFiles(adapters.blobs, loadSecret(config), config.publicUrl);
  const { gcsFiles } = await import('./adapters/google/gcs-files.js');
  return gcsFiles(config);
}

/** The caller check of the internal endpoints; google-auth-library is loaded only when it is on. */
export async function internalAuthFor(config: Config, logger: Logger): Promise<InternalAuth> {
  if (config.oidc === 'off') return new InternalAuth(null, config, logger);
  const { GoogleIdTokens } = await import('./adapters/google/id-tokens.js');
  return new InternalAuth(new GoogleIdTokens(config.oidcCertsUrl), config, logger);
}

/**
 * The verifier of Firebase ID tokens, when PATCHBAY_FIREBASE_PROJECT is set (in either mode: the
 * Admin SDK is loaded only then).
 */
export async function identityProviderFor(config: Config): Promise<IdentityProvider | undefined> {
  if (config.firebaseProject === '') return undefined;
  const { FirebaseIdentity } = await import('./adapters/google/firebase-identity.js');
  return new FirebaseIdentity({ projectId: config.firebaseProject, emulatorHost: config.firebaseAuthEmulatorHost });
}

export interface AppOptions {
  /** Use these adapters instead of the configured mode's. */
  adapters?: Adapters;
  /** Run the outbox sweeper on a timer in this process (default: yes). */
  sweeper?: boolean;
  /**
   * Run the bundler every PATCHBAY_BUNDLE_INTERVAL_MS in this process (default: the same as
   * `sweeper`: a process that runs background work runs both; tests and functions run neither).
   */
  bundler?: boolean;
  /** Push consumers, by name: the targets of Pub/Sub push subscriptions (`POST /push/<name>`). */
  consumers?: Record<string, PatchHandler>;
  /**
   * Deliver to the consumers in this process (shared/engine/local-delivery.ts) instead of through
   * Pub/Sub push subscriptions (default: in embedded mode).
   */
  deliverLocally?: boolean;
  /** Where log lines go (default: stdout). */
  logTo?: (line: string) => void;
  /**
   * The domains' active configurations, whose scope types' schemas and limits every commit and
   * create is held to (shared/domains/rules.ts). Default: the files of PATCHBAY_DOMAIN_CONFIG_DIR,
   * or none (no per-domain validation).
   */
  configs?: ActiveConfigs;
  /** How domain claims look for their proof (default: the real https GET and DNS TXT query). */
  claimProbe?: ClaimProbe;
  /** Use this mirror (null: none) instead of the configured mode's (shared/app.ts mirrorFor). */
  mirror?: Mirror | null;
  /** The file store of uploads (default: fileStoreFor the mode). */
  files?: FileStore;
}

export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const identity = await identityProviderFor(config); // first: a configuration it refuses leaves nothing open
  const fixed = opts.configs ?? configsFromDir(config); // also before anything opens: a broken file stops here
  const logger = createLogger(config.logLevel, opts.logTo);
  const adapters = opts.adapters ?? (await adaptersFor(config, logger));
  const versions = new ConfigVersions(adapters.records, config);
  const stored = new StoredConfigs(versions, { cacheMs: config.domainCacheMs, maxConfigBytes: config.maxConfigBytes });
  // Configurations given in-process or as files win over uploaded ones (uploads are then refused: routes/config.ts).
  const configs: ActiveConfigs = fixed ?? stored;
  const mirror = opts.mirror !== undefined ? opts.mirror : await mirrorFor(config, logger);
  const limitStore = await limitStoreFor(config, adapters);
  const limits = new Limits(limitStore, config, logger);
  let delivery: LocalDelivery | null = null; // set below, once the consumers exist
  let uploads: Uploads | undefined; // set below, once the engine exists
  let sync: MirrorSync | null = null; // set below, once the engine and the mirror exist
  let lag: LagRecorder | null = null;
  const engine = new Engine(adapters, config, {
    logError: (e) => logger.error(e),
    onStored: (owner, delta) => limits.stored(owner, delta),
    onPublished: (events) => delivery?.offer(events),
    rules: uploadRules(domainRules(configs)),
    // A deleted scope's purge also removes its mirror rows: repeated by the sweep until it succeeds.
    onPurge: async (id) => {
      await uploads?.purge(id);
      if (mirror && mirrored(id)) await mirror.remove(null, id);
    },
    // Creates, access changes and renames publish no event: the mirror is told directly.
    // Only for domains with a mirror: their active configuration, made current first (a cached read).
    onChanged: (id, domain) => {
      const s = sync;
      if (!s || !mirrored(id)) return;
      void (async () => {
        await configs.prepare?.(domain);
        if (mirrorTablesOf(configs.get(domain)?.config) !== null) await s.touch(id);
      })().catch((err) => logger.error({ message: 'mirror touch failed', scope: id, err: String(err) }));
    },
  });
  uploads = new Uploads(engine, opts.files ?? (await fileStoreFor(config, adapters)), adapters.records, limits, config, configs);
  // Embedded counters live in memory: the file bytes the stored uploads hold are counted in at start (Upstash keeps them on Google).
  if (config.mode === 'embedded' && config.limits === 'on') {
    const files = await uploads.fileUsage((after, n) => adapters.ledger.listScopes(after, n));
    for (const [owner, bytes] of files) limits.files(owner, bytes);
  }
  const serviceTokens = new ServiceTokens(adapters.records, {
    checkMs: config.serviceTokenCheckMs,
    maxLive: config.maxServiceTokens,
    maxTtlSeconds: config.serviceTokenMaxTtlSeconds,
  });
  const auth = new Auth(loadSecret(config), config, identity, serviceTokens);
  const domains = new Domains(adapters.records, { cacheMs: config.domainCacheMs });
  const mirrorSource = {
    listScopes: (after: string, limit: number) => adapters.ledger.listScopes(after, limit),
    head: (id: string) => engine.head(id),
    stateAt: (id: string, ii: number) => engine.stateAt(id, ii),
  };
  const mirrorDeps = { mirror, source: mirrorSource, accepts: mirrored, settleMs: config.domainCacheMs };
  const domainConfigs = new ConfigService(
    versions,
    domains,
    adapters.records,
    engine,
    config,
    (d) => stored.forget(d),
    fixed !== undefined,
    configs,
    mirrorDeps,
  );
  // Uploaded configurations have their mirror schema made by their apply; fixed ones by first use.
  const queries = new NamedQueries(configs, mirror, config, fixed !== undefined);
  const liveQueries = new LiveQueries(queries, mirror, config);
  const webhooks = new Webhooks(adapters.records, engine, configs, config);
  const claims = new Claims(adapters.records, domains, engine, opts.claimProbe ?? new NetClaimProbe(), config, {
    logError: (e) => logger.error(e),
  });
  const presenceStore = await presenceStoreFor(config);
  const presence = new Presence(presenceStore, adapters.bus, (e) => logger.error(e), config.presenceMaxListed);
  const sessions = new Sessions(adapters.records, engine, presence, new CloseHooks(webhooks.records, configs, config), config, (e) => logger.error(e));
  const tags = new Tags(adapters.records, engine);
  const handler = createHandler({
    engine,
    auth,
    config,
    logger,
    limits,
    domains,
    claims,
    serviceTokens,
    domainConfigs,
    webhooks,
    sessions,
    tags,
    queries,
    liveQueries,
    mirrorStatus: (d) => domainMirrorStatus(configs, mirror, d),
    uploads,
  });
  const sweep = async () => {
    // All run even when one fails (the deleted scopes after the outbox); the first failure is reported.
    const outbox = engine.sweep();
    const deleted = outbox.catch(() => {}).then(() => engine.sweepDeleted());
    const [published, purged, claimed, closed, expired] = await Promise.allSettled([
      outbox,
      deleted,
      claims.sweep(),
      sessions.sweep(),
      (uploads as Uploads).sweep(),
    ]);
    for (const r of [published, purged, claimed, closed, expired]) if (r.status === 'rejected') throw r.reason;
    return {
      published: (published as PromiseFulfilledResult<number>).value,
      deleted: (purged as PromiseFulfilledResult<number>).value,
      claims: (claimed as PromiseFulfilledResult<ClaimSweep>).value,
      sessions: (closed as PromiseFulfilledResult<{ timedOut: number; finished: number; purged: number }>).value,
      uploads: (expired as PromiseFulfilledResult<number>).value,
    };
  };
  const readLog = (id: string, from: number, to: number) => engine.readLog(id, from, to);
  const consumers = [
    ...Object.entries(opts.consumers ?? {}).map(([name, handle]) => new Consumer(name, adapters.ledger, readLog, handle)),
    // Built in: applies uploaded configuration versions (its push subscription filters on report scopes).
    new Consumer(APPLY_CONSUMER, adapters.ledger, readLog, (e) => domainConfigs.handle(e), isReport),
    // Built in: the domains' webhooks (its push subscription takes every message; scopes without a matching webhook are skipped).
    new Consumer(
      WEBHOOKS_CONSUMER,
      adapters.ledger,
      readLog,
      (e) => webhooks.handle(e),
      webhookScope,
      (e) => webhooks.wants(e),
    ),
  ];
  if (mirror) {
    // Built in: the mirror (its push subscription filters out the platform's own scopes). A domain
    // has a mirror when its active configuration has `tables` or `queries`.
    lag = new LagRecorder(mirror, (e) => logger.error(e));
    const tables = async (d: string) => {
      await configs.prepare?.(d);
      return mirrorTablesOf(configs.get(d)?.config);
    };
    sync = mirrorSync({
      mirror,
      lag,
      source: engine,
      tables,
      ensure: fixed !== undefined, // uploaded versions: their apply's `mirror` step owns the schema
    });
    // Only scopes of a domain with a mirror (or gone: their rows go) are its business: the others are
    // skipped without a cursor write, which cost every patch of every scope a durable transaction
    // (an fsync, embedded) for nothing. A domain that declares tables later is backfilled by its apply.
    const mirrorWants = async (e: PatchEvent): Promise<boolean> => {
      try {
        return (await tables((await engine.head(e.scope)).meta.domain)) !== null;
      } catch (err) {
        if (err instanceof PatchbayError && err.code === 'scope_not_found') return true;
        throw err;
      }
    };
    // Coalescing (shared/engine/consumer.ts): one catch-up to the head per burst, the cursors it moved
    // trusted for half the id reservation of deleted scopes, at most 10 s.
    const cacheMs = Math.min(10_000, config.deleteRetentionMs / 2);
    consumers.push(new Consumer(MIRROR_CONSUMER, adapters.ledger, readLog, { catchUp: sync.catchUp, cacheMs }, mirrored, mirrorWants));
  }
  // Configurations not uploaded (files, in-process) have no apply to make their webhooks' secrets: made here, at start.
  if (fixed instanceof StaticConfigs)
    for (const d of fixed.domains()) {
      void webhooks
        .ensureSecrets(d, fixed.get(d)?.config.webhooks ?? [])
        .catch((err) => logger.error({ message: 'webhook secrets failed', domain: d, err: String(err) }));
      // Nor to make their mirror tables and backfill them: done here too, in the background.
      const c = fixed.get(d)?.config;
      if (mirror && mirrorTablesOf(c) !== null && c)
        void prepareFixed(mirrorDeps, d, c, adapters.records).catch((err) => logger.error({ message: 'mirror backfill failed', domain: d, err: String(err) }));
    }
  if (opts.deliverLocally ?? config.mode === 'embedded') {
    delivery = new LocalDelivery(
      consumers,
      adapters.ledger,
      (id, from, to) => engine.readLog(id, from, to),
      (e) => logger.error(e),
    );
    const started = delivery;
    void started.catchUp().catch((err) => logger.error({ message: 'consumer catch-up failed', err: String(err) }));
  }
  const internal = await internalAuthFor(config, logger);
  const push = createPushHandler(consumers, internal, logger, config, {
    // Cloud Storage's finalize notifications of the bucket (shared/uploads/notifications.ts).
    [UPLOADS_PUSH]: async (body) => {
      const event = decodeNotification(body);
      if (!event) return { ignored: true };
      return { ...(await (uploads as Uploads).finalized(event.bucket, config.bucket, event.object, event.info)) };
    },
  });
  const bundler = new Bundler(adapters.ledger, adapters.blobs, config, { logError: (e) => logger.error(e) });
  let timer: NodeJS.Timeout | undefined;
  if (opts.sweeper ?? true) {
    let sweeping = false;
    const tick = () => {
      if (sweeping) return; // the previous run (claim checks wait on the network) is still going
      sweeping = true;
      void sweep()
        .catch((err) => logger.error({ message: 'sweep failed', err: String(err) }))
        .finally(() => {
          sweeping = false;
        });
    };
    tick();
    timer = setInterval(tick, config.sweepIntervalMs);
    timer.unref();
  }
  let bundleTimer: NodeJS.Timeout | undefined;
  let bundling: Promise<unknown> | null = null;
  if ((opts.bundler ?? opts.sweeper ?? true) && config.bundleIntervalMs > 0) {
    bundleTimer = setInterval(() => {
      if (bundling) return; // the previous run is still going
      bundling = bundler
        .run()
        .catch((err) => logger.error({ message: 'bundler run failed', err: String(err) }))
        .finally(() => {
          bundling = null;
        });
    }, config.bundleIntervalMs);
    bundleTimer.unref();
  }
  return {
    config,
    engine,
    auth,
    adapters,
    handler,
    limits,
    domains,
    claims,
    sweep,
    serviceTokens,
    push,
    internal,
    consumers,
    delivery,
    bundler,
    logger,
    configs,
    domainConfigs,
    webhooks,
    mirror,
    queries,
    sessions,
    uploads,
    async close() {
      if (timer) clearInterval(timer);
      if (bundleTimer) clearInterval(bundleTimer);
      bundler.stop();
      await bundling;
      await delivery?.close();
      lag?.close();
      await lag?.flush();
      await mirror?.close();
      await engine.close();
      await limits.close();
      await auth.close();
      await limitStore.close();
      await presenceStore.close();
      await Promise.all([adapters.bus.close(), adapters.cache.close(), adapters.blobs.close()]);
      await adapters.ledger.close();
    },
  };
}
