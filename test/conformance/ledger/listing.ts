/**
 * Ledger conformance, a user's listing (ScopeLog.listFor in shared/ports/ledger.ts): the scopes
 * the user owns or is listed in as a reader or writer, and no other (not those a visibility only
 * lets it read); each as stored (id, ii, meta with its access); pages of at most `limit` that,
 * followed by `next`, visit every such scope once; the meta filters; and a listing that follows
 * `setAccess` at once (a user removed no longer lists the scope, one added does).
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Ledger, ListQuery, ScopeListing } from '../../../shared/ports/index.js';
import type { ScopeAccess } from '../../../shared/protocol.js';
import { append, type Harness } from './fixtures.js';

/** A user id of this test only, so a backend shared across tests lists nothing of other tests. */
const newUser = (): string => `user-${randomUUID()}`;

const access = (readers: string[], writers: string[], visibility: ScopeAccess['visibility'] = 'private'): ScopeAccess => ({
  visibility,
  readers,
  writers,
  rev: 0,
});

/** Every page of the listing, followed by `next` from the first (bounded: a loop is a failure). */
async function allPages(l: Ledger, user: string, query: Omit<ListQuery, 'after'>): Promise<ScopeListing[][]> {
  const pages: ScopeListing[][] = [];
  let after: string | undefined;
  for (let i = 0; i < 50; i++) {
    const page = await l.listFor(user, { ...query, ...(after === undefined ? {} : { after }) });
    expect(page.scopes.length).toBeLessThanOrEqual(query.limit);
    pages.push(page.scopes);
    if (page.next === null) return pages;
    after = page.next;
  }
  throw new Error('the listing did not end');
}

const ids = (pages: ScopeListing[][]): string[] => pages.flat().map((s) => s.id);

export function listingConformance({ open, create }: Harness): void {
  describe('listing (listFor)', () => {
    it("lists the scopes a user owns or is listed in, as stored, and nobody else's", async () => {
      const l = await open();
      const [me, other] = [newUser(), newUser()];
      const owned = await create(l, { owner: me, access: access(['x'], []) });
      const legacy = await create(l, { owner: me, access: undefined });
      const read = await create(l, { owner: other, access: access([me], []) });
      const written = await create(l, { owner: other, access: access(['x'], [me]) });
      await create(l, { owner: other, access: access([], [], 'public') }); // readable by all, listed by none
      await create(l, { owner: other, access: access(['x'], ['y']) });
      await l.commit(read.id, append(read.id, 2, {}, { updated: 9, size: 3 }));
      const listed = (await allPages(l, me, { limit: 100 })).flat();
      expect(listed.map((s) => s.id).sort()).toEqual([owned.id, legacy.id, read.id, written.id].sort());
      for (const s of listed) {
        const head = await l.getHead(s.id);
        expect(s).toEqual({ id: head?.id, ii: head?.ii, meta: head?.meta });
      }
      expect(listed.find((s) => s.id === read.id)?.ii).toBe(2);
      expect(await l.listFor(newUser(), { limit: 10 })).toEqual({ scopes: [], next: null });
    });

    it('pages of at most `limit`, followed by `next`, visit every scope once', async () => {
      const l = await open();
      const [me, other] = [newUser(), newUser()];
      const made: string[] = [];
      for (let i = 0; i < 5; i++) made.push((await create(l, { owner: me })).id);
      for (let i = 0; i < 3; i++) made.push((await create(l, { owner: other, access: access(i === 0 ? [] : [me], i === 0 ? [me] : []) })).id);
      for (const limit of [1, 3, 8, 20]) {
        const pages = await allPages(l, me, { limit });
        expect(ids(pages).sort(), `limit ${limit}`).toEqual([...made].sort());
        expect(new Set(ids(pages)).size).toBe(made.length);
        expect(pages.length, `limit ${limit}`).toBeLessThanOrEqual(Math.ceil(made.length / limit) + 1);
      }
    });

    it('filters by domain, type and name, alone and together', async () => {
      const l = await open();
      const [me, other] = [newUser(), newUser()];
      const a = await create(l, { owner: me, domain: 'app-a', type: 'doc', name: 'one' });
      const b = await create(l, { owner: me, domain: 'app-a', type: 'board', name: 'two' });
      const c = await create(l, { owner: other, domain: 'app-b', type: 'doc', name: 'one', access: access([me], []) });
      const d = await create(l, { owner: me, domain: 'app-b', type: null, name: null });
      const list = async (q: Omit<ListQuery, 'limit' | 'after'>) => ids(await allPages(l, me, { ...q, limit: 2 })).sort();
      expect(await list({})).toEqual([a.id, b.id, c.id, d.id].sort());
      expect(await list({ domain: 'app-a' })).toEqual([a.id, b.id].sort());
      expect(await list({ domain: 'app-b' })).toEqual([c.id, d.id].sort());
      expect(await list({ type: 'doc' })).toEqual([a.id, c.id].sort());
      expect(await list({ name: 'one' })).toEqual([a.id, c.id].sort());
      expect(await list({ domain: 'app-b', type: 'doc', name: 'one' })).toEqual([c.id]);
      expect(await list({ domain: 'app-c' })).toEqual([]);
    });

    it('follows setAccess at once: a removed user no longer lists the scope, an added one does', async () => {
      const l = await open();
      const [owner, r, w] = [newUser(), newUser(), newUser()];
      const { id } = await create(l, { owner, access: access([r], []) });
      const listed = async (u: string) => ids(await allPages(l, u, { limit: 10 }));
      expect(await listed(r)).toEqual([id]);
      expect(await listed(w)).toEqual([]);
      await l.setAccess(id, { visibility: 'domain', readers: [], writers: [w] }, 0);
      expect(await listed(r)).toEqual([]);
      expect(await listed(w)).toEqual([id]);
      await l.setAccess(id, { visibility: 'private', readers: [w, r], writers: [] }, 1);
      expect(await listed(r)).toEqual([id]);
      expect(await listed(w)).toEqual([id]);
      expect(await listed(owner)).toEqual([id]);
      // a stale revision changes nobody's listing
      await l.setAccess(id, { visibility: 'private', readers: [], writers: [] }, 0);
      expect(await listed(r)).toEqual([id]);
    });
  });
}
