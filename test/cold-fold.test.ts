/**
 * Guarantee 2 for rebuilds: folding the log's patches fast (shared/cold/fold.ts: fast-json-patch
 * directly, with no checks and no copies) gives exactly the state the strict applier gives
 * (shared/patch.ts), for every sequence of patches the service accepted. Checked on the RFC 6902
 * fixtures, on random sequences of accepted patches (where later ops change, move and copy values
 * that earlier ones added: the aliasing that once made a rebuild diverge), and end to end through
 * `rebuildState` on a SQLite log that is partly bundled and trimmed. Also: the patches-only bundle
 * decoding checks a bundle as the full decoding does.
 * PATCHBAY_FC_RUNS overrides the number of runs; PATCHBAY_FC_SEED replays a failure.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FsBlobStore, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { Bundler } from '../shared/cold/bundler.js';
import { foldAccepted } from '../shared/cold/fold.js';
import { decodeBundle, decodeBundlePatches, encodeBundle, recordLine } from '../shared/cold/format.js';
import { readLog, readPatchPages } from '../shared/cold/log.js';
import { rebuildState } from '../shared/cold/rebuild.js';
import { ColdStore } from '../shared/cold/store.js';
import { PatchbayError } from '../shared/errors.js';
import { cloneJson, type Json } from '../shared/json.js';
import { applyPatch, checkPatch, parsePointer } from '../shared/patch.js';
import type { LogPatch } from '../shared/ports/index.js';
import { OPS, type Operation, type Patch, type PatchRecord, patchSchema } from '../shared/protocol.js';
import { seed } from './helpers/cold.js';
import { tempDir, testConfig } from './helpers/server.js';
import { wrap } from './helpers/wrap.js';

const RUNS = process.env.PATCHBAY_FC_RUNS ? Number(process.env.PATCHBAY_FC_RUNS) : 400;
const SEED = process.env.PATCHBAY_FC_SEED ? Number(process.env.PATCHBAY_FC_SEED) : undefined;
const LIMITS = { maxOps: 1000, maxPatchBytes: 1 << 20, maxPathDepth: 32, maxValueDepth: 64 };

/**
 * What the service does with a patch: schema, limits, then the strict applier on a working copy
 * (all or nothing). Returns the new state and the patch's JSON text as the log stores it, or null
 * when the patch is refused.
 */
function accept(state: Json, patch: unknown): { state: Json; text: string } | null {
  const parsed = patchSchema.safeParse(patch);
  if (!parsed.success) return null;
  try {
    checkPatch(parsed.data, LIMITS);
    return { state: applyPatch(cloneJson(state), parsed.data), text: JSON.stringify(parsed.data) };
  } catch (err) {
    if (err instanceof PatchbayError) return null;
    throw err;
  }
}

/** The rebuild as it was: the strict applier over the log, from a copy of the initial state. */
function strictFold(initial: Json, log: readonly string[]): Json {
  let state = cloneJson(initial);
  for (const text of log) state = applyPatch(state, JSON.parse(text) as Patch);
  return state;
}

/** The rebuild as it is: pages of freshly parsed (ii, patch), folded fast. */
function fastFold(initial: Json, log: readonly string[], pageSize: number): Json {
  let state = cloneJson(initial);
  for (let at = 0; at < log.length; at += pageSize) {
    const page: LogPatch[] = log.slice(at, at + pageSize).map((text, k) => ({ ii: at + k + 1, patch: JSON.parse(text) as Patch }));
    state = foldAccepted('prop', state, page);
  }
  return state;
}

/** Same value and same JSON text (key order included: it is what clients are served). */
function expectSame(actual: Json, expected: Json, what: string): void {
  expect(JSON.stringify(actual), what).toBe(JSON.stringify(expected));
  expect(isDeepStrictEqual(actual, expected), what).toBe(true);
}

interface Case {
  name: string;
  doc: Json;
  patch: unknown[];
  expected?: Json;
}
const { cases } = JSON.parse(readFileSync(new URL('./fixtures/rfc6902.json', import.meta.url), 'utf8')) as { cases: Case[] };

