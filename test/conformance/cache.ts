/**
 * HotCache conformance: what every cache adapter must do (shared/ports/cache.ts is the contract).
 * The guarantee it protects: an entry never moves backwards. A put at an ii at or below the
 * stored one loses and keeps the newer entry, even when many puts race, so two writers finishing
 * out of order cannot leave the older state behind. Also: a cached null state is a hit, not a
 * miss; entries of different scopes are independent; JSON values round-trip exactly.
 *
 * Usage: `cacheConformance('MemoryCache', async () => new MemoryCache())`. Each `make()` must
 * return a fresh, empty instance; the suite closes every instance it made. Keys are unique per
 * test anyway, so a shared backend stays isolated.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Json } from '../../shared/json.js';
import type { HotCache } from '../../shared/ports/index.js';
import { shuffled } from '../helpers/random.js';

const newId = (): string => `scope-${randomUUID()}`;

export function cacheConformance(name: string, make: () => Promise<HotCache>): void {
  describe(`${name} (HotCache conformance)`, () => {
    const made: HotCache[] = [];
    const open = async (): Promise<HotCache> => {
      const c = await make();
      made.push(c);
      return c;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((c) => c.close()));
    });

    it('a miss is null', async () => {
      const c = await open();
      expect(await c.get(newId())).toBeNull();
    });

    it('put then get returns the stored ii and state; a put on a miss stores even at ii 0', async () => {
      const c = await open();
      const id = newId();
      expect(await c.put(id, 0, { count: 0 })).toBe(true);
      expect(await c.get(id)).toEqual({ ii: 0, state: { count: 0 } });
      const other = newId();
      expect(await c.put(other, 7, { count: 7, items: ['a', 'b'] })).toBe(true);
      expect(await c.get(other)).toEqual({ ii: 7, state: { count: 7, items: ['a', 'b'] } });
    });

    it('a null state is a hit, not a miss', async () => {
      const c = await open();
      const id = newId();
      expect(await c.put(id, 3, null)).toBe(true);
      expect(await c.get(id)).toEqual({ ii: 3, state: null });
      // and it still blocks older puts like any entry
      expect(await c.put(id, 2, { older: true })).toBe(false);
      expect(await c.get(id)).toEqual({ ii: 3, state: null });
    });

    it('a put at a lower or equal ii returns false and keeps the newer entry; a higher ii replaces it', async () => {
      const c = await open();
      const id = newId();
      expect(await c.put(id, 5, { v: 'five' })).toBe(true);
      expect(await c.put(id, 3, { v: 'three' })).toBe(false);
      expect(await c.put(id, 0, { v: 'zero' })).toBe(false);
      expect(await c.put(id, 5, { v: 'five again, different' })).toBe(false);
      expect(await c.get(id)).toEqual({ ii: 5, state: { v: 'five' } });
      expect(await c.put(id, 6, { v: 'six' })).toBe(true);
      expect(await c.get(id)).toEqual({ ii: 6, state: { v: 'six' } });
      expect(await c.put(id, 100, 'now a string')).toBe(true);
      expect(await c.get(id)).toEqual({ ii: 100, state: 'now a string' });
      expect(await c.put(id, 99, { v: 'late' })).toBe(false);
      expect(await c.get(id)).toEqual({ ii: 100, state: 'now a string' });
    });

    it('delete removes the entry, so a later put at any ii stores again; deleting a miss is fine', async () => {
      const c = await open();
      const id = newId();
      await c.put(id, 9, { v: 9 });
      await c.delete(id);
      expect(await c.get(id)).toBeNull();
      expect(await c.put(id, 2, { v: 2 })).toBe(true);
      expect(await c.get(id)).toEqual({ ii: 2, state: { v: 2 } });
      await c.delete(newId());
      await c.delete(id);
      await c.delete(id);
      expect(await c.get(id)).toBeNull();
    });

    it('scopes are independent', async () => {
      const c = await open();
      const a = newId();
      const b = newId();
      expect(await c.put(a, 10, { who: 'a' })).toBe(true);
      expect(await c.put(b, 1, { who: 'b' })).toBe(true); // lower than a's ii: still stores, b is its own entry
      expect(await c.put(b, 5, { who: 'b5' })).toBe(true);
      expect(await c.get(a)).toEqual({ ii: 10, state: { who: 'a' } });
      await c.delete(a);
      expect(await c.get(a)).toBeNull();
      expect(await c.get(b)).toEqual({ ii: 5, state: { who: 'b5' } });
    });

    it('arrays, nested values, unicode and every JSON type round-trip exactly', async () => {
      const c = await open();
      const values: Json[] = [
        {
          text: 'héllo 世界 🎉 \u00e9 vs e\u0301, quotes " \' and \\ backslash, newline\nand tab\t, nul \u0000',
          'ключ with spaces / and ~ and .dots': { '': 'empty key', '😀': ['emoji key'] },
          nested: { a: { b: { c: { d: [1, [2, [3, [4, { e: null }]]]] } } } },
          numbers: [0, -1, 1.5, -2.25, 1e21, 123456789012345, Number.MAX_SAFE_INTEGER],
          bools: [true, false],
          empty: { obj: {}, arr: [], str: '' },
          nulls: [null, { n: null }],
        },
        [[], [[]], [{}, { a: [] }], 'x', 1, null, true],
        'a bare string ✓',
        '',
        0,
        -7.5,
        false,
        true,
      ];
      const ids = values.map(() => newId());
      for (const [i, id] of ids.entries()) expect(await c.put(id, i + 1, values[i] as Json)).toBe(true);
      for (const [i, id] of ids.entries()) expect(await c.get(id)).toEqual({ ii: i + 1, state: values[i] });
    });

    it('concurrent puts of ii 1..20 in shuffled order end at 20', async () => {
      const c = await open();
      for (const seed of [1, 2]) {
        const id = newId();
        const order = shuffled(20, seed);
        const stored = await Promise.all(order.map((ii) => c.put(id, ii, { ii, by: `put-${ii}` })));
        // the put of 20 can never lose: nothing at or above 20 exists
        expect(stored[order.indexOf(20)]).toBe(true);
        expect(await c.get(id)).toEqual({ ii: 20, state: { ii: 20, by: 'put-20' } });
        // and it stays there
        expect(await c.put(id, 19, { ii: 19 })).toBe(false);
        expect((await c.get(id))?.ii).toBe(20);
      }
    });
  });
}
