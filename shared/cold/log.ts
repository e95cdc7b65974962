/**
 * The whole log of a scope: cold storage below the hot log's start, the hot log (the ledger)
 * from there on. `readLog` (full records) serves history, stream catch-up, gap filling, the
 * sweeper and push consumers; `readPatchPages` (ii and patch only, in large pages) serves state
 * rebuilds.
 *
 * Guarantee 6, the reading half: the ledger's `trimmed` mark says where the hot log starts, and
 * the ledger removes records only up to `bundled` (what cold storage holds), so every index is in
 * one place or the other. Trimming can run while a reader reads: the reader asks the hot log
 * first, and when the index it needs is not there it reads `trimmed` again and takes everything
 * up to it from cold storage. Records come out in order, each once, and one page at a time (or
 * three bundles: the next two are read while the caller works on the current one), so memory
 * stays bounded however long the log is.
 */
import { PatchbayError } from '../errors.js';
import type { LogPatch, LogReader } from '../ports/index.js';
import type { PatchRecord } from '../protocol.js';
import type { ColdStore } from './store.js';

export const LOG_PAGE = 1000;
/**
 * Records per hot-log read of a rebuild: (ii, patch) pairs are small, and a rebuild of a long log
 * is mostly round trips and per-query overhead at LOG_PAGE.
 */
export const PATCH_PAGE = 10_000;

/** Where the pages come from: the hot log, and cold storage for what has been trimmed. */
interface Source<T extends { ii: number }> {
  hot(from: number, to: number, limit: number): Promise<T[]>;
  /** Pages of from..to (each consecutive, together the whole range in order). */
  cold(from: number, to: number): AsyncGenerator<T[]>;
}

export interface LogReadOptions {
  /** Records per hot-log read. */
  page?: number;
  /**
   * A `trimmed` the caller has seen for the scope (its head). `trimmed` only ever grows, and
   * cold storage holds everything up to it, so indices up to this hint are read from cold storage
   * straight away: without it, a read that starts in the trimmed part first asks the hot log,
   * which answers with a page from its start that is then thrown away (a range query of up to
   * `page` records: on Firestore, that many document reads).
   */
  trimmed?: number;
}

/** Pages of consecutive records from..to, in order; stops early at the end of the log. */
async function* pages<T extends { ii: number }>(
  ledger: LogReader,
  src: Source<T>,
  id: string,
  from: number,
  to: number,
  page: number,
  trimmed: number,
): AsyncGenerator<T[]> {
  let next = Math.max(1, from);
  /** next..upTo from cold storage, which holds every index up to a `trimmed` read from the head. */
  async function* fromCold(upTo: number): AsyncGenerator<T[]> {
    for await (const chunk of src.cold(next, Math.min(to, upTo))) {
      yield chunk;
      next = (chunk[chunk.length - 1] as T).ii + 1;
    }
  }
  if (next <= trimmed) yield* fromCold(trimmed);
  while (next <= to) {
    const hot = await src.hot(next, to, page);
    if (hot.length > 0 && (hot[0] as T).ii === next) {
      let n = 1;
      while (n < hot.length && (hot[n] as T).ii === next + n) n++;
      yield n === hot.length ? hot : hot.slice(0, n);
      next += n;
      // A gap inside one consistent read cannot happen; if it did, read again from `next`.
      if (n === hot.length && hot.length < page) return; // the end of the log (or of the range)
      continue;
    }
    // `next` is not in the hot log: it was trimmed, or it is past the end of the log.
    const head = await ledger.getHead(id);
    if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    if (next > head.trimmed) {
      if (hot.length === 0) return; // past the end
      // Records next..hot[0]-1 were missing when the hot log was read, so they had been trimmed:
      // `trimmed`, read afterwards, must cover them.
      throw new PatchbayError('internal', `log of ${id} has a hole at ${next} (hot log starts at ${(hot[0] as T).ii}, trimmed ${head.trimmed})`);
    }
    yield* fromCold(head.trimmed);
  }
}

/** Records from..to (inclusive) in order; stops early at the end of the log. */
export async function* readLog(
  ledger: LogReader,
  cold: ColdStore,
  id: string,
  from: number,
  to: number,
  opts: LogReadOptions = {},
): AsyncGenerator<PatchRecord> {
  const src: Source<PatchRecord> = { hot: (f, t, limit) => ledger.readLog(id, f, t, limit), cold: (f, t) => cold.recordPages(id, f, t) };
  for await (const records of pages(ledger, src, id, from, to, opts.page ?? LOG_PAGE, opts.trimmed ?? 0)) yield* records;
}

/**
 * The ii and patch of records from..to (inclusive), in pages of consecutive records, in order;
 * stops early at the end of the log. What a state rebuild reads. The pages are the caller's own:
 * freshly parsed, never handed to anyone else, so a fold may take their values into its state.
 */
export function readPatchPages(
  ledger: LogReader,
  cold: ColdStore,
  id: string,
  from: number,
  to: number,
  opts: LogReadOptions = {},
): AsyncGenerator<LogPatch[]> {
  const src: Source<LogPatch> = { hot: (f, t, limit) => ledger.readPatches(id, f, t, limit), cold: (f, t) => cold.patchPages(id, f, t) };
  return pages(ledger, src, id, from, to, opts.page ?? PATCH_PAGE, opts.trimmed ?? 0);
}
