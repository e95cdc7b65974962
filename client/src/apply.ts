/**
 * The client's local apply: the server's own RFC 6902 implementation (shared/patch.ts), all or
 * nothing here exactly as on the server. The optimistic state and every rebase go through this
 * function and nothing else.
 *
 * `doc` is never changed, and the new state shares with it every part the patch did not touch:
 * before each operation, the containers on its path (the root, each object or array down to the
 * one it changes) are copied once per call, and the operation then changes only those copies.
 * So a patch costs what it touches, not the size of the state (a client following a scope of a
 * long list no longer copies the list for every patch). A `move` copies the whole document, as
 * its remove can shift the array its add then walks through. States are to be read, not changed
 * in place: a caller that changes one may change others that share that part.
 */
import type { Json } from '../../shared/json.js';
import { cloneJson } from '../../shared/json.js';
import { applyPatch as applyInPlace } from '../../shared/patch.js';
import type { Operation, Patch } from '../../shared/wire.js';

/**
 * `patch` applied to `doc`: the new state, `doc` untouched. Throws the server's `patch_failed`
 * error (a PatchbayError with `details.op`) when an operation cannot apply.
 */
export function applyPatch(doc: Json, patch: Patch): Json {
  /** Containers made by this call: changed in place from then on. After a move: all of them. */
  const fresh = new WeakSet<object>();
  let allFresh = false;
  return applyInPlace(doc, patch, undefined, (current, op) => {
    if (allFresh || op.op === 'test') return current;
    if (op.op === 'move') {
      allFresh = true;
      return cloneJson(current);
    }
    return copyAlong(current, op, fresh);
  });
}

/** `doc` with each container on `op.path` down to the one the op changes replaced by a copy (once per apply). */
function copyAlong(doc: Json, op: Operation, fresh: WeakSet<object>): Json {
  if (op.path === '' || doc === null || typeof doc !== 'object') return doc; // the root replaced, or a scalar root: nothing changes in place
  const root = own(doc, fresh);
  const tokens = op.path.slice(1).split('/');
  let node: Json[] | { [k: string]: Json } = root;
  for (let k = 0; k < tokens.length - 1; k++) {
    const key = (tokens[k] as string).replace(/~1/g, '/').replace(/~0/g, '~');
    const child: Json | undefined = Array.isArray(node)
      ? /^(0|[1-9][0-9]*)$/.test(key)
        ? node[Number(key)]
        : undefined
      : Object.hasOwn(node, key)
        ? node[key]
        : undefined;
    if (child === null || typeof child !== 'object') break; // the op fails on this path: its working copy is discarded
    const copy = own(child, fresh);
    if (Array.isArray(node)) node[Number(key)] = copy;
    else node[key] = copy;
    node = copy;
  }
  return root;
}

/** A container this apply may change: `c` itself if this apply made it, else a shallow copy. */
function own<T extends Json[] | { [k: string]: Json }>(c: T, fresh: WeakSet<object>): T {
  if (fresh.has(c)) return c;
  const copy = (Array.isArray(c) ? c.slice() : { ...c }) as T;
  fresh.add(copy);
  return copy;
}
