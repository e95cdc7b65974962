/**
 * A Ledger made of one object per role (shared/ports/ledger.ts): what each adapter is, so that
 * each role lives in its own module with its own guarantee, and the adapter's class only builds
 * them. Every method goes to the role that owns it; this adds no behaviour of its own.
 */
import type { Json } from '../json.js';
import type { PatchRecord, ScopeAccess } from '../protocol.js';
import type {
  ColdPointers,
  ConsumerCursors,
  Deletions,
  Head,
  Ledger,
  ListPage,
  ListQuery,
  LogPatch,
  NewScope,
  Outbox,
  Plan,
  ScopeLog,
  ScopeSummary,
  Tombstone,
} from './ledger.js';

export interface LedgerRoles {
  log: ScopeLog;
  outbox: Outbox;
  cold: ColdPointers;
  cursors: ConsumerCursors;
  deletions: Deletions;
  /** Releases what the roles share (a connection); see Ledger.close. */
  close(): Promise<void>;
}

export class ComposedLedger implements Ledger {
  constructor(private readonly roles: LedgerRoles) {}

  createScope(scope: NewScope): Promise<Head> {
    return this.roles.log.createScope(scope);
  }

  resolveName(domain: string, owner: string, name: string): Promise<string | null> {
    return this.roles.log.resolveName(domain, owner, name);
  }

  rename(id: string, name: string | null): Promise<void> {
    return this.roles.log.rename(id, name);
  }

  getHead(id: string): Promise<Head | null> {
    return this.roles.log.getHead(id);
  }

  getInitial(id: string): Promise<Json | null> {
    return this.roles.log.getInitial(id);
  }

  commit<T>(id: string, plan: Plan<T>, fence?: number): Promise<T> {
    return this.roles.log.commit(id, plan, fence);
  }

  setAccess(id: string, access: Omit<ScopeAccess, 'rev'>, expectedRev: number): Promise<ScopeAccess | null> {
    return this.roles.log.setAccess(id, access, expectedRev);
  }

  listFor(user: string, query: ListQuery): Promise<ListPage> {
    return this.roles.log.listFor(user, query);
  }

  readLog(id: string, from: number, to: number, limit?: number): Promise<PatchRecord[]> {
    return this.roles.log.readLog(id, from, to, limit);
  }

  readPatches(id: string, from: number, to: number, limit?: number): Promise<LogPatch[]> {
    return this.roles.log.readPatches(id, from, to, limit);
  }

  markPublished(id: string, to: number, from?: number): Promise<void> {
    return this.roles.outbox.markPublished(id, to, from);
  }

  listUnpublished(before: number, limit: number): Promise<Array<{ id: string; published: number; ii: number }>> {
    return this.roles.outbox.listUnpublished(before, limit);
  }

  acquireLease(id: string, holder: string, ttlMs: number, now?: number): Promise<number | null> {
    return this.roles.cold.acquireLease(id, holder, ttlMs, now);
  }

  releaseLease(id: string, holder: string, epoch: number): Promise<boolean> {
    return this.roles.cold.releaseLease(id, holder, epoch);
  }

  listScopes(after: string, limit: number): Promise<ScopeSummary[]> {
    return this.roles.cold.listScopes(after, limit);
  }

  advanceBundled(id: string, holder: string, epoch: number, to: number): Promise<number | null> {
    return this.roles.cold.advanceBundled(id, holder, epoch, to);
  }

  trimLog(id: string, holder: string, epoch: number, upTo: number, limit: number): Promise<number | null> {
    return this.roles.cold.trimLog(id, holder, epoch, upTo, limit);
  }

  getCursor(consumer: string, id: string): Promise<number> {
    return this.roles.cursors.getCursor(consumer, id);
  }

  advanceCursor(consumer: string, id: string, expected: number, to: number): Promise<boolean> {
    return this.roles.cursors.advanceCursor(consumer, id, expected, to);
  }

  deleteScope(id: string, at: number): Promise<Head | null> {
    return this.roles.deletions.deleteScope(id, at);
  }

  purgeScope(id: string, limit: number): Promise<boolean> {
    return this.roles.deletions.purgeScope(id, limit);
  }

  markPurged(id: string): Promise<boolean> {
    return this.roles.deletions.markPurged(id);
  }

  listDeleted(before: number, limit: number): Promise<Tombstone[]> {
    return this.roles.deletions.listDeleted(before, limit);
  }

  dropTombstone(id: string, before: number): Promise<boolean> {
    return this.roles.deletions.dropTombstone(id, before);
  }

  close(): Promise<void> {
    return this.roles.close();
  }
}
