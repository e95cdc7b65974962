/**
 * Port: the record store, patchbay's control plane. Small versioned JSON records, each under a
 * kind (`domain`, `claim`, `service-token`, `config-version`, ...) and a key, written rarely and
 * only by compare-and-set, read by the module that owns the kind (shared/domains/), usually
 * through a short cache. Scope state never lives here: that is the ledger's.
 *
 * The guarantee kept by every adapter: a record changes only from the revision its writer read.
 * `put` and `delete` are compare-and-set on `rev` (0 means "does not exist"), so of two racing
 * writers exactly one wins and the other changes nothing and learns it (null / false); a reader
 * never sees a half-written record.
 *
 * Limits every adapter accepts (and callers stay within): a kind is 1..64 characters of
 * `[a-z0-9-]`; a key is 1..512 characters of any Unicode except U+0000; a value is JSON of at
 * most 512 KiB (UTF-8, as `JSON.stringify` writes it). Past them an adapter throws PatchbayError
 * `internal`: a caller that lets user input reach a key or a value checks its size first.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';

export interface StoredRecord<T extends Json = Json> {
  key: string;
  value: T;
  /** 1 after the first put; each successful put adds 1. */
  rev: number;
}

export interface ListOptions {
  /** Only keys that start with this (absent: every key of the kind). */
  prefix?: string;
  /** Only keys that sort after this one, in the adapter's key order (absent: from the first). */
  after?: string;
  /** Most records returned (at least 1). */
  limit: number;
}

export interface PutOptions {
  /**
   * When the record may go (ms since the epoch): from then on the store may delete it at any
   * moment, without a revision check, or keep it. Only for records whose owner deletes them
   * itself (a sweep) and merely wants a backstop: the owner must not rely on either outcome.
   * Firestore keeps it as the timestamp field `expireAt` (RECORD_TTL_FIELD), which the TTL policy
   * the deploy sets on the kind's collection group reads (infra/deploy/desired.ts,
   * EXPIRING_RECORD_KINDS); the SQLite store ignores it. A later put without it clears it.
   */
  expireAt?: number;
}

/** The field a Firestore TTL policy reads (PutOptions.expireAt). */
export const RECORD_TTL_FIELD = 'expireAt';
/** How long after its owner would have deleted it a record is left to a TTL backstop (Firestore deletes within about a day of the expiry). */
export const RECORD_TTL_GRACE_MS = 24 * 3_600_000;

export interface RecordStore {
  /** The record of `kind` under `key`, or null when there is none. */
  get(kind: string, key: string): Promise<StoredRecord | null>;
  /**
   * Stores `value` under (kind, key) at revision expectedRev + 1, if the stored revision is
   * `expectedRev` (0: only if no record exists), in one atomic step, and returns the record as
   * stored. When the revision is not `expectedRev`, changes nothing and returns null. `opts`:
   * an expiry (PutOptions).
   */
  put(kind: string, key: string, value: Json, expectedRev: number, opts?: PutOptions): Promise<StoredRecord | null>;
  /** Removes the record if its revision is `expectedRev`; returns whether it did (false: it moved, or there is none). */
  delete(kind: string, key: string, expectedRev: number): Promise<boolean>;
  /**
   * Records of `kind` whose key starts with `prefix` and sorts after `after`, ascending in the
   * adapter's key order (the order `after` compares in: SQLite, UTF-8 bytes; Firestore, its
   * document ids), at most `limit`. A record put or deleted during a walk of pages is seen
   * on a later page or not at all, never twice.
   */
  list(kind: string, opts: ListOptions): Promise<StoredRecord[]>;
}

export const RECORD_KIND = /^[a-z0-9-]{1,64}$/;
export const MAX_RECORD_KEY = 512;
export const MAX_RECORD_BYTES = 512 * 1024;

/**
 * Checks a kind, a key and a value against the limits above, for adapters; returns the value's
 * JSON text (when a value is given). Throws PatchbayError `internal`: input that reaches this far
 * unchecked is the caller's bug.
 */
export function checkRecord(kind: string, key?: string, value?: Json): string {
  if (!RECORD_KIND.test(kind)) throw new PatchbayError('internal', `record kind ${JSON.stringify(kind)} is not [a-z0-9-]{1,64}`);
  if (key !== undefined && (key.length === 0 || key.length > MAX_RECORD_KEY || key.includes('\u0000'))) {
    throw new PatchbayError('internal', `a record key must be 1..${MAX_RECORD_KEY} characters without U+0000`);
  }
  if (value === undefined) return '';
  const text = JSON.stringify(value);
  if (Buffer.byteLength(text, 'utf8') > MAX_RECORD_BYTES) throw new PatchbayError('internal', `a record value is at most ${MAX_RECORD_BYTES} bytes`);
  return text;
}
