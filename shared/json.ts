/** JSON values and the small helpers the core needs around them. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A deep copy of a JSON value (JSON round trip: the fastest deep clone for plain JSON in V8). */
export function cloneJson<T extends Json>(value: T): T {
  // A string, boolean, null or plain number is its own copy (NaN, ±Infinity and -0 still go
  // through JSON, which makes them null and 0, as on the wire).
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number' && Number.isFinite(value) && !Object.is(value, -0)) return value;
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * UTF-8 byte length of a string: Node's Buffer.byteLength where there is one (no copy), else a
 * TextEncoder (browsers, which load this module through the client's local apply).
 */
const nodeBuffer = (globalThis as { Buffer?: { byteLength(s: string, encoding: 'utf8'): number } }).Buffer;
const utf8Length: (s: string) => number = nodeBuffer ? (s) => nodeBuffer.byteLength(s, 'utf8') : (s) => new TextEncoder().encode(s).length;

/** UTF-8 byte length of a value's JSON text. */
export function jsonBytes(value: unknown): number {
  return utf8Length(JSON.stringify(value));
}

/**
 * Nesting depth of a JSON value (a scalar is 0, `[]` is 1), computed without recursion so a
 * hostile 100,000-deep document cannot overflow the stack. Stops counting past `stopAt`.
 */
export function jsonDepth(value: unknown, stopAt = Number.POSITIVE_INFINITY): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    const depth = d + 1;
    if (depth > max) {
      max = depth;
      if (max > stopAt) return max;
    }
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth]);
    }
  }
  return max;
}

/**
 * The path of the first object member named `__proto__` in a parsed JSON value, or null.
 * JSON.parse keeps such a member as an ordinary own property, but most code that copies objects
 * (zod's JSON schema among them) turns it into a prototype and silently drops it. Iterative, and
 * stops descending past `maxDepth`.
 */
export function findProtoKey(value: unknown, maxDepth = Number.POSITIVE_INFINITY): Array<string | number> | null {
  const stack: Array<[unknown, Array<string | number>]> = [[value, []]];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, Array<string | number>];
    if (v === null || typeof v !== 'object' || path.length > maxDepth) continue;
    if (Array.isArray(v)) {
      v.forEach((child, i) => {
        stack.push([child, [...path, i]]);
      });
      continue;
    }
    for (const key of Object.keys(v)) {
      if (key === '__proto__') return [...path, key];
      stack.push([(v as Record<string, unknown>)[key], [...path, key]]);
    }
  }
  return null;
}

/**
 * An estimate of the memory a parsed JSON value holds in V8, in bytes: what the in-memory caches
 * count (shared/state-lru.ts). JSON text length is a poor stand-in: measured on 64-bit Node 20,
 * the heap of a parsed 100-500 KB state is 0.5x its JSON text for an array of doubles, 1x for one
 * long string and 2-9x for arrays of small objects or small arrays (in the same runs this
 * estimate was 0.6-3.4x the heap; under 1x only for objects of thousands of keys). One walk, no
 * allocation per value: about half the time of a `JSON.stringify` of the same value.
 * Iterative, so depth cannot overflow the stack.
 */
export function jsonHeapBytes(value: unknown): number {
  let n = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') n += stringBytes(v);
    else if (typeof v === 'number') n += isSmallInt(v) ? 0 : 16;
    else if (Array.isArray(v)) {
      n += 32 + 8 * v.length;
      for (const x of v) if (typeof x === 'object' || typeof x === 'string' || (typeof x === 'number' && !isSmallInt(x))) stack.push(x);
    } else if (v !== null && typeof v === 'object') {
      n += 32;
      for (const k in v) {
        // The slot, and the name itself: a long member name is as costly as a long value.
        n += 24 + stringBytes(k);
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return n;
}

/** A string's heap: V8 stores it with one byte per character, or two once any is past U+00FF. */
const TWO_BYTE = /[\u0100-\uffff]/;
const stringBytes = (s: string): number => 16 + (TWO_BYTE.test(s) ? 2 : 1) * s.length;

/** A number V8 keeps inline (a Smi) instead of as a 16-byte heap number. */
const isSmallInt = (v: number): boolean => Number.isInteger(v) && v >= -(2 ** 30) && v < 2 ** 30;
