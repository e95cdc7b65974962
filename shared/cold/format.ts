/**
 * The cold-storage object format (docs/cold-storage.md is the operator's description).
 *
 * Every object is gzip-compressed NDJSON: a header line, the content lines, and a trailer line
 * `{"sha256":"<hex>"}` holding the SHA-256 of every byte before it (header and content lines,
 * each with its `\n`, uncompressed). An operator checks one with standard tools:
 *
 *   gsutil cat gs://BUCKET/bundles/demo/000000000001-000000001000.ndjson.gz | zcat | head -n -1 | sha256sum
 *   gsutil cat gs://BUCKET/bundles/demo/000000000001-000000001000.ndjson.gz | zcat | tail -n 1
 *
 * A bundle's content lines are its patch records, one per line, `from` to `to` without a gap:
 *   {"patchbay":"bundle","v":1,"scope":"demo","from":1,"to":1000,"count":1000}
 *   {"ii":1,"patch":[...],"at":1700000000000,"by":"anon:...","session":"tab-1","si":7,"hash":"...","epoch":3}
 * A snapshot's one content line is the state at `ii`, as JSON:
 *   {"patchbay":"snapshot","v":1,"scope":"demo","ii":10000}
 *   {"count":10000,...}
 *
 * Decoding checks everything (gzip CRC, checksum, header against the expected name, indices
 * consecutive), so a damaged or misplaced object is an error, never wrong data (guarantee 6).
 * The content is deterministic for given records, so a rewrite of an object holds the same data
 * (writers still never replace an existing object: see ColdStore).
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { LogPatch } from '../ports/index.js';
import type { Patch, PatchRecord } from '../protocol.js';

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

export const FORMAT_VERSION = 1;

/** One record as a bundle line (with its `\n`). The scope is in the header, not on each line. */
export function recordLine(r: PatchRecord): string {
  return `${JSON.stringify({ ii: r.ii, patch: r.patch, at: r.at, by: r.by, session: r.session, si: r.si, hash: r.hash, epoch: r.epoch })}\n`;
}

async function encode(header: Record<string, unknown>, lines: readonly string[]): Promise<Uint8Array> {
  const hash = createHash('sha256');
  const head = `${JSON.stringify(header)}\n`;
  hash.update(head);
  for (const l of lines) hash.update(l);
  const trailer = `${JSON.stringify({ sha256: hash.digest('hex') })}\n`;
  const body = Buffer.from(head + lines.join('') + trailer, 'utf8');
  return new Uint8Array(await gzip(body));
}

/** A bundle of `lines` (from `recordLine`), which must be the records from..to in order. */
export function encodeBundle(scope: string, from: number, to: number, lines: readonly string[]): Promise<Uint8Array> {
  if (lines.length !== to - from + 1) throw new PatchbayError('internal', `a bundle ${from}..${to} needs ${to - from + 1} lines, got ${lines.length}`);
  return encode({ patchbay: 'bundle', v: FORMAT_VERSION, scope, from, to, count: lines.length }, lines);
}

/** A snapshot of the state at `ii`; `stateJson` is the state's JSON text. */
export function encodeSnapshot(scope: string, ii: number, stateJson: string): Promise<Uint8Array> {
  return encode({ patchbay: 'snapshot', v: FORMAT_VERSION, scope, ii }, [`${stateJson}\n`]);
}

function corrupt(key: string, why: string): PatchbayError {
  return new PatchbayError('internal', `cold object ${key} is damaged: ${why}`, { reason: 'cold_object_damaged', key });
}

/**
 * The text of each `\n`-terminated line of `buf`. Decoded line by line: one string of a whole
 * bundle (hundreds of KB) costs about ten times as much to make as its lines do one by one, and
 * a `\n` byte is never part of a multi-byte UTF-8 character, so the text is the same.
 */
function splitLines(buf: Buffer): string[] {
  const lines: string[] = [];
  for (let start = 0; start < buf.length; ) {
    const nl = buf.indexOf(0x0a, start);
    const end = nl < 0 ? buf.length : nl;
    lines.push(buf.toString('utf8', start, end));
    start = end + 1;
  }
  return lines;
}

/**
 * Unzipping in 1 MiB steps instead of zlib's 16 KiB: each step of the asynchronous unzip is a
 * round trip to the thread pool, and a bundle of 1,000 small patches (about 230 KB) took five
 * times as long in 16 KiB steps.
 */
const GUNZIP = { chunkSize: 1 << 20 };

