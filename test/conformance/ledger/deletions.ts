/**
 * Ledger conformance, deleting a scope (the Deletions role in shared/ports/ledger.ts): the
 * tombstone is written at once and from then on the scope is gone for every other method (reads
 * answer null, writes and the lease throw `scope_not_found`, listings skip it) while its id stays
 * taken (`scope_exists`, for its former owner too); a commit racing the delete either committed
 * before it or is refused; the purge removes the log, retry records, cursors and listing entries
 * in bounded chunks, repeatably, never touching a live scope; the tombstone is listed until
 * purged, and again once its retention is over; dropping it frees the id.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Ledger, Plan } from '../../../shared/ports/index.js';
import { append, expectCode, type Harness, newId, record, T0 } from './fixtures.js';

/** `n` records after the head, each with its own retry key (session `s`, si = its ii). */
const keyed =
  (id: string, n: number): Plan<number[]> =>
  async (view) => {
    const records = Array.from({ length: n }, (_, i) => record(id, view.head.ii + 1 + i, view.head.epoch, { session: 's', si: view.head.ii + 1 + i }));
    return { records, result: records.map((r) => r.ii) };
  };

const tombstoneOf = async (l: Ledger, id: string, before: number) => (await l.listDeleted(before, 1000)).find((t) => t.id === id);

