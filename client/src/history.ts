/**
 * Undo and redo of a client's own patches (issue 16 item 7): the inverse of a patch, computed from
 * the state it applied to, and the two stacks a live scope keeps.
 *
 * The inverse restores, in reverse order, what each operation changed, and guards each place with
 * a `test` of the value the operation left there. So an undo sent after someone else changed the
 * same place (a value replaced, an array shifted under an index) fails as a whole with
 * `patch_failed` instead of overwriting their change: a conflict, never a silent loss. Places the
 * patch did not touch are not tested: changes elsewhere do not stop an undo. One gap: RFC 6902
 * cannot test that an object member is absent, so undoing a `remove` re-adds the member even over
 * one another writer added under the same key since.
 */
import type { Json } from '../../shared/json.js';
import type { Operation, Patch } from '../../shared/wire.js';
import { applyPatch } from './apply.js';

/** The tokens of a JSON Pointer (RFC 6901). */
function tokens(pointer: string): string[] {
  return pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const pointer = (parts: string[]): string => parts.map((t) => `/${t.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');

/** The value at `path` in `doc`, or undefined when there is none. */
function at(doc: Json, path: string): Json | undefined {
  let cur: Json | undefined = doc;
  for (const t of tokens(path)) {
    if (Array.isArray(cur)) cur = /^(0|[1-9][0-9]*)$/.test(t) ? cur[Number(t)] : undefined;
    else if (cur !== null && typeof cur === 'object') cur = Object.hasOwn(cur, t) ? (cur as Record<string, Json>)[t] : undefined;
    else return undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** For an op on an array element: the concrete path (`-` resolved to the index it appended at). */
function concrete(doc: Json, path: string): { path: string; inArray: boolean } {
  if (path === '') return { path, inArray: false };
  const parts = tokens(path);
  const last = parts.pop();
  const parent = at(doc, pointer(parts));
  if (Array.isArray(parent)) return { path: pointer([...parts, last === '-' ? String(parent.length) : (last as string)]), inArray: true };
  return { path, inArray: false };
}

/** The undo of an add (or copy) at `path` onto `doc`, which gave `next`: test what it put there, then take it out or put back what it replaced. */
function undoAdd(doc: Json, path: string, next: Json): Operation[] {
  const c = concrete(doc, path);
  const test: Operation = { op: 'test', path: c.path, value: at(next, c.path) as Json };
  if (c.path === '') return [test, { op: 'replace', path: '', value: doc }];
  if (c.inArray) return [test, { op: 'remove', path: c.path }];
  const old = at(doc, c.path);
  return [test, old === undefined ? { op: 'remove', path: c.path } : { op: 'replace', path: c.path, value: old }];
}

/**
 * The patch that takes `patch`'s result back to `before` (which `patch` must apply to), each
 * restored place first tested to still hold what `patch` put there. Throws `patch_failed` when
 * `patch` does not apply to `before`.
 */
export function invert(before: Json, patch: Patch, after?: Json): Patch {
  let doc = before;
  const steps: Operation[][] = [];
  for (const op of patch) {
    // One op: its result is `after` when the caller has it (the optimistic state), no second apply.
    const next = patch.length === 1 && after !== undefined ? after : applyPatch(doc, [op]);
    const step: Operation[] = [];
    switch (op.op) {
      case 'add':
      case 'copy':
        step.push(...undoAdd(doc, op.path, next));
        break;
      case 'replace':
        step.push({ op: 'test', path: op.path, value: at(next, op.path) as Json }, { op: 'replace', path: op.path, value: at(doc, op.path) as Json });
        break;
      case 'remove':
        // RFC 6902 cannot test that a member is absent: an undo re-adds it even over one added there since.
        step.push({ op: 'add', path: op.path, value: at(doc, op.path) as Json });
        break;
      case 'move': {
        // A move is a remove of `from` and an add at `path` onto what the remove left: undone in reverse.
        const from = op.from as string;
        if (from === op.path) break; // a move onto itself changes nothing
        const mid = applyPatch(doc, [{ op: 'remove', path: from }]);
        step.push(...undoAdd(mid, op.path, next), { op: 'add', path: from, value: at(doc, from) as Json });
        break;
      }
      default: // test changes nothing
        break;
    }
    steps.push(step);
    doc = next;
  }
  return steps.reverse().flat();
}

/**
 * One undoable change: the state it applied to, the patch and the state it gave. The inverse is
 * computed when the entry is taken, not when it was made (a pipelined writer makes thousands of
 * patches it never undoes); the states are the client's own, never changed once made (./apply.ts
 * copies what it changes), so holding them is holding what `invert` would have read then.
 */
interface Entry {
  before: Json;
  patch: Patch;
  after: Json;
  /** False once its patch was refused or dropped: then there is nothing to undo. */
  live: boolean;
}

/** The undo and redo stacks of one live scope (only this client's own patches go on them). */
export class UndoStack {
  private readonly undos: Entry[] = [];
  private redos: Entry[] = [];

  constructor(private readonly limit = 100) {}

  /** A new change of the client's own: undoable; anything redoable is forgotten. */
  made(before: Json, patch: Patch, after: Json, settled: Promise<unknown>): void {
    this.push(this.undos, before, patch, after, settled);
    this.redos = [];
  }

  /** The inverse to send for an undo (or redo), or undefined when there is none. */
  take(which: 'undo' | 'redo'): Patch | undefined {
    const stack = which === 'undo' ? this.undos : this.redos;
    for (let e = stack.pop(); e; e = stack.pop()) if (e.live) return invert(e.before, e.patch, e.after);
    return undefined;
  }

  /** An undo (or redo) was made: its own inverse goes on the other stack. */
  did(which: 'undo' | 'redo', before: Json, patch: Patch, after: Json, settled: Promise<unknown>): void {
    this.push(which === 'undo' ? this.redos : this.undos, before, patch, after, settled);
  }

  canUndo(): boolean {
    return this.undos.some((e) => e.live);
  }

  canRedo(): boolean {
    return this.redos.some((e) => e.live);
  }

  private push(stack: Entry[], before: Json, patch: Patch, after: Json, settled: Promise<unknown>): void {
    const entry: Entry = { before, patch, after, live: true };
    // A patch the server refuses (or a rebase drops) never happened: nothing to undo.
    settled.catch(() => {
      entry.live = false;
    });
    stack.push(entry);
    if (stack.length > this.limit) stack.shift();
  }
}