/** Unzips, checks the trailer's checksum, and returns the header and the content lines' text. */
async function open(key: string, bytes: Uint8Array): Promise<{ header: Record<string, unknown>; lines: string[] }> {
  let buf: Buffer;
  try {
    buf = await gunzip(bytes, GUNZIP);
  } catch (err) {
    throw corrupt(key, `not gzip (${String(err)})`);
  }
  if (buf.length === 0 || buf[buf.length - 1] !== 0x0a) throw corrupt(key, 'does not end with a newline');
  const trailerStart = buf.lastIndexOf(0x0a, buf.length - 2) + 1;
  const body = buf.subarray(0, trailerStart);
  let trailer: unknown;
  try {
    trailer = JSON.parse(buf.subarray(trailerStart).toString('utf8'));
  } catch {
    throw corrupt(key, 'no trailer line');
  }
  const want = (trailer as { sha256?: unknown } | null)?.sha256;
  if (typeof want !== 'string') throw corrupt(key, 'no checksum in the trailer line');
  if (createHash('sha256').update(body).digest('hex') !== want) throw corrupt(key, 'checksum mismatch');
  const lines = splitLines(body);
  const first = lines.shift();
  if (first === undefined) throw corrupt(key, 'no header line');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(first) as Record<string, unknown>;
  } catch {
    throw corrupt(key, 'header is not JSON');
  }
  if (header.v !== FORMAT_VERSION) throw corrupt(key, `format version ${String(header.v)} is not ${FORMAT_VERSION}`);
  return { header, lines };
}

/** A bundle's content lines, checked against the scope and range its name promises. */
async function openBundle(key: string, bytes: Uint8Array, expect: { scope: string; from: number; to: number }): Promise<string[]> {
  const { header, lines } = await open(key, bytes);
  if (header.patchbay !== 'bundle' || header.scope !== expect.scope || header.from !== expect.from || header.to !== expect.to) {
    throw corrupt(key, `header ${JSON.stringify(header)} does not match ${expect.scope} ${expect.from}..${expect.to}`);
  }
  if (lines.length !== expect.to - expect.from + 1) throw corrupt(key, `${lines.length} records for ${expect.from}..${expect.to}`);
  return lines;
}

type Line = { ii: number; patch: Patch; at: number; by: string; session: string | null; si: number | null; hash: string; epoch: number };

/** Line i of a bundle, parsed, with the index it must have checked. */
function parseLine(key: string, line: string, i: number, from: number): Line {
  const r = JSON.parse(line) as Line;
  if (r.ii !== from + i) throw corrupt(key, `record ${i} has ii ${r.ii}, expected ${from + i}`);
  return r;
}

/** The records of a bundle, checked against the scope and range its name promises. */
export async function decodeBundle(key: string, bytes: Uint8Array, expect: { scope: string; from: number; to: number }): Promise<PatchRecord[]> {
  const lines = await openBundle(key, bytes, expect);
  return lines.map((line, i) => {
    const r = parseLine(key, line, i, expect.from);
    return { scope: expect.scope, ii: r.ii, patch: r.patch, at: r.at, by: r.by, session: r.session, si: r.si, hash: r.hash, epoch: r.epoch };
  });
}

/**
 * Only the ii and patch of a bundle's records (a rebuild's read), checked as decodeBundle checks
 * them, and parsed afresh on every call (the caller's own objects).
 */
export async function decodeBundlePatches(key: string, bytes: Uint8Array, expect: { scope: string; from: number; to: number }): Promise<LogPatch[]> {
  const lines = await openBundle(key, bytes, expect);
  return lines.map((line, i) => {
    const ii = expect.from + i;
    return { ii, patch: patchOf(line, ii) ?? parseLine(key, line, i, expect.from).patch };
  });
}

/**
 * The patch of a bundle line as `recordLine` writes it, `{"ii":<ii>,"patch":<patch>,"at":…}`,
 * parsed without the fields after it (a third of a typical line). The patch is the text between
 * the `"patch":` the line starts with and the last `,"at":` in it: those characters cannot occur
 * inside a JSON string (its quotes would be escaped), so after the patch only the record's own
 * `at` member can be such an occurrence; and the slice is taken only when it is one JSON array by
 * itself, which a patch followed by other members, or cut short, never is. The checksum has said
 * the line is what the writer wrote. Returns undefined for any other line (the caller then parses
 * the whole line, and checks it).
 */
function patchOf(line: string, ii: number): Patch | undefined {
  const prefix = `{"ii":${ii},"patch":`;
  if (!line.startsWith(prefix)) return undefined;
  const end = line.lastIndexOf(',"at":');
  if (end < prefix.length) return undefined;
  try {
    const patch: unknown = JSON.parse(line.slice(prefix.length, end));
    return Array.isArray(patch) ? (patch as Patch) : undefined;
  } catch {
    return undefined;
  }
}

/** The state of a snapshot, checked against the scope and index its name promises. */
export async function decodeSnapshot(key: string, bytes: Uint8Array, expect: { scope: string; ii: number }): Promise<Json> {
  const { header, lines } = await open(key, bytes);
  if (header.patchbay !== 'snapshot' || header.scope !== expect.scope || header.ii !== expect.ii) {
    throw corrupt(key, `header ${JSON.stringify(header)} does not match ${expect.scope} at ${expect.ii}`);
  }
  if (lines.length !== 1) throw corrupt(key, `${lines.length} content lines, expected 1`);
  return JSON.parse(lines[0] as string) as Json;
}
