/**
 * Strict parsing of request bodies: JSON text that `JSON.parse` would silently alter is refused
 * with `400 invalid_request` instead, so what is stored is exactly what the client sent and what
 * any other reader of the same bytes (a proxy, an audit log, a strict client) would see:
 * - bytes that are not UTF-8 (Node would store each bad sequence as U+FFFD);
 * - a member name that occurs twice in one object, compared after unescaping (`"a"` and
 *   `"\u0061"` are the same name): `JSON.parse` keeps the last one, a proxy may read the first,
 *   so `{"op": "test", "op": "remove", ...}` would mean two different patches;
 * - a string (member name or value) with a lone surrogate escape such as `"\ud800"`: stored, it
 *   would be unreadable for clients whose JSON or UTF-8 decoding is strict.
 *
 * The parse stays `JSON.parse`: the bytes are checked by Node's native UTF-8 validator
 * (`buffer.isUtf8`), the text is parsed by `JSON.parse` (so syntax errors keep their answer),
 * and only then one linear scan of the text, now known to be valid JSON, looks at member names
 * and escaped strings. This costs about 1.2-1.8 times a bare `JSON.parse` (bench/strict-json.ts).
 * A maintained parser that sees duplicate names was measured and not taken: @humanwhocodes/momoa
 * (ESLint's JSON parser) builds a syntax tree and took about 15 times `JSON.parse` on a 1 KB
 * patch body and about 50 times on a 500 KB state body.
 */
import { isUtf8 } from 'node:buffer';
import { PatchbayError } from './errors.js';

/** Where a problem was found: the path of the offending member or value, and what it is. */
export interface JsonTextProblem {
  path: Array<string | number>;
  message: string;
}

/**
 * Parses a request body as strict JSON (see the module comment). Throws `invalid_request` naming
 * the problem and, where there is one, its path (`issues: [{path, message}]`).
 */
export function parseJsonBody(buf: Buffer): unknown {
  if (!isUtf8(buf)) throw invalid('the body is not valid UTF-8', { path: [], message: 'invalid UTF-8' });
  const text = buf.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid('the body is not valid JSON', { path: [], message: 'invalid JSON' });
  }
  const problem = findAlteredText(text);
  if (problem) throw invalid(`the body is not strict JSON: ${problem.message}`, problem);
  return value;
}

function invalid(message: string, issue: JsonTextProblem): PatchbayError {
  return new PatchbayError('invalid_request', message, { issues: [issue] });
}

/** One open object or array during the scan; frames are reused as the scan goes up and down. */
interface Frame {
  object: boolean;
  /** Arrays: the index of the current element. */
  index: number;
  /** Objects: the current member's name. */
  key: string;
  /** Objects: the names seen so far, in a reused array while few (a linear search is faster than hashing), then in a set. */
  names: string[];
  count: number;
  many: Set<string> | undefined;
}

/** Above this many names an object's names go into a set. */
const FEW = 16;

const QUOTE = 0x22;
/** An escape that may encode a surrogate (`\uD800`-`\uDFFF`); only then is a value decoded. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
/** In a `u` regex a well-formed pair is one code point, so this matches lone surrogates only. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Whether `name` was already seen in the object `f`; records it if not. */
function seen(f: Frame, name: string): boolean {
  if (f.many) {
    if (f.many.has(name)) return true;
    f.many.add(name);
    return false;
  }
  const names = f.names;
  for (let k = 0; k < f.count; k++) if (names[k] === name) return true;
  if (f.count === FEW) f.many = new Set([...names.slice(0, FEW), name]);
  else names[f.count] = name;
  f.count++;
  return false;
}

/** The characters the scan acts on: quote, braces, brackets, comma (by char code, below 128). */
const STRUCTURE = new Uint8Array(128);
for (const ch of '"{}[],') STRUCTURE[ch.charCodeAt(0)] = 1;

/**
 * The index of the next character the scan acts on, from `i` (or `n`): everything between is a
 * number, literal, colon or whitespace. Its own small function on purpose: with this loop inside
 * the scan, V8 (Node 20) optimised the scan, after a few large bodies, into code about 100 times
 * slower than this (20 ms instead of 0.2 ms for an 80 KB batch body; bench/strict-json.ts).
 */
function nextStructure(text: string, i: number, n: number): number {
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c < 128 && STRUCTURE[c] === 1) return i;
    i++;
  }
  return n;
}

/** The scan's open objects and arrays: `stack[0..depth-1]`, frames reused as it goes up and down. */
interface Scan {
  stack: Frame[];
  depth: number;
}

/** The path of the current position; with `extra`, of the member `extra` of the innermost object. */
function pathOf(scan: Scan, extra?: string): Array<string | number> {
  const p: Array<string | number> = [];
  for (let d = 0; d < scan.depth; d++) {
    const f = scan.stack[d] as Frame;
    if (d < scan.depth - 1 || extra === undefined) p.push(f.object ? f.key : f.index);
  }
  if (extra !== undefined) p.push(extra);
  return p;
}

function open(scan: Scan, object: boolean): void {
  let f = scan.stack[scan.depth];
  if (f === undefined) {
    f = { object, index: 0, key: '', names: [], count: 0, many: undefined };
    scan.stack.push(f);
  } else {
    f.object = object;
    f.index = 0;
    f.key = '';
    f.count = 0;
    f.many = undefined;
  }
  scan.depth++;
}

/**
 * The first duplicate member name or lone-surrogate string in `text`, which must be valid JSON
 * (it is not checked again: call it after `JSON.parse` succeeded), or null. One pass, no
 * recursion (so any nesting depth is fine); a string is decoded only when it is a member name
 * with escapes or a value with an escape that may encode a surrogate.
 */
export function findAlteredText(text: string): JsonTextProblem | null {
  const scan: Scan = { stack: [], depth: 0 };
  const stack = scan.stack;
  let expectName = false;
  let nextBackslash = text.indexOf('\\');
  const n = text.length;
  let i = 0;
  for (;;) {
    i = nextStructure(text, i, n);
    if (i >= n) break;
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Find the closing quote, stepping over escapes (a backslash and the character after it).
      let from = i + 1;
      let escaped = false;
      let end = text.indexOf('"', from);
      while (nextBackslash !== -1 && nextBackslash < end) {
        escaped = true;
        from = nextBackslash + 2;
        nextBackslash = text.indexOf('\\', from);
        if (from > end) end = text.indexOf('"', from);
      }
      const top = scan.depth > 0 ? (stack[scan.depth - 1] as Frame) : undefined;
      if (top?.object && expectName) {
        const name = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        if (escaped && LONE_SURROGATE.test(name)) return { path: pathOf(scan, name), message: 'a member name has a lone surrogate escape' };
        if (seen(top, name)) return { path: pathOf(scan, name), message: `the member name ${JSON.stringify(name)} occurs more than once` };
        top.key = name;
        expectName = false;
      } else if (escaped) {
        const raw = text.slice(i, end + 1);
        if (SURROGATE_ESCAPE.test(raw) && LONE_SURROGATE.test(JSON.parse(raw) as string)) {
          return { path: pathOf(scan), message: 'a string has a lone surrogate escape' };
        }
      }
      i = end + 1;
      continue;
    }
    if (c === 0x7b /* { */) {
      open(scan, true);
      expectName = true;
    } else if (c === 0x5b /* [ */) {
      open(scan, false);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      scan.depth--;
      expectName = false;
    } else if (c === 0x2c /* , */) {
      const top = stack[scan.depth - 1] as Frame;
      if (top.object) expectName = true;
      else top.index++;
    }
    i++;
  }
  return null;
}
