/**
 * PresenceStore conformance: what every presence adapter must do (shared/ports/presence.ts is the
 * contract). A put joins or updates (keeping `since` of a live entry), entries lapse at their
 * `expires` and are never listed after it, touch extends only a live entry, remove answers
 * whether a live entry went, lists are oldest first and bounded, statuses round-trip exactly, and
 * many sessions joining one scope at once are all kept.
 *
 * Usage: `presenceConformance('MemoryPresence', async (now) => new MemoryPresence(now))`. `now` is
 * the suite's clock (real time plus an offset it moves forward); scopes are unique per test.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Json } from '../../shared/json.js';
import type { PresenceEntry, PresenceStore } from '../../shared/ports/presence.js';

const newScope = (): string => `scope-${randomUUID()}`;

export function presenceConformance(name: string, make: (now: () => number) => Promise<PresenceStore>): void {
  describe(`${name} (PresenceStore conformance)`, () => {
    let offset = 0;
    const now = () => Date.now() + offset;
    const made: PresenceStore[] = [];
    const open = async (): Promise<PresenceStore> => {
      offset = 0;
      const s = await make(now);
      made.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((s) => s.close()));
    });
    const entry = (session: string, over: Partial<PresenceEntry> = {}): PresenceEntry => ({
      user: `user-${session}`,
      session,
      since: now(),
      status: null,
      expires: now() + 60_000,
      ...over,
    });

    it('a put joins, a second one updates the status and keeps since; list shows it', async () => {
      const p = await open();
      const scope = newScope();
      expect(await p.list(scope, 10)).toEqual([]);
      const first = await p.put(scope, entry('s1', { since: 1000, status: { cursor: 1 } }));
      expect(first).toEqual({ joined: true, entry: expect.objectContaining({ session: 's1', since: 1000, status: { cursor: 1 } }) });
      const second = await p.put(scope, entry('s1', { since: 2000, status: { cursor: 2 } }));
      expect(second.joined).toBe(false);
      expect(second.entry).toMatchObject({ since: 1000, status: { cursor: 2 } });
      expect(await p.list(scope, 10)).toEqual([second.entry]);
    });

    it('lists oldest first, at most limit; scopes are independent', async () => {
      const p = await open();
      const [a, b] = [newScope(), newScope()];
      await p.put(a, entry('late', { since: 3000 }));
      await p.put(a, entry('early', { since: 1000 }));
      await p.put(a, entry('middle', { since: 2000 }));
      await p.put(b, entry('other'));
      expect((await p.list(a, 10)).map((e) => e.session)).toEqual(['early', 'middle', 'late']);
      expect((await p.list(a, 2)).map((e) => e.session)).toEqual(['early', 'middle']);
      expect((await p.list(b, 10)).map((e) => e.session)).toEqual(['other']);
    });

    it('an entry lapses at its expires: not listed, not touched, not removed; a put after it joins anew', async () => {
      const p = await open();
      const scope = newScope();
      await p.put(scope, entry('s', { since: 1000, expires: now() + 5000 }));
      await p.put(scope, entry('stays', { expires: now() + 60_000 }));
      offset += 5000;
      expect((await p.list(scope, 10)).map((e) => e.session)).toEqual(['stays']);
      expect(await p.touch(scope, 's', now() + 60_000)).toBe(false);
      expect((await p.list(scope, 10)).map((e) => e.session)).toEqual(['stays']);
      const again = await p.put(scope, entry('s', { since: 9000 }));
      expect(again).toMatchObject({ joined: true, entry: { since: 9000 } });
      await p.put(scope, entry('gone', { expires: now() + 1000 }));
      offset += 1000;
      expect(await p.remove(scope, 'gone')).toBe(false);
    });

    it('touch extends a live entry (never shortens it); remove answers once', async () => {
      const p = await open();
      const scope = newScope();
      await p.put(scope, entry('s', { expires: now() + 5000 }));
      expect(await p.touch(scope, 's', now() + 20_000)).toBe(true);
      expect(await p.touch(scope, 's', now() + 1000)).toBe(true); // earlier than stored: kept
      expect(await p.touch(scope, 'nobody', now() + 20_000)).toBe(false);
      offset += 10_000;
      expect((await p.list(scope, 10)).map((e) => e.session)).toEqual(['s']);
      expect(await p.remove(scope, 's')).toBe(true);
      expect(await p.remove(scope, 's')).toBe(false);
      expect(await p.list(scope, 10)).toEqual([]);
    });

    it('statuses round-trip exactly', async () => {
      const p = await open();
      const scope = newScope();
      const statuses: Json[] = [null, 0, -1.5, 1e21, 'héllo 世界 🎉 "q" \\', true, [], {}, { a: [1, { b: null }], '': 'empty key' }, [[], {}]];
      for (const [i, status] of statuses.entries()) await p.put(scope, entry(`s${i}`, { since: i, status }));
      expect((await p.list(scope, 100)).map((e) => e.status)).toEqual(statuses);
    });

    it('many sessions joining one scope at once are all kept', async () => {
      const p = await open();
      const scope = newScope();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => p.put(scope, entry(`s${i}`, { since: i }))));
      expect(results.every((r) => r.joined)).toBe(true);
      expect((await p.list(scope, 100)).map((e) => e.session)).toEqual(Array.from({ length: 50 }, (_, i) => `s${i}`));
    });
  });
}
