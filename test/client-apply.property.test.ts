/**
 * The client's copy-on-write apply (client/src/apply.ts) against the server's apply on a full copy
 * (shared/patch.ts, as the engine runs it), on random documents and random patches whose paths are
 * drawn from the document (so most operations apply, some fail, and arrays shift under later
 * operations): the same state or the same error (code and operation index) every time; the input
 * is never changed; and a state the client made is never changed by a later apply to it (they
 * share untouched parts).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyPatch as clientApply } from '../client/src/apply.js';
import { collapse } from '../client/src/collapse.js';
import { cloneJson, type Json } from '../shared/json.js';
import { applyPatch as serverApply } from '../shared/patch.js';
import type { Operation, Patch } from '../shared/wire.js';

/** Every pointer in `doc` (containers and leaves), the root included. */
function pointers(doc: Json, at = ''): string[] {
  const out = [at];
  if (Array.isArray(doc)) {
    for (const [i, v] of doc.entries()) out.push(...pointers(v, `${at}/${i}`));
  } else if (doc !== null && typeof doc === 'object')
    for (const [k, v] of Object.entries(doc)) out.push(...pointers(v, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`));
  return out;
}

const leaf = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom('a', 'b', '', null, true));
const doc: fc.Arbitrary<Json> = fc.letrec<{ node: Json }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('node'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom('a', 'b', 'c', 'x/y', 'm~n'), tie('node'), { maxKeys: 4 }),
  ),
})).node;

/** A patch of 1-4 ops whose paths come from `d` (or a child of one, or an append). */
function patchFor(d: Json): fc.Arbitrary<Patch> {
  const ps = pointers(d);
  const path = fc.oneof(
    fc.constantFrom(...ps),
    fc.constantFrom(...ps).map((p) => `${p}/-`),
    fc.constantFrom(...ps).map((p) => `${p}/0`),
    fc.constantFrom(...ps).map((p) => `${p}/c`),
  );
  const op: fc.Arbitrary<Operation> = fc.oneof(
    fc.record({ op: fc.constant('add' as const), path, value: doc }),
    fc.record({ op: fc.constant('replace' as const), path, value: doc }),
    fc.record({ op: fc.constant('remove' as const), path }),
    fc.record({ op: fc.constant('move' as const), from: path, path }),
    fc.record({ op: fc.constant('copy' as const), from: path, path }),
    fc.record({ op: fc.constant('test' as const), path, value: doc }),
  ) as fc.Arbitrary<Operation>;
  return fc.array(op, { minLength: 1, maxLength: 4 });
}

type Result = { state: Json } | { error: { code: unknown; op: unknown } };
function run(f: () => Json): Result {
  try {
    return { state: f() };
  } catch (e) {
    const err = e as { code?: unknown; details?: { op?: unknown } };
    return { error: { code: err.code, op: err.details?.op } };
  }
}

describe("the client's copy-on-write apply", () => {
  it('gives the server apply’s state or error, never changes its input, and never changes a state it made', () => {
    fc.assert(
      fc.property(
        doc.chain((d) => fc.tuple(fc.constant(d), patchFor(d))),
        fc.integer({ min: 0, max: 1000 }),
        ([d, p], seed) => {
          const before = JSON.stringify(d);
          const mine = run(() => clientApply(d, p));
          const theirs = run(() => serverApply(cloneJson(d), p));
          expect(mine).toEqual(theirs);
          expect(JSON.stringify(d)).toBe(before);
          if (!('state' in mine)) return;
          // A second patch on the client's result leaves that result (and the input) as they were.
          const made = JSON.stringify(mine.state);
          const second = fc.sample(patchFor(mine.state), { numRuns: 1, seed })[0] as Patch;
          const again = run(() => clientApply(mine.state, second));
          expect(again).toEqual(run(() => serverApply(cloneJson(mine.state), second)));
          expect(JSON.stringify(mine.state)).toBe(made);
          expect(JSON.stringify(d)).toBe(before);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('a composed patch collapsed (successive edits of one path folded) gives the same state or fails where it fails', () => {
    let folded = 0;
    fc.assert(
      fc.property(
        doc.chain((d) => {
          // Runs of edits of one path, as a slider's patches composed, between random operations.
          const ps = pointers(d);
          const edits = fc
            .tuple(fc.constantFrom(...ps, ...ps.map((p) => `${p}/-`), ...ps.map((p) => `${p}/0`)), fc.array(doc, { minLength: 1, maxLength: 4 }), fc.boolean())
            .map(([path, values, add]): Patch => values.map((value, i) => ({ op: i === 0 && add ? 'add' : 'replace', path, value }) as Operation));
          return fc.tuple(
            fc.constant(d),
            fc.array(fc.oneof(edits, patchFor(d)), { minLength: 1, maxLength: 4 }).map((ps) => ps.flat()),
          );
        }),
        ([d, p]) => {
          const c = collapse(p);
          folded += p.length - c.length;
          const whole = run(() => serverApply(cloneJson(d), p));
          const short = run(() => serverApply(cloneJson(d), c));
          if ('state' in whole) expect(short).toEqual(whole);
          else expect('error' in short, JSON.stringify({ p, c })).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
    expect(folded).toBeGreaterThan(1000); // the property met folds, not only patches left alone
  });

  it('shares what the patch did not touch', () => {
    const d = { big: { list: [1, 2, 3] }, small: { n: 0 } };
    const next = clientApply(d, [{ op: 'replace', path: '/small/n', value: 1 }]) as typeof d;
    expect(next).toEqual({ big: { list: [1, 2, 3] }, small: { n: 1 } });
    expect(next.big).toBe(d.big);
    expect(next.small).not.toBe(d.small);
    expect(d.small.n).toBe(0);
  });
});
