/**
 * The Google stack end to end, on the real Firestore and Pub/Sub emulators, a real redis-server
 * behind the Upstash REST gateway, and the project's Cloud Storage server:
 * - the same v1 HTTP, SSE, client (its offline queue, history, multiplexed stream and long polling, shared connection, uploads, sessions and presence), state-at-index, sharing, listing, named scopes, tags, validation, configuration, webhooks, limits, domain-claims and deploy-bootstrap contract suites as embedded mode (identical behaviour on both
 *   stacks; the limits' counters in Redis, through the Upstash gateway);
 * - a patch travels HTTP → Firestore → Pub/Sub push → subscriber, in order, through redeliveries;
 * - guarantee 5: a crash between commit and publish still delivers the patch once the sweeper runs;
 * - guarantee 1: a commit whose acknowledgement was lost, retried, is applied once.
 */
import { randomUUID } from 'node:crypto';
import { PubSub } from '@google-cloud/pubsub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APPLY_FILTER } from '../shared/domains/apply.js';
import type { Adapters, Ledger } from '../shared/ports/index.js';
import type { PatchEvent } from '../shared/protocol.js';
import { objectKey } from '../shared/uploads/uploads.js';
import { claimsContract } from './contract/claims.js';
import { clientContract } from './contract/client.js';
import { clientApiContract } from './contract/client-api.js';
import { clientComposeContract } from './contract/client-compose.js';
import { clientHistoryContract } from './contract/client-history.js';
import { clientMuxContract } from './contract/client-mux.js';
import { clientOfflineContract } from './contract/client-offline.js';
import { clientOrderingContract } from './contract/client-ordering.js';
import { clientSessionsContract } from './contract/client-sessions.js';
import { configContract, failingPutOnce, type StartDelivering } from './contract/config.js';
import { deletionContract } from './contract/deletion.js';
import { deployBootstrapContract } from './contract/deploy-bootstrap.js';
import { httpContract } from './contract/http.js';
import { limitsContract } from './contract/limits.js';
import { listingContract } from './contract/listing.js';
import { muxContract } from './contract/mux.js';
import { namesContract } from './contract/names.js';
import { sessionsContract } from './contract/sessions.js';
import { sharingContract } from './contract/sharing.js';
import { sseContract } from './contract/sse.js';
import { stateAtContract } from './contract/state-at.js';
import { tagsContract } from './contract/tags.js';
import { uploadsContract } from './contract/uploads.js';
import { validationContract } from './contract/validation.js';
import { webhooksContract } from './contract/webhooks.js';
import { postFinalize } from './helpers/gcs.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { skipWithout } from './helpers/proc.js';
import { request, serveHandler, startServer, type TestServer } from './helpers/server.js';
import { wrap } from './helpers/wrap.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

