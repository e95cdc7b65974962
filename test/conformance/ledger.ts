/**
 * Ledger conformance: what every Ledger adapter must do (shared/ports/ledger.ts is the contract).
 * Guarantee 1 lives here: a commit appends consecutive records at head + 1 atomically with the
 * head, writes nothing when its plan fails or yields nothing, and concurrent commits on one scope
 * each get their own indices with no holes (the plan is re-run when the head moved). Also: scope
 * creation, exact log read-back, retry lookup, the published watermark and the lease/epoch rules.
 * Guarantee 6's ledger half lives here too: `bundled` only rises and never passes ii; `trimLog`
 * removes the oldest records (and their retry records) chunk by chunk, moving `trimmed` with
 * them, never past `bundled`; both refuse a holder whose lease passed on (fencing); listScopes
 * walks every scope.
 *
 * Usage: `ledgerConformance('SqliteLedger', async () => new SqliteLedger(file))`. Each `make()`
 * must return a fresh, empty instance; the suite closes every instance it made. Scope ids are
 * unique per test anyway, so a slow backend shared across tests stays isolated.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PatchbayError } from '../../shared/errors.js';
import type { Json } from '../../shared/json.js';
import type { Head, Ledger, LogPatch, Plan } from '../../shared/ports/index.js';
import { retryKey } from '../../shared/ports/index.js';
import type { PatchRecord, ScopeMeta } from '../../shared/protocol.js';

const T0 = 1_700_000_000_000;

const newId = (): string => `scope-${randomUUID()}`;

function meta(overrides: Partial<ScopeMeta> = {}): ScopeMeta {
  return { owner: 'user-1', domain: 'default', name: 'a name', type: 'a-type', created: T0, updated: T0, size: 2, ...overrides };
}

/** A record as the engine would write it, with every field set to something checkable. */
function record(scope: string, ii: number, epoch: number, overrides: Partial<PatchRecord> = {}): PatchRecord {
  return {
    scope,
    ii,
    patch: [
      { op: 'replace', path: '/n', value: ii },
      { op: 'add', path: '/tags/-', value: { label: `é ✓ 𝄞 #${ii}`, nested: [1, [2, null], { x: true }] } },
    ],
    at: T0 + ii * 1000,
    by: 'user-1',
    session: null,
    si: null,
    hash: `sha256-${ii.toString(16).padStart(8, '0')}`,
    epoch,
    ...overrides,
  };
}

/** Records 1..6 with every field and patch shape worth reading back: sessions, escapes, every op, an empty patch. */
function varied(id: string, e: number): PatchRecord[] {
  return [
    record(id, 1, e),
    record(id, 2, e, { session: 'sess-A', si: 0, by: 'anon:ü', at: T0 + 1 }),
    record(id, 3, e, { session: 'sess-A', si: 7, patch: [{ op: 'remove', path: '/a~1b/~0c' }] }),
    record(id, 4, e, {
      patch: [
        { op: 'move', from: '/x', path: '/y' },
        { op: 'copy', from: '/y', path: '/z' },
      ],
    }),
    record(id, 5, e, {
      patch: [
        { op: 'test', path: '/n', value: null },
        { op: 'add', path: '', value: [[], {}, '', 0, false, -0.5, 1e21, 'é ✓ 𝄞 \u0000 "q"'] },
      ],
    }),
    record(id, 6, e, { session: 'other:session_1.x', si: Number.MAX_SAFE_INTEGER, patch: [] }),
  ];
}

/** A well-behaved plan: `n` records after whatever head it is shown. Resolves to their indices. */
function append(id: string, n: number, overrides: Partial<PatchRecord> = {}, planMeta?: Pick<ScopeMeta, 'updated' | 'size'>): Plan<number[]> {
  return async (view) => {
    const records = Array.from({ length: n }, (_, i) => record(id, view.head.ii + 1 + i, view.head.epoch, overrides));
    return { records, meta: planMeta, result: records.map((r) => r.ii) };
  };
}

