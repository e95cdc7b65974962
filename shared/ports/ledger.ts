/**
 * The ledger port: the per-scope serialization point. It keeps each scope's head (ii, epoch,
 * lease, published watermark, metadata), the patch log, and what a retry needs to be recognised.
 *
 * It plays five roles, each its own interface below, and `Ledger` is all of them in one object
 * (what an adapter implements and the app wires): `ScopeLog` (scopes, heads, commits and log
 * reads; `LogReader` is its reading half), `Outbox` (the published watermark), `ColdPointers`
 * (the lease, `bundled` and `trimmed`), `ConsumerCursors` and `Deletions` (a deleted scope's
 * tombstone and the purge of what it stored). Code that uses a ledger takes only
 * the roles it needs, so what it may change is visible in its signature.
 *
 * Guarantee 1 is enforced by `commit`: a plan's records are written in the same atomic step as
 * the head they advance, and only if the head the plan saw is still the head. A plan may be run
 * more than once (a retried transaction), so it must have no side effects.
 *
 * Guarantee 6 (cold storage plus the log tail hold every patch) rests on two pointers and the
 * lease: `bundled` (cold storage holds 1..bundled) only rises, and only for the lease holder;
 * `trimLog` removes records only up to `bundled`, oldest first, moving `trimmed` in the same
 * atomic step, and only for the lease holder. So 1..trimmed is in cold storage and
 * trimmed+1..ii is in the hot log, at every moment, and a bundler whose lease passed on (a new
 * epoch) can change neither pointer.
 *
 * Deletion (`Deletions`) is a tombstone first, in one atomic step, then a purge. From the moment
 * `deleteScope` returns, the scope is gone for every other method of every role, exactly as if
 * it had never existed (getHead and getInitial answer null; commit, setAccess, acquireLease,
 * releaseLease, advanceBundled and trimLog throw `scope_not_found`; listFor, listScopes and listUnpublished
 * skip it), except `createScope`, which keeps answering `scope_exists` while the tombstone is
 * kept: the id stays reserved, also for its former owner (see Deletions).
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { Patch, PatchRecord, ScopeAccess, ScopeMeta } from '../protocol.js';

export interface Lease {
  holder: string;
  /** ms since epoch. */
  expires: number;
}

export interface Head {
  id: string;
  /** Number of accepted patches. */
  ii: number;
  /** Lease generation; bumped every time a new holder takes the lease. */
  epoch: number;
  lease: Lease | null;
  /** Every patch with index <= published has been handed to the bus. */
  published: number;
  /** Every patch with index <= bundled is in cold storage. bundled <= ii. */
  bundled: number;
  /**
   * Every patch with index <= trimmed has been removed from the hot log, which holds exactly
   * trimmed+1..ii (so the hot log starts at trimmed + 1). trimmed <= bundled.
   */
  trimmed: number;
  meta: ScopeMeta;
}

/** What the bundler needs to know about a scope to decide whether it has work. */
export interface ScopeSummary {
  id: string;
  ii: number;
  bundled: number;
  trimmed: number;
}

/** What a state rebuild needs of a record: its index and its patch. */
export interface LogPatch {
  ii: number;
  patch: Patch;
}

/** A scope as a listing shows it (ScopeLog.listFor): no lease, watermark or cold pointers. */
export interface ScopeListing {
  id: string;
  ii: number;
  meta: ScopeMeta;
}

/** Which scopes of a user `listFor` returns, and from where. */
export interface ListQuery {
  /** Only scopes with these meta fields (each absent: any). */
  domain?: string;
  type?: string;
  name?: string;
  /** Where the previous page ended: its `next` (absent: the first page). A string no page returned may throw `invalid_request`. */
  after?: string;
  /** Most scopes in the page (at least 1). */
  limit: number;
}

export interface ListPage {
  scopes: ScopeListing[];
  /** What to pass as `after` for the next page; null when this page is the last. */
  next: string | null;
}

export interface NewScope {
  id: string;
  meta: ScopeMeta;
  /** State at ii = 0. */
  initial: Json;
}

/** What a commit plan may look at, inside the ledger's transaction. */
export interface TxView {
  readonly head: Head;
  /**
   * The accepted patches recorded under these (session, si) keys, by `${session}\u0000${si}`.
   * The answer holds when the plan's records commit, for every key asked about: a plan may
   * refuse a request for not being a recorded retry (an ii behind head) and commit other
   * records in the same step.
   */
  findRetries(keys: ReadonlyArray<{ session: string; si: number }>): Promise<Map<string, PatchRecord>>;
}