async function waitFor(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A push subscription on the scope's topic, with message ordering, as a deployment would create it. */
async function pushSubscription(stack: GoogleStack, topic: string, name: string, endpoint: string, filter?: string): Promise<() => Promise<void>> {
  const pubsub = new PubSub({ projectId: stack.projectId });
  const [t] = await pubsub.topic(topic).get({ autoCreate: true });
  const [sub] = await t.createSubscription(name, { pushConfig: { pushEndpoint: endpoint }, enableMessageOrdering: true, ...(filter ? { filter } : {}) });
  return async () => {
    await sub.delete().catch(() => {});
    await pubsub.close();
  };
}

/** Wraps a ledger so the next `commit` throws after it succeeded: the acknowledgement is lost. */
function loseNextAck(ledger: Ledger): { ledger: Ledger; arm: () => void } {
  let armed = false;
  const wrapped = wrap(ledger, {
    commit: async (real, id, plan) => {
      const result = await real(id, plan);
      if (armed) {
        armed = false;
        throw new Error('connection reset after commit');
      }
      return result;
    },
  });
  return { ledger: wrapped, arm: () => (armed = true) };
}

describe.skipIf(skip)('Google stack on the emulators', () => {
  let stack: GoogleStack;
  beforeAll(async () => {
    stack = await startGoogleStack();
  }, 180_000);
  afterAll(() => stack?.stop());

  httpContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  sseContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientOfflineContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientHistoryContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientApiContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientComposeContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientOrderingContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  stateAtContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  clientMuxContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  // Uploads through the GCS stand-in's signed URLs, made ready by the client's `complete` (no finalize notification posted).
  clientSessionsContract('google', (overrides) => startServer({ ...stack.config(), limitsPrefix: `pb:lim:${randomUUID().slice(0, 8)}:`, ...overrides }));
  muxContract(
    'google',
    (overrides) => startServer({ ...stack.config(), ...overrides }),
    async () => {
      const shared = stack.config();
      return [await startServer({ ...shared, sseRetryMs: 50 }), await startServer({ ...shared, sseRetryMs: 50 })];
    },
  );
  // Two instances on one namespace (Firestore root, Pub/Sub topic): an access change made on one
  // reaches the other's streams as a signal on the topic.
  sharingContract(
    'google',
    (overrides) => startServer({ ...stack.config(), ...overrides }),
    async () => {
      const shared = stack.config();
      return [await startServer({ ...shared, sseRetryMs: 50 }), await startServer({ ...shared, sseRetryMs: 50 })];
    },
  );
  listingContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  // A server whose config-apply consumer is delivered to as deployed: its subscription carries only report scopes (APPLY_FILTER).
  const delivering: StartDelivering = async (opts = {}) => {
    const cfg = { ...stack.config(), domainCacheMs: 0 };
    const srv = await startServer(cfg, undefined, { wrap: failingPutOnce(opts.failRecordPutsOnce) });
    const push = await serveHandler(srv.app.push);
    const unsubscribe = await pushSubscription(
      stack,
      cfg.pubsubTopic as string,
      `apply-${randomUUID().slice(0, 8)}`,
      `${push.url}/push/config-apply`,
      APPLY_FILTER,
    );
    return {
      srv,
      close: async () => {
        await unsubscribe();
        push.close();
        await srv.close();
      },
    };
  };
  configContract('google', delivering);
  deployBootstrapContract('google', delivering);
  validationContract('google', (opts) => startServer(stack.config(), undefined, opts));
  // A delete made on one instance reaches the other's streams as a signal on the topic.
  deletionContract(
    'google',
    (overrides, opts) => startServer({ ...stack.config(), limitsPrefix: `pb:lim:${randomUUID().slice(0, 8)}:`, ...overrides }, undefined, opts),
    async () => {
      const shared = stack.config();
      return [await startServer({ ...shared, sseRetryMs: 50 }), await startServer({ ...shared, sseRetryMs: 50 })];
    },
  );
  namesContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  tagsContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }));
  // Signed by the client library with the stack's key file, verified by the GCS stand-in; ready
  // when the bucket's finalize notification (built from the stored object) reaches the push function.
  uploadsContract('google', {
    start: (overrides) => startServer({ ...stack.config(), limitsPrefix: `pb:lim:${randomUUID().slice(0, 8)}:`, ...overrides }),
    async land(srv, id) {
      const push = await serveHandler(srv.app.push);
      try {
        expect(await postFinalize(push.url, stack.gcsUrl, 'patchbay-test', objectKey(id))).toBe(204);
      } finally {
        push.close();
      }
    },
  });
  // As deployed: config-apply's filtered subscription and the webhooks consumer's unfiltered one,
  // pushed to one endpoint; a restart is a new instance behind it (503 while none runs, so
  // Pub/Sub redelivers), on the same Firestore root and topic.
  webhooksContract('google', async (overrides) => {
    const cfg = { ...stack.config(), domainCacheMs: 0, webhookPrivateAddresses: 'allow' as const, ...overrides };
    let current: TestServer | null = await startServer(cfg);
    const push = await serveHandler(async (req, res) => {
      if (current) return current.app.push(req, res);
      res.writeHead(503);
      res.end();
    });
    const id = randomUUID().slice(0, 8);
    const unsubscribe = [
      await pushSubscription(stack, cfg.pubsubTopic as string, `apply-${id}`, `${push.url}/push/config-apply`, APPLY_FILTER),
      await pushSubscription(stack, cfg.pubsubTopic as string, `hooks-${id}`, `${push.url}/push/webhooks`),
    ];
    const h = {
      srv: current,
      async restart(whileDown?: () => void) {
        current = null;
        await h.srv.close();
        whileDown?.();
        h.srv = await startServer(cfg);
        current = h.srv;
      },
      async close() {
        for (const u of unsubscribe) await u();
        push.close();
        await h.srv.close();
      },
    };
    return h;
  });
  // Two instances on one stack (Firestore root, topic, Redis prefix): presence set on one reaches
  // the other's streams; a restart is a new instance on the same storage, whose sweep finishes the
  // close work the old one left. Configuration applies through config-apply's push subscription.
  sessionsContract('google', async (overrides) => {
    const cfg = { ...stack.config(), limitsPrefix: `pb:lim:${randomUUID().slice(0, 8)}:`, webhookPrivateAddresses: 'allow' as const, ...overrides };
    let current: TestServer | null = await startServer(cfg);
    const peer = await startServer(cfg);
    const push = await serveHandler(async (req, res) => {
      if (current) return current.app.push(req, res);
      res.writeHead(503);
      res.end();
    });
    const unsubscribe = await pushSubscription(
      stack,
      cfg.pubsubTopic as string,
      `apply-${randomUUID().slice(0, 8)}`,
      `${push.url}/push/config-apply`,
      APPLY_FILTER,
    );
    const h = {
      srv: current,
      peer,
      async restart() {
        current = null;
        await h.srv.close();
        h.srv = await startServer(cfg);
        current = h.srv;
      },
      async close() {
        await unsubscribe();
        push.close();
        await Promise.all([h.srv.close(), peer.close()]);
      },
    };
    return h;
  });
  // Each server gets its own Redis key prefix for the limits: counters of one test do not leak into the next.
  limitsContract('google', (overrides) => startServer({ ...stack.config(), limitsPrefix: `pb:lim:${randomUUID().slice(0, 8)}:`, ...overrides }));
  // Claims records in Firestore, reports through Firestore and Pub/Sub; localhost claims are off by default here.
  claimsContract('google', (overrides, opts) => startServer({ ...stack.config(), ...overrides }, undefined, opts), false);

  describe('end to end', () => {
    it('delivers HTTP → Firestore → Pub/Sub push → subscriber, in order, through a redelivery', async () => {
      const cfg = stack.config();
      const seen: PatchEvent[] = [];
      let failOnce = 7;
      const srv = await startServer(cfg, undefined, {
        consumers: {
          recorder: async (e) => {
            if (e.ii === failOnce) {
              failOnce = -1;
              throw new Error('worker hiccup'); // a 5xx: Pub/Sub redelivers
            }
            seen.push(e);
          },
        },
      });
      const push = await serveHandler(srv.app.push);
      const unsubscribe = await pushSubscription(stack, cfg.pubsubTopic as string, `push-${cfg.firestoreRoot}`, `${push.url}/push/recorder`);
      try {
        const alice = await srv.client();
        const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { list: [] } } })).json;
        for (let i = 1; i <= 10; i++) {
          expect((await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { ii: i, patch: [{ op: 'add', path: '/list/-', value: i }] } })).status).toBe(
            200,
          );
        }
        await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            alice.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/list/-', value: 100 + i }] } }),
          ),
        );
        await waitFor(() => seen.filter((e) => e.scope === id).length >= 20, 'push deliveries');
        const mine = seen.filter((e) => e.scope === id);
        expect(mine.map((e) => e.ii)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        const log = (await alice.request('GET', `/v1/scopes/${id}/patches`)).text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        expect(mine.map((e) => e.patch)).toEqual(log.map((l) => l.patch));
      } finally {
        await unsubscribe();
        push.close();
        await srv.close();
      }
    });

    it('delivers a patch whose server crashed between commit and publish, once the sweeper runs (guarantee 5)', async () => {
      const cfg = { ...stack.config(), sweepAgeMs: 0 };
      // Server A commits, then "crashes": its publish never happens and its client gets no ack.
      let crash: (err: Error) => void = () => {};
      const crashed = new Promise<void>((_, reject) => {
        crash = reject;
      });
      crashed.catch(() => {});
      const a = await startServer(cfg, undefined, {
        wrap: (ad: Adapters) => ({
          ...ad,
          bus: { ...ad.bus, publish: () => crashed, subscribe: (s, l) => ad.bus.subscribe(s, l), close: () => ad.bus.close() },
        }),
      });
      const seen: PatchEvent[] = [];
      const b = await startServer(cfg, undefined, { consumers: { recorder: async (e) => void seen.push(e) } });
      const push = await serveHandler(b.app.push);
      const unsubscribe = await pushSubscription(stack, cfg.pubsubTopic as string, `push-${cfg.firestoreRoot}`, `${push.url}/push/recorder`);
      try {
        const alice = await a.client();
        const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
        const lost = await fetch(`${a.url}/v1/scopes/${id}/patches`, {
          method: 'POST',
          headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ session: 's', si: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] }),
          signal: AbortSignal.timeout(3000),
        }).then(
          () => 'acked',
          () => 'no answer',
        );
        expect(lost).toBe('no answer');
        expect((await b.app.adapters.ledger.getHead(id))?.ii).toBe(1); // committed, never published
        expect(seen).toEqual([]);
        expect(await b.app.engine.sweep(Date.now() + 1000)).toBeGreaterThanOrEqual(1);
        await waitFor(() => seen.some((e) => e.scope === id), 'the swept patch');
        expect(seen.filter((e) => e.scope === id).map((e) => [e.ii, e.patch])).toEqual([[1, [{ op: 'replace', path: '/n', value: 1 }]]]);
        // Server A is gone (with scope leaders, a live A would still lead the scope, and B would
        // hand the retry to it): its publish fails and it shuts down, giving up the scope's lease.
        crash(new Error('server A is gone'));
        await a.close();
        // The client's retry of the unacknowledged request, sent to B, is recognised.
        const retry = await request(b.url, 'POST', `/v1/scopes/${id}/patches`, {
          token: alice.token,
          body: { session: 's', si: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] },
        });
        expect(retry.json).toEqual({ id, ii: 1, duplicate: true });
      } finally {
        crash(new Error('server A is gone'));
        await unsubscribe();
        push.close();
        await Promise.all([a.close().catch(() => {}), b.close()]);
      }
    });

    it('applies a commit whose acknowledgement was lost exactly once when the client retries (guarantee 1)', async () => {
      let arm: () => void = () => {};
      const srv = await startServer(stack.config(), undefined, {
        wrap: (ad) => {
          const lossy = loseNextAck(ad.ledger);
          arm = lossy.arm;
          return { ...ad, ledger: lossy.ledger };
        },
      });
      try {
        const alice = await srv.client();
        const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
        const body = { ii: 1, session: 'tab', si: 41, patch: [{ op: 'replace', path: '/n', value: 5 }] };
        arm();
        const first = await alice.request('POST', `/v1/scopes/${id}/patches`, { body });
        expect(first.status).toBeGreaterThanOrEqual(500); // the client cannot know it was committed
        const second = await alice.request('POST', `/v1/scopes/${id}/patches`, { body });
        expect(second.json).toEqual({ id, ii: 1, duplicate: true });
        const log = (await alice.request('GET', `/v1/scopes/${id}/patches`)).text.trim().split('\n');
        expect(log).toHaveLength(1);
        expect((await alice.request('GET', `/v1/scopes/${id}`)).json).toMatchObject({ ii: 1, state: { n: 5 } });
      } finally {
        await srv.close();
      }
    });
  });
});
