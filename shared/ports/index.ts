import type { BlobStore } from './blobs.js';
import type { Bus } from './bus.js';
import type { HotCache } from './cache.js';
import type { ScopeLeaders } from './leaders.js';
import type { Ledger } from './ledger.js';
import type { RecordStore } from './records.js';

export type { BlobStore } from './blobs.js';
export type { Bus, Listener, ScopeSignal, SignalListener } from './bus.js';
export type { CachedState, HotCache } from './cache.js';
export { ComposedLedger, type LedgerRoles } from './composed-ledger.js';
export type { IdentityProvider, Profile, VerifiedIdentity } from './identity.js';
export type { HandedOutcome, HandedRequest, InboxRequest, LeaseAnswer, ScopeLeaders } from './leaders.js';
export type {
  ColdPointers,
  CommitPlan,
  ConsumerCursors,
  Deletions,
  Head,
  Lease,
  Ledger,
  ListPage,
  ListQuery,
  LogPatch,
  LogReader,
  NewScope,
  Outbox,
  Plan,
  ScopeListing,
  ScopeLog,
  ScopeSummary,
  Tombstone,
  TxView,
} from './ledger.js';
export { nameTaken, retryKey } from './ledger.js';
export type { LimitStore, RateDecision, RateRule, Usage } from './limits.js';
export type { ListOptions, RecordStore, StoredRecord } from './records.js';

/** One adapter for each port: what the engine runs on. */
export interface Adapters {
  ledger: Ledger;
  cache: HotCache;
  bus: Bus;
  blobs: BlobStore;
  /** The control plane's records (domains, claims, service tokens, configuration versions). */
  records: RecordStore;
  /**
   * Scope leaders: present when several instances share the ledger (Google), so each scope is
   * committed by one of them at a time (shared/engine/leading.ts); absent embedded.
   */
  leaders?: ScopeLeaders;
}
