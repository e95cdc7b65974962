/**
 * Backfill: writes the current rows of a domain's scopes into tables whose rows no longer match
 * their definition (what Mirror.ensure reports in `backfill`: new tables, new columns, changed
 * types or sources). Resumable: it walks every scope in id order (ColdPointers.listScopes, the
 * only walk of all scopes the ledger offers; scopes of other domains are read and skipped, so a
 * backfill costs one head read per scope of the deployment) and hands its position to `onPage`
 * after each page, so the caller can record it and start again from there after a crash.
 * Memory: one page of ids (and one scope's state) at a time, never the whole walk. The position
 * also counts the time spent walking, so the report can give a rate (rows/s) across restarts.
 * Idempotent: each row is written at its scope's head `ii`, and the mirror keeps the newest row
 * (shared/ports/mirror.ts, Order), so rewriting a page, or racing the mirror consumer, is harmless.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { Head } from '../ports/ledger.js';
import type { Mirror } from '../ports/mirror.js';
import type { MirrorTables } from './definitions.js';
import { feeds, withBuiltins } from './sql.js';

export interface BackfillSource {
  /** Scope ids after `after` in id order ('' for the first page): Ledger.listScopes. */
  listScopes(after: string, limit: number): Promise<Array<{ id: string }>>;
  /** Engine.head: throws `scope_not_found` for a scope deleted meanwhile (skipped). */
  head(id: string): Promise<Head>;
  stateAt(id: string, ii: number): Promise<Json>;
}

/** Where a backfill stands: a checkpoint, JSON as it is. */
export interface BackfillPosition {
  /** The last scope id visited ('' before the first). */
  after: string;
  /** Scopes read (of every domain). */
  scanned: number;
  /** Scopes of the domain whose rows were written. */
  rows: number;
  /** Pages finished. */
  pages: number;
  /** Time spent walking, ms, over every run (a crash's pause not counted): the rate is `rows / ms`. */
  ms?: number;
  done: boolean;
}

export const BACKFILL_START: BackfillPosition = { after: '', scanned: 0, rows: 0, pages: 0, ms: 0, done: false };

/** Rows written per second of walking (null before the first page). */
export function backfillRate(pos: BackfillPosition): number | null {
  return pos.ms ? Math.round((pos.rows * 1000) / pos.ms) : null;
}

export interface BackfillOptions {
  /** Which scope ids the mirror holds at all (the mirror consumer's `accepts`: not the platform's own). */
  accepts?: (id: string) => boolean;
  /** Scopes per page (default 500). */
  pageSize?: number;
}

/**
 * Upserts every scope of `domain` that feeds one of the tables named in `need` (all of them when
 * `need` holds `scopes`), from `from` on; awaits `onPage` with the new position after each page.
 */
export async function backfill(
  mirror: Mirror,
  source: BackfillSource,
  domain: string,
  tables: MirrorTables,
  need: readonly string[],
  from: BackfillPosition,
  onPage: (pos: BackfillPosition) => Promise<void>,
  opts: BackfillOptions = {},
): Promise<BackfillPosition> {
  const defs = withBuiltins(tables);
  const wanted = need.filter((n) => Object.hasOwn(defs, n));
  let pos = { ...from };
  if (pos.done) return pos;
  if (wanted.length === 0) {
    pos = { ...pos, done: true };
    await onPage(pos);
    return pos;
  }
  const wants = (type: string | null) => wanted.some((n) => feeds(n, defs[n] as (typeof defs)[string], type));
  const accepts = opts.accepts ?? (() => true);
  const size = opts.pageSize ?? 500;
  for (;;) {
    const started = Date.now();
    const page = await source.listScopes(pos.after, size);
    if (page.length === 0) break;
    let rows = 0;
    for (const { id } of page) {
      if (!accepts(id)) continue;
      let head: Head;
      try {
        head = await source.head(id);
      } catch (err) {
        if (err instanceof PatchbayError && err.code === 'scope_not_found') continue;
        throw err;
      }
      if (head.meta.domain !== domain || !wants(head.meta.type)) continue;
      const state = await source.stateAt(id, head.ii);
      await mirror.upsert(domain, tables, { id, ii: head.ii, meta: head.meta, state });
      rows += 1;
    }
    pos = {
      after: (page[page.length - 1] as { id: string }).id,
      scanned: pos.scanned + page.length,
      rows: pos.rows + rows,
      pages: pos.pages + 1,
      ms: (pos.ms ?? 0) + (Date.now() - started),
      done: false,
    };
    if (page.length < size) break;
    await onPage(pos);
  }
  pos = { ...pos, done: true };
  await onPage(pos);
  return pos;
}
