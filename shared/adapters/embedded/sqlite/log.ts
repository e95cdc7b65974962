/**
 * The embedded ledger's scope log: creating scopes, heads, commits and log reads.
 *
 * Guarantee 1 (each acked patch in the log once, indices without holes). A commit reads the head,
 * runs the plan against it *outside* any transaction (the plan is async: the engine's awaits state
 * reads and `findRetries`), then writes with a compare-and-set: the head row moves only if it is
 * still at the ii and epoch the plan saw (`UPDATE ... WHERE ii = ? AND epoch = ?`, which is the
 * re-read: no second SELECT), and the records go in with it, in one savepoint of a batch
 * (./write-queue.ts). If the head moved (another ledger on this file, a lease taken, a second
 * commit of the same scope) nothing is written and the plan runs again on the new head. So even
 * two processes on one file cannot both take an index. The same check keeps `findRetries`'
 * answers true at the commit: a retry record is a log row, which only ever appears with a head
 * move. Running async plans inside an open transaction instead would let any statement issued
 * while the plan awaits land inside it, and a stuck plan would hold the write lock for ever.
 *
 * Access (`setAccess`) has a revision column, moved by a compare-and-set of its own, and the
 * commit's compare-and-set checks it too, so a commit planned on an access since replaced is
 * planned again (the ScopeLog contract). The same write replaces the scope's rows in `members`
 * (who its access lists, what `listFor` finds shared scopes by), so a listing never disagrees
 * with the access it was read with.
 *
 * Names (`resolveName`, `rename`, and the name a scope is created with) are rows of `names`
 * (./names.ts), written in the same transaction as the head row they name.
 *
 * Guarantee 3 (a rejected request changes nothing): a plan that throws never reaches the queue;
 * a commit whose savepoint is rolled back leaves its head and log exactly as they were.
 */
import type Database from 'better-sqlite3';
import { PatchbayError } from '../../../errors.js';
import type { Json } from '../../../json.js';
import { type Head, type ListPage, type ListQuery, type LogPatch, type NewScope, type Plan, retryKey, type ScopeLog } from '../../../ports/index.js';
import type { PatchRecord, ScopeAccess } from '../../../protocol.js';
import { SqliteNames } from './names.js';
import { accessText, HEAD_COLUMNS, HeadReader, type PatchRow, type ScopeRow, toHead, toRecord } from './schema.js';
import type { WriteQueue } from './write-queue.js';

interface ListParams {
  user: string;
  after: string;
  domain: string | null;
  type: string | null;
  name: string | null;
  limit: number;
}

export class SqliteScopeLog implements ScopeLog {
  private readonly heads: HeadReader;
  private readonly names: SqliteNames;
  private readonly stmt;

