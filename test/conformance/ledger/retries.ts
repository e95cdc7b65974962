/**
 * Ledger conformance, retries (TxView.findRetries in shared/ports/ledger.ts): a plan finds the
 * records of the (session, si) keys it asks about, and that answer holds when its records commit,
 * whether it then writes a key or refuses it, so a retry is answered with its original ack.
 */
import { describe, expect, it } from 'vitest';
import { retryKey } from '../../../shared/ports/index.js';
import type { PatchRecord } from '../../../shared/protocol.js';
import { append, type Harness, record, T0 } from './fixtures.js';

export function retriesConformance({ open, create }: Harness): void {
  describe('retries', () => {
    it('findRetries returns the recorded records by retryKey, and nothing for unknown keys', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const other = await create(l);
      const e = head.epoch;
      const r1 = record(id, 1, e, { session: 'sess-1', si: 1, hash: 'h-one' });
      const r2 = record(id, 2, e, { session: 'sess-1', si: 2, hash: 'h-two' });
      const r3 = record(id, 3, e);
      const r4 = record(id, 4, e, { session: 'sess-2', si: 1, hash: 'h-four' });
      await l.commit(id, async () => ({ records: [r1, r2, r3], result: null }));
      await l.commit(id, async () => ({ records: [r4], result: null }));
      await l.commit(other.id, append(other.id, 1, { session: 'sess-9', si: 9 }));

      const found = await l.commit(id, async (view) => ({
        records: [],
        result: await view.findRetries([
          { session: 'sess-1', si: 1 },
          { session: 'sess-1', si: 2 },
          { session: 'sess-1', si: 3 },
          { session: 'sess-2', si: 1 },
          { session: 'sess-2', si: 2 },
          { session: 'sess-3', si: 1 },
          { session: 'sess-9', si: 9 }, // recorded, but on another scope
        ]),
      }));
      expect(found).toBeInstanceOf(Map);
      expect([...found.keys()].sort()).toEqual([retryKey('sess-1', 1), retryKey('sess-1', 2), retryKey('sess-2', 1)].sort());
      expect(found.get(retryKey('sess-1', 1))).toEqual(r1);
      expect(found.get(retryKey('sess-1', 2))).toEqual(r2);
      expect(found.get(retryKey('sess-2', 1))).toEqual(r4);

      const none = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([]) }));
      expect(none.size).toBe(0);
      const elsewhere = await l.commit(other.id, async (view) => ({ records: [], result: await view.findRetries([{ session: 'sess-1', si: 1 }]) }));
      expect(elsewhere.size).toBe(0);
    });

    // The embedded ledger reads a session's keys as one si range when they are close together:
    // records in the range that were not asked about must not be answered, close or far apart.
    it('findRetries answers exactly the keys asked about, whether they are consecutive, have gaps or are far apart', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const e = head.epoch;
      const sis = [1, 2, 3, 4, 5, 7, 1_000_000];
      const recorded = sis.map((si, i) => record(id, i + 1, e, { session: 'sess-a', si, hash: `h-${si}` }));
      await l.commit(id, async () => ({ records: recorded, result: null }));
      const ask = async (keys: Array<{ session: string; si: number }>) => l.commit(id, async (view) => ({ records: [], result: await view.findRetries(keys) }));
      const k = (...list: number[]) => list.map((si) => ({ session: 'sess-a', si }));

      const gaps = await ask(k(1, 3, 5, 6, 8));
      expect([...gaps.keys()].sort()).toEqual([retryKey('sess-a', 1), retryKey('sess-a', 3), retryKey('sess-a', 5)].sort());
      expect(gaps.get(retryKey('sess-a', 3))).toEqual(recorded[2]);

      const far = await ask([...k(2, 1_000_000, 999_999), { session: 'sess-b', si: 2 }]);
      expect([...far.keys()].sort()).toEqual([retryKey('sess-a', 2), retryKey('sess-a', 1_000_000)].sort());
      expect(far.get(retryKey('sess-a', 1_000_000))).toEqual(recorded[6]);

      const repeated = await ask(k(4, 4, 7));
      expect([...repeated.keys()].sort()).toEqual([retryKey('sess-a', 4), retryKey('sess-a', 7)].sort());
    });

    // What findRetries answers must hold when the plan's records commit, also for a key the
    // plan then refuses without writing: a retry carrying its original ii (now <= head) is
    // refused as out_of_sync unless it is found, and its group also appends a new patch.
    it('a group that refuses a retry (ii <= head) and appends a new patch answers the retry as recorded', async () => {
      const l = await open();
      const { id } = await create(l);
      const first = record(id, 1, 0, { session: 'sess-r', si: 1, hash: 'h-first' });
      await l.commit(id, async () => ({ records: [first], meta: { updated: T0 + 1, size: 3 }, result: null }));
      await l.commit(id, append(id, 1)); // head 2: the retry's ii 1 is now behind it

      // The engine's decision, in miniature: recorded → duplicate; ii not next → out_of_sync; else append.
      const group = [
        { session: 'sess-r', si: 1, ii: 1 as number | undefined },
        { session: 'sess-n', si: 1, ii: undefined },
      ];
      const outcomes = await l.commit(id, async (view) => {
        const found = await view.findRetries(group);
        const records: PatchRecord[] = [];
        const result = group.map((g) => {
          const prior = found.get(retryKey(g.session, g.si));
          if (prior) return `duplicate ${prior.ii}`;
          const next = view.head.ii + records.length + 1;
          if (g.ii !== undefined && g.ii !== next) return 'out_of_sync';
          records.push(record(id, next, view.head.epoch, { session: g.session, si: g.si }));
          return `appended ${next}`;
        });
        return { records, meta: { updated: T0 + 9, size: 9 }, result };
      });
      expect(outcomes).toEqual(['duplicate 1', 'appended 3']);
      expect((await l.readLog(id, 1, 100)).map((r) => [r.ii, r.session])).toEqual([
        [1, 'sess-r'],
        [2, null],
        [3, 'sess-n'],
      ]);
      expect((await l.getHead(id))?.ii).toBe(3);
    });

    it('a group that refuses a request whose key is not recorded still commits its other records', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 2));
      const outcomes = await l.commit(id, async (view) => {
        const found = await view.findRetries([
          { session: 'sess-late', si: 4 },
          { session: 'sess-new', si: 1 },
        ]);
        const r = record(id, view.head.ii + 1, view.head.epoch, { session: 'sess-new', si: 1 });
        return { records: [r], meta: { updated: T0 + 3, size: 3 }, result: { found: found.size, ii: r.ii } };
      });
      expect(outcomes).toEqual({ found: 0, ii: 3 });
      expect((await l.readLog(id, 1, 100)).map((r) => r.ii)).toEqual([1, 2, 3]);
      // The refused key left no trace: it is still free.
      const after = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([{ session: 'sess-late', si: 4 }]) }));
      expect(after.size).toBe(0);
    });
  });
}
