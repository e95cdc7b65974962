/**
 * Ledger conformance, a scope's access (ScopeLog.setAccess in shared/ports/ledger.ts): stored
 * with the head and read back exactly, replaced only by a compare-and-set on its revision (a
 * stale revision changes nothing; of two concurrent changes on one revision exactly one wins),
 * nothing else of the head touched, kept by later commits. And the ordering the write path's
 * authorization rests on: a commit whose plan saw the access as it was before a change writes
 * nothing and plans again on the new access, so a write authorized by a revoked access is never
 * accepted after the revoke returned.
 */
import { describe, expect, it } from 'vitest';
import type { Head } from '../../../shared/ports/index.js';
import type { ScopeAccess } from '../../../shared/protocol.js';
import { append, expectCode, type Harness, newId, record } from './fixtures.js';

const shared: Omit<ScopeAccess, 'rev'> = { visibility: 'domain', readers: ['user-r', 'anon:ü'], writers: ['user-w'] };

/** The head without its access: what setAccess must leave as it was. */
const rest = (h: Head | null) => {
  if (!h) return h;
  const { access: _, ...meta } = h.meta;
  return { ...h, meta };
};

export function accessConformance({ open, create }: Harness): void {
  describe('access', () => {
    it('a scope created with an access reads it back exactly; one created without has none', async () => {
      const l = await open();
      const access: ScopeAccess = { visibility: 'private', readers: ['a', 'b'], writers: [], rev: 0 };
      const { id, head } = await create(l, { access });
      expect(head.meta.access).toEqual(access);
      expect((await l.getHead(id))?.meta.access).toEqual(access);
      const bare = await create(l);
      expect((await l.getHead(bare.id))?.meta.access).toBeUndefined();
    });

    it('setAccess replaces it at the next revision and changes nothing else of the head', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 2, {}, { updated: 5, size: 7 }));
      await l.markPublished(id, 1);
      const before = await l.getHead(id);
      expect(await l.setAccess(id, shared, 0)).toEqual({ ...shared, rev: 1 });
      const after = await l.getHead(id);
      expect(after?.meta.access).toEqual({ ...shared, rev: 1 });
      expect(rest(after)).toEqual(rest(before));
      expect(await l.setAccess(id, { visibility: 'public', readers: [], writers: [] }, 1)).toEqual({ visibility: 'public', readers: [], writers: [], rev: 2 });
      expect((await l.getHead(id))?.meta.access).toEqual({ visibility: 'public', readers: [], writers: [], rev: 2 });
    });

    it('a stale revision changes nothing and returns null; an unknown scope throws scope_not_found', async () => {
      const l = await open();
      const { id } = await create(l, { access: { visibility: 'private', readers: [], writers: [], rev: 0 } });
      await l.setAccess(id, shared, 0);
      const before = await l.getHead(id);
      expect(await l.setAccess(id, { visibility: 'public', readers: [], writers: [] }, 0)).toBeNull();
      expect(await l.setAccess(id, { visibility: 'public', readers: [], writers: [] }, 5)).toBeNull();
      expect(await l.getHead(id)).toEqual(before);
      await expectCode(l.setAccess(newId(), shared, 0), 'scope_not_found');
      expect(await l.getHead(newId())).toBeNull();
    });

    it('of two concurrent changes on one revision exactly one wins', async () => {
      const l = await open();
      const { id } = await create(l);
      const results = await Promise.all([
        l.setAccess(id, { visibility: 'public', readers: [], writers: ['one'] }, 0),
        l.setAccess(id, { visibility: 'private', readers: [], writers: ['two'] }, 0),
      ]);
      const won = results.filter((r) => r !== null);
      expect(won).toHaveLength(1);
      expect((await l.getHead(id))?.meta.access).toEqual(won[0]);
    });

    it('commits keep the access', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.setAccess(id, shared, 0);
      await l.commit(id, append(id, 1, {}, { updated: 9, size: 9 }));
      await l.commit(id, append(id, 2));
      expect((await l.getHead(id))?.meta.access).toEqual({ ...shared, rev: 1 });
    });

    it('a commit never writes what its plan decided on an access replaced before the plan returned', async () => {
      const l = await open();
      const { id } = await create(l, { access: { visibility: 'private', readers: [], writers: ['user-w'], rev: 0 } });
      // The plan authorizes `user-w` as the head it is shown says. On its first run, a revoke
      // starts and the plan lingers: a ledger that checks optimistically (SQLite, Firestore's
      // direct commit) lets the revoke through and must then plan again; one that locks the
      // head (a Firestore transaction) holds the revoke until the commit is done. Either way,
      // a plan that saw user-w allowed after the revoke had returned must write nothing.
      let revoked = false;
      let revoke: Promise<unknown> = Promise.resolve();
      const runs: string[] = [];
      const ii = await l.commit(id, async (view) => {
        const rev = view.head.meta.access?.rev;
        if (runs.length === 0) {
          revoke = l.setAccess(id, { visibility: 'private', readers: [], writers: [] }, 0).then((r) => {
            revoked = true;
            return r;
          });
          await new Promise((r) => setTimeout(r, 300));
        }
        runs.push(`rev ${rev}, revoke ${revoked ? 'returned' : 'pending'}`);
        const allowed = view.head.meta.access?.writers.includes('user-w') ?? false;
        const records = allowed ? [record(id, view.head.ii + 1, view.head.epoch, { by: runs.at(-1) })] : [];
        return { records, result: records.map((r) => r.ii) };
      });
      expect(await revoke).toEqual({ visibility: 'private', readers: [], writers: [], rev: 1 });
      const log = await l.readLog(id, 1, 10);
      // Committed before the revoke (the revoke waited), or refused after it: never a write
      // decided on rev 0 once the revoke had returned.
      expect(log.map((r) => r.by)).not.toContain('rev 0, revoke returned');
      if (log.length === 0) expect(runs.at(-1)).toBe('rev 1, revoke returned');
      else expect(log.map((r) => r.by)).toEqual(['rev 0, revoke pending']);
      expect(ii).toEqual(log.map((r) => r.ii));
      expect((await l.getHead(id))?.meta.access?.rev).toBe(1);
    });
  });
}