/** What readPatches must return: readLog's answer for the same arguments, reduced to ii and patch. */
async function expectPatchesOfLog(l: Ledger, id: string, from: number, to: number, limit?: number): Promise<LogPatch[]> {
  const log = await l.readLog(id, from, to, limit);
  const patches = await l.readPatches(id, from, to, limit);
  expect(patches, `readPatches(${from}, ${to}, ${limit})`).toEqual(log.map((r) => ({ ii: r.ii, patch: r.patch })));
  return patches;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a PatchbayError ${code}`).toBeInstanceOf(PatchbayError);
  expect((err as PatchbayError).code).toBe(code);
}

export function ledgerConformance(name: string, make: () => Promise<Ledger>): void {
  describe(`${name} (Ledger conformance)`, () => {
    const made: Ledger[] = [];
    const open = async (): Promise<Ledger> => {
      const l = await make();
      made.push(l);
      return l;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((l) => l.close()));
    });

    async function create(l: Ledger, overrides: Partial<ScopeMeta> = {}, initial: Json = {}): Promise<{ id: string; head: Head }> {
      const id = newId();
      const head = await l.createScope({ id, meta: meta(overrides), initial });
      return { id, head };
    }

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

    describe('retries', () => {
      it('findRetries returns the recorded records by retryKey, and nothing for unknown keys', async () => {
        const l = await open();
        const { id, head } = await create(l);
        const other = await create(l);
        const e = head.epoch;
        const r1 = record(id, 1, e, { session: 'sess-1', si: 1, hash: 'h-one' });
        const r2 = record(id, 2, e, { session: 'sess-1', si: 2, hash: 'h-two' });
        const r3 = record(id, 3, e);
        const r4 = record(id, 4, e, { session: 'sess-2', si: 1, hash: 'h-four' });
        await l.commit(id, async () => ({ records: [r1, r2, r3], result: null }));
        await l.commit(id, async () => ({ records: [r4], result: null }));
        await l.commit(other.id, append(other.id, 1, { session: 'sess-9', si: 9 }));

        const found = await l.commit(id, async (view) => ({
          records: [],
          result: await view.findRetries([
            { session: 'sess-1', si: 1 },
            { session: 'sess-1', si: 2 },
            { session: 'sess-1', si: 3 },
            { session: 'sess-2', si: 1 },
            { session: 'sess-2', si: 2 },
            { session: 'sess-3', si: 1 },
            { session: 'sess-9', si: 9 }, // recorded, but on another scope
          ]),
        }));
        expect(found).toBeInstanceOf(Map);
        expect([...found.keys()].sort()).toEqual([retryKey('sess-1', 1), retryKey('sess-1', 2), retryKey('sess-2', 1)].sort());
        expect(found.get(retryKey('sess-1', 1))).toEqual(r1);
        expect(found.get(retryKey('sess-1', 2))).toEqual(r2);
        expect(found.get(retryKey('sess-2', 1))).toEqual(r4);

        const none = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([]) }));
        expect(none.size).toBe(0);
        const elsewhere = await l.commit(other.id, async (view) => ({ records: [], result: await view.findRetries([{ session: 'sess-1', si: 1 }]) }));
        expect(elsewhere.size).toBe(0);
      });

      // What findRetries answers must hold when the plan's records commit, also for a key the
      // plan then refuses without writing: a retry carrying its original ii (now <= head) is
      // refused as out_of_sync unless it is found, and its group also appends a new patch.
      it('a group that refuses a retry (ii <= head) and appends a new patch answers the retry as recorded', async () => {
        const l = await open();
        const { id } = await create(l);
        const first = record(id, 1, 0, { session: 'sess-r', si: 1, hash: 'h-first' });
        await l.commit(id, async () => ({ records: [first], meta: { updated: T0 + 1, size: 3 }, result: null }));
        await l.commit(id, append(id, 1)); // head 2: the retry's ii 1 is now behind it

        // The engine's decision, in miniature: recorded → duplicate; ii not next → out_of_sync; else append.
        const group = [
          { session: 'sess-r', si: 1, ii: 1 as number | undefined },
          { session: 'sess-n', si: 1, ii: undefined },
        ];
        const outcomes = await l.commit(id, async (view) => {
          const found = await view.findRetries(group);
          const records: PatchRecord[] = [];
          const result = group.map((g) => {
            const prior = found.get(retryKey(g.session, g.si));
            if (prior) return `duplicate ${prior.ii}`;
            const next = view.head.ii + records.length + 1;
            if (g.ii !== undefined && g.ii !== next) return 'out_of_sync';
            records.push(record(id, next, view.head.epoch, { session: g.session, si: g.si }));
            return `appended ${next}`;
          });
          return { records, meta: { updated: T0 + 9, size: 9 }, result };
        });
        expect(outcomes).toEqual(['duplicate 1', 'appended 3']);
        expect((await l.readLog(id, 1, 100)).map((r) => [r.ii, r.session])).toEqual([
          [1, 'sess-r'],
          [2, null],
          [3, 'sess-n'],
        ]);
        expect((await l.getHead(id))?.ii).toBe(3);
      });

      it('a group that refuses a request whose key is not recorded still commits its other records', async () => {
        const l = await open();
        const { id } = await create(l);
        await l.commit(id, append(id, 2));
        const outcomes = await l.commit(id, async (view) => {
          const found = await view.findRetries([
            { session: 'sess-late', si: 4 },
            { session: 'sess-new', si: 1 },
          ]);
          const r = record(id, view.head.ii + 1, view.head.epoch, { session: 'sess-new', si: 1 });
          return { records: [r], meta: { updated: T0 + 3, size: 3 }, result: { found: found.size, ii: r.ii } };
        });
        expect(outcomes).toEqual({ found: 0, ii: 3 });
        expect((await l.readLog(id, 1, 100)).map((r) => r.ii)).toEqual([1, 2, 3]);
        // The refused key left no trace: it is still free.
        const after = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([{ session: 'sess-late', si: 4 }]) }));
        expect(after.size).toBe(0);
      });
    });

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

    describe('consumer cursors', () => {
      it('start at 0, move only from the expected position, and are kept per consumer and scope', async () => {
        const l = await open();
        const a = `scope-${randomUUID()}`;
        const b = `scope-${randomUUID()}`;
        expect(await l.getCursor('mirror', a)).toBe(0);
        expect(await l.advanceCursor('mirror', a, 0, 3)).toBe(true);
        expect(await l.getCursor('mirror', a)).toBe(3);
        expect(await l.advanceCursor('mirror', a, 0, 5)).toBe(false); // stale expectation
        expect(await l.advanceCursor('mirror', a, 2, 5)).toBe(false);
        expect(await l.getCursor('mirror', a)).toBe(3);
        expect(await l.advanceCursor('mirror', a, 3, 4)).toBe(true);
        expect(await l.getCursor('mirror', a)).toBe(4);
        expect(await l.getCursor('mirror', b)).toBe(0);
        expect(await l.getCursor('worker', a)).toBe(0);
      });

      it('let exactly one of two racing advances from one position win', async () => {
        const l = await open();
        const id = `scope-${randomUUID()}`;
        const results = await Promise.all([l.advanceCursor('c', id, 0, 1), l.advanceCursor('c', id, 0, 2)]);
        expect(results.filter(Boolean)).toHaveLength(1);
        expect([1, 2]).toContain(await l.getCursor('c', id));
      });
    });

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
  });
}
