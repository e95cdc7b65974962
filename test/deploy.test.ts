/**
 * The deploy pipeline (infra/deploy/) against a simulated gcloud (test/helpers/fake-gcloud/),
 * first on PATH, whose every call is checked against the real gcloud 528 help texts:
 * - a first run creates everything in dependency order and ends with the smoke test against a
 *   real local patchbay server; a second run makes no mutating call and says so; `--plan` makes none;
 * - the bootstrap's domains (DEPLOY_DOMAINS_FILE): a run uploads and applies the configuration and
 *   adds the admins, the next uploads nothing; `--plan` reads no app state; an invalid
 *   configuration stops the deploy (exit 2) before any gcloud call;
 * - a failure injected at each mutating step, then a re-run, ends in the same state as a clean run;
 * - `--check` names a deleted subscription, a changed function environment variable and a missing
 *   scheduler job, and exits 3;
 * - `--prune` and `destroy` remove only what patchbay created, and only once confirmed;
 * - secret values never appear in the output, and never in the functions' environment;
 * - a misspelled flag is refused the way gcloud refuses it, and the help fixtures are current.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnRunner } from '../infra/deploy/gcloud.js';
import { FUNCTION_NAMES } from '../infra/deploy/kinds/functions.js';
import { type MainIO, main } from '../infra/deploy/main.js';
import { adaptersFor } from '../shared/app.js';
import { SERVICE_TOKEN_KIND } from '../shared/domains/service-tokens.js';
import { createLogger } from '../shared/log.js';
import type { RecordStore } from '../shared/ports/records.js';
import {
  calls,
  checkFlags,
  type FakeState,
  fake,
  fakeEnv,
  flagsOf,
  HELP_DIR,
  inProcessRunner,
  keptSections,
  plain,
  readState,
  resetAttempts,
  stateDir,
} from './helpers/fake-gcloud/index.js';
import { hasTool } from './helpers/proc.js';
import { startServer, type TestServer, tempDir, testConfig } from './helpers/server.js';

const PROJECT = 'pb-test-project';
const REGION = 'europe-west1';
const TOKEN = 'upstash-token-do-not-print-7f3a';
const UPSTASH_URL = 'https://eu1-test.upstash.io';
/** The deployment's JWT key: the env file gives it, so the local server the smoke test calls shares it. */
const JWT_KEY = 'jwt-key-of-the-test-deployment-do-not-print-4e1b0c';
const MIRROR_URL = 'postgres://mirror:pg-password-do-not-print-51c2@10.0.0.5:5432/mirror';
const BASE = ['--project', PROJECT, '--region', REGION];

const dirs: string[] = [];
let server: TestServer;
let records: RecordStore;
let envFile: string;

