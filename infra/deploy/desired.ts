/**
 * The desired state of a deployment: every resource patchbay needs on Google Cloud, computed from
 * the deploy configuration (settings.ts), the consumers the app registers, the Firestore index
 * file and a hash of the source. Pure apart from reading those files; the reconciler compares it
 * with what is live. Each IAM role is justified where it is granted (least privilege: three
 * accounts, roles on the narrowest resource gcloud can bind them to).
 */

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLAIM_KIND } from '../../shared/domains/claims.js';
import { BUILT_IN_CONSUMERS } from '../../shared/domains/consumers.js';
import { MIRROR_CONSUMER } from '../../shared/domains/mirror-step.js';
import { ATTEMPTS_KIND } from '../../shared/domains/webhook-records.js';
import { RECORD_TTL_FIELD } from '../../shared/ports/records.js';
import { SESSION_KIND } from '../../shared/sessions/sessions.js';
import { UPLOAD_PREFIX } from '../../shared/uploads/rules.js';
import { objectKey, UPLOADS_PUSH } from '../../shared/uploads/uploads.js';
import { type BindingProps, bindingName, type TargetType } from './kinds/bindings.js';
import type { BucketProps } from './kinds/bucket.js';
import type { DatabaseProps, FieldProps, IndexField, IndexProps, TtlProps } from './kinds/firestore.js';
import { indexName } from './kinds/firestore.js';
import type { FunctionProps } from './kinds/functions.js';
import { type NotificationProps, notificationName, uploadsTopic } from './kinds/notifications.js';
import type { SubscriptionProps, TopicProps } from './kinds/pubsub.js';
import type { JobProps } from './kinds/scheduler.js';
import { hashValue, type SecretProps } from './kinds/secrets.js';
import type { AccountProps } from './kinds/service-accounts.js';
import { LABEL, MARK, type Resource } from './model.js';
import { type DeployConfig, secretsOf } from './settings.js';

export interface ModelInput {
  cfg: DeployConfig;
  /** Push consumers the app registers (functions/consumers.ts): one subscription each. */
  consumers: string[];
  /** The project number: the Pub/Sub service agent is named by it. */
  projectNumber: string;
  /** Hash of the functions' source (sourceHash), a label on each function. */
  source: string;
}

/** The Google APIs a deployment uses. */
const APIS: Record<string, string> = {
  'iam.googleapis.com': 'service accounts and their roles',
  'firestore.googleapis.com': 'the ledger',
  'pubsub.googleapis.com': 'fan-out of committed patches',
  'storage.googleapis.com': 'cold storage and uploads',
  'secretmanager.googleapis.com': 'the JWT key, the Upstash URL and token, the mirror Postgres URL',
  'cloudfunctions.googleapis.com': 'the functions',
  'run.googleapis.com': '2nd gen functions run on Cloud Run',
  'cloudbuild.googleapis.com': 'builds the functions from source',
  'artifactregistry.googleapis.com': 'keeps the built function images',
  'cloudscheduler.googleapis.com': 'calls sweep and bundle',
};

/** The files whose contents make up the functions' source hash. */
/**
 * The record kinds whose records are put with an expiry (PutOptions.expireAt), each with why it
 * expires: each gets a TTL policy on its collection group, a backstop to the sweep that deletes them.
 */
export const EXPIRING_RECORD_KINDS: Record<string, string> = {
  [SESSION_KIND]: 'closed sessions (the sweep deletes them an hour after they close)',
  [CLAIM_KIND]: 'finished domain claims (the sweep deletes them a day after)',
  [ATTEMPTS_KIND]: "a webhook delivery's failed attempts, once Pub/Sub stopped redelivering it",
};

