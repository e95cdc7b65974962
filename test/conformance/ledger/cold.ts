/**
 * Ledger conformance, cold pointers and leases (ColdPointers in shared/ports/ledger.ts).
 * Guarantee 6's ledger half lives here: `bundled` only rises and never passes ii; `trimLog`
 * removes the oldest records (and their retry records) chunk by chunk, moving `trimmed` with
 * them, never past `bundled`; both refuse a holder whose lease passed on (fencing); listScopes
 * walks every scope. And the lease/epoch rules the fence rests on.
 */
import { describe, expect, it } from 'vitest';
import type { Ledger, Plan } from '../../../shared/ports/index.js';
import { retryKey } from '../../../shared/ports/index.js';
import type { PatchRecord } from '../../../shared/protocol.js';
import { append, expectCode, expectPatchesOfLog, type Harness, newId, record } from './fixtures.js';

export function coldPointersConformance({ open, create }: Harness): void {
  describe('cold storage pointers and trimming', () => {
    /** A scope with `n` records (sessions on the even ones) and the lease held by worker-a. */
    async function bundledScope(l: Ledger, n: number, now = Date.now()) {
      const { id, head } = await create(l);
      await l.commit(id, async (view) => ({
        records: Array.from({ length: n }, (_, i) =>
          record(id, i + 1, view.head.epoch, (i + 1) % 2 === 0 ? { session: 'sess-t', si: i + 1, hash: `h${i + 1}` } : {}),
        ),
        result: null,
      }));
      const epoch = (await l.acquireLease(id, 'worker-a', 60_000, now)) as number;
      expect(epoch).toBe(head.epoch + 1);
      return { id, epoch, now, log: await l.readLog(id, 1, n) };
    }

    it('listScopes pages through every scope by id, with ii, bundled and trimmed', async () => {
      const l = await open();
      const ids: string[] = [];
      for (let k = 0; k < 5; k++) ids.push((await create(l)).id);
      ids.sort();
      await l.commit(ids[1] as string, append(ids[1] as string, 3));
      const epoch = (await l.acquireLease(ids[1] as string, 'worker-a', 60_000)) as number;
      expect(await l.advanceBundled(ids[1] as string, 'worker-a', epoch, 2)).toBe(2);
      expect(await l.trimLog(ids[1] as string, 'worker-a', epoch, 1, 10)).toBe(1);

      const summary = (id: string) => (id === ids[1] ? { id, ii: 3, bundled: 2, trimmed: 1 } : { id, ii: 0, bundled: 0, trimmed: 0 });
      expect(await l.listScopes('', 100)).toEqual(ids.map(summary));
      expect(await l.listScopes('', 2)).toEqual(ids.slice(0, 2).map(summary));
      expect(await l.listScopes(ids[1] as string, 2)).toEqual(ids.slice(2, 4).map(summary));
      expect(await l.listScopes(ids[3] as string, 2)).toEqual(ids.slice(4).map(summary));
      expect(await l.listScopes(ids[4] as string, 2)).toEqual([]);
      // `after` need not be an existing id: it is a position in id order
      expect(await l.listScopes(`${ids[2]}`.slice(0, -1), 1)).toEqual([summary(ids[2] as string)]);
    });

    it('advanceBundled moves bundled up for the lease holder, never down and never past ii', async () => {
      const l = await open();
      const { id, epoch } = await bundledScope(l, 5);
      expect(await l.advanceBundled(id, 'worker-a', epoch, 3)).toBe(3);
      expect(await l.getHead(id)).toMatchObject({ ii: 5, bundled: 3, trimmed: 0 });
      expect(await l.advanceBundled(id, 'worker-a', epoch, 2)).toBe(3); // never down
      expect(await l.advanceBundled(id, 'worker-a', epoch, 3)).toBe(3);
      await expectCode(l.advanceBundled(id, 'worker-a', epoch, 6), 'internal'); // past ii
      expect((await l.getHead(id))?.bundled).toBe(3);
      expect(await l.advanceBundled(id, 'worker-a', epoch, 5)).toBe(5);
      expect(await l.getHead(id)).toMatchObject({ ii: 5, bundled: 5, trimmed: 0, epoch, lease: { holder: 'worker-a' } });
      // the log itself is untouched by bundling
      expect(await l.readLog(id, 1, 10)).toHaveLength(5);
      await expectCode(l.advanceBundled(newId(), 'worker-a', epoch, 1), 'scope_not_found');
    });

    it('trimLog removes the oldest records chunk by chunk, moving trimmed with them, never past bundled', async () => {
      const l = await open();
      const { id, epoch, log } = await bundledScope(l, 10);
      expect(await l.advanceBundled(id, 'worker-a', epoch, 7)).toBe(7);
      await expectCode(l.trimLog(id, 'worker-a', epoch, 8, 100), 'internal'); // past bundled
      expect(await l.getHead(id)).toMatchObject({ trimmed: 0 });
      expect(await l.readLog(id, 1, 10)).toEqual(log);

      expect(await l.trimLog(id, 'worker-a', epoch, 7, 3)).toBe(3);
      expect(await l.getHead(id)).toMatchObject({ ii: 10, bundled: 7, trimmed: 3 });
      expect(await l.readLog(id, 1, 10)).toEqual(log.slice(3));
      expect(await l.readLog(id, 1, 3)).toEqual([]);
      await expectPatchesOfLog(l, id, 1, 10);
      await expectPatchesOfLog(l, id, 2, 5, 2);
      expect(await l.trimLog(id, 'worker-a', epoch, 7, 3)).toBe(6);
      expect(await l.trimLog(id, 'worker-a', epoch, 7, 3)).toBe(7);
      expect(await l.trimLog(id, 'worker-a', epoch, 7, 3)).toBe(7); // nothing left below upTo
      expect(await l.trimLog(id, 'worker-a', epoch, 5, 3)).toBe(7); // already past upTo
      expect(await l.readLog(id, 1, 10)).toEqual(log.slice(7));
      // readPatches sees exactly the records readLog sees: none at or below trimmed
      expect(await expectPatchesOfLog(l, id, 1, 10)).toEqual(log.slice(7).map((r) => ({ ii: r.ii, patch: r.patch })));
      expect(await expectPatchesOfLog(l, id, 1, 7)).toEqual([]);
      expect(await expectPatchesOfLog(l, id, 5, 9, 1)).toEqual([{ ii: 8, patch: (log[7] as PatchRecord).patch }]);
      expect(await l.getHead(id)).toMatchObject({ ii: 10, bundled: 7, trimmed: 7 });

      // the log goes on at head + 1 as before
      expect(await l.commit(id, append(id, 2))).toEqual([11, 12]);
      expect((await l.readLog(id, 1, 100)).map((r) => r.ii)).toEqual([8, 9, 10, 11, 12]);
    });

    it('trimming forgets the retry records of trimmed patches, and only theirs', async () => {
      const l = await open();
      const { id, epoch, log } = await bundledScope(l, 6); // sessions on 2, 4, 6
      await l.advanceBundled(id, 'worker-a', epoch, 6);
      expect(await l.trimLog(id, 'worker-a', epoch, 4, 10)).toBe(4);
      const keys = [2, 4, 6].map((si) => ({ session: 'sess-t', si }));
      const found = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries(keys) }));
      expect([...found.keys()]).toEqual([retryKey('sess-t', 6)]);
      expect(found.get(retryKey('sess-t', 6))).toEqual(log[5]);
      // a trimmed (session, si) is free again: a new patch under it is a new record
      const reused = await l.commit(id, async (view) => ({
        records: [record(id, view.head.ii + 1, view.head.epoch, { session: 'sess-t', si: 2, hash: 'h-new' })],
        result: view.head.ii + 1,
      }));
      expect(reused).toBe(7);
      const again = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([{ session: 'sess-t', si: 2 }]) }));
      expect(again.get(retryKey('sess-t', 2))?.ii).toBe(7);
    });

    it('a holder whose lease passed on can neither advance bundled nor trim (fencing)', async () => {
      const l = await open();
      const { id, epoch, now, log } = await bundledScope(l, 6);
      expect(await l.advanceBundled(id, 'worker-a', epoch, 2)).toBe(2);
      // worker-a's lease expires; worker-b takes it (a new epoch)
      const epochB = (await l.acquireLease(id, 'worker-b', 60_000, now + 60_001)) as number;
      expect(epochB).toBe(epoch + 1);
      expect(await l.advanceBundled(id, 'worker-a', epoch, 6)).toBeNull();
      expect(await l.trimLog(id, 'worker-a', epoch, 2, 10)).toBeNull();
      // the right holder with a stale epoch, or the stale holder with the new epoch, fail too
      expect(await l.advanceBundled(id, 'worker-b', epoch, 6)).toBeNull();
      expect(await l.trimLog(id, 'worker-a', epochB, 2, 10)).toBeNull();
      expect(await l.getHead(id)).toMatchObject({ bundled: 2, trimmed: 0, epoch: epochB, lease: { holder: 'worker-b' } });
      expect(await l.readLog(id, 1, 10)).toEqual(log);

      expect(await l.advanceBundled(id, 'worker-b', epochB, 6)).toBe(6);
      expect(await l.trimLog(id, 'worker-b', epochB, 6, 10)).toBe(6);
      // a released lease fences its last holder as well
      expect(await l.releaseLease(id, 'worker-b', epochB)).toBe(true);
      await l.commit(id, append(id, 1));
      expect(await l.advanceBundled(id, 'worker-b', epochB, 7)).toBeNull();
      expect(await l.getHead(id)).toMatchObject({ ii: 7, bundled: 6, trimmed: 6, lease: null });
    });

    it('an expired lease that nobody took over still lets its holder finish (the epoch is the fence)', async () => {
      const l = await open();
      const { id, epoch } = await bundledScope(l, 3, Date.now() - 120_000); // expired a minute ago
      expect(await l.advanceBundled(id, 'worker-a', epoch, 3)).toBe(3);
      expect(await l.trimLog(id, 'worker-a', epoch, 3, 10)).toBe(3);
    });
  });

  describe('leases and epochs', () => {
    it('acquire: free → epoch + 1; same holder keeps the epoch and extends; another holder waits for expiry, then epoch + 1', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const e0 = head.epoch;
      const now = Date.now();

      expect(await l.acquireLease(id, 'worker-a', 1000, now)).toBe(e0 + 1);
      expect(await l.getHead(id)).toMatchObject({ epoch: e0 + 1, lease: { holder: 'worker-a', expires: now + 1000 } });

      expect(await l.acquireLease(id, 'worker-a', 1000, now + 500)).toBe(e0 + 1);
      expect(await l.getHead(id)).toMatchObject({ epoch: e0 + 1, lease: { holder: 'worker-a', expires: now + 1500 } });

      // still held by worker-a at now + 1400 (it was extended to now + 1500)
      expect(await l.acquireLease(id, 'worker-b', 1000, now + 1400)).toBeNull();
      expect(await l.getHead(id)).toMatchObject({ epoch: e0 + 1, lease: { holder: 'worker-a', expires: now + 1500 } });

      expect(await l.acquireLease(id, 'worker-b', 2000, now + 1600)).toBe(e0 + 2);
      expect(await l.getHead(id)).toMatchObject({ epoch: e0 + 2, lease: { holder: 'worker-b', expires: now + 3600 } });

      // the head's other fields are untouched by leasing
      expect(await l.getHead(id)).toMatchObject({ ii: 0, published: 0, meta: head.meta });
    });

    it('acquireLease on a missing scope throws scope_not_found', async () => {
      const l = await open();
      await expectCode(l.acquireLease(newId(), 'worker-a', 1000), 'scope_not_found');
    });

    it('releaseLease works only for the current holder at the current epoch', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const now = Date.now();
      const e1 = await l.acquireLease(id, 'worker-a', 60_000, now);
      expect(e1).toBe(head.epoch + 1);
      const held = await l.getHead(id);

      expect(await l.releaseLease(id, 'worker-b', head.epoch + 1)).toBe(false);
      expect(await l.releaseLease(id, 'worker-a', head.epoch)).toBe(false);
      expect(await l.releaseLease(id, 'worker-a', head.epoch + 2)).toBe(false);
      expect(await l.getHead(id)).toEqual(held);

      expect(await l.releaseLease(id, 'worker-a', head.epoch + 1)).toBe(true);
      const released = await l.getHead(id);
      expect(released?.lease).toBeNull();
      expect(released?.epoch).toBe(head.epoch + 1);
      expect(await l.releaseLease(id, 'worker-a', head.epoch + 1)).toBe(false);

      // once released, anyone may take it, well before the old expiry, as a new generation
      expect(await l.acquireLease(id, 'worker-b', 1000, now + 1)).toBe(head.epoch + 2);
      // the stale holder cannot release the new holder's lease
      expect(await l.releaseLease(id, 'worker-a', head.epoch + 1)).toBe(false);
      expect((await l.getHead(id))?.lease?.holder).toBe('worker-b');
    });

    it('a commit plan sees the current epoch, and committing leaves the lease alone', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const seen: number[] = [];
      const plan: Plan<null> = async (view) => {
        seen.push(view.head.epoch);
        return { records: [record(id, view.head.ii + 1, view.head.epoch)], result: null };
      };
      await l.commit(id, plan);
      const now = Date.now();
      const e1 = await l.acquireLease(id, 'worker-a', 60_000, now);
      await l.commit(id, plan);
      expect(await l.acquireLease(id, 'worker-b', 1000, now + 60_001)).toBe(head.epoch + 2);
      await l.commit(id, plan);

      expect(seen).toEqual([head.epoch, head.epoch + 1, head.epoch + 2]);
      expect(e1).toBe(head.epoch + 1);
      expect((await l.readLog(id, 1, 3)).map((r) => r.epoch)).toEqual([head.epoch, head.epoch + 1, head.epoch + 2]);
      expect(await l.getHead(id)).toMatchObject({ ii: 3, epoch: head.epoch + 2, lease: { holder: 'worker-b', expires: now + 61_001 } });
    });
  });
}
