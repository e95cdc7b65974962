/**
 * Folding patches the service has already accepted: fast-json-patch's own applier, without the
 * checks and copies of the strict `applyPatch` (shared/patch.ts). Only for rebuilding a state
 * from the log; every patch that comes in from a client goes through the strict applier.
 *
 * Why this gives exactly the state the strict fold gives (guarantee 2), for a patch accepted at
 * index ii and applied to the state at ii - 1 (the same state the commit applied it to, by
 * induction from the same start):
 * - The strict applier's extra work only ever throws: pointer resolution by RFC 6901 rules (own
 *   members only, `0` or no leading zero, `-` only to append), the size and depth budget, and
 *   fast-json-patch's validation. None of it threw when the patch was accepted, so on the same
 *   state none of it would throw now. What changes the document is, in both, the same
 *   `applyOperation(doc, op, …, mutate = true, banPrototypeModifications = true, i)` per op, in
 *   order; with validation off, fast-json-patch walks the same own members (an accepted pointer
 *   names only own members and plain decimal indices, which it reads the same way).
 * - The one other difference is that the strict applier copies each `add`/`replace` value into
 *   the document (a value from the log is JSON, so the copy equals it), where this puts the op's
 *   value object itself there. A later op may then change it in place: the same change the strict
 *   fold makes to its copy, so the states stay equal, but the patch object is changed too. So the
 *   patches folded here must be the caller's own objects, parsed for this fold and dropped after
 *   it: `Ledger.readPatches` returns fresh objects, and cold storage parses each bundle afresh.
 *   A page of patches is never handed to anything else. (`copy` is a copy in fast-json-patch too,
 *   and `move` moves the one reference it takes.)
 * test/cold-fold.test.ts checks both folds against each other: the RFC 6902 fixtures and random
 * sequences of accepted patches, with later ops changing values that earlier ones added.
 */
import fjp from 'fast-json-patch';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { LogPatch } from '../ports/index.js';

/**
 * Applies `page` (consecutive records of scope `id`'s log) to `state`, mutating it and the
 * patches, and returns the new state. A patch that does not apply (which an accepted patch cannot
 * do: the log is damaged) throws `internal` naming its index.
 */
export function foldAccepted(id: string, state: Json, page: readonly LogPatch[]): Json {
  let doc = state;
  for (const r of page) {
    const patch = r.patch;
    try {
      for (let i = 0; i < patch.length; i++) doc = fjp.applyOperation(doc, patch[i] as fjp.Operation, false, true, true, i).newDocument as Json;
    } catch (err) {
      throw new PatchbayError(
        'internal',
        `log of ${id}: patch ${r.ii} does not apply to the state before it (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`,
      );
    }
  }
  return doc;
}