/** The headers a signed upload PUT carries (shared/adapters/google/gcs-files.ts): the bucket's CORS allows them. */
/** Why each index exemption of firestore.indexes.json is there (its fieldOverrides). */
const FIELD_WHY: Record<string, string> = {
  'log.patch': 'large JSON text, never queried: no index entries to pay for',
  'scopes.initial': 'large JSON text, never queried: no index entries to pay for',
  // A leader's inbox (shared/adapters/google/firestore/leaders.ts) is queried by `from` and `done` only.
  'inbox.at': 'an increasing timestamp, never queried: indexed, it would cap the inbox at about 500 writes/s',
  'inbox.req': 'the handed-over request, never queried: no index entries to pay for',
  'inbox.outcome': "the leader's answer as JSON text, never queried: no index entries to pay for",
  // Sessions' due index (shared/sessions/sessions.ts) is listed by document id only.
  'session-due.key': 'an increasing time key, never queried (listed by document id): indexed, it would cap session opens at about 500/s',
};

export const UPLOAD_HEADERS = ['Content-Type', 'Content-MD5', 'x-goog-content-length-range'] as const;

const SOURCE_ROOTS = ['shared', 'functions', 'package.json', 'package-lock.json', 'tsconfig.json'];

/** A short hash of the deployable source (label values are at most 63 lowercase characters). */
export function sourceHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (rel: string) => {
    const path = join(dir, rel);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const e of readdirSync(path).sort()) walk(join(rel, e));
    else {
      h.update(`${rel}\0`);
      h.update(readFileSync(path));
    }
  };
  for (const r of SOURCE_ROOTS) walk(r);
  return h.digest('hex').slice(0, 16);
}

interface IndexFile {
  indexes: Array<{ collectionGroup: string; queryScope: 'COLLECTION' | 'COLLECTION_GROUP'; fields: IndexField[] }>;
  fieldOverrides: Array<{ collectionGroup: string; fieldPath: string; indexes: unknown[] }>;
}