export function deletionsConformance({ open, create }: Harness): void {
  describe('deletions', () => {
    it("a deleted scope's name is free at once: its owner may give it to a new scope", async () => {
      const l = await open();
      const owner = `user-${randomUUID()}`;
      const { id } = await create(l, { owner, name: 'notes' }, {});
      expect(await l.resolveName('default', owner, 'notes')).toBe(id);
      await l.deleteScope(id, T0 + 100);
      expect(await l.resolveName('default', owner, 'notes')).toBeNull();
      const other = newId();
      await l.createScope({ id: other, meta: { owner, domain: 'default', name: 'notes', type: null, created: T0, updated: T0, size: 2 }, initial: {} });
      expect(await l.resolveName('default', owner, 'notes')).toBe(other);
    });

    it('a deleted scope reads as missing, refuses writes and the lease, and its id stays taken', async () => {
      const l = await open();
      const owner = `user-${randomUUID()}`;
      const { id } = await create(l, { owner, access: { visibility: 'public', readers: ['user-r'], writers: ['user-w'], rev: 0 } }, { a: 1 });
      await l.commit(id, append(id, 3, {}, { updated: T0 + 5, size: 9 }));
      const epoch = (await l.acquireLease(id, 'bundler', 60_000, T0)) as number;
      const before = await l.getHead(id);
      const head = await l.deleteScope(id, T0 + 100);
      expect(head).toEqual(before);
      expect(await l.getHead(id)).toBeNull();
      expect(await l.getInitial(id)).toBeNull();
      await expectCode(l.commit(id, append(id, 1)), 'scope_not_found');
      await expectCode(l.setAccess(id, { visibility: 'private', readers: [], writers: [] }, 0), 'scope_not_found');
      await expectCode(l.acquireLease(id, 'other', 60_000, T0), 'scope_not_found');
      await expectCode(l.advanceBundled(id, 'bundler', epoch, 1), 'scope_not_found');
      await expectCode(l.trimLog(id, 'bundler', epoch, 0, 10), 'scope_not_found');
      await expectCode(l.releaseLease(id, 'bundler', epoch), 'scope_not_found');
      for (const user of [owner, 'user-r', 'user-w']) expect((await l.listFor(user, { limit: 100 })).scopes.map((s) => s.id)).not.toContain(id);
      expect((await l.listScopes('', 100_000)).map((s) => s.id)).not.toContain(id);
      expect((await l.listUnpublished(Number.MAX_SAFE_INTEGER, 100_000)).map((s) => s.id)).not.toContain(id);
      for (const o of [owner, 'someone-else']) {
        await expectCode(
          l.createScope({ id, meta: { owner: o, domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 }, initial: {} }),
          'scope_exists',
        );
      }
      expect(await l.getHead(id)).toBeNull(); // the refused creates changed nothing
      expect(await l.deleteScope(id, T0 + 200)).toBeNull(); // deleted already
      expect(await l.deleteScope(newId(), T0)).toBeNull(); // never existed
      expect(await tombstoneOf(l, id, 0)).toEqual({ id, owner, domain: 'default', deleted: T0 + 100, purged: false });
    });

    it('a commit racing the delete either committed before it or writes nothing and throws scope_not_found', async () => {
      const l = await open();
      const { id } = await create(l);
      let deleted = false;
      let del: Promise<unknown> = Promise.resolve();
      const runs: string[] = [];
      const outcome = await l
        .commit(id, async (view) => {
          if (runs.length === 0) {
            del = l.deleteScope(id, T0).then((h) => {
              deleted = true;
              return h;
            });
            await new Promise((r) => setTimeout(r, 300));
          }
          runs.push(deleted ? 'after' : 'before');
          return { records: [record(id, view.head.ii + 1, view.head.epoch, { by: runs.at(-1) })], result: 'committed' };
        })
        .catch((err: unknown) => err);
      const head = (await del) as { ii: number } | null;
      expect(head).not.toBeNull();
      if (outcome === 'committed') {
        // The delete waited for the commit (a locking ledger): the tombstone replaced a head at ii 1.
        expect(head?.ii).toBe(1);
        expect(runs).toEqual(['before']);
      } else {
        await expectCode(Promise.reject(outcome), 'scope_not_found');
        expect(head?.ii).toBe(0);
      }
      expect(await l.getHead(id)).toBeNull();
    });

    it('purgeScope removes log, retry records, cursors and listings in bounded chunks, repeatably; then the tombstone can be marked and dropped', async () => {
      const l = await open();
      const owner = `user-${randomUUID()}`;
      const { id } = await create(l, { owner, access: { visibility: 'private', readers: ['user-r'], writers: [], rev: 0 } });
      for (let i = 0; i < 3; i++) await l.commit(id, keyed(id, 10));
      await l.advanceCursor('consumer-a', id, 0, 30);
      await l.advanceCursor('consumer-b', id, 0, 12);
      const other = await create(l, { owner });
      await l.commit(other.id, append(other.id, 4));
      expect(await l.purgeScope(other.id, 100)).toBe(true); // a live scope: untouched
      expect((await l.readLog(other.id, 1, 10)).map((r) => r.ii)).toEqual([1, 2, 3, 4]);

      await l.deleteScope(id, T0 + 1000);
      const calls: boolean[] = [];
      let left = (await l.readLog(id, 1, 100)).length;
      expect(left).toBe(30); // the tombstone itself removes no record (readLog of a deleted scope is read here only to count)
      for (let i = 0; i < 100; i++) {
        const done = await l.purgeScope(id, 7);
        calls.push(done);
        const now = (await l.readLog(id, 1, 100)).length;
        expect(left - now).toBeLessThanOrEqual(7); // never more than the chunk
        left = now;
        if (done) break;
      }
      expect(calls.at(-1)).toBe(true);
      expect(calls.length).toBeGreaterThanOrEqual(5); // 30 records (and their retry records, where they are apart) + 2 cursors, 7 at a time
      expect(await l.readLog(id, 1, 100)).toEqual([]);
      expect(await l.getCursor('consumer-a', id)).toBe(0);
      expect(await l.getCursor('consumer-b', id)).toBe(0);
      expect(await l.purgeScope(id, 7)).toBe(true); // idempotent
      expect((await l.listFor('user-r', { limit: 100 })).scopes.map((s) => s.id)).not.toContain(id);
      expect((await l.readLog(other.id, 1, 10)).map((r) => r.ii)).toEqual([1, 2, 3, 4]); // another scope of the owner kept

      // Listed while unpurged; once marked, only past its retention.
      expect((await tombstoneOf(l, id, T0))?.purged).toBe(false);
      expect(await l.dropTombstone(id, T0 + 5000)).toBe(false); // not purged yet
      expect(await l.markPurged(id)).toBe(true);
      expect(await l.markPurged(newId())).toBe(false);
      expect(await tombstoneOf(l, id, T0 + 1000)).toBeUndefined(); // purged, and not before `before`
      expect(await tombstoneOf(l, id, T0 + 1001)).toEqual({ id, owner, domain: 'default', deleted: T0 + 1000, purged: true });
      expect(await l.dropTombstone(id, T0 + 1000)).toBe(false); // its retention is not over
      await expectCode(
        l.createScope({ id, meta: { owner, domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 }, initial: {} }),
        'scope_exists',
      );
      expect(await l.dropTombstone(id, T0 + 1001)).toBe(true);
      expect(await l.dropTombstone(id, T0 + 1001)).toBe(false);
      expect(await tombstoneOf(l, id, Number.MAX_SAFE_INTEGER)).toBeUndefined();

      // The id is free: a new scope under it starts from nothing.
      const again = await l.createScope({
        id,
        meta: { owner: 'someone-else', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 },
        initial: { fresh: true },
      });
      expect(again.ii).toBe(0);
      expect(again.bundled).toBe(0);
      expect(again.trimmed).toBe(0);
      expect(await l.getInitial(id)).toEqual({ fresh: true });
      expect(await l.commit(id, keyed(id, 2))).toEqual([1, 2]); // the old scope's retry keys (s, 1), (s, 2) are gone
      expect((await l.readLog(id, 1, 10)).map((r) => r.by)).toEqual(['user-1', 'user-1']);
      expect((await l.getHead(id))?.published).toBe(0);
    });

    it('listScopes pages past tombstones: a page is short only when it is the last', async () => {
      const l = await open();
      const base = newId();
      const ids = [1, 2, 3, 4].map((k) => `${base}-${k}`);
      for (const id of ids)
        await l.createScope({ id, meta: { owner: 'user-1', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 }, initial: {} });
      await l.deleteScope(ids[1] as string, T0);
      await l.deleteScope(ids[2] as string, T0);
      expect((await l.listScopes(ids[0] as string, 1)).map((s) => s.id)).toEqual([ids[3]]);
    });

    it('purgeScope and markPurged of an id without a tombstone change nothing', async () => {
      const l = await open();
      expect(await l.purgeScope(newId(), 10)).toBe(true);
      expect(await l.markPurged(newId())).toBe(false);
      expect(await l.dropTombstone(newId(), Number.MAX_SAFE_INTEGER)).toBe(false);
    });
  });
}
