/**
 * Ledger conformance, scope names (ScopeLog.createScope, resolveName and rename in
 * shared/ports/ledger.ts): a name names at most one scope per (domain, owner), taken in the same
 * atomic step as the create or the rename that takes it. A create under a taken name, or a rename
 * to one, is refused with `name_taken` and changes nothing; of many concurrent creates (or
 * create-or-resolves, or renames) under one name exactly one gets it. A rename frees the old name,
 * changes nothing else of the head, and commits go on after it.
 */
import { describe, expect, it } from 'vitest';
import { PatchbayError } from '../../../shared/errors.js';
import type { Head, Ledger } from '../../../shared/ports/index.js';
import { append, expectCode, type Harness, meta, newId } from './fixtures.js';

/** The head without its name: what a rename must leave as it was. */
const rest = (h: Head | null) => {
  if (!h) return h;
  const { name: _, ...m } = h.meta;
  return { ...h, meta: m };
};

/** What the engine's create-or-resolve does on a ledger: the holder, or a new scope under the name, or (lost a race) the winner. */
export async function createOrResolve(l: Ledger, owner: string, name: string): Promise<{ id: string; created: boolean }> {
  for (;;) {
    const held = await l.resolveName('default', owner, name);
    if (held !== null) return { id: held, created: false };
    const id = newId();
    try {
      await l.createScope({ id, meta: meta({ owner, name }), initial: {} });
      return { id, created: true };
    } catch (err) {
      if (!(err instanceof PatchbayError && err.code === 'name_taken')) throw err;
    }
  }
}