export interface CommitPlan<T> {
  /** Records to append: consecutive indices starting at head.ii + 1. Empty: write nothing. */
  records: PatchRecord[];
  /** New metadata for the head, written with the records. */
  meta?: Pick<ScopeMeta, 'updated' | 'size'>;
  result: T;
}

export type Plan<T> = (view: TxView) => Promise<CommitPlan<T>>;

export const retryKey = (session: string, si: number): string => `${session}\u0000${si}`;

/** The error createScope and rename throw for a name that names another scope (ScopeLog). */
export function nameTaken(domain: string, name: string): PatchbayError {
  return new PatchbayError('name_taken', `a scope named ${JSON.stringify(name)} already exists`, { name, domain });
}

/**
 * The scope log: scopes, their heads and their patch logs. Guarantee 1 is enforced by `commit`.
 * Every writer and reader of patches needs this role; most need only its reading half
 * (`LogReader`).
 */
export interface LogReader {
  /** The head, or null when the scope does not exist. */
  getHead(id: string): Promise<Head | null>;
  /** The state at ii = 0, or null when the scope does not exist. */
  getInitial(id: string): Promise<Json | null>;
  /**
   * Records of the hot log with from <= ii <= to, ascending, at most `limit` of them. Records at
   * or below `trimmed` are no longer here (they are in cold storage: see shared/cold/log.ts).
   */
  readLog(id: string, from: number, to: number, limit?: number): Promise<PatchRecord[]>;
  /**
   * Exactly what `readLog` returns for the same arguments, but only each record's ii and patch:
   * the read a state rebuild makes, which adapters can serve without decoding the rest.
   * The returned objects are the caller's: fresh on every call (parsed from what is stored, never
   * a cached or stored object), so a rebuild may fold the patches' values into its state, where
   * later patches change them, without copying them first (shared/cold/fold.ts).
   */
  readPatches(id: string, from: number, to: number, limit?: number): Promise<LogPatch[]>;
}

/** The scope log with its writing half: creating scopes and committing patches (guarantee 1). */
export interface ScopeLog extends LogReader {
  /**
   * Creates a scope at ii = 0. Throws PatchbayError `scope_exists` if the id is taken (checked
   * first), `name_taken` if `meta.name` is not null and (meta.domain, meta.owner, meta.name)
   * already names a scope (see `resolveName`); either way nothing is written. A scope created with
   * a name holds it, in the same atomic step as the head is created: of any number of concurrent
   * creates under one name, exactly one succeeds.
   */
  createScope(scope: NewScope): Promise<Head>;
  /**
   * The id of the scope that (domain, owner, name) names, or null. A name names at most one scope:
   * the one created with it or renamed to it last, until it is renamed away (or, with deletion,
   * deleted). Scopes stored before names were unique may share a name: of those, the newest
   * (`meta.created`, then the greater id) holds it, and an adapter may register that holding
   * lazily, on this call (so a name doc or row then exists for it, exactly as if it had been
   * created with it: later creates under the name are refused). The others keep `meta.name` as
   * it was (listings show it) but are not found by it. Never an id whose `meta.name` differs:
   * once this returns an id, that scope had this name at some point since the call began.
   */
  resolveName(domain: string, owner: string, name: string): Promise<string | null>;
  /**
   * Gives the scope the name `name` (null: no name), in one atomic step that frees the name it
   * held (if it held one) and takes the new one, and sets `meta.name`. Nothing else of the head
   * changes. Throws `scope_not_found` when the scope does not exist, `name_taken` (changing
   * nothing) when (meta.domain, meta.owner, name) names another scope. Renaming a scope to the
   * name it has changes nothing. Concurrent renames and creates never leave one name on two
   * scopes: one of them wins, the others throw `name_taken`. Whether the caller may rename is
   * the engine's business (the owner only).
   */
  rename(id: string, name: string | null): Promise<void>;
  /**
   * Runs `plan` against the current head and atomically appends its records and moves the head
   * to the last record's index. Throws `scope_not_found` when the scope does not exist.
   * `fence`: the write-lease epoch the caller holds (shared/ports/leaders.ts): the commit then
   * happens only while the scope's write epoch is still `fence`, and otherwise writes nothing and
   * throws `unavailable` with `details.reason` `write_lease_lost`. Only ledgers shared by several
   * instances have write leases (Firestore); callers of the others (SQLite, one process) never
   * pass a fence.
   */
  commit<T>(id: string, plan: Plan<T>, fence?: number): Promise<T>;
  /**
   * Replaces the scope's access (`meta.access`) with `access` at revision `expectedRev + 1`, if
   * its stored revision is still `expectedRev` (a scope stored without access is at revision 0),
   * in one atomic step; returns the access as stored. When the revision moved, changes nothing
   * and returns null: the caller reads the head again and decides again. Nothing else of the
   * head changes (ii, epoch, lease, the other meta fields, the cold pointers, the watermark).
   * Throws `scope_not_found` when the scope does not exist.
   *
   * The access and the commits are ordered: a `commit` whose plan saw the access as it was
   * before this call writes nothing and runs its plan again on the new head. So a write that
   * the old access allowed and the new one refuses is never accepted once this has returned.
   */
  setAccess(id: string, access: Omit<ScopeAccess, 'rev'>, expectedRev: number): Promise<ScopeAccess | null>;
  /**
   * The scopes `user` owns or is listed in (`meta.access` readers or writers; not those a
   * visibility merely lets it read), that match the query's meta fields, one page of at most
   * `limit`, in an order of the adapter's own that every page keeps: following `next` from the
   * first page visits each such scope once, and a scope created, shared or unshared meanwhile is
   * listed on the pages still to come or not at all, never twice. `next` is opaque to the
   * caller; a page may be shorter than `limit` and still have a `next` (an empty last page).
   * Each scope's access is stored as `setAccess` or `createScope` last left it, so a user
   * removed from a scope no longer lists it once `setAccess` has returned.
   */
  listFor(user: string, query: ListQuery): Promise<ListPage>;
}

