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

/** Unzips, checks the trailer's checksum, and returns the header and the content lines' text. */
async function open(key: string, bytes: Uint8Array): Promise<{ header: Record<string, unknown>; lines: string[] }> {
  let buf: Buffer;
  try {
    buf = await gunzip(bytes);
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
  const lines = body.toString('utf8').split('\n');
  lines.pop(); // the empty string after the last \n
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

/** The records of a bundle, checked against the scope and range its name promises. */
export async function decodeBundle(key: string, bytes: Uint8Array, expect: { scope: string; from: number; to: number }): Promise<PatchRecord[]> {
  const { header, lines } = await open(key, bytes);
  if (header.patchbay !== 'bundle' || header.scope !== expect.scope || header.from !== expect.from || header.to !== expect.to) {
    throw corrupt(key, `header ${JSON.stringify(header)} does not match ${expect.scope} ${expect.from}..${expect.to}`);
  }
  if (lines.length !== expect.to - expect.from + 1) throw corrupt(key, `${lines.length} records for ${expect.from}..${expect.to}`);
  return lines.map((line, i) => {
    const r = JSON.parse(line) as { ii: number; patch: Patch; at: number; by: string; session: string | null; si: number | null; hash: string; epoch: number };
    if (r.ii !== expect.from + i) throw corrupt(key, `record ${i} has ii ${r.ii}, expected ${expect.from + i}`);
    return { scope: expect.scope, ii: r.ii, patch: r.patch, at: r.at, by: r.by, session: r.session, si: r.si, hash: r.hash, epoch: r.epoch };
  });
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
