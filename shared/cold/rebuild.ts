/**
 * Rebuilding a scope's state from what cannot be lost: the latest snapshot at or below the
 * target (or the initial state), then the later patches from bundles and the hot log.
 *
 * Guarantee 2 (state = initial state + patches 1..ii, whatever served it): a snapshot at s is
 * itself the fold of patches 1..s (the bundler writes it while folding the log it bundles), so
 * folding s+1..ii onto it gives the same state; any hole or overrun in the log is an error,
 * never a silently different state.
 */
import { isDeepStrictEqual } from 'node:util';
import { PatchbayError } from '../errors.js';
import { cloneJson, type Json } from '../json.js';
import type { HotCache, LogPatch, LogReader } from '../ports/index.js';
import { foldAccepted } from './fold.js';
import { readPatchPages } from './log.js';
import type { ColdStore } from './store.js';

export interface StartPoint {
  ii: number;
  /** The state at ii; the rebuild folds onto it (it must be the caller's own copy). */
  state: Json;
}

export interface RebuildOptions {
  /** A state known to be right at some index below the target (a cache entry behind head). */
  start?: StartPoint | null;
  /**
   * Look for a snapshot only when the fold would otherwise apply at least this many patches
   * (default 1: always). Listing snapshots costs a blob-store list call.
   */
  snapshotGap?: number;
  /** Called with the error of a damaged snapshot, which is skipped. */
  onDamaged?: (err: unknown) => void;
  /** The head's `trimmed`, when the caller has read it (see LogReadOptions.trimmed). */
  trimmed?: number;
}

/** The state of scope `id` at exactly `ii` (which must not be past head). */
export async function rebuildState(ledger: LogReader, cold: ColdStore, id: string, ii: number, opts: RebuildOptions = {}): Promise<Json> {
  let start: StartPoint | null = opts.start && opts.start.ii <= ii ? opts.start : null;
  if (start?.ii === ii) return start.state;
  const gap = opts.snapshotGap ?? 1;
  if (ii - (start?.ii ?? 0) >= gap) {
    const snap = await cold.latestSnapshot(id, ii, opts.onDamaged);
    if (snap && snap.ii > (start?.ii ?? 0)) start = snap;
  }
  if (!start) {
    const initial = await ledger.getInitial(id);
    if (initial === null) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    start = { ii: 0, state: cloneJson(initial) };
  }
  return foldForward(ledger, cold, id, start, ii, opts.trimmed);
}

/**
 * Applies patches start.ii+1..ii to start.state (which it mutates). Read as (ii, patch) pages
 * and folded with fast-json-patch directly: these patches were all accepted, each checked by the
 * strict applier against this same sequence of states (shared/cold/fold.ts says why the result is
 * the same).
 */
export async function foldForward(ledger: LogReader, cold: ColdStore, id: string, start: StartPoint, ii: number, trimmed = 0): Promise<Json> {
  let at = start.ii;
  let state = start.state;
  for await (const page of readPatchPages(ledger, cold, id, at + 1, ii, { trimmed })) {
    const first = (page[0] as LogPatch).ii;
    if (first !== at + 1 || (page[page.length - 1] as LogPatch).ii !== first + page.length - 1) {
      throw new PatchbayError('internal', `log of ${id} has a hole at ${at + 1}`);
    }
    state = foldAccepted(id, state, page);
    at += page.length;
  }
  if (at !== ii) throw new PatchbayError('internal', `log of ${id} ends at ${at}, expected ${ii}`);
  return state;
}

export interface CacheCheck {
  id: string;
  /** The head's index, and the cache entry's (null: none). */
  ii: number;
  cached: number | null;
  /**
   * ok: the entry equals the rebuild at its own index (it may be behind head, which is allowed);
   * missing: no entry; mismatch: it differs from the rebuild; ahead: it claims an index past head.
   */
  status: 'ok' | 'missing' | 'mismatch' | 'ahead';
  /** Whether the entry was replaced with the rebuilt state at head. */
  repaired: boolean;
}

/**
 * Rebuilds a scope from cold storage and the log alone (never from the cache) and compares the
 * cache entry with it; with `repair`, a missing or wrong entry is replaced by the state at head.
 * Every bundle and snapshot read on the way is checked (checksums, indices), so a check that
 * returns also says cold storage and the log still reproduce the scope.
 */
export async function checkCache(ledger: LogReader, cache: HotCache, cold: ColdStore, id: string, opts: { repair?: boolean } = {}): Promise<CacheCheck> {
  const head = await ledger.getHead(id);
  if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
  const cached = await cache.get(id);
  const result: CacheCheck = { id, ii: head.ii, cached: cached?.ii ?? null, status: 'ok', repaired: false };
  let rebuilt: StartPoint;
  if (!cached || cached.ii > head.ii) {
    result.status = cached ? 'ahead' : 'missing';
    rebuilt = { ii: head.ii, state: await rebuildState(ledger, cold, id, head.ii, { trimmed: head.trimmed }) };
  } else {
    rebuilt = { ii: cached.ii, state: await rebuildState(ledger, cold, id, cached.ii, { trimmed: head.trimmed }) };
    // Compared as JSON (key order aside): a cache may hold -0 where the log's JSON text says 0.
    if (!isDeepStrictEqual(cloneJson(rebuilt.state), cloneJson(cached.state))) result.status = 'mismatch';
  }
  if (opts.repair && result.status !== 'ok') {
    const atHead = rebuilt.ii === head.ii ? rebuilt.state : await foldForward(ledger, cold, id, rebuilt, head.ii, head.trimmed);
    await cache.delete(id);
    await cache.put(id, head.ii, atHead);
    result.repaired = true;
  }
  return result;
}