beforeAll(async () => {
  const d = tempDir('patchbay-deploy-env-');
  dirs.push(d);
  // The server the smoke test calls, and the record store the deploy mints its service token in: the same.
  const config = testConfig({ jwtSecret: JWT_KEY, dataDir: join(d, 'data') });
  const adapters = await adaptersFor(config, createLogger('off'));
  records = adapters.records;
  server = await startServer({ jwtSecret: JWT_KEY, dataDir: config.dataDir }, adapters);
  envFile = join(d, 'test.env');
  writeFileSync(
    envFile,
    [
      '# a deployment of the tests',
      `UPSTASH_REDIS_REST_URL=${UPSTASH_URL}`,
      `UPSTASH_REDIS_REST_TOKEN=${TOKEN}`,
      `PATCHBAY_MIRROR_URL=${MIRROR_URL}`,
      `PATCHBAY_JWT_SECRET=${JWT_KEY}`,
      'PATCHBAY_CORS_ORIGINS=https://app.example.com,https://admin.example.com',
      'PATCHBAY_MAX_OPS=500',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function newState(): string {
  const d = stateDir();
  dirs.push(d);
  return d;
}

interface Run {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs the deployer in this process. gcloud is the fake: with `spawn`, the `gcloud` program found
 * first on PATH, as a child process per call (what `npm run deploy` does); otherwise the same code
 * called in this process, because a process start per call makes a run take seconds here.
 */
async function deploy(
  dir: string,
  args: string[],
  opts: { env?: Record<string, string>; spawn?: boolean; io?: MainIO; consumers?: string[] } = {},
): Promise<Run> {
  const env = fakeEnv(dir, { FAKE_GCLOUD_API_URL: server.url, ...(opts.env ?? {}) });
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...BASE, '--env', envFile, ...args], {
    env,
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    runner: opts.spawn ? spawnRunner(env) : inProcessRunner(env),
    consumers: opts.consumers ?? ['config-apply', 'mirror', 'webhooks'],
    // Two tries: a keep-alive connection the server closed while a long test left it idle fails the first fetch.
    smoke: { attempts: 2, delayMs: 0 },
    records,
    confirm: async () => false,
    ...(opts.io ?? {}),
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const write = (dir: string, state: FakeState) => writeFileSync(join(dir, 'state.json'), JSON.stringify(state));

/** The state without what differs between equivalent deployments (generated secret values). */
function comparable(state: FakeState): FakeState {
  const s = structuredClone(state);
  for (const secret of Object.values(s.secrets) as Array<{ versions: string[] }>)
    secret.versions = secret.versions.map((v) => ([TOKEN, MIRROR_URL, UPSTASH_URL, JWT_KEY].includes(v) ? v : 'generated'));
  return s;
}

/** A clean deployment, made once with the fake as a real process; its state and its calls. */
let clean: { dir: string; state: FakeState; calls: string[][]; first: Run; second: Run };

describe('deploy against a simulated gcloud', () => {
  beforeAll(async () => {
    const dir = newState();
    const first = await deploy(dir, [], { spawn: true });
    const afterFirst = calls(dir);
    const second = await deploy(dir, []);
    clean = { dir, state: readState(dir), calls: afterFirst, first, second };
  }, 300_000); // about a hundred gcloud processes: slow on a loaded machine

  it('a first run creates everything, in dependency order, and ends with the smoke test', async () => {
    const { first, calls: made, state } = clean;
    expect(first.code, first.err).toBe(0);
    // Field settings exist from the start (indexed): they are updated, never created.
    // 6 index exemptions (firestore.indexes.json) and the 3 TTL policies.
    expect(first.out).toMatch(/done: \d+ created, 9 updated, 0 deleted/);
    expect(first.out).toContain('smoke: GET /healthz ok');
    // With a service token the deploy minted for itself, revoked after: the domain keeps no live token.
    expect(first.out).toContain('bootstrap: service token minted for the smoke test (domain default');
    expect(first.out).toMatch(/smoke: patch round trip ok as a service token of domain default \(scope patchbay-smoke-\d+, ii 1, deleted\)/);
    expect(await records.list(SERVICE_TOKEN_KIND, { prefix: 'default/', limit: 10 })).toEqual([]);
    // The scope it made is gone again.
    const smokeId = /scope (patchbay-smoke-\d+)/.exec(first.out)?.[1] as string;
    await expect(server.app.engine.getScope(smokeId)).rejects.toMatchObject({ code: expect.stringMatching(/^scope_(not_found|deleted)$/) });
    const at = (pred: (c: string[]) => boolean, what: string) => {
      const i = made.findIndex(pred);
      expect(i, what).toBeGreaterThanOrEqual(0);
      return i;
    };
    const cmd = (c: string[], ...words: string[]) => words.every((w, i) => c[i] === w);
    const lastApi = made.findLastIndex((c) => cmd(c, 'services', 'enable'));
    expect(made.slice(0, lastApi + 1).every((c) => cmd(c, 'services', 'enable'))).toBe(true); // APIs first
    expect(at((c) => cmd(c, 'iam', 'service-accounts', 'create', 'patchbay-api'), 'api account')).toBeGreaterThan(lastApi);
    const db = at((c) => cmd(c, 'firestore', 'databases', 'create'), 'database');
    expect(at((c) => cmd(c, 'firestore', 'indexes', 'composite', 'create'), 'index')).toBeGreaterThan(db);
    const topic = at((c) => cmd(c, 'pubsub', 'topics', 'create', 'patchbay-patches'), 'topic');
    const lastSecretGrant = made.findLastIndex((c) => cmd(c, 'secrets', 'add-iam-policy-binding'));
    const firstDeploy = at((c) => cmd(c, 'functions', 'deploy'), 'deploy');
    expect(firstDeploy).toBeGreaterThan(lastSecretGrant);
    const pushDeploy = at((c) => cmd(c, 'functions', 'deploy', 'push'), 'push deploy');
    const pushInvoker = at((c) => cmd(c, 'run', 'services', 'add-iam-policy-binding', 'push'), 'push invoker');
    const sub = at((c) => cmd(c, 'pubsub', 'subscriptions', 'create', 'patchbay-push-mirror'), 'subscription');
    expect(pushInvoker).toBeGreaterThan(pushDeploy);
    expect(sub).toBeGreaterThan(Math.max(topic, pushInvoker));
    expect(at((c) => cmd(c, 'scheduler', 'jobs', 'create', 'http', 'patchbay-bundle'), 'bundle job')).toBeGreaterThan(
      at((c) => cmd(c, 'run', 'services', 'add-iam-policy-binding', 'bundle'), 'bundle invoker'),
    );

    // What was created is what the issue asks for.
    expect(Object.keys(state.functions).sort()).toEqual([...FUNCTION_NAMES].sort());
    const api = state.functions.api.serviceConfig;
    expect(state.functions.api.buildConfig.runtime).toBe('nodejs22');
    expect(api.timeoutSeconds).toBe(300 + 60); // PATCHBAY_SSE_MAX_MS (300 s) + a margin
    expect(state.functions.bundle.serviceConfig.timeoutSeconds).toBe(240 + 60); // PATCHBAY_BUNDLE_BUDGET_MS + a margin
    expect(api.environmentVariables).toMatchObject({
      PATCHBAY_MODE: 'google',
      PATCHBAY_GCP_PROJECT: PROJECT,
      PATCHBAY_BUCKET: `${PROJECT}-patchbay`,
      PATCHBAY_MAX_OPS: '500',
      PATCHBAY_CORS_ORIGINS: 'https://app.example.com,https://admin.example.com',
      PATCHBAY_OIDC_AUDIENCE: `https://${REGION}-${PROJECT}.cloudfunctions.net`,
      PATCHBAY_OIDC_EMAILS: `patchbay-invoker@${PROJECT}.iam.gserviceaccount.com`,
    });
    expect(Object.keys(api.environmentVariables)).not.toContain('UPSTASH_REDIS_REST_TOKEN');
    expect(Object.keys(api.environmentVariables)).not.toContain('PATCHBAY_JWT_SECRET');
    for (const name of ['UPSTASH_REDIS_REST_URL', 'PATCHBAY_MIRROR_URL']) expect(Object.keys(api.environmentVariables)).not.toContain(name);
    expect(api.secretEnvironmentVariables.map((s: { key: string }) => s.key).sort()).toEqual([
      'PATCHBAY_JWT_SECRET',
      'PATCHBAY_MIRROR_URL',
      'UPSTASH_REDIS_REST_TOKEN',
      'UPSTASH_REDIS_REST_URL',
    ]);
    expect(state.functions.bundle.serviceConfig.serviceAccountEmail).toBe(`patchbay-bundler@${PROJECT}.iam.gserviceaccount.com`);
    // The configuration applier's subscription carries only report scopes (APPLY_FILTER); the others every message.
    expect(state.subscriptions['patchbay-push-config-apply'].filter).toBe('hasPrefix(attributes.scope, "sys:config:")');
    expect(state.subscriptions['patchbay-push-webhooks'].filter).toBeUndefined();
    const mirror = state.subscriptions['patchbay-push-mirror'];
    expect(mirror).toMatchObject({
      enableMessageOrdering: true,
      pushConfig: {
        pushEndpoint: `https://${REGION}-${PROJECT}.cloudfunctions.net/push/mirror`,
        oidcToken: {
          serviceAccountEmail: `patchbay-invoker@${PROJECT}.iam.gserviceaccount.com`,
          audience: `https://${REGION}-${PROJECT}.cloudfunctions.net/push/mirror`,
        },
      },
      deadLetterPolicy: { deadLetterTopic: `projects/${PROJECT}/topics/patchbay-patches-dead-letters`, maxDeliveryAttempts: 20 },
      retryPolicy: { minimumBackoff: '10s', maximumBackoff: '600s' },
    });
    expect(state.jobs['patchbay-sweep'].httpTarget.oidcToken).toEqual({
      serviceAccountEmail: `patchbay-invoker@${PROJECT}.iam.gserviceaccount.com`,
      audience: `https://${REGION}-${PROJECT}.cloudfunctions.net/sweep`,
    });
    // Browser uploads: the CORS a signed PUT's preflight needs, and the finalize notification pushed to push/uploads.
    expect(state.buckets[`${PROJECT}-patchbay`].cors_config).toEqual([
      {
        origin: ['https://app.example.com', 'https://admin.example.com'],
        method: ['GET', 'HEAD', 'PUT'],
        responseHeader: ['Content-Type', 'Content-MD5', 'x-goog-content-length-range'],
        maxAgeSeconds: 3600,
      },
    ]);
    expect(state.notifications[`${PROJECT}-patchbay`]).toEqual([
      expect.objectContaining({
        topic: `//pubsub.googleapis.com/projects/${PROJECT}/topics/patchbay-patches-uploads`,
        event_types: ['OBJECT_FINALIZE'],
        payload_format: 'JSON_API_V1',
        object_name_prefix: 'uploads/',
      }),
    ]);
    expect(state.policies['pubsub topics/patchbay-patches-uploads'].bindings).toEqual([
      { role: 'roles/pubsub.publisher', members: ['serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com'] },
    ]);
    expect(state.subscriptions['patchbay-push-uploads']).toMatchObject({
      topic: `projects/${PROJECT}/topics/patchbay-patches-uploads`,
      pushConfig: {
        pushEndpoint: `https://${REGION}-${PROJECT}.cloudfunctions.net/push/uploads`,
        oidcToken: { audience: `https://${REGION}-${PROJECT}.cloudfunctions.net/push/uploads` },
      },
      deadLetterPolicy: { deadLetterTopic: `projects/${PROJECT}/topics/patchbay-patches-dead-letters`, maxDeliveryAttempts: 20 },
    });
    expect(state.subscriptions['patchbay-push-uploads'].enableMessageOrdering).toBeUndefined();
    expect(Object.keys(state.subscriptions).sort()).toEqual([
      'patchbay-push-config-apply',
      'patchbay-push-mirror',
      'patchbay-push-uploads',
      'patchbay-push-webhooks',
    ]);
    expect(state.policies['run services/api'].bindings).toEqual([{ role: 'roles/run.invoker', members: ['allUsers'] }]);
    expect(state.policies['run services/push'].bindings).toEqual([
      { role: 'roles/run.invoker', members: [`serviceAccount:patchbay-invoker@${PROJECT}.iam.gserviceaccount.com`] },
    ]);
    expect(Object.values(state.indexes).map((i) => (i as { group: string }).group)).toEqual(['scopes', 'scopes', 'scopes']);
    expect(state.fields['(default)/log.patch']).toEqual({ indexConfig: {} });
    // TTL backstops on the record kinds that expire (their records carry expireAt: shared/ports/records.ts).
    expect(state.ttls).toEqual({
      '(default)/session': { field: 'expireAt' },
      '(default)/claim': { field: 'expireAt' },
      '(default)/webhook-attempts': { field: 'expireAt' },
    });
  });

  it('secret values go to Secret Manager on stdin and are never printed', () => {
    const { state, first, calls: made } = clean;
    expect(state.secrets['patchbay-upstash-token'].versions).toEqual([TOKEN]);
    const jwt = state.secrets['patchbay-jwt-secret'].versions[0] as string;
    expect(jwt).toBe(JWT_KEY);
    expect(state.secrets['patchbay-mirror-url'].versions).toEqual([MIRROR_URL]);
    for (const text of [first.out, first.err, clean.second.out, JSON.stringify(made)]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain('pg-password-do-not-print');
      expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{8,}\./); // no token (the smoke test's service token) either
      expect(text).not.toContain(jwt);
    }
  });

  it('a second run makes no mutating call, and says so', () => {
    expect(clean.second.code, clean.second.err).toBe(0);
    expect(calls(clean.dir)).toEqual(clean.calls);
    expect(clean.second.out).toMatch(/no changes: all \d+ resources are up to date/);
  });

  it('--plan makes no call: on an empty project it plans every creation, on a deployed one none', async () => {
    const dir = newState();
    const plan = await deploy(dir, ['--plan']);
    expect(plan.code, plan.err).toBe(0);
    expect(calls(dir)).toEqual([]);
    const changes = (out: string) => out.split('\n').filter((l) => /^(create|update) /.test(l)).length;
    expect(changes(plan.out)).toBe(changes(clean.first.out));
    expect(plan.out).toContain('create  subscription patchbay-push-mirror');
    expect(plan.out).not.toContain(TOKEN);

    const copy = newState();
    write(copy, clean.state);
    const none = await deploy(copy, ['--plan']);
    expect(none.code).toBe(0);
    expect(none.out).toMatch(/plan: 0 to create, 0 to update, 0 to delete/);
    expect(calls(copy)).toEqual([]);
  });

  it('the bootstrap brings up the domains of DEPLOY_DOMAINS_FILE: uploads and applies, then changes nothing; --plan reads no app state; an invalid configuration stops before any gcloud call (exit 2)', async () => {
    // A server whose configuration applies run in-process, with its own record store: the deploy's `api` here.
    const app = await startServer({ jwtSecret: JWT_KEY, domainCacheMs: 0 }, undefined, { deliverLocally: true, mirror: null });
    try {
      const d = dirs[0] as string;
      writeFileSync(join(d, 'shop.yaml'), 'types:\n  order:\n    schema: { type: object }\n');
      writeFileSync(join(d, 'domains.yaml'), 'domains:\n  shop.example.com:\n    admins: [firebase:alice]\n    config: shop.yaml\n');
      const env = join(d, 'domains.env');
      writeFileSync(env, `${readFileSync(envFile, 'utf8')}DEPLOY_DOMAINS_FILE=${join(d, 'domains.yaml')}\n`);
      const copy = newState();
      write(copy, clean.state);
      const run = (args: string[]) =>
        deploy(copy, ['--env', env, ...args], {
          env: { FAKE_GCLOUD_API_URL: app.url },
          io: { records: app.app.adapters.records, domains: { waitMs: 30_000, pollMs: 50 } },
        });
      const untouched = await app.app.adapters.records.get('domain', 'shop.example.com');
      const plan = await run(['--plan']);
      expect(plan.code, plan.err).toBe(0);
      expect(plan.out).toContain(
        "plan: the bootstrap would make sure of 1 domains' admins and configuration (shop.example.com); app state is not read with --plan",
      );
      expect(await app.app.adapters.records.get('domain', 'shop.example.com')).toEqual(untouched);
      expect(await app.app.domainConfigs.head('shop.example.com')).toEqual({ latest: 0, active: 0 });

      const first = await run([]);
      expect(first.code, `${first.out}\n${first.err}`).toBe(0);
      expect(first.out).toContain('bootstrap: shop.example.com: admins added: firebase:alice');
      expect(first.out).toContain('bootstrap: shop.example.com: configuration version 1 applied');
      expect(first.out).toContain('smoke: patch round trip ok');
      expect(await app.app.domainConfigs.head('shop.example.com')).toEqual({ latest: 1, active: 1 });
      expect((await app.app.adapters.records.get('domain', 'shop.example.com'))?.value).toMatchObject({ admins: ['firebase:alice'] });
      expect(await app.app.adapters.records.list(SERVICE_TOKEN_KIND, { prefix: 'shop.example.com/', limit: 10 })).toEqual([]);
      expect(first.out).not.toContain(JWT_KEY);

      const second = await run([]);
      expect(second.code, second.err).toBe(0);
      expect(second.out).toContain('bootstrap: shop.example.com: configuration up to date (version 1, active); nothing uploaded');
      expect(await app.app.domainConfigs.head('shop.example.com')).toEqual({ latest: 1, active: 1 });

      writeFileSync(join(d, 'shop.yaml'), 'types:\n  order:\n    schema: { type: object }\n    extra: 1\n');
      const stateBefore = readState(copy);
      const callsBefore = calls(copy);
      const bad = await run([]);
      expect(bad.code).toBe(2);
      expect(calls(copy)).toEqual(callsBefore);
      expect(bad.err).toMatch(/invalid_config: .*\n +line 4, column 5: types\.order\.extra/);
      expect(readState(copy)).toEqual(stateBefore);
      expect(await app.app.domainConfigs.head('shop.example.com')).toEqual({ latest: 1, active: 1 });
    } finally {
      await app.close();
    }
  });

  it('a failure injected at each mutating step, then a re-run, ends in the same state as a clean run', async () => {
    const n = clean.calls.length;
    expect(n).toBeGreaterThan(30);
    for (let at = 1; at <= n; at++) {
      const dir = newState();
      const failed = await deploy(dir, ['--no-smoke'], { env: { FAKE_GCLOUD_FAIL_AT: String(at) } });
      expect(failed.code, `step ${at}`).toBe(1);
      expect(failed.err).toContain('injected failure');
      expect(calls(dir).length, `step ${at}`).toBe(at - 1);
      resetAttempts(dir);
      const rerun = await deploy(dir, ['--no-smoke'], {});
      expect(rerun.code, `re-run after step ${at}: ${rerun.err}`).toBe(0);
      expect(comparable(readState(dir)), `state after a failure at step ${at} and a re-run`).toEqual(comparable(clean.state));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000); // a deploy and a re-run per mutating step

  it('--check finds a deleted subscription, a changed function environment variable and a missing scheduler job', async () => {
    const dir = newState();
    write(dir, clean.state);
    const ok = await deploy(dir, ['--check']);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain('check: no drift');

    const drifted = structuredClone(clean.state);
    delete drifted.subscriptions['patchbay-push-webhooks'];
    delete drifted.policies['pubsub subscriptions/patchbay-push-webhooks']; // its IAM policy goes with it
    drifted.functions.push.serviceConfig.environmentVariables.PATCHBAY_MAX_OPS = '5';
    delete drifted.jobs['patchbay-sweep'];
    delete drifted.ttls['(default)/session'];
    write(dir, drifted);
    const check = await deploy(dir, ['--check']);
    expect(check.code).toBe(3);
    expect(check.out).toContain('drift: missing subscription patchbay-push-webhooks');
    expect(check.out).toMatch(/drift: differs function push: env .*"PATCHBAY_MAX_OPS":"5".* -> .*"PATCHBAY_MAX_OPS":"500"/);
    expect(check.out).toContain('drift: missing scheduler-job patchbay-sweep');
    expect(check.out).toContain('drift: missing binding subscription/patchbay-push-webhooks/roles/pubsub.subscriber/');
    expect(check.out).toContain('drift: differs firestore-ttl session.expireAt: enabled false -> true');
    expect(check.out).toContain('check: 5 differences');
    expect(calls(dir)).toEqual([]);

    // A deploy repairs exactly that.
    const fix = await deploy(dir, ['--no-smoke']);
    expect(fix.code, fix.err).toBe(0);
    expect(calls(dir).map((c) => c.slice(0, 4).join(' '))).toEqual([
      'firestore fields ttls update',
      'functions deploy push --gen2',
      'pubsub subscriptions create patchbay-push-webhooks',
      'pubsub subscriptions add-iam-policy-binding patchbay-push-webhooks',
      'scheduler jobs create http',
    ]);
    expect(comparable(readState(dir))).toEqual(comparable(clean.state));
  });

  it('--prune deletes only what patchbay created and no longer needs, and only once confirmed', async () => {
    const dir = newState();
    const state = structuredClone(clean.state);
    state.topics['patchbay-old'] = { labels: { 'managed-by': 'patchbay' } };
    state.topics['someone-elses'] = {};
    state.subscriptions['patchbay-sse-instance1'] = {
      name: `projects/${PROJECT}/subscriptions/patchbay-sse-instance1`,
      topic: `projects/${PROJECT}/topics/patchbay-patches`,
    };
    state.jobs['their-job'] = { name: `projects/${PROJECT}/locations/${REGION}/jobs/their-job`, schedule: '* * * * *', description: 'not ours' };
    write(dir, state);
    // The webhooks consumer is gone from the app: its subscription is not wanted any more.
    const refused = await deploy(dir, ['--prune', '--no-smoke'], { consumers: ['config-apply', 'mirror'] });
    expect(refused.code).toBe(0);
    expect(refused.out).toContain('prune: not confirmed; deleted nothing');
    expect(calls(dir)).toEqual([]);

    const pruned = await deploy(dir, ['--prune', '--yes', '--no-smoke'], { consumers: ['config-apply', 'mirror'] });
    expect(pruned.code, pruned.err).toBe(0);
    expect(
      calls(dir)
        .map((c) => c.slice(0, 4).join(' '))
        .sort(),
    ).toEqual(['pubsub subscriptions delete patchbay-push-webhooks', 'pubsub topics delete patchbay-old'].sort());
    const after = readState(dir);
    expect(Object.keys(after.topics).sort()).toEqual(['patchbay-patches', 'patchbay-patches-dead-letters', 'patchbay-patches-uploads', 'someone-elses']);
    expect(Object.keys(after.subscriptions).sort()).toEqual([
      'patchbay-push-config-apply',
      'patchbay-push-mirror',
      'patchbay-push-uploads',
      'patchbay-sse-instance1',
    ]);
    expect(Object.keys(after.jobs).sort()).toEqual(['patchbay-bundle', 'patchbay-sweep', 'their-job']);

    // Without --prune, an unwanted resource is only reported by --check.
    const check = await deploy(dir, ['--check'], { consumers: ['config-apply', 'mirror'] });
    expect(check.code, check.out).toBe(0);
  });

  it('destroy deletes everything patchbay created except the data and the APIs; a second destroy does nothing', async () => {
    const dir = newState();
    const state = structuredClone(clean.state);
    state.topics['someone-elses'] = {};
    write(dir, state);
    // Without --yes it asks first; refused, it deletes nothing.
    let asked = 0;
    const refused = await deploy(dir, ['destroy'], {
      io: {
        confirm: async (doomed) => {
          asked = doomed.length;
          return false;
        },
      },
    });
    expect(refused.code).toBe(0);
    expect(asked).toBeGreaterThan(20);
    expect(refused.out).toContain('prune: not confirmed; deleted nothing');
    expect(calls(dir)).toEqual([]);
    const gone = await deploy(dir, ['destroy', '--yes']);
    expect(gone.code, gone.err).toBe(0);
    const after = readState(dir);
    expect(after.functions).toEqual({});
    expect(after.jobs).toEqual({});
    expect(after.subscriptions).toEqual({});
    expect(after.secrets).toEqual({});
    expect(after.accounts).toEqual({});
    expect(Object.keys(after.topics)).toEqual(['someone-elses']);
    expect(after.policies[`projects/${PROJECT}`].bindings).toEqual([]);
    // Kept: the data (Firestore, the bucket) and the APIs.
    expect(Object.keys(after.databases)).toEqual(['(default)']);
    expect(Object.keys(after.buckets)).toEqual([`${PROJECT}-patchbay`]);
    expect(after.notifications[`${PROJECT}-patchbay`]).toEqual([]); // the bucket stays; its notification to a deleted topic goes
    expect(Object.keys(after.services).length).toBe(Object.keys(clean.state.services).length);
    const made = calls(dir).length;
    const again = await deploy(dir, ['destroy', '--yes']);
    expect(again.code).toBe(0);
    expect(calls(dir).length).toBe(made);
  });

  it('a bad configuration stops before any gcloud call, naming the problem (exit 2)', async () => {
    const dir = newState();
    const bad = join(dirs[0] as string, 'bad.env');
    writeFileSync(bad, 'PATCHBAY_MAX_OPS=lots\nPATCHBAY_MAXOPS=3\nFIRESTORE_EMULATOR_HOST=127.0.0.1:1\nDEPLOY_RUNTIME=nodejs18\n');
    const out: string[] = [];
    const code = await main([...BASE, '--env', bad], { env: fakeEnv(dir), out: (l) => out.push(l), err: (l) => out.push(l) });
    expect(code).toBe(2);
    const text = out.join('\n');
    for (const name of [
      'PATCHBAY_MAX_OPS="lots"',
      'PATCHBAY_MAXOPS is not a setting',
      'FIRESTORE_EMULATOR_HOST is for local development only',
      'DEPLOY_RUNTIME="nodejs18"',
    ])
      expect(text).toContain(name);
    expect(await main(['--region', REGION], { env: fakeEnv(dir), err: () => {}, out: () => {} })).toBe(2);
    expect(readState(dir).services).toEqual({});
  });

  it('without a mirror database there is no mirror subscription nor secret; a first deploy without the Upstash URL stops naming it', async () => {
    const d = tempDir('patchbay-deploy-env-');
    dirs.push(d);
    const bare = join(d, 'bare.env');
    writeFileSync(bare, `UPSTASH_REDIS_REST_TOKEN=${TOKEN}\n`);
    const dir = newState();
    const out: string[] = [];
    const io = { env: fakeEnv(dir), runner: inProcessRunner(fakeEnv(dir)), out: (l: string) => out.push(l), err: (l: string) => out.push(l) };
    const plan = await main([...BASE, '--env', bare, '--plan'], io);
    expect(plan, out.join('\n')).toBe(0);
    expect(out.join('\n')).not.toContain('patchbay-push-mirror');
    expect(out.join('\n')).not.toContain('patchbay-mirror-url');
    expect(out.join('\n')).toContain('create  subscription patchbay-push-webhooks');
    out.length = 0;
    const code = await main([...BASE, '--env', bare, '--no-smoke'], io);
    expect(code).toBe(2);
    expect(out.join('\n')).toContain('secret patchbay-upstash-url does not exist yet: set UPSTASH_REDIS_REST_URL in the env file');
    // Stopped at that secret: what came before it is there, nothing after it.
    expect(readState(dir).secrets['patchbay-upstash-url']).toBeUndefined();
    expect(readState(dir).functions).toEqual({});
  });

  it('without a record store to mint a service token in, the smoke test signs in anonymously and says why', async () => {
    const dir = newState();
    write(dir, clean.state);
    const broken: RecordStore = {
      get: async () => {
        throw new Error('Could not load the default credentials');
      },
      put: async () => null,
      delete: async () => false,
      list: async () => {
        throw new Error('Could not load the default credentials');
      },
    };
    const run = await deploy(dir, [], { io: { records: broken } });
    expect(run.code, `${run.out}\n${run.err}`).toBe(0);
    expect(run.out).toContain('bootstrap: no service token for the smoke test (Could not load the default credentials)');
    expect(run.out).toMatch(/smoke: patch round trip ok as an anonymous user \(scope patchbay-smoke-\d+, ii 1, deleted\)/);
    expect(calls(dir)).toEqual([]);
  });

  it('a blocked change (a subscription without ordering) is reported and not forced', async () => {
    const dir = newState();
    const state = structuredClone(clean.state);
    state.subscriptions['patchbay-push-mirror'].enableMessageOrdering = false;
    write(dir, state);
    const run = await deploy(dir, ['--no-smoke']);
    expect(run.code).toBe(1);
    expect(run.out).toContain('blocked subscription patchbay-push-mirror: ordering false -> true (cannot change in place)');
    expect(calls(dir)).toEqual([]);
  });
});

describe('generated commands against the real gcloud help texts', () => {
  const help = (command: string) => readFileSync(join(HELP_DIR, `${command.replaceAll(' ', '_')}.txt`), 'utf8');

  it('a misspelled flag, an unknown command, or a value on a switch is refused as gcloud refuses it', () => {
    const env = fakeEnv(newState());
    const misspelled = fake(['pubsub', 'subscriptions', 'create', 's', '--topic=t', '--enable-mesage-ordering', '--project=p', '--quiet'], { env });
    expect(misspelled.code).toBe(2);
    expect(misspelled.stderr).toContain('unrecognized arguments: --enable-mesage-ordering');
    expect(fake(['pubsub', 'topics', 'create', 't', '--labels', '--project=p', '--quiet'], { env }).stderr).toContain('expected one argument');
    expect(fake(['pubsub', 'topics', 'create', 't', '--quiet=yes', '--project=p'], { env }).code).toBe(2);
    expect(fake(['pubsub', 'topics', 'frobnicate', 't', '--project=p', '--quiet'], { env }).stderr).toContain('Invalid choice');
    expect(checkFlags(help('functions deploy'), ['api', '--gen2', '--no-allow-unauthenticated', '--env-vars-file=x', '--set-secrets=A=b:latest'])).toBeNull();
    expect(checkFlags(help('functions describe'), ['api', '--gen2'])).toContain('--gen2'); // describe takes --v2, not --gen2
    const flags = flagsOf(help('storage buckets update'));
    expect(flags.get('cors-file')).toBe(true);
    expect(flags.get('no-pap')).toBe(false);
    expect(flags.get('project')).toBe(true);
  });

  it('every gcloud command the deployer issued was one the fixtures cover', () => {
    const index = JSON.parse(readFileSync(join(HELP_DIR, 'index.json'), 'utf8')) as { commands: string[] };
    for (const c of clean.calls)
      expect(
        index.commands.some((cmd) => c.join(' ').startsWith(`${cmd} `)),
        c.join(' '),
      ).toBe(true);
  });

  it.skipIf(!hasTool('gcloud'))('the help fixtures match the gcloud on this machine', () => {
    const index = JSON.parse(readFileSync(join(HELP_DIR, 'index.json'), 'utf8')) as { version: string; commands: string[] };
    const env = { ...process.env, TERM: 'dumb', CLOUDSDK_CORE_DISABLE_PROMPTS: '1' };
    const version = execFileSync('gcloud', ['--version'], { env, encoding: 'utf8' }).split('\n')[0]?.trim();
    expect(version, 'a different gcloud: run node test/helpers/fake-gcloud/refresh-help.mjs').toBe(index.version);
    // A sample (each help text takes about a second): the most used commands.
    for (const command of ['functions deploy', 'pubsub subscriptions create']) {
      const live = keptSections(plain(execFileSync('gcloud', [...command.split(' '), '--help'], { env, encoding: 'utf8' })));
      expect(live, command).toBe(help(command));
    }
  });

  it('the model deploys exactly the functions functions/index.ts exports', () => {
    const source = readFileSync('functions/index.ts', 'utf8');
    const exported = [...source.matchAll(/functions\.http\(\s*'([a-z]+)'/g)].map((m) => m[1]);
    expect(exported.sort()).toEqual([...FUNCTION_NAMES].sort());
  });
});
