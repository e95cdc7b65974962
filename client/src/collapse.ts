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
  for (const op of ops) {
    const last = out[out.length - 1];
    if (foldsInto(last, op)) {
      out[out.length - 1] = { op: (last as Operation).op, path: op.path, value: (op as { value: unknown }).value } as Operation;
      continue;
    }
    out.push(op);
  }
  return out;
}

/** Whether `op` folds into `last`, the operation just before it (see the guarantee above). */
export function foldsInto(last: Operation | undefined, op: Operation): boolean {
  return op.op === 'replace' && last !== undefined && (last.op === 'replace' || last.op === 'add') && last.path === op.path && !op.path.endsWith('/-');
}
