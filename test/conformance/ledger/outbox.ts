/**
 * Ledger conformance, the outbox (Outbox in shared/ports/ledger.ts): the published watermark only
 * rises and never skips a run that failed to publish, and listUnpublished finds every scope whose
 * oldest unpublished patch has waited long enough, however often it is written since.
 */
import { describe, expect, it } from 'vitest';
import type { Head } from '../../../shared/ports/index.js';
import { append, type Harness } from './fixtures.js';

export function outboxConformance({ open, create }: Harness): void {
  describe('published watermark', () => {
    it('markPublished moves the watermark up, never down', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 3));
      await l.markPublished(id, 2);
      expect((await l.getHead(id))?.published).toBe(2);
      await l.markPublished(id, 1);
      expect((await l.getHead(id))?.published).toBe(2);
      await l.markPublished(id, 3);
      expect((await l.getHead(id))?.published).toBe(3);
      await l.markPublished(id, 0);
      expect((await l.getHead(id))?.published).toBe(3);
      expect((await l.getHead(id))?.ii).toBe(3);
    });

    it('markPublished with from advances only a watermark that already covers from - 1', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 6));
      await l.markPublished(id, 6, 4); // run 4..6 published, but 1..3 never were: no move
      expect((await l.getHead(id))?.published).toBe(0);
      await l.markPublished(id, 3, 1);
      expect((await l.getHead(id))?.published).toBe(3);
      await l.markPublished(id, 6, 4);
      expect((await l.getHead(id))?.published).toBe(6);
      await l.markPublished(id, 5, 2); // an old run: never down
      expect((await l.getHead(id))?.published).toBe(6);
    });

    it('listUnpublished lists a scope by its oldest unpublished commit, however often it is written since', async () => {
      const l = await open();
      const OLD = 60_000;
      const s = await create(l, { created: OLD, updated: OLD });
      await l.commit(s.id, append(s.id, 1, {}, { updated: OLD + 10, size: 5 })); // never published
      for (let k = 1; k <= 5; k++) {
        const head = (await l.getHead(s.id)) as Head;
        await l.commit(s.id, append(s.id, 1, {}, { updated: OLD + 100 * k, size: 5 }));
        await l.markPublished(s.id, head.ii + 1, head.ii + 1); // later patches are published, 1 never is
      }
      expect((await l.listUnpublished(OLD + 20, 100)).map((x) => x.id)).toEqual([s.id]);
    });

    it('listUnpublished lists exactly the scopes with published < ii and updated < before, up to limit', async () => {
      const l = await open();
      // Times far in the past that no other test in this suite uses, so a shared backend's other
      // scopes (updated near T0) cannot match `before`.
      const OLD = 50_000;
      const at = (t: number) => ({ created: t, updated: t });
      const a = await create(l, at(OLD));
      await l.commit(a.id, append(a.id, 2, {}, { updated: OLD + 10, size: 5 })); // published 0 < ii 2: listed
      const b = await create(l, at(OLD));
      await l.commit(b.id, append(b.id, 2, {}, { updated: OLD + 10, size: 5 }));
      await l.markPublished(b.id, 2); // fully published: not listed
      await create(l, at(OLD)); // ii 0: nothing to publish
      const d = await create(l, at(OLD));
      await l.commit(d.id, append(d.id, 3, {}, { updated: OLD + 20, size: 5 }));
      await l.markPublished(d.id, 1); // published 1 < ii 3: listed
      const late = await create(l, at(OLD));
      await l.commit(late.id, append(late.id, 1, {}, { updated: OLD + 500, size: 5 })); // updated too recently for before = OLD + 500

      const byId = (xs: Array<{ id: string; published: number; ii: number }>) => xs.slice().sort((x, y) => x.id.localeCompare(y.id));
      const expected = byId([
        { id: a.id, published: 0, ii: 2 },
        { id: d.id, published: 1, ii: 3 },
      ]);
      expect(byId(await l.listUnpublished(OLD + 500, 100))).toEqual(expected);
      expect(byId(await l.listUnpublished(OLD + 501, 100))).toEqual(byId([...expected, { id: late.id, published: 0, ii: 1 }]));
      expect(byId(await l.listUnpublished(OLD + 15, 100))).toEqual([{ id: a.id, published: 0, ii: 2 }]);
      expect(await l.listUnpublished(OLD + 10, 100)).toEqual([]);

      const one = await l.listUnpublished(OLD + 500, 1);
      expect(one).toHaveLength(1);
      expect(expected).toContainEqual(one[0]);

      await l.markPublished(a.id, 2);
      await l.markPublished(d.id, 3);
      expect(await l.listUnpublished(OLD + 500, 100)).toEqual([]);
    });
  });
}