  constructor(
    private readonly db: Database.Database,
    private readonly queue: WriteQueue,
  ) {
    this.heads = new HeadReader(db);
    this.names = new SqliteNames(db);
    this.stmt = {
      initial: db.prepare<[string], { initial: string }>('SELECT initial FROM scopes WHERE id = ? AND deleted IS NULL'),
      insertScope: db.prepare(
        `INSERT INTO scopes (id, ii, epoch, lease_holder, lease_expires, published, bundled, owner, domain, name, type, created, updated, size, initial, access, access_rev)
         VALUES (@id, 0, 0, NULL, NULL, 0, 0, @owner, @domain, @name, @type, @created, @updated, @size, @initial, @access, @access_rev)
         ON CONFLICT(id) DO NOTHING`,
      ),
      insertPatch: db.prepare(
        'INSERT INTO patches (scope, ii, patch, at, by, session, si, hash, epoch) VALUES (@scope, @ii, @patch, @at, @by, @session, @si, @hash, @epoch)',
      ),
      // The commit's head check and move in one statement: it changes the row only if the head is
      // still where the plan saw it (its ii, its epoch and its access: a plan authorized by an
      // access since replaced must decide again), and only while it is no tombstone (./delete.ts: a
      // commit racing a delete is refused). Without new meta (null), updated and size stay.
      // A commit leaves patches unpublished: start the outbox clock unless it is already running.
      advance: db.prepare(
        `UPDATE scopes SET ii = @ii, updated = COALESCE(@updated, updated), size = COALESCE(@size, size),
           unpublished_since = COALESCE(unpublished_since, @updated, updated)
         WHERE id = @id AND ii = @expected AND epoch = @epoch AND access_rev = @accessRev AND deleted IS NULL`,
      ),
      setAccess: db.prepare('UPDATE scopes SET access = @access, access_rev = access_rev + 1 WHERE id = @id AND access_rev = @expected AND deleted IS NULL'),
      // The listed users of a scope, as `members` rows, replaced with every access it is given.
      dropMembers: db.prepare<[string]>('DELETE FROM members WHERE scope = ?'),
      addMembers: db.prepare(
        `INSERT OR IGNORE INTO members (user, scope) SELECT value, @id FROM json_each(@access, '$.readers')
         UNION SELECT value, @id FROM json_each(@access, '$.writers')`,
      ),
      // A user's scopes: owned (index scopes_owner) or listed (members' key), in id order from
      // after the page before; the meta filters apply to that user's scopes only.
      listFor: db.prepare<ListParams, ScopeRow>(
        `SELECT ${HEAD_COLUMNS} FROM scopes WHERE id IN (
           SELECT id FROM scopes WHERE owner = @user AND id > @after
           UNION SELECT scope FROM members WHERE user = @user AND scope > @after)
         AND deleted IS NULL AND (@domain IS NULL OR domain = @domain) AND (@type IS NULL OR type = @type) AND (@name IS NULL OR name = @name)
         ORDER BY id LIMIT @limit`,
      ),
      retry: db.prepare<[string, string, number], PatchRow>('SELECT * FROM patches WHERE scope = ? AND session = ? AND si = ?'),
      // A session's keys of one group, which a client numbers consecutively: one index range scan.
      retryRange: db.prepare<[string, string, number, number], PatchRow>('SELECT * FROM patches WHERE scope = ? AND session = ? AND si >= ? AND si <= ?'),
      log: db.prepare<[string, number, number, number], PatchRow>('SELECT * FROM patches WHERE scope = ? AND ii >= ? AND ii <= ? ORDER BY ii LIMIT ?'),
      // What a rebuild reads: the same rows as `log`, two columns, as arrays (no object per row).
      patches: db
        .prepare<[string, number, number, number], [number, string]>(
          'SELECT ii, patch FROM patches WHERE scope = ? AND ii >= ? AND ii <= ? ORDER BY ii LIMIT ?',
        )
        .raw(),
    };
  }

  async createScope(scope: NewScope): Promise<Head> {
    const { meta } = scope;
    const { access, ...fields } = meta;
    const text = access ? accessText(access) : null;
    const insert = this.db.transaction(() => {
      const info = this.stmt.insertScope.run({ id: scope.id, ...fields, initial: JSON.stringify(scope.initial), access: text, access_rev: access?.rev ?? 0 });
      if (info.changes > 0 && text !== null) this.stmt.addMembers.run({ id: scope.id, access: text });
      // Throwing rolls the head row back with it: a taken name creates nothing.
      if (info.changes > 0 && fields.name !== null) this.names.claim(fields.domain, fields.owner, fields.name, scope.id);
      return info;
    });
    const info = insert();
    if (info.changes === 0) throw new PatchbayError('scope_exists', `scope ${scope.id} already exists`, { id: scope.id });
    return this.heads.orThrow(scope.id);
  }

  async getHead(id: string): Promise<Head | null> {
    return this.heads.get(id);
  }

  async getInitial(id: string): Promise<Json | null> {
    const row = this.stmt.initial.get(id);
    return row ? (JSON.parse(row.initial) as Json) : null;
  }

  async commit<T>(id: string, plan: Plan<T>): Promise<T> {
    for (;;) {
      // Read outside any transaction: the write below checks this same head again (guarantee 1).
      const head = this.heads.orThrow(id);
      const { records, meta, result } = await plan({
        head,
        findRetries: async (keys) => this.findRetries(id, keys),
      });
      if (records.length === 0) return result;
      records.forEach((r, i) => {
        if (r.scope !== id || r.ii !== head.ii + 1 + i) throw new PatchbayError('internal', 'commit plan produced non-consecutive records');
      });
      // Serialized before queueing, so the batch holds the write lock only to write.
      const rows = records.map((r) => ({ ...r, patch: JSON.stringify(r.patch) }));
      const update = {
        id,
        expected: head.ii,
        epoch: head.epoch,
        accessRev: head.meta.access?.rev ?? 0,
        ii: head.ii + rows.length,
        updated: meta?.updated ?? null,
        size: meta?.size ?? null,
      };
      const written = await this.queue.write(
        () => {
          if (this.stmt.advance.run(update).changes === 0) return false;
          for (const row of rows) this.stmt.insertPatch.run(row);
          return true;
        },
        { savepoint: true, durable: true },
      );
      if (written) return result;
      // The head moved under the plan (another writer on this file, a lease taken): plan again.
    }
  }

