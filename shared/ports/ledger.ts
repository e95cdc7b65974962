/**
 * The ledger port: the per-scope serialization point. It keeps each scope's head (ii, epoch,
 * lease, published watermark, metadata), the patch log, and what a retry needs to be recognised.
 *
 * Guarantee 1 is enforced by `commit`: a plan's records are written in the same atomic step as
 * the head they advance, and only if the head the plan saw is still the head. A plan may be run
 * more than once (a retried transaction), so it must have no side effects.
 */
import type { Json } from '../json.js';
import type { PatchRecord, ScopeMeta } from '../protocol.js';

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
  /** Every patch with index <= bundled is in cold storage (0 until bundling exists). */
  bundled: number;
  meta: ScopeMeta;
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
  /** The accepted patches recorded under these (session, si) keys, by `${session}\u0000${si}`. */
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

export interface Ledger {
  /** Creates a scope at ii = 0. Throws PatchbayError `scope_exists` if the id is taken. */
  createScope(scope: NewScope): Promise<Head>;
  /** The head, or null when the scope does not exist. */
  getHead(id: string): Promise<Head | null>;
  /** The state at ii = 0, or null when the scope does not exist. */
  getInitial(id: string): Promise<Json | null>;
  /**
   * Runs `plan` against the current head and atomically appends its records and moves the head
   * to the last record's index. Throws `scope_not_found` when the scope does not exist.
   */
  commit<T>(id: string, plan: Plan<T>): Promise<T>;
  /** Records with from <= ii <= to, ascending, at most `limit` of them. */
  readLog(id: string, from: number, to: number, limit?: number): Promise<PatchRecord[]>;
  /**
   * Moves the published watermark up to `to`, never down. With `from`, only if the watermark is
   * already at least `from - 1`: a publisher marks exactly the run [from..to] it published, so a
   * run that failed to publish before it can never be skipped (the sweeper fills it in).
   */
  markPublished(id: string, to: number, from?: number): Promise<void>;
  /** Scopes whose head is past their published watermark and was last updated before `before`. */
  listUnpublished(before: number, limit: number): Promise<Array<{ id: string; published: number; ii: number }>>;
  /**
   * Takes the scope's lease for `holder` until now + ttlMs if it is free, expired or already
   * held by `holder`. A new holder bumps the epoch. Returns the epoch, or null if another holder
   * has it. Throws `scope_not_found`.
   */
  acquireLease(id: string, holder: string, ttlMs: number, now?: number): Promise<number | null>;
  /** Releases the lease if `holder` still holds it at `epoch`; returns whether it did. A holder whose lease expired gets a new epoch on its next acquire, like any new holder. */
  releaseLease(id: string, holder: string, epoch: number): Promise<boolean>;
  /** The last index consumer `consumer` has handled for the scope; 0 when it has handled none. */
  getCursor(consumer: string, id: string): Promise<number>;
  /**
   * Moves the consumer's cursor from `expected` to `to` (> expected) atomically. Returns false,
   * changing nothing, when the cursor is not at `expected` (a concurrent delivery moved it).
   */
  advanceCursor(consumer: string, id: string, expected: number, to: number): Promise<boolean>;
  close(): Promise<void>;
}
