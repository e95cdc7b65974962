/**
 * The embedded ledger's cold pointers and the lease that fences them (guarantee 6, the ledger's
 * half): `bundled` and `trimmed` are columns of the head row. Moving `bundled` and each trim
 * chunk (delete the oldest rows, move `trimmed`) are IMMEDIATE transactions that first check the
 * lease holder and epoch, so a fenced bundler changes nothing, and a crash between chunks leaves
 * the log contiguous from trimmed + 1. The log rows are the retry records, so trimming a row also
 * forgets its (session, si).
 */
import type Database from 'better-sqlite3';
import { PatchbayError } from '../../../errors.js';
import type { ColdPointers, Head, ScopeSummary } from '../../../ports/index.js';
import { HeadReader } from './schema.js';

export class SqliteColdPointers implements ColdPointers {
  private readonly heads: HeadReader;
  private readonly stmt;

  constructor(private readonly db: Database.Database) {
    this.heads = new HeadReader(db);
    this.stmt = {
      setLease: db.prepare('UPDATE scopes SET lease_holder = ?, lease_expires = ?, epoch = ? WHERE id = ?'),
      listScopes: db.prepare<[string, number], ScopeSummary>(
        'SELECT id, ii, bundled, trimmed FROM scopes WHERE id > ? AND deleted IS NULL ORDER BY id LIMIT ?',
      ),
      setBundled: db.prepare('UPDATE scopes SET bundled = ? WHERE id = ?'),
      trim: db.prepare('DELETE FROM patches WHERE scope = ? AND ii > ? AND ii <= ?'),
      setTrimmed: db.prepare('UPDATE scopes SET trimmed = ? WHERE id = ?'),
    };
  }

  async acquireLease(id: string, holder: string, ttlMs: number, now = Date.now()): Promise<number | null> {
    return this.db
      .transaction(() => {
        const head = this.heads.orThrow(id);
        const lease = head.lease;
        if (lease && lease.holder !== holder && lease.expires > now) return null;
        const epoch = lease && lease.holder === holder && lease.expires > now ? head.epoch : head.epoch + 1;
        this.stmt.setLease.run(holder, now + ttlMs, epoch, id);
        return epoch;
      })
      .immediate();
  }

  async releaseLease(id: string, holder: string, epoch: number): Promise<boolean> {
    return this.db
      .transaction(() => {
        const head = this.heads.orThrow(id);
        if (!head.lease || head.lease.holder !== holder || head.epoch !== epoch) return false;
        this.stmt.setLease.run(null, null, epoch, id);
        return true;
      })
      .immediate();
  }

  async listScopes(after: string, limit: number): Promise<ScopeSummary[]> {
    return this.stmt.listScopes.all(after, limit);
  }

  /** The head, if `holder` still holds the lease at `epoch` (see ColdPointers.advanceBundled). */
  private leased(id: string, holder: string, epoch: number): Head | null {
    const head = this.heads.orThrow(id);
    return head.lease?.holder === holder && head.epoch === epoch ? head : null;
  }

  async advanceBundled(id: string, holder: string, epoch: number, to: number): Promise<number | null> {
    return this.db
      .transaction(() => {
        const head = this.leased(id, holder, epoch);
        if (!head) return null;
        if (to > head.ii) throw new PatchbayError('internal', `cannot mark ${id} bundled up to ${to}: head is ${head.ii}`);
        if (to <= head.bundled) return head.bundled;
        this.stmt.setBundled.run(to, id);
        return to;
      })
      .immediate();
  }

  async trimLog(id: string, holder: string, epoch: number, upTo: number, limit: number): Promise<number | null> {
    return this.db
      .transaction(() => {
        const head = this.leased(id, holder, epoch);
        if (!head) return null;
        if (upTo > head.bundled) throw new PatchbayError('internal', `cannot trim ${id} up to ${upTo}: only ${head.bundled} is bundled`);
        const end = Math.min(upTo, head.trimmed + Math.max(1, limit));
        if (end <= head.trimmed) return head.trimmed;
        this.stmt.trim.run(id, head.trimmed, end);
        this.stmt.setTrimmed.run(end, id);
        return end;
      })
      .immediate();
  }
}
