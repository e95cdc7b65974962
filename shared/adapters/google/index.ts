/**
 * The Google adapter set: Firestore (ledger), Upstash Redis (hot cache), Pub/Sub (bus), Cloud
 * Storage (blobs). The client libraries find local stand-ins through FIRESTORE_EMULATOR_HOST,
 * PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST by themselves (see infra/local/dev-cloud.ts).
 * Loaded with a dynamic import, so embedded mode never loads a Google SDK.
 */
import { randomUUID } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import { PubSub } from '@google-cloud/pubsub';
import { Storage } from '@google-cloud/storage';
import type { GoogleConfig } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Adapters } from '../../ports/index.js';
import { FirestoreLedger } from './firestore/ledger.js';
import { FirestoreRecords } from './firestore/records.js';
import { GcsBlobStore } from './gcs-blobs.js';
import { PubSubBus } from './pubsub-bus.js';
import { UpstashCache } from './redis-cache.js';

export type { GoogleConfig };
export { FirestoreLedger, FirestoreRecords, GcsBlobStore, PubSubBus, UpstashCache };

export function googleAdapters(config: GoogleConfig, logger: Pick<Logger, 'error'>): Adapters {
  const firestore = new Firestore({ projectId: config.gcpProject, databaseId: config.firestoreDatabase, ignoreUndefinedProperties: true });
  const pubsub = new PubSub({ projectId: config.gcpProject });
  const storage = new Storage({ projectId: config.gcpProject });
  const bus = new PubSubBus(pubsub, { topic: config.pubsubTopic, subscriptionPrefix: config.pubsubSubscriptionPrefix, logger });
  const ledger = new FirestoreLedger(firestore, { root: config.firestoreRoot, directCommits: config.firestoreDirect });
  return {
    ledger,
    // Whether scopes are led (PATCHBAY_SCOPE_LEADERS) is the engine's choice: the port is always there.
    leaders: ledger.leaders(randomUUID()),
    records: new FirestoreRecords(firestore, config.firestoreRoot),
    cache: new UpstashCache({ url: config.upstashUrl, token: config.upstashToken }, { prefix: config.cachePrefix, ttlSeconds: config.cacheTtlSeconds }),
    bus: {
      publish: (events) => bus.publish(events),
      subscribe: (scope, listener, onSignal) => bus.subscribe(scope, listener, onSignal),
      signal: (signal) => bus.signal(signal),
      close: async () => {
        await bus.close();
        await pubsub.close();
      },
    },
    blobs: new GcsBlobStore(storage.bucket(config.bucket)),
  };
}