/**
 * The outbox: the log record is the outbox, and the head's `published` watermark says how much
 * of it has certainly been handed to the bus. Used by the publisher after a commit
 * (shared/engine/watermarks.ts) and by the sweeper, which republishes what a crash left behind.
 */
export interface Outbox {
  /**
   * Moves the published watermark up to `to`, never down. With `from`, only if the watermark is
   * already at least `from - 1`: a publisher marks exactly the run [from..to] it published, so a
   * run that failed to publish before it can never be skipped (the sweeper fills it in).
   */
  markPublished(id: string, to: number, from?: number): Promise<void>;
  /**
   * Scopes whose head is past their published watermark, and have been since before `before`
   * (the watermark has not caught up since then), oldest first. A scope written continuously is
   * listed all the same: what counts is how long a patch has waited, not when the last one came.
   */
  listUnpublished(before: number, limit: number): Promise<Array<{ id: string; published: number; ii: number }>>;
}

/**
 * Cold pointers and the lease that fences them (guarantee 6, the ledger's half: see the top of
 * this file). Used by the bundler (shared/cold/bundler.ts) and the operator CLI.
 */
export interface ColdPointers {
  /**
   * Takes the scope's lease for `holder` until now + ttlMs if it is free, expired or already
   * held by `holder`. A new holder bumps the epoch. Returns the epoch, or null if another holder
   * has it. Throws `scope_not_found`.
   */
  acquireLease(id: string, holder: string, ttlMs: number, now?: number): Promise<number | null>;
  /** Releases the lease if `holder` still holds it at `epoch`; returns whether it did. A holder whose lease expired gets a new epoch on its next acquire, like any new holder. */
  releaseLease(id: string, holder: string, epoch: number): Promise<boolean>;
  /**
   * Scopes whose id sorts after `after` (plain string order; '' for the first page), ascending
   * by id, at most `limit`: how the bundler walks every scope.
   */
  listScopes(after: string, limit: number): Promise<ScopeSummary[]>;
  /**
   * Records that cold storage now holds every patch up to `to`: moves `bundled` to `to`, never
   * down. Only for the lease holder: when the lease is no longer `holder`'s at `epoch` (it was
   * released, or taken over after it expired: a new epoch), changes nothing and returns null.
   * The check is the epoch, not the clock: a holder whose lease expired but that nobody took
   * over still passes. Returns `bundled` afterwards. Throws `internal` when `to` is past ii,
   * `scope_not_found` when there is no such scope.
   */
  advanceBundled(id: string, holder: string, epoch: number, to: number): Promise<number | null>;
  /**
   * Removes the oldest records of the hot log: those with trimmed < ii <= min(upTo, trimmed + limit),
   * together with what recognises them as retries, and moves `trimmed` to the last one removed,
   * all in one atomic step (so a crash between calls leaves a contiguous tail). Only for the lease
   * holder at `epoch` (else null, nothing changed, as for advanceBundled), and never past
   * `bundled`: `upTo` > bundled throws `internal` and changes nothing. Returns `trimmed`
   * afterwards; the caller repeats until it reaches `upTo`. An adapter may remove fewer than
   * `limit` records per call (its own transaction limit), never more, and at least one while
   * trimmed < upTo.
   */
  trimLog(id: string, holder: string, epoch: number, upTo: number, limit: number): Promise<number | null>;
}

