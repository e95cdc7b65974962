/**
 * Documents to values and back for the Firestore ledger: log documents to PatchRecords, a head
 * document (plus the outbox's watermark and the cold pointer) to a Head, and the error codes the
 * modules tell apart. Firestore cannot store every JSON value faithfully (nested arrays, 20
 * levels at most, some keys), so states and patches are stored as JSON text and parsed here,
 * afresh on every read: what this returns is the caller's.
 */
import type { DocumentSnapshot } from '@google-cloud/firestore';
import { PatchbayError } from '../../../errors.js';
import type { Head, Lease, ScopeListing } from '../../../ports/index.js';
import type { Patch, PatchRecord, ScopeAccess, ScopeMeta } from '../../../protocol.js';

/**
 * The head document's fields that make a Head (the rest of a Head lives in other documents), and
 * `deleted`, which only a tombstone has (./delete.ts): read with them to tell one apart.
 */
export const HEAD_FIELDS = ['id', 'ii', 'epoch', 'lease', 'meta', 'deleted', 'wepoch'];
/**
 * The head's write epoch: the epoch of the scope's write lease (./leaders.ts), 0 before any. A
 * commit fenced by an epoch commits only while this is still that epoch.
 */
export const WEPOCH = 'wepoch';
/** The tombstone's mark (`deleted: {at, purged}`): a field only a deleted scope's head document has. */
export const DELETED = 'deleted';
/** The head document's fields that make a ScopeListing. */
export const LISTING_FIELDS = ['id', 'ii', 'meta'];
/**
 * The head document's fields a listing queries (ScopeLog.listFor): the owner, and the users the
 * access lists, stored in `meta.access` as arrays (so `array-contains` finds a user's shared
 * scopes), with the meta fields a listing filters by.
 */
export const LIST_BY = {
  owner: 'meta.owner',
  readers: 'meta.access.readers',
  writers: 'meta.access.writers',
  domain: 'meta.domain',
  type: 'meta.type',
  name: 'meta.name',
} as const;
/** The cold-pointer document's fields. */
export const POINTER_FIELDS = ['bundled', 'trimmed'];

/** gRPC codes: FAILED_PRECONDITION (a stale lastUpdateTime), ALREADY_EXISTS (create of an existing document). */
export const FAILED_PRECONDITION = 9;
export const ABORTED = 10;
export const ALREADY_EXISTS = 6;
export const NOT_FOUND = 5;

export function hasCode(err: unknown, code: number): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

export const num = (v: unknown, fallback = 0): number => (typeof v === 'number' ? v : fallback);

export function notFound(id: string): PatchbayError {
  return new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
}

/**
 * Whether a head document (read with `deleted` in its field mask) is a live scope's: it exists
 * and is no tombstone. Everything but ./delete.ts treats a tombstone as a missing scope.
 */
export function isLive(d: DocumentSnapshot | undefined): d is DocumentSnapshot {
  return d?.exists === true && d.get(DELETED) === undefined;
}

/** A log document as the record it holds. */
export function toRecord(d: DocumentSnapshot): PatchRecord {
  return {
    scope: d.get('scope'),
    ii: d.get('ii'),
    patch: JSON.parse(d.get('patch')) as Patch,
    at: d.get('at'),
    by: d.get('by'),
    session: d.get('session') ?? null,
    si: d.get('si') ?? null,
    hash: d.get('hash'),
    epoch: d.get('epoch'),
  };
}

/** The head's lease (null: none), as a plain object. */
export function leaseOf(d: DocumentSnapshot): Lease | null {
  const lease = d.get('lease') as Lease | null | undefined;
  return lease ? { holder: lease.holder, expires: lease.expires } : null;
}

/** `pointer` is the cold-pointer document (missing: nothing bundled or trimmed yet). */
export function toHead(d: DocumentSnapshot, published: number, pointer: DocumentSnapshot | undefined): Head {
  return {
    id: d.get('id'),
    ii: d.get('ii'),
    epoch: d.get('epoch'),
    lease: leaseOf(d),
    published,
    bundled: num(pointer?.get('bundled')),
    trimmed: num(pointer?.get('trimmed')),
    meta: metaOf(d),
  };
}

/** A head document as a listing shows it (its fields in LISTING_FIELDS). */
export function toListing(d: DocumentSnapshot): ScopeListing {
  return { id: d.get('id'), ii: d.get('ii'), meta: metaOf(d) };
}

/** The head document's `meta` as a fresh ScopeMeta. */
function metaOf(d: DocumentSnapshot): ScopeMeta {
  const m = d.get('meta') as ScopeMeta;
  const meta: ScopeMeta = {
    owner: m.owner,
    domain: m.domain,
    name: m.name ?? null,
    type: m.type ?? null,
    created: m.created,
    updated: m.updated,
    size: m.size,
  };
  if (m.access) meta.access = accessOf(m.access);
  return meta;
}

/** A stored `meta.access` map as a fresh ScopeAccess (missing: stored before access existed). */
export function accessOf(a: ScopeAccess): ScopeAccess {
  return { visibility: a.visibility, readers: [...(a.readers ?? [])], writers: [...(a.writers ?? [])], rev: num(a.rev) };
}
