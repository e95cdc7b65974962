/**
 * What the ledger conformance suites share: records worth reading back, well-behaved plans, and
 * the harness that opens a fresh ledger per test and closes it afterwards (see ./index.ts).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, expect } from 'vitest';
import { PatchbayError } from '../../../shared/errors.js';
import type { Json } from '../../../shared/json.js';
import type { Head, Ledger, LogPatch, Plan } from '../../../shared/ports/index.js';
import type { PatchRecord, ScopeMeta } from '../../../shared/protocol.js';

export const T0 = 1_700_000_000_000;

export const newId = (): string => `scope-${randomUUID()}`;

/** A scope's meta, unnamed unless overridden: names are unique per (domain, owner) (./names.ts). */
export function meta(overrides: Partial<ScopeMeta> = {}): ScopeMeta {
  return { owner: 'user-1', domain: 'default', name: null, type: 'a-type', created: T0, updated: T0, size: 2, ...overrides };
}

/** A record as the engine would write it, with every field set to something checkable. */
export function record(scope: string, ii: number, epoch: number, overrides: Partial<PatchRecord> = {}): PatchRecord {
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
export function varied(id: string, e: number): PatchRecord[] {
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
export function append(id: string, n: number, overrides: Partial<PatchRecord> = {}, planMeta?: Pick<ScopeMeta, 'updated' | 'size'>): Plan<number[]> {
  return async (view) => {
    const records = Array.from({ length: n }, (_, i) => record(id, view.head.ii + 1 + i, view.head.epoch, overrides));
    return { records, meta: planMeta, result: records.map((r) => r.ii) };
  };
}

/** What readPatches must return: readLog's answer for the same arguments, reduced to ii and patch. */
export async function expectPatchesOfLog(l: Ledger, id: string, from: number, to: number, limit?: number): Promise<LogPatch[]> {
  const log = await l.readLog(id, from, to, limit);
  const patches = await l.readPatches(id, from, to, limit);
  expect(patches, `readPatches(${from}, ${to}, ${limit})`).toEqual(log.map((r) => ({ ii: r.ii, patch: r.patch })));
  return patches;
}

export async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a PatchbayError ${code}`).toBeInstanceOf(PatchbayError);
  expect((err as PatchbayError).code).toBe(code);
}

export interface Harness {
  /** A fresh ledger from the adapter's `make()`, closed after the test. */
  open(): Promise<Ledger>;
  /** A new scope with a unique id on `l`. */
  create(l: Ledger, overrides?: Partial<ScopeMeta>, initial?: Json): Promise<{ id: string; head: Head }>;
}

/** Call inside a describe: every ledger `open` makes there is closed after its test. */
export function harness(make: () => Promise<Ledger>): Harness {
  const made: Ledger[] = [];
  afterEach(async () => {
    await Promise.all(made.splice(0).map((l) => l.close()));
  });
  return {
    async open() {
      const l = await make();
      made.push(l);
      return l;
    },
    async create(l, overrides = {}, initial = {}) {
      const id = newId();
      const head = await l.createScope({ id, meta: meta(overrides), initial });
      return { id, head };
    },
  };
}