/**
 * Consumer cursors: how far each push consumer (shared/engine/consumer.ts) has handled each
 * scope, moved by compare-and-set so that a redelivered or concurrent event is handled once.
 * A cursor may exist for a scope id the log does not know.
 */
export interface ConsumerCursors {
  /** The last index consumer `consumer` has handled for the scope; 0 when it has handled none. */
  getCursor(consumer: string, id: string): Promise<number>;
  /**
   * Moves the consumer's cursor from `expected` to `to` (> expected) atomically. Returns false,
   * changing nothing, when the cursor is not at `expected` (a concurrent delivery moved it).
   * Throws `internal` when `to` <= `expected`.
   */
  advanceCursor(consumer: string, id: string, expected: number, to: number): Promise<boolean>;
}

/** A deleted scope's tombstone: what is kept of it until `dropTombstone` (Deletions). */
export interface Tombstone {
  id: string;
  /** The former owner and domain (kept so an operator can tell whose id is reserved). */
  owner: string;
  domain: string;
  /** When it was deleted (ms since epoch, the `at` given to deleteScope). */
  deleted: number;
  /** Whether the purge has finished (`markPurged`): nothing of the scope is stored but this. */
  purged: boolean;
}

/**
 * Deleting a scope: a tombstone written in one atomic step, then a purge in bounded chunks, each
 * repeatable, so a crash anywhere leaves a tombstone whose purge the next sweep finishes
 * (shared/engine/deleter.ts). The tombstone keeps the id reserved: `createScope` of it throws
 * `scope_exists` for everyone, the former owner included, until `dropTombstone` (a scope made
 * again under the same id could otherwise meet a cache entry of the old one at the same ii).
 */
export interface Deletions {
  /**
   * Replaces the scope's head by a tombstone (deleted at `at`, not purged), in one atomic step,
   * and returns the head as it was. From then on every other method treats the scope as missing
   * (see the top of this file); its lease is dropped and its epoch bumped, so a bundler that held
   * it is fenced. Ordered with commits as `setAccess` is: a commit whose plan saw the live head
   * either committed before this call took effect (and its records are then purged with the
   * rest) or writes nothing and throws `scope_not_found`. Its name (if it has one) is freed in the
   * same step: `resolveName` no longer finds it, and its owner may give the name to another scope
   * at once (only the id stays reserved). Returns null, changing nothing, when there is no live
   * scope `id` (never created, or already deleted).
   */
  deleteScope(id: string, at: number): Promise<Head | null>;
  /**
   * Removes at most `limit` (at least 1; an adapter may remove fewer, its own transaction limit)
   * of what the deleted scope `id` still stores besides its tombstone: its log and retry
   * records, consumer cursors, listing rows, watermark and cold pointers. Returns true when
   * nothing of that is left. Idempotent and repeatable: a call cut short by a crash leaves the
   * rest for the next. Does nothing and returns true for an id with no tombstone.
   */
  purgeScope(id: string, limit: number): Promise<boolean>;
  /**
   * Marks the tombstone purged (the caller has purged the ledger's part and what it stores
   * elsewhere: cold storage). Returns false when there is no tombstone `id`.
   */
  markPurged(id: string): Promise<boolean>;
  /**
   * Tombstones whose purge is unfinished, and those deleted before `before` (purged or not: the
   * retention period is over), at most `limit` in all, in an order of the adapter's own. A
   * tombstone drops out of the listing once purged (and, past `before`, once dropped), so a
   * sweeper that works through a page and lists again makes progress without a cursor.
   */
  listDeleted(before: number, limit: number): Promise<Tombstone[]>;
  /**
   * Removes a purged tombstone deleted before `before`: the id is free again (createScope may
   * take it). Returns false, changing nothing, for an unpurged, younger or missing one.
   */
  dropTombstone(id: string, before: number): Promise<boolean>;
}

/**
 * Every role in one object: what an adapter implements and the app wires. Code that uses the
 * ledger takes only the roles it needs.
 */
export interface Ledger extends ScopeLog, Outbox, ColdPointers, ConsumerCursors, Deletions {
  close(): Promise<void>;
}