describe('the fast fold of accepted patches', () => {
  describe('RFC 6902 fixtures: every accepted case folds to the expected state, as the strict applier does', () => {
    const accepted = cases.filter((c) => c.expected !== undefined);
    it('covers the fixtures', () => {
      expect(accepted.length).toBeGreaterThan(20);
    });
    for (const c of accepted) {
      it(c.name, () => {
        const done = accept(c.doc, c.patch);
        expect(done, 'the service accepts it').not.toBeNull();
        const log = [(done as { text: string }).text];
        expect(fastFold(c.doc, log, 1)).toEqual(c.expected);
        expectSame(fastFold(c.doc, log, 1), strictFold(c.doc, log), 'fast and strict');
        // the fixture's own objects are left alone: the fold works on a fresh parse of the log
        expect(c.patch).toEqual(JSON.parse(JSON.stringify(c.patch)));
      });
    }
  });

  it('takes the values of add and replace into the state without copying them: why the patches must be its own', () => {
    // The earlier bug, here on purpose: a patch's value is changed by a later op, so folding the
    // same patch objects twice (instead of a fresh parse each time) gives a different state.
    const patches: Patch[] = [
      [{ op: 'add', path: '/list', value: [] }],
      [
        { op: 'add', path: '/list/-', value: 1 },
        { op: 'add', path: '/obj', value: { a: 1 } },
      ],
      [
        { op: 'replace', path: '/obj/a', value: 2 },
        { op: 'add', path: '/obj/b', value: { c: [] } },
        { op: 'add', path: '/obj/b/c/-', value: 'x' },
      ],
    ];
    const page = patches.map((patch, i) => ({ ii: i + 1, patch }));
    const once = cloneJson(foldAccepted('alias', {}, page));
    expect(once).toEqual({ list: [1], obj: { a: 2, b: { c: ['x'] } } });
    expect(patches[0]).toEqual([{ op: 'add', path: '/list', value: [1] }]); // changed by the fold
    expect(foldAccepted('alias', {}, page)).toEqual({ list: [1, 1], obj: { a: 2, b: { c: ['x', 'x'] } } });
    // with fresh objects every time, every fold is the strict fold
    const log = [
      '[{"op":"add","path":"/list","value":[]}]',
      '[{"op":"add","path":"/list/-","value":1},{"op":"add","path":"/obj","value":{"a":1}}]',
      '[{"op":"replace","path":"/obj/a","value":2},{"op":"add","path":"/obj/b","value":{"c":[]}},{"op":"add","path":"/obj/b/c/-","value":"x"}]',
    ];
    expectSame(fastFold({}, log, 2), strictFold({}, log), 'fresh');
    expectSame(fastFold({}, log, 2), fastFold({}, log, 1), 'fresh again');
  });

  it('refuses, naming the index, a patch from a damaged log that does not apply', () => {
    const page: LogPatch[] = [
      { ii: 7, patch: [{ op: 'add', path: '/a', value: 1 }] },
      { ii: 8, patch: [{ op: 'test', path: '/a', value: 2 }] },
    ];
    expect(() => foldAccepted('dmg', {}, page)).toThrow(/log of dmg: patch 8 does not apply/);
    expect(() => foldAccepted('dmg', {}, [{ ii: 3, patch: [{ op: 'replace', path: '/x/y/z', value: 1 }] }])).toThrow(/patch 3/);
  });

  describe('random sequences of accepted patches (property)', () => {
    type Where = 'existing' | 'child' | 'append' | 'inside-added' | 'bad-index' | 'leading-zero' | 'missing' | 'inherited';
    interface OpSeed {
      op: (typeof OPS)[number];
      where: Where;
      at: number;
      from: number;
      key: string;
      value: Json;
      sameValue: boolean;
    }
    const keys = ['a', 'b', 'c', '0', '1', '10', '~', '/', 'a/b', '~1', '', 'é', 'toString', 'hasOwnProperty', 'length', '-'];
    const opSeed: fc.Arbitrary<OpSeed> = fc.record({
      op: fc.constantFrom(...OPS),
      where: fc.constantFrom<Where>(
        'existing',
        'existing',
        'child',
        'child',
        'append',
        'inside-added',
        'inside-added',
        'bad-index',
        'leading-zero',
        'missing',
        'inherited',
      ),
      at: fc.nat(),
      from: fc.nat(),
      key: fc.constantFrom(...keys),
      value: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
      sameValue: fc.boolean(),
    });
    const escapeKey = (k: string): string => k.replace(/~/g, '~0').replace(/\//g, '~1');

    /** Every pointer in the state, in document order (the root is ''). */
    function pointers(doc: Json): Array<{ ptr: string; value: Json }> {
      const out: Array<{ ptr: string; value: Json }> = [];
      const walk = (v: Json, ptr: string): void => {
        out.push({ ptr, value: v });
        if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, `${ptr}/${i}`);
        else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${ptr}/${escapeKey(k)}`);
      };
      walk(doc, '');
      return out;
    }

    function valueAt(doc: Json, ptr: string): Json | undefined {
      let v: Json | undefined = doc;
      for (const seg of parsePointer(ptr)) {
        if (v === null || typeof v !== 'object') return undefined;
        if (Array.isArray(v)) v = /^(0|[1-9][0-9]*)$/.test(seg) ? v[Number(seg)] : undefined;
        else v = Object.hasOwn(v, seg) ? v[seg] : undefined;
      }
      return v;
    }

    /** A pointer for the seed, in the current state; `added` holds the targets of earlier ops. */
    function pointerFor(doc: Json, s: OpSeed, n: number, added: readonly string[]): string {
      const all = pointers(doc);
      const containers = all.filter((p) => p.value !== null && typeof p.value === 'object');
      const pick = <T>(xs: readonly T[]): T | undefined => (xs.length === 0 ? undefined : xs[n % xs.length]);
      const child = (c: { ptr: string; value: Json } | undefined): string => {
        if (!c) return `/${escapeKey(s.key)}`;
        if (Array.isArray(c.value)) return `${c.ptr}/${s.at % (c.value.length + 1)}`;
        return `${c.ptr}/${escapeKey(s.key)}`;
      };
      switch (s.where) {
        case 'existing':
          return (pick(all) as { ptr: string }).ptr;
        case 'child':
          return child(pick(containers));
        case 'append': {
          const c = pick(containers);
          return c ? `${c.ptr}/-` : '/-';
        }
        case 'inside-added': {
          // a value an earlier op put there (if it is still there), or something inside it
          const base = pick(added.filter((p) => valueAt(doc, p) !== undefined));
          if (base === undefined) return child(pick(containers));
          const inside = all.filter((p) => p.ptr === base || p.ptr.startsWith(`${base}/`));
          return s.at % 2 === 0 ? (pick(inside) as { ptr: string }).ptr : child(pick(inside.filter((p) => p.value !== null && typeof p.value === 'object')));
        }
        case 'bad-index': {
          const arr = pick(containers.filter((c) => Array.isArray(c.value)));
          return arr ? `${arr.ptr}/${(arr.value as Json[]).length + 1 + (s.at % 3)}` : '/x/0';
        }
        case 'leading-zero': {
          const arr = pick(containers.filter((c) => Array.isArray(c.value)));
          return arr ? `${arr.ptr}/0${s.at % 3}` : '/00';
        }
        case 'missing':
          return `${(pick(all) as { ptr: string }).ptr}/nope/${escapeKey(s.key)}`;
        case 'inherited':
          return `${(pick(containers) ?? { ptr: '' }).ptr}/${pick(['toString', 'valueOf', 'hasOwnProperty', '__defineGetter__'])}`;
      }
    }

    function opFor(doc: Json, s: OpSeed, added: readonly string[]): Operation {
      const path = pointerFor(doc, s, s.at, added);
      const op: Operation = { op: s.op, path };
      if (s.op === 'move' || s.op === 'copy') op.from = pointerFor(doc, { ...s, where: s.from % 3 === 0 ? 'inside-added' : 'existing' }, s.from, added);
      if (s.op === 'add' || s.op === 'replace') op.value = s.value;
      if (s.op === 'test') op.value = s.sameValue ? (cloneJson(valueAt(doc, path) ?? null) as Json) : s.value;
      return op;
    }

    /**
     * A patch from the seeds, each op built against the state the ops before it leave. An op that
     * would fail there is dropped or, for half the seeds, kept (so that the patch is refused).
     */
    function buildPatch(state: Json, seeds: readonly OpSeed[], added: readonly string[]): Operation[] {
      let preview = state;
      const patch: Operation[] = [];
      for (const s of seeds) {
        const op = opFor(preview, s, added);
        const next = accept(preview, [op]);
        if (next) preview = next.state;
        if (next || s.at % 2 === 0) patch.push(op);
      }
      return patch;
    }

    it(`folds to the same state as the strict applier (${RUNS} runs)`, () => {
      fc.assert(
        fc.property(
          fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
          fc.array(fc.array(opSeed, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 40 }),
          fc.integer({ min: 1, max: 7 }),
          (initialValue, attempts, pageSize) => {
            const initial = JSON.parse(JSON.stringify(initialValue)) as Json; // as the ledger stores it
            let state = cloneJson(initial);
            const log: string[] = [];
            const added: string[] = [];
            for (const seeds of attempts) {
              const patch = buildPatch(state, seeds, added);
              const done = accept(state, patch);
              if (!done) continue;
              state = done.state;
              log.push(done.text);
              for (const op of patch) if (op.op !== 'remove' && op.op !== 'test') added.push(op.path);
            }
            expectSame(strictFold(initial, log), state, 'the strict fold of the log is the state the service reached');
            expectSame(fastFold(initial, log, pageSize), state, 'the fast fold is the same state');
            // and folding again (fresh parses) changes nothing
            expectSame(fastFold(initial, log, pageSize), state, 'a second fast fold');
          },
        ),
        { numRuns: RUNS, seed: SEED },
      );
    });

    it('accepts most generated patches and reaches into values added earlier (a check on the generator)', () => {
      let accepted = 0;
      let attempts = 0;
      let deep = 0;
      fc.assert(
        fc.property(fc.array(fc.array(opSeed, { minLength: 1, maxLength: 3 }), { minLength: 5, maxLength: 20 }), (seqs) => {
          let state: Json = { a: { b: [1, 2] } };
          const added: string[] = [];
          for (const seeds of seqs) {
            const patch = buildPatch(state, seeds, added);
            attempts++;
            const done = accept(state, patch);
            if (!done) continue;
            accepted++;
            state = done.state;
            for (const op of patch) {
              if (added.some((p) => op.path.startsWith(`${p}/`))) deep++;
              if (op.op !== 'remove' && op.op !== 'test') added.push(op.path);
            }
          }
        }),
        { numRuns: 100, seed: 42 },
      );
      expect(accepted / attempts).toBeGreaterThan(0.4);
      expect(deep).toBeGreaterThan(100);
    });
  });
});

describe('rebuilds read (ii, patch) pages from the hot log and from bundles', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** Patch ii adds a container; patch ii + 1 grows it, copies it and moves its list away. */
  const mutating = (ii: number): Patch => {
    const prev = `/c${(ii - 1) % 7}`;
    return [
      { op: 'add', path: `/c${ii % 7}`, value: { list: [ii], n: ii } },
      { op: 'add', path: `${prev}/list/-`, value: { at: ii } },
      { op: 'replace', path: `${prev}/n`, value: ii * 10 },
      { op: 'copy', from: `${prev}/list`, path: '/copied' },
      { op: 'add', path: '/copied/-', value: 'tail' },
      { op: 'move', from: `${prev}/list`, path: '/moved' },
      { op: 'add', path: '/moved/-', value: { ii } },
    ];
  };

  it('equal the strict fold, rebuilt twice, whatever mix of bundles and hot log they read', async () => {
    const dir = tempDir('patchbay-cold-fold-');
    dirs.push(dir);
    const ledger = new SqliteLedger(join(dir, 'ledger.sqlite'), { sync: 'normal' });
    try {
      const blobs = new FsBlobStore(join(dir, 'blobs'));
      const cold = new ColdStore(blobs);
      const id = 'mutating';
      const initial: Json = { c0: { list: [], n: 0 } };
      const N = 2600;
      await ledger.createScope({ id, meta: { owner: 'o', domain: 'default', name: null, type: null, created: 1, updated: 1, size: 10 }, initial });
      const records = await seed(ledger, id, N, { patch: mutating, chunk: 500 });
      const texts = records.map((r) => JSON.stringify(r.patch));
      const want = strictFold(initial, texts);

      const check = async (what: string) => {
        expectSame(await rebuildState(ledger, cold, id, N, { snapshotGap: Number.POSITIVE_INFINITY }), want, `${what}: whole log`);
        expectSame(await rebuildState(ledger, cold, id, N, { snapshotGap: Number.POSITIVE_INFINITY }), want, `${what}: again`);
        for (const ii of [1, 999, 1000, 1001, 1600, 1601, 2050]) {
          expectSame(
            await rebuildState(ledger, cold, id, ii, { snapshotGap: Number.POSITIVE_INFINITY }),
            strictFold(initial, texts.slice(0, ii)),
            `${what}: at ${ii}`,
          );
        }
        // and the (ii, patch) pages are readLog's records, page by page, in order
        const pages: LogPatch[] = [];
        for await (const page of readPatchPages(ledger, cold, id, 1, N, { page: 700 })) pages.push(...page);
        const full: LogPatch[] = [];
        for await (const r of readLog(ledger, cold, id, 1, N)) full.push({ ii: r.ii, patch: r.patch });
        expect(pages).toEqual(full);
        expect(pages.map((p) => p.ii)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      };
      await check('hot log');

      // bundles 1..1000 and 1001..2000 (and snapshots at 1000 and 2000); the hot log keeps 1601..2600
      const config = { ...testConfig(), retainPatches: 1000, retainMinutes: 0, bundlePatches: 1000, snapshotEvery: 1000 };
      const bundler = new Bundler(ledger, blobs, config, { logError: () => {} });
      expect(await bundler.bundleScope(id)).toMatchObject({ outcome: 'done', bundledTo: 2000, trimmedTo: 1600, snapshots: 2 });
      expect(await ledger.readLog(id, 1, 1600)).toEqual([]);
      await check('bundles + hot log');

      // A `trimmed` hint (the head's, or an older one: trimmed only grows) reads what it covers
      // from bundles without asking the hot log for it first, and reads the very same records.
      const head = await ledger.getHead(id);
      expect(head?.trimmed).toBe(1600);
      const hotReads: number[] = [];
      const counted = wrap(ledger, {
        readPatches: (real, ...args) => {
          hotReads.push(args[1]);
          return real(...args);
        },
        readLog: (real, ...args) => {
          hotReads.push(args[1]);
          return real(...args);
        },
      });
      for (const hint of [1600, 1000, 0]) {
        hotReads.length = 0;
        const pages: LogPatch[] = [];
        for await (const page of readPatchPages(counted, cold, id, 1, N, { trimmed: hint })) pages.push(...page);
        expect(pages.map((p) => p.ii)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
        expect(hotReads[0], `hint ${hint}`).toBe(hint + 1);
        const records: number[] = [];
        for await (const r of readLog(counted, cold, id, 1, N, { trimmed: hint })) records.push(r.ii);
        expect(records).toEqual(pages.map((p) => p.ii));
        expectSame(await rebuildState(counted, cold, id, N, { snapshotGap: Number.POSITIVE_INFINITY, trimmed: hint }), want, `hint ${hint}`);
      }
      // a hint past the range's end reads the range from bundles alone
      hotReads.length = 0;
      const early: number[] = [];
      for await (const r of readLog(counted, cold, id, 10, 20, { trimmed: 1600 })) early.push(r.ii);
      expect(early).toEqual(Array.from({ length: 11 }, (_, i) => i + 10));
      expect(hotReads).toEqual([]);
      // with snapshots (the bundler's own strict fold at 1000)
      expectSame(await rebuildState(ledger, cold, id, N), want, 'from the snapshot');
      expectSame(
        await rebuildState(ledger, cold, id, 1500, { start: { ii: 1200, state: strictFold(initial, texts.slice(0, 1200)) } }),
        strictFold(initial, texts.slice(0, 1500)),
        'from a start',
      );
    } finally {
      await ledger.close();
    }
  });

  it('decodeBundlePatches returns decodeBundle’s ii and patch, and refuses a damaged bundle the same way', async () => {
    const records: PatchRecord[] = Array.from({ length: 50 }, (_, i) => ({
      scope: 's',
      ii: 101 + i,
      patch: mutating(101 + i),
      at: 1_700_000_000_000 + i,
      by: 'anon:x',
      session: i % 2 ? 'tab "1"\n' : null,
      si: i % 2 ? i : null,
      hash: `h${i}`,
      epoch: 3,
    }));
    // values and strings that look like the member after the patch
    records[3] = {
      ...(records[3] as PatchRecord),
      patch: [{ op: 'add', path: '/x', value: { i: 1, at: 2, s: ',"at":3}' } }],
      by: 'a,"at":4',
      session: '},"at":5',
    };
    records[4] = { ...(records[4] as PatchRecord), patch: [{ op: 'add', path: '/,"at":', value: [',"at":', { ',"at":': ',"at":' }] }] };
    const expectRange = { scope: 's', from: 101, to: 150 };
    const bytes = await encodeBundle('s', 101, 150, records.map(recordLine));
    expect(await decodeBundlePatches('k', bytes, expectRange)).toEqual(records.map((r) => ({ ii: r.ii, patch: r.patch })));
    expect(await decodeBundle('k', bytes, expectRange)).toEqual(records);

    // lines written some other way (members in another order, spaces): read by parsing the whole line
    const otherLines = records.map((r, i) =>
      i % 3 === 0
        ? `${JSON.stringify({ at: r.at, ii: r.ii, by: r.by, patch: r.patch, session: r.session, si: r.si, hash: r.hash, epoch: r.epoch })}\n`
        : i % 3 === 1
          ? `{"ii":${r.ii},"patch":${JSON.stringify(r.patch)},"by":${JSON.stringify(r.by)},"at":${r.at},"session":null,"si":null,"hash":"h","epoch":3}\n`
          : `${JSON.stringify({ ii: r.ii, patch: r.patch, at: r.at }, null, 1).replace(/\n/g, '')}\n`,
    );
    const other = await encodeBundle('s', 101, 150, otherLines);
    expect(await decodeBundlePatches('k', other, expectRange)).toEqual(records.map((r) => ({ ii: r.ii, patch: r.patch })));

    const { gunzipSync, gzipSync } = await import('node:zlib');
    const text = gunzipSync(bytes).toString('utf8');
    const damaged = [
      ['a changed value', text.replace('"value":{"at":', '"value":{"at":1')],
      ['a wrong range', text.replace('"from":101', '"from":102')],
      ['a dropped line', text.replace(/\n[^\n]*\n/, '\n')],
    ] as const;
    for (const [what, t] of damaged) {
      expect(t, what).not.toBe(text);
      for (const decode of [decodeBundle, decodeBundlePatches]) {
        const err = await decode('k', new Uint8Array(gzipSync(Buffer.from(t, 'utf8'))), expectRange).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err, `${what} (${decode.name})`).toBeInstanceOf(PatchbayError);
        expect((err as PatchbayError).details, what).toMatchObject({ reason: 'cold_object_damaged' });
      }
    }
    // sound gzip and checksum, but a record out of place
    const shuffled = await encodeBundle(
      's',
      101,
      150,
      records.map((r, i) => recordLine(i === 7 ? { ...r, ii: 999 } : r)),
    );
    await expect(decodeBundlePatches('k', shuffled, expectRange)).rejects.toThrow(/record 7 has ii 999/);
    // a bundle that is not where its name says
    await expect(decodeBundlePatches('k', bytes, { scope: 's', from: 100, to: 149 })).rejects.toThrow(/damaged/);
  });
});
