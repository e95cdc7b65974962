/**
 * Collapsing a composed patch's operations (client/src/scope.ts `compose`): a `replace` of the
 * very path the operation just before it added or replaced is folded into that operation, keeping
 * the later value, as ShareDB's json0 `compose` folds successive edits of one path. A slider or a
 * text field sending its value many times a second then sends and commits one operation per
 * composed patch, not one per `patch()` call.
 *
 * Guarantee: for every document, the collapsed operations give the same state as the operations
 * they came from, or fail where they fail (a `replace` needs its path to exist, and the operation
 * before it just made it exist or found it existing). Only neighbours are folded, so nothing
 * between them (a `test`, a `copy` from the path) can see the value that is dropped. A path ending
 * in `-` (the end of an array) is never folded: `replace` cannot address it.
 *
 * What changes: the dropped value is never sent, so the server's checks of one operation (depth,
 * size) never see it; the state they judge is the same.
 */
import type { Operation, Patch } from '../../shared/wire.js';

export function collapse(ops: Patch): Patch {
  const out: Operation[] = [];
  for (const op of ops) if (!fold(out, op)) out.push(op);
  return out;
}

/**
 * Folds `op` into the last operation of `ops` when the rule above allows (that operation is
 * replaced by one with `op`'s value) and says whether it did; the client's composing
 * (./scope.ts `foldOnto`) folds with this very function, so the guarantee tested on collapse()
 * is the one it relies on.
 */
export function fold(ops: Operation[], op: Operation): boolean {
  const k = ops.length - 1;
  const last = ops[k];
  if (op.op !== 'replace' || last === undefined || (last.op !== 'replace' && last.op !== 'add') || last.path !== op.path || op.path.endsWith('/-'))
    return false;
  ops[k] = { op: last.op, path: op.path, value: op.value } as Operation;
  return true;
}