export function namesConformance({ open, create }: Harness): void {
  describe('names', () => {
    it('a scope created with a name is found by (domain, owner, name) and by nothing else', async () => {
      const l = await open();
      const { id } = await create(l, { owner: 'alice', domain: 'app.test', name: 'Ünïcode ✓ / ~names~ %41' });
      expect(await l.resolveName('app.test', 'alice', 'Ünïcode ✓ / ~names~ %41')).toBe(id);
      expect(await l.resolveName('default', 'alice', 'Ünïcode ✓ / ~names~ %41')).toBeNull();
      expect(await l.resolveName('app.test', 'bob', 'Ünïcode ✓ / ~names~ %41')).toBeNull();
      expect(await l.resolveName('app.test', 'alice', 'Ünïcode ✓ / ~names~ A')).toBeNull();
      expect(await l.resolveName('app.test', 'alice', 'ünïcode ✓ / ~names~ %41')).toBeNull();
      // Unnamed scopes hold no name; a long name outside ASCII (past any readable key) works too.
      await create(l, { owner: 'alice', domain: 'app.test', name: null });
      const long = 'ü名'.repeat(128);
      const named = await create(l, { owner: 'alice~x', domain: 'app.test', name: long });
      expect(await l.resolveName('app.test', 'alice~x', long)).toBe(named.id);
      expect(await l.resolveName('app.test', 'alice', long)).toBeNull();
      expect(await l.resolveName('app.test', 'alice~x', `${long.slice(0, -1)}x`)).toBeNull();
    });

    it('a create under a taken name throws name_taken and writes nothing; another owner or domain may use it', async () => {
      const l = await open();
      const { id } = await create(l, { owner: 'alice', name: 'notes' });
      const loser = newId();
      await expectCode(l.createScope({ id: loser, meta: meta({ owner: 'alice', name: 'notes' }), initial: { x: 1 } }), 'name_taken');
      expect(await l.getHead(loser)).toBeNull();
      expect(await l.getInitial(loser)).toBeNull();
      expect(await l.resolveName('default', 'alice', 'notes')).toBe(id);
      expect((await l.listFor('alice', { limit: 10 })).scopes.map((s) => s.id)).toEqual([id]);
      // The id is checked first: a taken id and a taken name is scope_exists.
      await expectCode(l.createScope({ id, meta: meta({ owner: 'alice', name: 'notes' }), initial: {} }), 'scope_exists');
      const bob = await create(l, { owner: 'bob', name: 'notes' });
      const elsewhere = await create(l, { owner: 'alice', domain: 'other.test', name: 'notes' });
      expect(await l.resolveName('default', 'bob', 'notes')).toBe(bob.id);
      expect(await l.resolveName('other.test', 'alice', 'notes')).toBe(elsewhere.id);
    });

    it('of many concurrent creates under one name exactly one succeeds, and the others leave no scope', async () => {
      const l = await open();
      const ids = Array.from({ length: 12 }, () => newId());
      const outcomes = await Promise.allSettled(ids.map((id) => l.createScope({ id, meta: meta({ owner: 'alice', name: 'race' }), initial: {} })));
      const won = ids.filter((_, i) => outcomes[i]?.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as PatchbayError).code).toBe('name_taken');
      expect(await l.resolveName('default', 'alice', 'race')).toBe(won[0]);
      for (const id of ids) if (id !== won[0]) expect(await l.getHead(id)).toBeNull();
    });

    it('concurrent create-or-resolve under one name yields exactly one id', async () => {
      const l = await open();
      const results = await Promise.all(Array.from({ length: 20 }, () => createOrResolve(l, 'alice', 'shared board')));
      const ids = new Set(results.map((r) => r.id));
      expect(ids.size).toBe(1);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect((await l.listFor('alice', { limit: 100 })).scopes.map((s) => s.id)).toEqual([...ids]);
    });

    it('rename moves the name (the old one is free), changes nothing else of the head, and commits go on', async () => {
      const l = await open();
      const { id } = await create(l, { owner: 'alice', name: 'draft' });
      await l.commit(id, append(id, 2, {}, { updated: 5, size: 7 }));
      const before = await l.getHead(id);
      await l.rename(id, 'final');
      const after = await l.getHead(id);
      expect(after?.meta.name).toBe('final');
      expect(rest(after)).toEqual(rest(before));
      expect(await l.resolveName('default', 'alice', 'final')).toBe(id);
      expect(await l.resolveName('default', 'alice', 'draft')).toBeNull();
      expect((await l.listFor('alice', { limit: 10, name: 'final' })).scopes.map((s) => s.id)).toEqual([id]);
      expect((await l.listFor('alice', { limit: 10, name: 'draft' })).scopes).toEqual([]);
      // The freed name can be taken again; the commit after the rename lands at the next index.
      const again = await create(l, { owner: 'alice', name: 'draft' });
      expect(await l.resolveName('default', 'alice', 'draft')).toBe(again.id);
      expect(await l.commit(id, append(id, 1))).toEqual([3]);
      expect((await l.getHead(id))?.meta.name).toBe('final');
      // The same name again changes nothing; null frees it and makes the scope unnamed.
      await l.rename(id, 'final');
      expect((await l.getHead(id))?.meta.name).toBe('final');
      await l.rename(id, null);
      expect((await l.getHead(id))?.meta.name).toBeNull();
      expect(await l.resolveName('default', 'alice', 'final')).toBeNull();
      // An unnamed scope can take a name.
      await l.rename(id, 'final again');
      expect(await l.resolveName('default', 'alice', 'final again')).toBe(id);
    });

    it('rename to a taken name throws name_taken and changes nothing; an unknown scope throws scope_not_found', async () => {
      const l = await open();
      const a = await create(l, { owner: 'alice', name: 'a' });
      const b = await create(l, { owner: 'alice', name: 'b' });
      const heads = [await l.getHead(a.id), await l.getHead(b.id)];
      await expectCode(l.rename(a.id, 'b'), 'name_taken');
      expect([await l.getHead(a.id), await l.getHead(b.id)]).toEqual(heads);
      expect(await l.resolveName('default', 'alice', 'a')).toBe(a.id);
      expect(await l.resolveName('default', 'alice', 'b')).toBe(b.id);
      await expectCode(l.rename(newId(), 'c'), 'scope_not_found');
      expect(await l.resolveName('default', 'alice', 'c')).toBeNull();
      // Another owner's name is no conflict: names are per (domain, owner).
      const c = await create(l, { owner: 'bob', name: 'c' });
      await l.rename(c.id, 'a');
      expect(await l.resolveName('default', 'bob', 'a')).toBe(c.id);
      expect(await l.resolveName('default', 'alice', 'a')).toBe(a.id);
    });

    it('of concurrent renames and creates to one name exactly one gets it', async () => {
      const l = await open();
      const scopes = await Promise.all(Array.from({ length: 6 }, (_, i) => create(l, { owner: 'alice', name: `n${i}` })));
      const ids = [...scopes.map((s) => s.id), newId(), newId()];
      const outcomes = await Promise.allSettled([
        ...scopes.map((s) => l.rename(s.id, 'contested')),
        ...ids.slice(-2).map((id) => l.createScope({ id, meta: meta({ owner: 'alice', name: 'contested' }), initial: {} })),
      ]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as PatchbayError).code).toBe('name_taken');
      const winner = await l.resolveName('default', 'alice', 'contested');
      expect(ids[outcomes.findIndex((o) => o.status === 'fulfilled')]).toBe(winner);
      // Each loser kept its own name, still held.
      for (const [i, s] of scopes.entries()) {
        if (s.id === winner) continue;
        expect((await l.getHead(s.id))?.meta.name).toBe(`n${i}`);
        expect(await l.resolveName('default', 'alice', `n${i}`)).toBe(s.id);
      }
      const named = (await l.listFor('alice', { limit: 100, name: 'contested' })).scopes.map((s) => s.id);
      expect(named).toEqual([winner]);
    });
  });
}
