/**
 * The whole log of a scope: cold storage below the hot log's start, the hot log (the ledger)
 * from there on. Used for history, stream catch-up, gap filling, the sweeper, push consumers and
 * every state rebuild.
 *
 * Guarantee 6, the reading half: the ledger's `trimmed` mark says where the hot log starts, and
 * the ledger removes records only up to `bundled` (what cold storage holds), so every index is in
 * one place or the other. Trimming can run while a reader reads: the reader asks the hot log
 * first, and when the index it needs is not there it reads `trimmed` again and takes everything
 * up to it from cold storage. Records come out in order, each once, and one page (or one bundle)
 * at a time, so memory stays bounded however long the log is.
 */
import { PatchbayError } from '../errors.js';
import type { Ledger } from '../ports/index.js';
import type { PatchRecord } from '../protocol.js';
import type { ColdStore } from './store.js';

export const LOG_PAGE = 1000;

/** Records from..to (inclusive) in order; stops early at the end of the log. */
export async function* readLog(ledger: Ledger, cold: ColdStore, id: string, from: number, to: number, page = LOG_PAGE): AsyncGenerator<PatchRecord> {
  let next = Math.max(1, from);
  while (next <= to) {
    const hot = await ledger.readLog(id, next, to, page);
    if (hot.length > 0 && (hot[0] as PatchRecord).ii === next) {
      let whole = true;
      for (const r of hot) {
        if (r.ii !== next) {
          whole = false; // cannot happen in one consistent read; read again from `next`
          break;
        }
        yield r;
        next++;
      }
      if (whole && hot.length < page) return; // the end of the log (or of the range)
      continue;
    }
    // `next` is not in the hot log: it was trimmed, or it is past the end of the log.
    const head = await ledger.getHead(id);
    if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    if (next > head.trimmed) {
      if (hot.length === 0) return; // past the end
      // Records next..hot[0]-1 were missing when the hot log was read, so they had been trimmed:
      // `trimmed`, read afterwards, must cover them.
      throw new PatchbayError('internal', `log of ${id} has a hole at ${next} (hot log starts at ${(hot[0] as PatchRecord).ii}, trimmed ${head.trimmed})`);
    }
    const coldTo = Math.min(to, head.trimmed);
    for await (const r of cold.records(id, next, coldTo)) {
      yield r;
      next = r.ii + 1;
    }
  }
}
