/**
 * The engine's watermark writer against a real FirestoreLedger on the Firestore emulator, whose
 * outbox writes are slower than the writer's batching delay (as on a loaded emulator): a scope's
 * watermark still reaches every noted run, so the sweeper finds nothing to republish.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirestoreLedger } from '../shared/adapters/google/firestore/ledger.js';
import { WatermarkWriter } from '../shared/engine/watermarks.js';
import type { PatchRecord, ScopeMeta } from '../shared/protocol.js';
import { type FirestoreEmulator, startFirestoreEmulator } from './helpers/firestore-emulator.js';
import { skipWithout } from './helpers/proc.js';

const T0 = 1_700_000_000_000;
const meta: ScopeMeta = { owner: 'u1', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 };
const rec = (scope: string, ii: number): PatchRecord => ({
  scope,
  ii,
  patch: [{ op: 'replace', path: '/n', value: ii }],
  at: T0 + ii,
  by: 'u1',
  session: null,
  si: null,
  hash: `h${ii}`,
  epoch: 0,
});

describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))('WatermarkWriter on the Firestore emulator', () => {
  let emu: FirestoreEmulator;

  beforeAll(async () => {
    emu = await startFirestoreEmulator('demo-watermarks');
  });
  afterAll(async () => {
    await emu?.stop();
  });

  it('a scope whose watermark writes outlast the batching delay still gets every run marked, one write at a time', async () => {
    let inFlight = 0;
    let most = 0;
    const ledger = new FirestoreLedger(emu.firestore(), {
      root: 'watermarks',
      // Between reading the outbox and writing it: a slow write (60 ms, the writer batches every 10 ms).
      beforeOutboxWrite: async () => {
        most = Math.max(most, ++inFlight);
        await sleep(60);
        inFlight--;
      },
    });
    const id = 'slow';
    const n = 20;
    await ledger.createScope({ id, meta, initial: {} });
    await ledger.commit(id, async () => ({ records: Array.from({ length: n }, (_, k) => rec(id, k + 1)), meta: { updated: T0 + n, size: 2 }, result: null }));

    const errors: unknown[] = [];
    const writer = new WatermarkWriter(ledger, 10, (_, err) => errors.push(err));
    for (let ii = 1; ii <= n; ii++) {
      writer.note(id, ii, ii); // one published group at a time, as the engine notes them
      await sleep(15);
    }
    await writer.flush();

    expect(errors).toEqual([]);
    expect(most).toBe(1);
    expect(await ledger.getHead(id)).toMatchObject({ ii: n, published: n });
    expect(await ledger.listUnpublished(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });
});
