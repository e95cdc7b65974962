/**
 * The client's local apply: the server's own RFC 6902 implementation (shared/patch.ts), on a
 * copy, so a patch is all or nothing here exactly as on the server. The optimistic state and
 * every rebase go through this function and nothing else.
 */
import type { Json } from '../../shared/json.js';
import { cloneJson } from '../../shared/json.js';
import { applyPatch as applyInPlace } from '../../shared/patch.js';
import type { Patch } from '../../shared/wire.js';

/**
 * `patch` applied to a copy of `doc`: the new state, `doc` untouched. Throws the server's
 * `patch_failed` error (a PatchbayError with `details.op`) when an operation cannot apply.
 */
export function applyPatch(doc: Json, patch: Patch): Json {
  return applyInPlace(cloneJson(doc), patch);
}