export function desiredState({ cfg, consumers, projectNumber, source }: ModelInput): Resource[] {
  const { config, accounts, functionsBase, project, region, deploy } = cfg;
  const out: Resource[] = [];
  const add = <P>(kind: string, name: string, props: P, deps: string[], why: string): string => {
    out.push({ kind, name, props, deps, why });
    return `${kind}:${name}`;
  };
  const api = (name: string) => `api:${name}`;
  for (const [name, why] of Object.entries(APIS)) add('api', name, {}, [], why);

  // Identities.
  const sa = (id: string, displayName: string, why: string) =>
    add<AccountProps>('service-account', id, { displayName, description: `${why} ${MARK}` }, [api('iam.googleapis.com')], why);
  const apiSa = sa('patchbay-api', 'patchbay api', 'Runs the api, push and sweep functions.');
  const bundlerSa = sa('patchbay-bundler', 'patchbay bundler', 'Runs the bundle function.');
  const invokerSa = sa('patchbay-invoker', 'patchbay invoker', 'Calls push (Pub/Sub) and sweep/bundle (Cloud Scheduler) with OIDC tokens.');
  const pubsubAgent = `serviceAccount:service-${projectNumber}@gcp-sa-pubsub.iam.gserviceaccount.com`;
  const member = (email: string) => `serviceAccount:${email}`;
  const bind = (target: TargetType, on: string, role: string, who: string, deps: string[], why: string): string => {
    const p: BindingProps = { target, on, role, member: who };
    return add('binding', bindingName(p), p, deps, why);
  };

  // Firestore.
  const db = add<DatabaseProps>(
    'firestore-database',
    config.firestoreDatabase,
    { location: deploy.firestoreLocation || region, type: 'FIRESTORE_NATIVE' },
    [api('firestore.googleapis.com')],
    'the ledger: heads, log, retry records, outbox, cursors, records',
  );
  const file = JSON.parse(readFileSync(join(deploy.source, 'firestore.indexes.json'), 'utf8')) as IndexFile;
  // The file names the heads' collection by its default name; a deployment may choose another root.
  const group = (g: string) => (g === 'scopes' ? config.firestoreRoot : g);
  for (const ix of file.indexes) {
    const p: IndexProps = {
      database: config.firestoreDatabase,
      collectionGroup: group(ix.collectionGroup),
      queryScope: ix.queryScope,
      fields: ix.fields.filter((f) => f.fieldPath !== '__name__'),
    };
    add('firestore-index', indexName(p), p, [db], "listing a user's scopes of one domain (GET /v1/scopes)");
  }
  for (const f of file.fieldOverrides) {
    const p: FieldProps = { database: config.firestoreDatabase, collectionGroup: group(f.collectionGroup), field: f.fieldPath, indexed: f.indexes.length > 0 };
    add(
      'firestore-field',
      `${p.collectionGroup}.${p.field}`,
      p,
      [db],
      FIELD_WHY[`${f.collectionGroup}.${f.fieldPath}`] ?? 'never queried: no index entries to pay for',
    );
  }
  for (const [kind, why] of Object.entries(EXPIRING_RECORD_KINDS)) {
    const p: TtlProps = { database: config.firestoreDatabase, collectionGroup: kind, field: RECORD_TTL_FIELD, enabled: true };
    add('firestore-ttl', `${kind}.${RECORD_TTL_FIELD}`, p, [db], `expires ${why}`);
  }
  // Both runtimes read and write the ledger (the bundler moves cold pointers and trims the log).
  bind('project', project, 'roles/datastore.user', member(accounts.api), [apiSa, db], 'api: the ledger');
  bind('project', project, 'roles/datastore.user', member(accounts.bundler), [bundlerSa, db], 'bundler: cold pointers, trimming');
  // The api publishes every commit and creates (and deletes) one streaming-pull subscription per
  // instance for SSE; creating subscriptions is a project permission no narrower predefined role has.
  bind('project', project, 'roles/pubsub.editor', member(accounts.api), [apiSa, api('pubsub.googleapis.com')], 'api: publish, per-instance SSE subscriptions');

  // Pub/Sub.
  const labels = { [LABEL.key]: LABEL.value };
  const topic = add<TopicProps>('topic', config.pubsubTopic, { labels }, [api('pubsub.googleapis.com')], 'every committed patch, ordering key = scope');
  const deadName = `${config.pubsubTopic}-dead-letters`;
  const dead = add<TopicProps>('topic', deadName, { labels }, [api('pubsub.googleapis.com')], 'push deliveries that failed too often');
  // Pub/Sub's own agent moves failed deliveries: it must publish to the dead-letter topic...
  bind('topic', deadName, 'roles/pubsub.publisher', pubsubAgent, [dead], 'Pub/Sub agent: dead-lettering');
  // ...and mint the push OIDC tokens of the invoker account (projects from before 2021-04-08).
  bind('service-account', accounts.invoker, 'roles/iam.serviceAccountTokenCreator', pubsubAgent, [invokerSa], 'Pub/Sub agent: push OIDC tokens');

  // Cold storage.
  const uploadOrigins = deploy.uploadOrigins !== '' ? deploy.uploadOrigins.split(',') : config.corsOrigins === '*' ? ['*'] : config.corsOrigins;
  const bucket = add<BucketProps>(
    'bucket',
    config.bucket,
    {
      location: region,
      uniformAccess: true,
      publicAccessPrevention: 'enforced',
      // Bundles and snapshots stay (guarantee 6); interrupted uploads are cleaned after a day.
      lifecycle: [{ action: { type: 'AbortIncompleteMultipartUpload' }, condition: { age: 1 } }],
      // Browsers upload (PUT) and download (GET, HEAD) with signed URLs (shared/adapters/google/gcs-files.ts)
      // from the origins of DEPLOY_UPLOAD_ORIGINS (default: those allowed to call the API). A PUT
      // sends the headers its URL was signed with, so the preflight must allow them.
      cors:
        uploadOrigins.length === 0 ? [] : [{ origin: uploadOrigins, method: ['GET', 'HEAD', 'PUT'], responseHeader: [...UPLOAD_HEADERS], maxAgeSeconds: 3600 }],
      labels,
    },
    [api('storage.googleapis.com')],
    'bundles, snapshots, uploads',
  );
  // The api reads bundles and snapshots (history, rebuilds); the bundler writes them.
  bind('bucket', `gs://${config.bucket}`, 'roles/storage.objectAdmin', member(accounts.bundler), [bucket, bundlerSa], 'bundler: write cold storage');
  // ...and, for uploads, signs their URLs (signBlob as itself), reads an object's metadata when a
  // notification was missed, and deletes the objects of expired, failed and deleted uploads.
  bind('bucket', `gs://${config.bucket}`, 'roles/storage.objectUser', member(accounts.api), [bucket, apiSa], 'api: read cold storage, uploads');
  bind('service-account', accounts.api, 'roles/iam.serviceAccountTokenCreator', member(accounts.api), [apiSa], 'api: sign upload URLs as itself (signBlob)');
  // Cloud Storage announces each finished upload on its own topic; push delivers it to push/uploads.
  const uploadsTopicName = uploadsTopic(config.pubsubTopic);
  const uploadsTopicId = add<TopicProps>(
    'topic',
    uploadsTopicName,
    { labels },
    [api('pubsub.googleapis.com')],
    'finished uploads (Cloud Storage notifications)',
  );
  const gcsAgent = `serviceAccount:service-${projectNumber}@gs-project-accounts.iam.gserviceaccount.com`;
  const gcsPublishes = bind(
    'topic',
    uploadsTopicName,
    'roles/pubsub.publisher',
    gcsAgent,
    [uploadsTopicId],
    'Cloud Storage agent: publish upload notifications',
  );
  const note: NotificationProps = {
    bucket: config.bucket,
    topic: uploadsTopicName,
    eventTypes: ['OBJECT_FINALIZE'],
    payloadFormat: 'JSON_API_V1',
    objectPrefix: objectKey(UPLOAD_PREFIX),
  };
  add('bucket-notification', notificationName(note), note, [bucket, uploadsTopicId, gcsPublishes], 'marks an upload ready as soon as its object lands');

  // Secrets: every function loads the whole configuration, so both runtimes read both.
  const secretDeps: string[] = [];
  const secretEnv: Record<string, string> = {};
  for (const s of secretsOf(cfg)) {
    const given = cfg.secretValues[s.env];
    const p: SecretProps = { labels, setting: s.env, generate: s.generate, ...(given !== undefined && !s.generate ? { value: hashValue(given) } : {}) };
    const id = add('secret', s.id, p, [api('secretmanager.googleapis.com')], s.why);
    secretDeps.push(id);
    for (const [who, dep] of [
      [accounts.api, apiSa],
      [accounts.bundler, bundlerSa],
    ] as const) {
      secretDeps.push(bind('secret', s.id, 'roles/secretmanager.secretAccessor', member(who), [id, dep], `${who.split('@')[0]}: read ${s.env}`));
    }
    secretEnv[s.env] = `${s.id}:latest`;
  }

  // Functions. Timeouts: api outlives an SSE stream (PATCHBAY_SSE_MAX_MS) so streams end with a
  // retry hint before the platform cuts them; bundle outlives its budget (PATCHBAY_BUNDLE_BUDGET_MS).
  const fnDeps = [
    api('cloudfunctions.googleapis.com'),
    api('run.googleapis.com'),
    api('cloudbuild.googleapis.com'),
    api('artifactregistry.googleapis.com'),
    ...secretDeps,
  ];
  const seconds = (ms: number) => Math.ceil(ms / 1000);
  const fn = (name: string, timeoutSeconds: number, serviceAccount: string, saDep: string, maxInstances: number, why: string) => {
    if (timeoutSeconds > 3600)
      throw new Error(`function ${name}: needs a ${timeoutSeconds}s timeout, above the 3600s Cloud Functions allow (lower the setting that drives it)`);
    return add<FunctionProps>(
      'function',
      name,
      {
        runtime: deploy.runtime,
        entryPoint: name,
        memory: deploy.memory,
        timeoutSeconds,
        env: cfg.env,
        secrets: secretEnv,
        serviceAccount,
        maxInstances,
        labels: { ...labels, 'patchbay-source': source },
      },
      [...fnDeps, saDep],
      why,
    );
  };
  const apiFn = fn('api', seconds(config.sseMaxMs) + 60, accounts.api, apiSa, Number(deploy.apiMaxInstances), 'the public v1 HTTP API');
  const pushFn = fn('push', 300, accounts.api, apiSa, 100, 'Pub/Sub push deliveries to the registered consumers');
  const sweepFn = fn('sweep', 300, accounts.api, apiSa, 1, 'the outbox sweeper (Cloud Scheduler)');
  const bundleTimeout = seconds(config.bundleBudgetMs) + 60;
  const bundleFn = fn('bundle', bundleTimeout, accounts.bundler, bundlerSa, 1, 'the cold-storage bundler (Cloud Scheduler)');
  // Invokers: the API is public (it checks bearer tokens itself); the internal functions only
  // for the invoker account, and they check its OIDC token again (shared/http/internal-auth.ts).
  bind('run', 'api', 'roles/run.invoker', 'allUsers', [apiFn], 'public API, bearer tokens inside');
  const invokes = (name: string, dep: string) => bind('run', name, 'roles/run.invoker', member(accounts.invoker), [dep, invokerSa], `invoker: call ${name}`);
  const pushInvoker = invokes('push', pushFn);
  const sweepInvoker = invokes('sweep', sweepFn);
  const bundleInvoker = invokes('bundle', bundleFn);

  // One push subscription per consumer (the mirror's only with a mirror database), and the uploads'.
  const push = (name: string, topicName: string, topicId: string, target: string, ordering: boolean, filter: string, why: string) => {
    const sub = add<SubscriptionProps>(
      'subscription',
      name,
      {
        topic: topicName,
        pushEndpoint: `${functionsBase}/push/${target}`,
        serviceAccount: accounts.invoker,
        audience: `${config.oidcAudience}/push/${target}`,
        ordering,
        filter,
        deadLetterTopic: deadName,
        maxDeliveryAttempts: 20,
        minRetryDelay: '10s',
        maxRetryDelay: '600s',
        ackDeadline: 60,
        labels,
      },
      [topicId, dead, pushInvoker],
      why,
    );
    bind('subscription', name, 'roles/pubsub.subscriber', pubsubAgent, [sub], 'Pub/Sub agent: acknowledge what it dead-letters');
  };
  const mirrorOn = cfg.secretValues.PATCHBAY_MIRROR_URL !== undefined;
  for (const consumer of consumers) {
    if (consumer === MIRROR_CONSUMER && !mirrorOn) continue;
    push(`patchbay-push-${consumer}`, config.pubsubTopic, topic, consumer, true, BUILT_IN_CONSUMERS[consumer]?.filter ?? '', `push consumer ${consumer}`);
  }
  // Unordered: each notification stands alone (an upload's object is written once).
  push(`patchbay-push-${UPLOADS_PUSH}`, uploadsTopicName, uploadsTopicId, UPLOADS_PUSH, false, '', 'upload notifications to push/uploads');

  const job = (name: string, fnName: string, schedule: string, deadline: number, dep: string, why: string) =>
    add<JobProps>(
      'scheduler-job',
      name,
      {
        schedule,
        timeZone: 'Etc/UTC',
        uri: `${functionsBase}/${fnName}`,
        serviceAccount: accounts.invoker,
        audience: `${config.oidcAudience}/${fnName}`,
        attemptDeadline: `${Math.min(deadline, 1800)}s`,
        description: `${why} ${MARK}`,
      },
      [api('cloudscheduler.googleapis.com'), dep],
      why,
    );
  job('patchbay-sweep', 'sweep', deploy.sweepSchedule, 300, sweepInvoker, 'Republishes committed patches whose publish never happened.');
  job('patchbay-bundle', 'bundle', deploy.bundleSchedule, bundleTimeout, bundleInvoker, 'Bundles, snapshots and trims scopes with work.');
  return out;
}
