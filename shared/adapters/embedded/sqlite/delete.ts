/**
 * The embedded ledger's deletions (the Deletions role of shared/ports/ledger.ts): a deleted
 * scope's row stays as its tombstone (`deleted` = when, `purged` once the purge is done), with
 * its owner and domain, so its id stays taken (createScope's insert finds the row).
 *
 * The guarantee kept here: the tombstone is one UPDATE of the head row in the write queue
 * (./write-queue.ts, durable, like a commit), conditional on the row being live, and every other
 * statement of the ledger that reads or moves a head requires `deleted IS NULL` (./schema.ts's
 * HeadReader, the commit's compare-and-set in ./log.ts, setAccess, listFor, listScopes). So a
 * commit planned on the live head either committed before the tombstone (its records are then
 * purged with the rest) or its compare-and-set fails and the next head read says
 * `scope_not_found`. The same write drops the lease (and bumps the epoch: a bundler that held it
 * is fenced), stops the outbox clock, clears what the row held of the scope's content (initial
 * state, name, type, access) and removes its `members` rows, so no listing shows it. The purge
 * then deletes the log rows and consumer cursors in chunks, each its own transaction: a crash
 * between chunks leaves a tombstone with fewer rows, which the next purge finishes.
 */
import type Database from 'better-sqlite3';
import type { Deletions, Head, Tombstone } from '../../../ports/index.js';
import { HeadReader } from './schema.js';
import type { WriteQueue } from './write-queue.js';

interface TombstoneRow {
  id: string;
  owner: string;
  domain: string;
  deleted: number;
  purged: number;
}

const toTombstone = (r: TombstoneRow): Tombstone => ({ id: r.id, owner: r.owner, domain: r.domain, deleted: r.deleted, purged: r.purged === 1 });

export class SqliteDeletions implements Deletions {
  private readonly heads: HeadReader;
  private readonly stmt;

  constructor(
    private readonly db: Database.Database,
    private readonly queue: WriteQueue,
  ) {
    this.heads = new HeadReader(db);
    this.stmt = {
      tombstone: db.prepare(
        `UPDATE scopes SET deleted = @at, purged = 0, lease_holder = NULL, lease_expires = NULL, epoch = epoch + 1,
           unpublished_since = NULL, initial = 'null', name = NULL, type = NULL, access = NULL, size = 0
         WHERE id = @id AND deleted IS NULL`,
      ),
      isTombstone: db.prepare<[string], { id: string }>('SELECT id FROM scopes WHERE id = ? AND deleted IS NOT NULL'),
      dropMembers: db.prepare<[string]>('DELETE FROM members WHERE scope = ?'),
      dropName: db.prepare<[string]>('DELETE FROM names WHERE scope = ?'),
      purgePatches: db.prepare<[string, string, number]>(
        'DELETE FROM patches WHERE scope = ? AND ii IN (SELECT ii FROM patches WHERE scope = ? ORDER BY ii LIMIT ?)',
      ),
      purgeCursors: db.prepare<[string, string, number]>(
        'DELETE FROM cursors WHERE scope = ? AND consumer IN (SELECT consumer FROM cursors WHERE scope = ? LIMIT ?)',
      ),
      markPurged: db.prepare<[string]>('UPDATE scopes SET purged = 1 WHERE id = ? AND deleted IS NOT NULL'),
      unpurged: db.prepare<[number], TombstoneRow>(
        'SELECT id, owner, domain, deleted, purged FROM scopes WHERE purged = 0 AND deleted IS NOT NULL ORDER BY deleted LIMIT ?',
      ),
      expired: db.prepare<[number, number], TombstoneRow>(
        'SELECT id, owner, domain, deleted, purged FROM scopes WHERE purged = 1 AND deleted < ? ORDER BY deleted LIMIT ?',
      ),
      drop: db.prepare<[string, number]>('DELETE FROM scopes WHERE id = ? AND purged = 1 AND deleted < ?'),
    };
  }

  async deleteScope(id: string, at: number): Promise<Head | null> {
    return this.queue.write(
      () => {
        const head = this.heads.get(id);
        if (!head) return null;
        this.stmt.tombstone.run({ id, at });
        this.stmt.dropMembers.run(id);
        this.stmt.dropName.run(id); // its name is free at once (the id is what stays reserved)
        return head;
      },
      { savepoint: true, durable: true },
    );
  }

  async purgeScope(id: string, limit: number): Promise<boolean> {
    if (!this.stmt.isTombstone.get(id)) return true;
    const max = Math.max(1, limit);
    return this.db
      .transaction(() => {
        let left = max;
        left -= this.stmt.purgePatches.run(id, id, left).changes;
        if (left > 0) left -= this.stmt.purgeCursors.run(id, id, left).changes;
        if (left > 0) left -= this.stmt.dropMembers.run(id).changes; // none normally: the tombstone removed them
        return left > 0; // every statement found fewer rows than it was allowed: none is left
      })
      .immediate();
  }

  async markPurged(id: string): Promise<boolean> {
    return this.stmt.markPurged.run(id).changes > 0;
  }

  async listDeleted(before: number, limit: number): Promise<Tombstone[]> {
    if (limit <= 0) return [];
    const unpurged = this.stmt.unpurged.all(limit);
    const expired = unpurged.length < limit ? this.stmt.expired.all(before, limit - unpurged.length) : [];
    return [...unpurged, ...expired].map(toTombstone);
  }

  async dropTombstone(id: string, before: number): Promise<boolean> {
    return this.stmt.drop.run(id, before).changes > 0;
  }
}