  /**
   * The records of `keys` on scope `id`. A batch of one client's patches asks about one session's
   * consecutive si values: those are read in one range scan of the retry index (rows in the range
   * that were not asked about are left out), instead of one lookup per key (in a profile, 100
   * lookups took as long as deciding the 100 patches). Keys spread too thinly for a range are
   * looked up one by one.
   */
  private findRetries(id: string, keys: ReadonlyArray<{ session: string; si: number }>): Map<string, PatchRecord> {
    const found = new Map<string, PatchRecord>();
    const bySession = new Map<string, Set<number>>();
    for (const k of keys) {
      const sis = bySession.get(k.session) ?? new Set<number>();
      sis.add(k.si);
      bySession.set(k.session, sis);
    }
    for (const [session, sis] of bySession) {
      let lo = Number.POSITIVE_INFINITY;
      let hi = Number.NEGATIVE_INFINITY;
      for (const si of sis) {
        if (si < lo) lo = si;
        if (si > hi) hi = si;
      }
      // At most about as many rows read as asked about (plus a little): else one lookup each.
      if (hi - lo + 1 <= 2 * sis.size + 16) {
        for (const row of this.stmt.retryRange.all(id, session, lo, hi))
          if (sis.has(row.si as number)) found.set(retryKey(session, row.si as number), toRecord(row));
        continue;
      }
      for (const si of sis) {
        const row = this.stmt.retry.get(id, session, si);
        if (row) found.set(retryKey(session, si), toRecord(row));
      }
    }
    return found;
  }

  async setAccess(id: string, access: Omit<ScopeAccess, 'rev'>, expectedRev: number): Promise<ScopeAccess | null> {
    const text = accessText(access);
    const set = await this.queue.write(
      () => {
        if (this.stmt.setAccess.run({ id, access: text, expected: expectedRev }).changes === 0) return false;
        this.stmt.dropMembers.run(id);
        this.stmt.addMembers.run({ id, access: text });
        return true;
      },
      { savepoint: true, durable: true },
    );
    if (set) return { ...(JSON.parse(text) as Omit<ScopeAccess, 'rev'>), rev: expectedRev + 1 };
    this.heads.orThrow(id); // scope_not_found, else the revision moved
    return null;
  }

  async resolveName(domain: string, owner: string, name: string): Promise<string | null> {
    const held = this.names.resolve(domain, owner, name);
    if (held !== null || !this.names.hasLegacy(domain, owner, name)) return held;
    return this.queue.write(() => this.names.registerLegacy(domain, owner, name), { savepoint: false, durable: true });
  }

  async rename(id: string, name: string | null): Promise<void> {
    const found = await this.queue.write(() => this.names.rename(id, name), { savepoint: true, durable: true });
    if (!found) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
  }

  async listFor(user: string, query: ListQuery): Promise<ListPage> {
    const { limit } = query;
    const rows = this.stmt.listFor.all({
      user,
      after: query.after ?? '',
      domain: query.domain ?? null,
      type: query.type ?? null,
      name: query.name ?? null,
      limit,
    });
    const scopes = rows.map((r) => {
      const { id, ii, meta } = toHead(r);
      return { id, ii, meta };
    });
    return { scopes, next: scopes.length === limit ? (scopes[scopes.length - 1]?.id ?? null) : null };
  }

  async readLog(id: string, from: number, to: number, limit = 1000): Promise<PatchRecord[]> {
    if (to < from) return [];
    return this.stmt.log.all(id, from, to, limit).map(toRecord);
  }

  async readPatches(id: string, from: number, to: number, limit = 1000): Promise<LogPatch[]> {
    if (to < from) return [];
    return this.stmt.patches.all(id, from, to, limit).map(([ii, patch]) => ({ ii, patch: JSON.parse(patch) }));
  }
}
