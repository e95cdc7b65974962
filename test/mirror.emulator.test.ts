/**
 * The queryable mirror over HTTP on the Google stack (test/contract/mirror.ts, and the client's
 * queries in test/contract/client-queries.ts): Firestore and
 * Pub/Sub emulators, Redis, and a private Postgres cluster as PATCHBAY_MIRROR_URL. As deployed,
 * the built-in consumers get push subscriptions with their filters (shared/domains/consumers.ts):
 * `config-apply` only report scopes, `mirror` everything but the platform's own scopes. Skipped
 * without gcloud, redis-server or Postgres (failing instead under CI).
 */
import { randomUUID } from 'node:crypto';
import { PubSub } from '@google-cloud/pubsub';
import { afterAll, beforeAll, describe } from 'vitest';
import type { Config } from '../shared/config.js';
import { BUILT_IN_CONSUMERS } from '../shared/domains/consumers.js';
import { clientQueriesContract } from './contract/client-queries.js';
import { mirrorContract } from './contract/mirror.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { type LocalPostgres, noPostgres, startPostgres } from './helpers/postgres.js';
import { skipWithout } from './helpers/proc.js';
import { serveHandler, startServer } from './helpers/server.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server') || noPostgres();

describe.skipIf(skip)('the mirror on the Google stack', () => {
  let stack: GoogleStack;
  let pg: LocalPostgres;
  beforeAll(async () => {
    [stack, pg] = await Promise.all([startGoogleStack(), startPostgres()]);
  }, 240_000);
  afterAll(async () => {
    await pg?.stop();
    await stack?.stop();
  });

  const startMirrored = async (overrides: Partial<Config> = {}) => {
    const cfg = { ...stack.config(), domainCacheMs: 0, mirrorUrl: pg.url, ...overrides };
    const srv = await startServer(cfg);
    const push = await serveHandler(srv.app.push);
    const pubsub = new PubSub({ projectId: stack.projectId });
    const [topic] = await pubsub.topic(cfg.pubsubTopic as string).get({ autoCreate: true });
    const subs: Array<{ delete(): Promise<unknown> }> = [];
    for (const name of ['config-apply', 'mirror']) {
      const filter = BUILT_IN_CONSUMERS[name]?.filter;
      const [sub] = await topic.createSubscription(`${name}-${randomUUID().slice(0, 8)}`, {
        pushConfig: { pushEndpoint: `${push.url}/push/${name}` },
        enableMessageOrdering: true,
        ...(filter ? { filter } : {}),
      });
      subs.push(sub);
    }
    return {
      srv,
      close: async () => {
        for (const sub of subs) await sub.delete().catch(() => {});
        await pubsub.close();
        push.close();
        await srv.close();
      },
    };
  };
  mirrorContract('google', () => startMirrored());
  clientQueriesContract('google', startMirrored);
});
