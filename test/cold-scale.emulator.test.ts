/**
 * History and SSE catch-up across cold storage at scale, on the Google stack (guarantees 4 and
 * 6): a scope with 100,000 patches, 99,000 of them in Cloud Storage bundles and the last 1,000 in
 * Firestore, streams every patch in order, in bounded memory, then continues live.
 *
 * How the scope is built: committing 100,000 patches through the Firestore emulator, bundling
 * them and trimming 99,000 takes over a minute here (about 4,500 documents a second each way),
 * so the cold part is written the way the bundler writes it (ColdStore.writeBundle/writeSnapshot,
 * the same encoder) and the ledger is moved to "99,000 committed, bundled and trimmed" by setting
 * FirestoreLedger's documents directly (head ii, cold pointers, outbox); the last 1,000 are then
 * committed through the ledger port like any patch. The real bundling pipeline on Firestore is
 * covered by the cold-storage contract (cold.emulator.test.ts) and measured at 100,000 patches by
 * bench/cold.ts.
 */
import { Firestore } from '@google-cloud/firestore';
import { afterAll, beforeAll, describe } from 'vitest';
import { recordLine } from '../shared/cold/format.js';
import { ColdStore } from '../shared/cold/store.js';
import type { Config } from '../shared/config.js';
import type { PatchRecord } from '../shared/protocol.js';
import { coldScale, SCALE_HOT } from './contract/cold-scale.js';
import { patchHash, seed } from './helpers/cold.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { skipWithout } from './helpers/proc.js';
import { startServer } from './helpers/server.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

describe.skipIf(skip)('cold storage at scale on the Google stack', () => {
  let stack: GoogleStack;
  let cfg: Partial<Config>;
  beforeAll(async () => {
    stack = await startGoogleStack();
    cfg = stack.config();
  }, 180_000);
  afterAll(() => stack?.stop());

  coldScale(
    'google',
    (overrides) => startServer({ ...cfg, ...overrides }),
    async (srv, id, n) => {
      const cold = new ColdStore(srv.app.adapters.blobs);
      const at = Date.now() - 3_600_000;
      const record = (ii: number): PatchRecord => {
        const patch = [{ op: 'replace' as const, path: '/n', value: ii }];
        return { scope: id, ii, patch, at, by: 'seeder', session: null, si: null, hash: patchHash(patch), epoch: 0 };
      };
      const coldTo = n - SCALE_HOT;
      const size = srv.app.config.bundlePatches;
      const writes: Array<Promise<unknown>> = [];
      for (let from = 1; from <= coldTo; from += size) {
        const to = Math.min(coldTo, from + size - 1);
        writes.push(
          cold.writeBundle(
            id,
            from,
            to,
            Array.from({ length: to - from + 1 }, (_, k) => recordLine(record(from + k))),
          ),
        );
        if (writes.length >= 8) await Promise.all(writes.splice(0));
      }
      for (let s = srv.app.config.snapshotEvery; s <= coldTo; s += srv.app.config.snapshotEvery)
        writes.push(cold.writeSnapshot(id, s, JSON.stringify({ n: s })));
      await Promise.all(writes);

      // FirestoreLedger's documents, as if 1..coldTo had been committed, bundled and trimmed
      const db = new Firestore({ projectId: stack.projectId });
      const root = db.collection(cfg.firestoreRoot as string);
      await root.doc(id).update({ ii: coldTo });
      await root.doc('~cold').collection('pointers').doc(id).set({ id, bundled: coldTo, trimmed: coldTo });
      await root.doc('~outbox').collection('watermarks').doc(id).set({ id, ii: coldTo, published: coldTo });
      await db.terminate();

      await seed(srv.app.adapters.ledger, id, SCALE_HOT, { at: () => at, patch: (ii) => [{ op: 'replace', path: '/n', value: ii }] });
    },
  );
});
