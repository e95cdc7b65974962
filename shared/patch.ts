/**
 * RFC 6902 on top of fast-json-patch, made strict and safe:
 * - limits (ops, bytes, pointer depth, value depth) are checked before anything is applied;
 * - `__proto__`, `constructor` and `prototype` segments are refused outright;
 * - array indices follow RFC 6901 exactly (`0` or no leading zero; `-` only where it means "append");
 * - a patch is all or nothing: `applyPatch` works on the caller's working copy, and the caller
 *   throws that copy away when any op fails (guarantee 3).
 */
import fjp from 'fast-json-patch';
import type { Config } from './config.js';
import { PatchbayError } from './errors.js';
import { type Json, jsonBytes, jsonDepth } from './json.js';
import type { Operation, Patch } from './protocol.js';

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

type Limits = Pick<Config, 'maxOps' | 'maxPatchBytes' | 'maxPathDepth' | 'maxValueDepth'>;

/** Checks a schema-valid patch against the limits and the forbidden segments; throws a coded error. */
export function checkPatch(patch: Patch, limits: Limits): void {
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

/** RFC 6901 array-index rules along `pointer` in `doc` (fast-json-patch accepts `01`). */
function checkArrayIndices(doc: Json, pointer: string, index: number, allowDash: boolean): void {
  let node: Json | undefined = doc;
  const segments = parsePointer(pointer);
  for (let k = 0; k < segments.length; k++) {
    if (node === null || typeof node !== 'object') return; // the library reports unresolvable paths
    const seg = segments[k] as string;
    if (Array.isArray(node)) {
      const last = k === segments.length - 1;
      if (!(ARRAY_INDEX.test(seg) || (seg === '-' && last && allowDash))) {
        throw failed(index, `"${seg}" is not a valid array index`);
      }
      node = node[Number(seg)];
    } else {
      node = Object.hasOwn(node, seg) ? node[seg] : undefined;
    }
  }
}

/**
 * Applies `patch` to `doc`, mutating it, and returns the new document (which differs from `doc`
 * when an op replaces the root). On failure throws `patch_failed` naming the op; `doc` may then be
 * partly changed, so callers pass a copy they can discard.
 */
export function applyPatch(doc: Json, patch: Patch): Json {
  let current = doc;
  patch.forEach((op: Operation, i) => {
    checkArrayIndices(current, op.path, i, op.op === 'add' || op.op === 'move' || op.op === 'copy');
    if (op.from !== undefined) {
      checkArrayIndices(current, op.from, i, false);
      if (op.op === 'move' && op.path.startsWith(`${op.from}/`)) {
        throw failed(i, 'cannot move a value into one of its own children');
      }
    }
    try {
      current = fjp.applyOperation(current, op as fjp.Operation, true, true, true, i).newDocument as Json;
    } catch (err) {
      const message = err instanceof Error ? (err.message.split('\n')[0] ?? 'cannot apply') : 'cannot apply';
      throw failed(i, message);
    }
  });
  return current;
}
