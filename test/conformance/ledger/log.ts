/**
 * Ledger conformance, the scope log (ScopeLog in shared/ports/ledger.ts). Guarantee 1 lives here:
 * a commit appends consecutive records at head + 1 atomically with the head, writes nothing when
 * its plan fails or yields nothing, and concurrent commits on one scope each get their own indices
 * with no holes (the plan is re-run when the head moved). Also: scope creation and exact log
 * read-back (readLog, and readPatches as its projection).
 */
import { describe, expect, it } from 'vitest';
import type { Json } from '../../../shared/json.js';
import type { Head, LogPatch } from '../../../shared/ports/index.js';
import type { PatchRecord } from '../../../shared/protocol.js';
import { append, expectCode, expectPatchesOfLog, type Harness, meta, newId, record, T0, varied } from './fixtures.js';

export function scopeLogConformance({ open, create }: Harness): void {
  describe('scopes', () => {
    it('createScope returns the head at ii 0 with its meta, an epoch, no lease, nothing published', async () => {
      const l = await open();
      const id = newId();
      const m = meta({ name: 'Ünïcode ✓', type: 'board' });
      const head = await l.createScope({ id, meta: m, initial: { count: 0 } });
      expect(head).toMatchObject({ id, ii: 0, lease: null, published: 0, bundled: 0, trimmed: 0, meta: m });
      expect(Number.isInteger(head.epoch) && head.epoch >= 0).toBe(true);
      expect(await l.getHead(id)).toEqual(head);

      const bare = newId();
      const bareMeta = meta({ name: null, type: null });
      expect((await l.createScope({ id: bare, meta: bareMeta, initial: {} })).meta).toEqual(bareMeta);
      expect((await l.getHead(bare))?.meta).toEqual(bareMeta);
    });

    it('createScope of a taken id throws scope_exists and changes nothing', async () => {
      const l = await open();
      const { id } = await create(l, {}, { v: 'original' });
      await l.commit(id, append(id, 2, {}, { updated: T0 + 5, size: 11 }));
      const head = await l.getHead(id);
      const log = await l.readLog(id, 1, 10);

      await expectCode(
        l.createScope({ id, meta: meta({ owner: 'someone-else', name: 'other', created: T0 + 9, updated: T0 + 9 }), initial: { v: 'new' } }),
        'scope_exists',
      );

      expect(await l.getHead(id)).toEqual(head);
      expect(await l.getInitial(id)).toEqual({ v: 'original' });
      expect(await l.readLog(id, 1, 10)).toEqual(log);
    });

    it('getHead and getInitial return null for an unknown id', async () => {
      const l = await open();
      expect(await l.getHead(newId())).toBeNull();
      expect(await l.getInitial(newId())).toBeNull();
    });

    it('getInitial returns any JSON value as it was created', async () => {
      const l = await open();
      const values: Json[] = [
        { a: 1, nested: { deep: [1, [2, [3]], { b: null }] }, text: 'héllo 世界 🎉', empty: {}, none: [], t: true, f: false, neg: -12.5 },
        [1, 'two', null, [3, [4]], { five: 5 }],
        [],
        42,
        0,
        -3.25,
        'just a string ✓',
        '',
        true,
        null,
      ];
      const ids: string[] = [];
      for (const initial of values) ids.push((await create(l, {}, initial)).id);
      for (const [i, id] of ids.entries()) {
        expect(await l.getHead(id), `scope for ${JSON.stringify(values[i])}`).not.toBeNull();
        expect(await l.getInitial(id)).toEqual(values[i]);
      }
    });
  });

  describe('commit and readLog', () => {
    it('appends consecutive records, returns the plan result, and moves head.ii and meta', async () => {
      const l = await open();
      const { id, head: h0 } = await create(l, { name: 'keep me', type: 'kept', created: T0, updated: T0, size: 2 });

      const first = await l.commit(id, async (view) => {
        expect(view.head).toEqual(h0);
        const records = [record(id, 1, view.head.epoch), record(id, 2, view.head.epoch), record(id, 3, view.head.epoch)];
        return { records, meta: { updated: T0 + 3000, size: 123 }, result: { answer: 'plan result', n: records.length } };
      });
      expect(first).toEqual({ answer: 'plan result', n: 3 });
      const h1 = await l.getHead(id);
      expect(h1).toEqual({ ...h0, ii: 3, meta: { ...h0.meta, updated: T0 + 3000, size: 123 } });

      expect(await l.commit(id, append(id, 2, {}, { updated: T0 + 5000, size: 456 }))).toEqual([4, 5]);
      const h2 = await l.getHead(id);
      expect(h2).toEqual({ ...h0, ii: 5, meta: { ...h0.meta, updated: T0 + 5000, size: 456 } });

      // Without `meta`, the head's meta stays as it was.
      expect(await l.commit(id, append(id, 1))).toEqual([6]);
      expect(await l.getHead(id)).toEqual({ ...h2, ii: 6 });

      expect(await l.readLog(id, 1, 6)).toEqual([1, 2, 3, 4, 5, 6].map((ii) => record(id, ii, h0.epoch)));
    });

    it('a plan that returns no records writes nothing, not even its meta, and its result is returned', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 1, {}, { updated: T0 + 1, size: 10 }));
      const head = await l.getHead(id);

      const result = await l.commit(id, async () => ({ records: [], meta: { updated: T0 + 99_000, size: 999 }, result: 'nothing to do' }));
      expect(result).toBe('nothing to do');
      expect(await l.getHead(id)).toEqual(head);
      expect(await l.readLog(id, 0, 100)).toEqual([record(id, 1, head?.epoch ?? -1)]);
    });

    it('readLog returns every field exactly, ascending, with inclusive bounds and limit', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const records = varied(id, head.epoch);
      await l.commit(id, async () => ({ records: records.slice(0, 2), result: null }));
      await l.commit(id, async () => ({ records: records.slice(2), result: null }));

      expect(await l.readLog(id, 1, 6)).toEqual(records);
      expect(await l.readLog(id, 0, 1000)).toEqual(records);
      expect(await l.readLog(id, 2, 4)).toEqual(records.slice(1, 4));
      expect(await l.readLog(id, 3, 3)).toEqual([records[2]]);
      expect(await l.readLog(id, 6, 6)).toEqual([records[5]]);
      expect(await l.readLog(id, 1, 6, 2)).toEqual(records.slice(0, 2));
      expect(await l.readLog(id, 3, 6, 3)).toEqual(records.slice(2, 5));
      expect(await l.readLog(id, 2, 3, 10)).toEqual(records.slice(1, 3));
      expect(await l.readLog(id, 7, 20)).toEqual([]);
      expect(await l.readLog(id, 4, 3)).toEqual([]);
      // a record's null session/si come back as null, not missing or undefined
      const [r1] = await l.readLog(id, 1, 1);
      expect(r1?.session).toBeNull();
      expect(r1?.si).toBeNull();
    });

    it('readLog of one scope never returns another scope’s records', async () => {
      const l = await open();
      const a = await create(l);
      const b = await create(l);
      await l.commit(a.id, append(a.id, 3));
      await l.commit(b.id, append(b.id, 1, { by: 'user-b' }));
      expect((await l.readLog(a.id, 1, 10)).map((r) => [r.scope, r.ii])).toEqual([
        [a.id, 1],
        [a.id, 2],
        [a.id, 3],
      ]);
      expect(await l.readLog(b.id, 1, 10)).toEqual([record(b.id, 1, b.head.epoch, { by: 'user-b' })]);
    });

    it('readPatches returns exactly readLog’s ii and patch for the same ranges and limits', async () => {
      const l = await open();
      const { id, head } = await create(l);
      const records = [...varied(id, head.epoch), ...Array.from({ length: 19 }, (_, i) => record(id, 7 + i, head.epoch))];
      await l.commit(id, async () => ({ records: records.slice(0, 3), result: null }));
      await l.commit(id, async () => ({ records: records.slice(3), result: null }));
      const all = records.map((r) => ({ ii: r.ii, patch: r.patch }));

      expect(await expectPatchesOfLog(l, id, 1, 25)).toEqual(all);
      expect(await expectPatchesOfLog(l, id, 0, 1000)).toEqual(all);
      expect(await expectPatchesOfLog(l, id, 2, 4)).toEqual(all.slice(1, 4));
      expect(await expectPatchesOfLog(l, id, 3, 3)).toEqual([all[2]]);
      expect(await expectPatchesOfLog(l, id, 25, 25)).toEqual([all[24]]);
      expect(await expectPatchesOfLog(l, id, 1, 25, 2)).toEqual(all.slice(0, 2));
      expect(await expectPatchesOfLog(l, id, 3, 25, 10)).toEqual(all.slice(2, 12));
      expect(await expectPatchesOfLog(l, id, 2, 3, 10)).toEqual(all.slice(1, 3));
      expect(await expectPatchesOfLog(l, id, 1, 25, 25)).toEqual(all);
      expect(await expectPatchesOfLog(l, id, 1, Number.MAX_SAFE_INTEGER, 100_000)).toEqual(all);
      // paging through with a small limit gives the whole log, in order, once
      const paged: LogPatch[] = [];
      for (let next = 1; ; ) {
        const page = await expectPatchesOfLog(l, id, next, 25, 7);
        paged.push(...page);
        if (page.length < 7) break;
        next = (page[page.length - 1] as LogPatch).ii + 1;
      }
      expect(paged).toEqual(all);
      // past the end, an empty or inverted range, and nothing at or below 0
      expect(await expectPatchesOfLog(l, id, 26, 40)).toEqual([]);
      expect(await expectPatchesOfLog(l, id, 4, 3)).toEqual([]);
      expect(await expectPatchesOfLog(l, id, -5, 0)).toEqual([]);
      // another scope's records never, an unknown scope's nothing
      const other = await create(l);
      await l.commit(other.id, append(other.id, 2, { by: 'user-b' }));
      expect(await expectPatchesOfLog(l, other.id, 1, 100)).toEqual([1, 2].map((ii) => ({ ii, patch: record(other.id, ii, other.head.epoch).patch })));
      expect(await expectPatchesOfLog(l, newId(), 1, 100)).toEqual([]);
    });

    it('readPatches returns fresh objects: changing them changes nothing stored, nor the next answer', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 3));
      const first = await l.readPatches(id, 1, 3);
      const second = await l.readPatches(id, 1, 3);
      expect(second).toEqual(first);
      const op = (first[0] as LogPatch).patch[1] as unknown as { value: { nested: unknown[] } };
      expect((second[0] as LogPatch).patch[1]).not.toBe(op);
      expect((second[0] as LogPatch).patch[1]?.value).not.toBe(op.value);
      // what a fold does to a value it took from a patch
      op.value.nested.push('changed by a later op');
      (first[1] as LogPatch).patch.pop();
      expect(await l.readPatches(id, 1, 3)).toEqual(second);
      expect((await l.readLog(id, 1, 3)).map((r) => r.patch)).toEqual(second.map((p) => p.patch));
    });

    it('commit on a missing scope throws scope_not_found and creates nothing', async () => {
      const l = await open();
      const id = newId();
      await expectCode(
        l.commit(id, async () => ({ records: [record(id, 1, 0)], result: null })),
        'scope_not_found',
      );
      expect(await l.getHead(id)).toBeNull();
      expect(await l.getInitial(id)).toBeNull();
    });

    it('a plan with non-consecutive records throws and writes nothing', async () => {
      const l = await open();
      const { id } = await create(l);
      await l.commit(id, append(id, 2, {}, { updated: T0 + 2, size: 20 }));
      const head = await l.getHead(id);
      const log = await l.readLog(id, 0, 100);
      expect(head?.ii).toBe(2);
      const e = head?.epoch ?? 0;

      const bad: Array<[string, (h: Head) => PatchRecord[]]> = [
        ['a gap before the first', (h) => [record(id, h.ii + 2, e)]],
        ['rewriting the head index', (h) => [record(id, h.ii, e)]],
        ['rewriting index 1', () => [record(id, 1, e)]],
        ['a hole inside', (h) => [record(id, h.ii + 1, e), record(id, h.ii + 3, e)]],
        ['descending', (h) => [record(id, h.ii + 2, e), record(id, h.ii + 1, e)]],
        ['a repeated index', (h) => [record(id, h.ii + 1, e), record(id, h.ii + 1, e)]],
      ];
      for (const [what, make] of bad) {
        const err = await l
          .commit(id, async (view) => ({ records: make(view.head), meta: { updated: T0 + 777, size: 777 }, result: 'should not succeed' }))
          .then(
            () => undefined,
            (x: unknown) => x,
          );
        expect(err, what).toBeInstanceOf(Error);
        expect(await l.getHead(id), what).toEqual(head);
        expect(await l.readLog(id, 0, 100), what).toEqual(log);
      }
      // and the scope still takes the next good commit at head + 1
      expect(await l.commit(id, append(id, 1))).toEqual([3]);
    });

    it('concurrent commits on one scope all succeed with their own indices and no holes', async () => {
      const l = await open();
      const { id } = await create(l);
      const writers = 5;
      // writer k appends (k % 3) + 1 records, tagged with its name; each plan yields to the event
      // loop first so the commits really interleave
      const results = await Promise.all(
        Array.from({ length: writers }, async (_, k) =>
          l.commit(id, async (view) => {
            await new Promise((r) => setImmediate(r));
            const n = (k % 3) + 1;
            const records = Array.from({ length: n }, (_, i) => record(id, view.head.ii + 1 + i, view.head.epoch, { by: `writer-${k}` }));
            return { records, meta: { updated: T0 + view.head.ii + n, size: view.head.ii + n }, result: records.map((r) => r.ii) };
          }),
        ),
      );
      const total = results.reduce((s, r) => s + r.length, 0);
      expect(total).toBe(Array.from({ length: writers }, (_, k) => (k % 3) + 1).reduce((a, b) => a + b, 0));
      expect(
        results
          .flat()
          .slice()
          .sort((a, b) => a - b),
      ).toEqual(Array.from({ length: total }, (_, i) => i + 1));

      const log = await l.readLog(id, 1, 1000);
      expect(log.map((r) => r.ii)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      // each writer's records sit exactly at the indices its commit returned
      for (const [k, iis] of results.entries()) {
        expect(iis.length).toBe((k % 3) + 1);
        for (const ii of iis) expect(log[ii - 1]?.by, `ii ${ii}`).toBe(`writer-${k}`);
      }
      const head = await l.getHead(id);
      expect(head?.ii).toBe(total);
      expect(head?.meta.size).toBe(total);
    });
  });
}
