/**
 * RFC 6902 on top of fast-json-patch, made strict and safe:
 * - limits (ops, bytes, pointer depth, value depth) are checked before anything is applied;
 * - `__proto__`, `constructor` and `prototype` segments are refused outright;
 * - array indices follow RFC 6901 exactly (`0` or no leading zero; `-` only where it means "append");
 * - a patch is all or nothing: `applyPatch` works on the caller's working copy, and the caller
 *   throws that copy away when any op fails (guarantee 3).
 * Browser-safe (no Node API, no server module): the client (`client/`) applies patches locally
 * with this very function, so its optimistic state follows exactly the server's semantics.
 */
import fjp from 'fast-json-patch';
import { PatchbayError } from './errors.js';
import { cloneJson, type Json, jsonBytes, jsonDepth } from './json.js';
import type { Operation, Patch } from './wire.js';

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The patch limits (shared/config.ts's fields of the same names), spelled out so this module stays browser-safe. */
interface Limits {
  maxOps: number;
  maxPatchBytes: number;
  maxPathDepth: number;
  maxValueDepth: number;
}

/** A patch that passed `checkPatch`, and its JSON size in bytes (what `Writer.submit` takes as proof). */
export interface CheckedPatch {
  readonly patch: Patch;
  readonly bytes: number;
}

/**
 * Checks a schema-valid patch against the limits and the forbidden segments; throws a coded error.
 * Returns the patch with its JSON size in bytes.
 */
export function checkPatch(patch: Patch, limits: Limits): CheckedPatch {
  if (patch.length > limits.maxOps) {
    throw new PatchbayError('too_large', `a patch may have at most ${limits.maxOps} operations`, {
      limit: 'maxOps',
      max: limits.maxOps,
      actual: patch.length,
    });
  }
  const bytes = jsonBytes(patch);
  if (bytes > limits.maxPatchBytes) {
    throw new PatchbayError('too_large', `a patch may be at most ${limits.maxPatchBytes} bytes`, {
      limit: 'maxPatchBytes',
      max: limits.maxPatchBytes,
      actual: bytes,
    });
  }
  patch.forEach((op, i) => {
    for (const field of ['path', 'from'] as const) {
      const ptr = op[field];
      if (ptr === undefined) continue;
      const segments = parsePointer(ptr);
      if (segments.length > limits.maxPathDepth) {
        throw new PatchbayError('too_large', `a pointer may have at most ${limits.maxPathDepth} segments`, {
          limit: 'maxPathDepth',
          max: limits.maxPathDepth,
          actual: segments.length,
          op: i,
        });
      }
      const bad = segments.find((s) => FORBIDDEN.has(s));
      if (bad !== undefined) {
        throw new PatchbayError('invalid_request', `the path segment "${bad}" is not allowed`, {
          issues: [{ path: ['patch', i, field], message: `segment "${bad}" is not allowed` }],
        });
      }
    }
    if ('value' in op) checkValueDepth(op.value, limits.maxValueDepth, i);
  });
  return { patch, bytes };
}

/** Whether a patch cannot grow a state: it has only `remove` and `test` operations (or none). */
export function cannotGrow(patch: Patch): boolean {
  return patch.every((op) => op.op === 'remove' || op.op === 'test');
}

export function checkValueDepth(value: unknown, max: number, op?: number): void {
  const depth = jsonDepth(value, max);
  if (depth > max) {
    throw new PatchbayError('too_large', `JSON values may nest at most ${max} levels deep`, {
      limit: 'maxValueDepth',
      max,
      ...(op === undefined ? {} : { op }),
    });
  }
}

function failed(index: number, message: string): PatchbayError {
  return new PatchbayError('patch_failed', `operation ${index} failed: ${message}`, { op: index });
}

interface Target {
  /** Whether the pointer names an existing member (always true for the root). */
  exists: boolean;
  value: Json | undefined;
  /** The container the last segment lives in (undefined for the root). */
  parent: Json[] | { [k: string]: Json } | undefined;
  key: string;
  depth: number;
}

/**
 * Resolves `pointer` in `doc` by RFC 6901 rules, stricter than fast-json-patch: only own members
 * count (so `/toString` does not exist on `{}`), array indices are `0` or have no leading zero and
 * must be in range, and `-` ("past the end") is only allowed as the last segment where `allowDash`.
 * Every segment but the last must exist; a missing last member is reported as `exists: false`.
 */
function resolve(doc: Json, pointer: string, index: number, allowDash: boolean): Target {
  const segments = parsePointer(pointer);
  let node: Json | undefined = doc;
  let parent: Target['parent'];
  let key = '';
  for (let k = 0; k < segments.length; k++) {
    const seg = segments[k] as string;
    const last = k === segments.length - 1;
    if (node === null || typeof node !== 'object' || node === undefined) throw failed(index, `path ${pointer} does not exist`);
    parent = node;
    key = seg;
    if (Array.isArray(node)) {
      if (seg === '-' && last && allowDash) return { exists: false, value: undefined, parent, key, depth: segments.length };
      if (!ARRAY_INDEX.test(seg)) throw failed(index, `"${seg}" is not a valid array index`);
      const i = Number(seg);
      if (i >= node.length) {
        if (last) return { exists: false, value: undefined, parent, key, depth: segments.length };
        throw failed(index, `path ${pointer} does not exist`);
      }
      node = node[i];
    } else if (Object.hasOwn(node, seg)) {
      node = node[seg];
    } else {
      if (last) return { exists: false, value: undefined, parent, key, depth: segments.length };
      throw failed(index, `path ${pointer} does not exist`);
    }
  }
  return { exists: true, value: node, parent, key, depth: segments.length };
}

/**
 * A running size budget for applying patches under the state limits. `bytes` tracks an upper
 * bound of the document's JSON size, op by op, from the sizes of the values each op moves in or
 * out; only when that bound passes `maxBytes` is the document measured exactly. So a patch of
 * tiny ops that doubles the state again and again (`copy` from the root) is refused at the op
 * that crosses the limit, having used at most about twice the limit in memory, instead of after
 * it has grown without bound.
 */
export interface Budget {
  maxBytes: number;
  maxDepth: number;
  /** Upper bound of the current document's JSON size; start with its exact size. */
  bytes: number;
}

function tooLarge(index: number, what: 'maxStateBytes' | 'maxValueDepth', max: number, actual?: number): PatchbayError {
  const message = what === 'maxStateBytes' ? `a scope's state may be at most ${max} bytes` : `JSON values may nest at most ${max} levels deep`;
  return new PatchbayError('too_large', message, { limit: what, max, op: index, ...(actual === undefined ? {} : { actual }) });
}

/**
 * Applies `patch` to `doc`, mutating it, and returns the new document (which differs from `doc`
 * when an op replaces the root). On failure throws `patch_failed` naming the op (or `too_large`
 * when a `budget` is given and an op would break it); `doc` may then be partly changed, so callers
 * pass a copy they can discard. `patch` itself is never changed: values are copied into the
 * document, so a later op can never alter what the caller records as the patch.
 *
 * `beforeOp`, when given, is called before each operation with the document so far and returns
 * the document to apply it to: the client (client/src/apply.ts) copies there only the containers
 * the operation changes, instead of the whole document up front. It must return a document equal
 * in value to the one it was given.
 */
export function applyPatch(doc: Json, patch: Patch, budget?: Budget, beforeOp?: (doc: Json, op: Operation) => Json): Json {
  let current = doc;
  patch.forEach((op: Operation, i) => {
    if (beforeOp) current = beforeOp(current, op);
    const adds = op.op === 'add' || op.op === 'move' || op.op === 'copy';
    const target = resolve(current, op.path, i, adds);
    if (!adds && !target.exists) throw failed(i, `path ${op.path} does not exist`);
    let incoming: Json | undefined = op.value;
    if (op.from !== undefined) {
      const source = resolve(current, op.from, i, false);
      if (!source.exists) throw failed(i, `path ${op.from} does not exist`);
      if (op.op === 'move' && op.path.startsWith(`${op.from}/`)) throw failed(i, 'cannot move a value into one of its own children');
      incoming = source.value;
    }
    let delta = 0;
    if (budget && op.op !== 'test' && op.op !== 'remove') {
      const value = incoming as Json;
      if (target.depth + jsonDepth(value, budget.maxDepth) > budget.maxDepth) throw tooLarge(i, 'maxValueDepth', budget.maxDepth);
      if (op.op === 'move') {
        // The value only changes place: at most the new key's bytes are added.
        if (!Array.isArray(target.parent)) delta = jsonBytes(target.key) + 2;
      } else {
        const size = jsonBytes(value);
        if (target.parent === undefined)
          delta = size - budget.bytes; // the root is replaced: exact
        else if (target.exists && (op.op === 'replace' || !Array.isArray(target.parent))) delta = size - jsonBytes(target.value);
        else delta = size + (Array.isArray(target.parent) ? 1 : jsonBytes(target.key) + 2); // a new member
      }
    } else if (budget && op.op === 'remove') {
      delta = -jsonBytes(target.value);
    }
    const applied = op.op === 'add' || op.op === 'replace' ? { ...op, value: cloneJson(op.value as Json) } : op;
    try {
      if (op.op === 'move') {
        // RFC 6902 §4.4: a remove from `from`, then an add at `path` in the document the remove left.
        // fast-json-patch checks `path` in the document before the remove, so a target whose parent
        // the remove shifts away (move /0 to /1/0 in [0, [0], 0]) was "added" to a number: nothing.
        current = fjp.applyOperation(current, { op: 'remove', path: op.from as string }, true, true, true, i).newDocument as Json;
        resolve(current, op.path, i, true);
        current = fjp.applyOperation(current, { op: 'add', path: op.path, value: incoming }, true, true, true, i).newDocument as Json;
      } else {
        current = fjp.applyOperation(current, applied as fjp.Operation, true, true, true, i).newDocument as Json;
      }
    } catch (err) {
      if (err instanceof PatchbayError) throw err;
      const message = err instanceof Error ? (err.message.split('\n')[0] ?? 'cannot apply') : 'cannot apply';
      throw failed(i, message);
    }
    if (budget) {
      budget.bytes += delta;
      if (budget.bytes > budget.maxBytes) {
        budget.bytes = jsonBytes(current);
        if (budget.bytes > budget.maxBytes) throw tooLarge(i, 'maxStateBytes', budget.maxBytes, budget.bytes);
      }
    }
  });
  return current;
}
