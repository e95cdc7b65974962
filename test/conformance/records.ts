/**
 * RecordStore conformance: what every record store adapter must do (shared/ports/records.ts is
 * the contract). The guarantee it protects: a record changes only from the revision its writer
 * expected, so of racing writers exactly one wins and the others change nothing. Also: values
 * come back as stored (any JSON), kinds are separate namespaces, listings are by prefix and page
 * by `after` without repeats or gaps, and out-of-limit kinds, keys and values are refused.
 *
 * Usage: `recordsConformance('SqliteRecords', async () => store)`. Each `make()` returns a store
 * that may share data with earlier ones; the suite uses fresh kinds and keys per test.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { RecordStore } from '../../shared/ports/records.js';
import { MAX_RECORD_BYTES, MAX_RECORD_KEY } from '../../shared/ports/records.js';

const fresh = (): string => `t${randomUUID().slice(0, 8)}`;

export function recordsConformance(name: string, make: () => Promise<RecordStore>): void {
  describe(`${name} (RecordStore conformance)`, () => {
    it('a put at 0 creates the record at rev 1; get returns it; a second put at 0 is refused and changes nothing', async () => {
      const s = await make();
      const kind = fresh();
      expect(await s.get(kind, 'a')).toBeNull();
      const value = { admins: ['u1'], nested: [[1, 2], { 'a.b': null }], text: 'é💥' };
      expect(await s.put(kind, 'a', value, 0)).toEqual({ key: 'a', value, rev: 1 });
      expect(await s.get(kind, 'a')).toEqual({ key: 'a', value, rev: 1 });
      expect(await s.put(kind, 'a', { other: true }, 0)).toBeNull();
      expect(await s.get(kind, 'a')).toEqual({ key: 'a', value, rev: 1 });
    });

    it('a put at the stored revision replaces the value and adds 1; at any other revision it changes nothing', async () => {
      const s = await make();
      const kind = fresh();
      await s.put(kind, 'k', 1, 0);
      expect(await s.put(kind, 'k', 2, 1)).toEqual({ key: 'k', value: 2, rev: 2 });
      expect(await s.put(kind, 'k', 3, 1)).toBeNull();
      expect(await s.put(kind, 'k', 3, 5)).toBeNull();
      expect(await s.put(kind, 'missing', 3, 1)).toBeNull();
      expect(await s.get(kind, 'missing')).toBeNull();
      expect(await s.get(kind, 'k')).toEqual({ key: 'k', value: 2, rev: 2 });
    });

    it('of racing puts from the same revision exactly one wins', async () => {
      const s = await make();
      const kind = fresh();
      await s.put(kind, 'race', 0, 0);
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.put(kind, 'race', i + 1, 1)));
      const winners = results.filter((r) => r !== null);
      expect(winners).toHaveLength(1);
      expect(await s.get(kind, 'race')).toEqual(winners[0]);
      const creates = await Promise.all(Array.from({ length: 6 }, (_, i) => s.put(kind, 'new', i, 0)));
      expect(creates.filter((r) => r !== null)).toHaveLength(1);
    });

    it('delete removes only at the stored revision', async () => {
      const s = await make();
      const kind = fresh();
      await s.put(kind, 'd', 'x', 0);
      await s.put(kind, 'd', 'y', 1);
      expect(await s.delete(kind, 'd', 1)).toBe(false);
      expect(await s.get(kind, 'd')).toEqual({ key: 'd', value: 'y', rev: 2 });
      expect(await s.delete(kind, 'd', 2)).toBe(true);
      expect(await s.get(kind, 'd')).toBeNull();
      expect(await s.delete(kind, 'd', 2)).toBe(false);
      // Gone means "does not exist": it can be created again from 0.
      expect(await s.put(kind, 'd', 'z', 0)).toEqual({ key: 'd', value: 'z', rev: 1 });
    });

    it('kinds are separate namespaces', async () => {
      const s = await make();
      const [a, b] = [fresh(), fresh()];
      await s.put(a, 'same', 'in a', 0);
      expect(await s.get(b, 'same')).toBeNull();
      expect(await s.put(b, 'same', 'in b', 0)).not.toBeNull();
      expect((await s.get(a, 'same'))?.value).toBe('in a');
      expect((await s.list(a, { limit: 10 })).map((r) => r.value)).toEqual(['in a']);
    });

    it('lists by prefix in key order, and pages by `after` visit each record once', async () => {
      const s = await make();
      const kind = fresh();
      const keys = ['example.com/u1', 'example.com/u2', 'example.com/u10', 'example.org/u1', 'exam', 'example.com', 'example.com/ü', 'example.com/a b'];
      for (const k of keys) await s.put(kind, k, k, 0);
      const under = (await s.list(kind, { prefix: 'example.com/', limit: 100 })).map((r) => r.key);
      expect([...under].sort()).toEqual(keys.filter((k) => k.startsWith('example.com/')).sort());
      const all = (await s.list(kind, { limit: 100 })).map((r) => r.key);
      expect([...all].sort()).toEqual([...keys].sort());
      // Pages of 2 (after = the last key of the previous page) visit the same keys in the same order.
      const paged: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await s.list(kind, { prefix: 'example.com/', after, limit: 2 });
        paged.push(...page.map((r) => r.key));
        if (page.length < 2) break;
        after = page[page.length - 1]?.key;
      }
      expect(paged).toEqual(under);
      expect(await s.list(kind, { prefix: 'nothing/', limit: 5 })).toEqual([]);
    });

    it('keys hold any characters but U+0000 (slashes, dots, percent signs, emoji) and stay distinct', async () => {
      const s = await make();
      const kind = fresh();
      const odd = ['.', '..', '__x__', 'a/b', 'a%2Fb', '%', '~x', 'k', 'ké', '💥', ' '];
      for (const k of odd) expect(await s.put(kind, k, k, 0)).not.toBeNull();
      for (const k of odd) expect((await s.get(kind, k))?.value).toBe(k);
      expect((await s.list(kind, { limit: 100 })).map((r) => r.key).sort()).toEqual([...odd].sort());
      expect((await s.list(kind, { prefix: 'a', limit: 100 })).map((r) => r.key).sort()).toEqual(['a%2Fb', 'a/b']);
    });

    it('refuses kinds, keys and values past the limits, changing nothing', async () => {
      const s = await make();
      const kind = fresh();
      await expect(s.put('Bad Kind', 'k', 1, 0)).rejects.toMatchObject({ code: 'internal' });
      await expect(s.put(kind, '', 1, 0)).rejects.toMatchObject({ code: 'internal' });
      await expect(s.put(kind, 'x'.repeat(MAX_RECORD_KEY + 1), 1, 0)).rejects.toMatchObject({ code: 'internal' });
      await expect(s.put(kind, 'a\u0000b', 1, 0)).rejects.toMatchObject({ code: 'internal' });
      await expect(s.put(kind, 'big', 'x'.repeat(MAX_RECORD_BYTES), 0)).rejects.toMatchObject({ code: 'internal' });
      expect(await s.list(kind, { limit: 10 })).toEqual([]);
      expect(await s.put(kind, 'x'.repeat(MAX_RECORD_KEY), 'x'.repeat(MAX_RECORD_BYTES - 10), 0)).not.toBeNull();
    });
  });
}
