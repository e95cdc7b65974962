/**
 * The embedded ledger: SQLite through better-sqlite3, in WAL mode. One row per scope holds the
 * head; the log is one row per patch, keyed (scope, ii). A unique index on (scope, session, si)
 * makes a recorded retry impossible to record twice.
 *
 * Guarantee 1 (each acked patch in the log once, indices without holes). A commit reads the head,
 * runs the plan against it *outside* any transaction (the plan is async: the engine's awaits state
 * reads and `findRetries`), then writes with a compare-and-set: the head row moves only if it is
 * still at the ii and epoch the plan saw (`UPDATE ... WHERE ii = ? AND epoch = ?`, which is the
 * re-read: no second SELECT), and the records go in with it, in one transaction. If the head moved
 * (another ledger on this file, a lease taken, a second commit of the same scope) nothing is
 * written and the plan runs again on the new head. So even two processes on one file cannot both
 * take an index. The same check keeps `findRetries`' answers true at the commit: a retry record is
 * a log row, which only ever appears with a head move.
 *
 * Group commit across scopes (one fsync for many commits). Writes do not open a transaction each:
 * they queue, and a `setImmediate` flushes everything queued in this event-loop turn as ONE
 * `BEGIN IMMEDIATE` transaction, each commit inside its own SAVEPOINT. A commit whose head check
 * fails, or whose insert fails (a retry key recorded twice), rolls back its savepoint only and
 * gets its own outcome; the others commit. A batch resolves its callers only after COMMIT
 * returned (synchronous=FULL: after the fsync), so an ack still means "on disk".
 * Why plans run outside the transaction instead of inside it: the flush is one synchronous
 * better-sqlite3 call from BEGIN to COMMIT, so no other statement of this connection (another
 * commit, a lease, a trim) can interleave in it, and the write lock is held only for the few
 * milliseconds of the writes and the fsync. A plan that is slow, or never resolves, holds no
 * lock: its commit simply joins a later batch (or never), and every other scope keeps committing.
 * Running async plans inside an open transaction would do neither: any statement issued while the
 * plan awaits would land inside it, and a stuck plan would hold the write lock for ever.
 * If SQLite aborts the whole transaction inside one commit (disk full, I/O error), the rest of the
 * batch is not run and every commit of the batch is rejected: none of them was written.
 *
 * Guarantee 3 (a rejected request changes nothing): a plan that throws never reaches the queue;
 * a commit whose savepoint is rolled back leaves its head and log exactly as they were.
 * Guarantee 5 (a crash leaves an unacknowledged commit complete or absent): a batch is one
 * transaction; a kill -9 before COMMIT loses all of its commits, none of which was acked.
 *
 * The published watermark is not durable on purpose: `markPublished` joins the same queue, and
 * a batch holding only watermark moves runs with synchronous=NORMAL (no fsync; a batch with a
 * commit in it is fsynced anyway). A power cut can then lose a watermark move, never a patch:
 * the watermark only says what has certainly been handed to the bus, so a lost move means the
 * sweeper republishes those patches, and every consumer deduplicates by (scope, ii). The WAL is
 * one file written in order, so the next commit's fsync makes every earlier move durable too:
 * a power cut loses at most the moves made since the last commit.
 *
 * Cold storage (guarantee 6): `bundled` and `trimmed` are columns of the head row. Moving
 * `bundled` and each trim chunk (delete the oldest rows, move `trimmed`) are IMMEDIATE
 * transactions that first check the lease holder and epoch, so a fenced bundler changes nothing,
 * and a crash between chunks leaves the log contiguous from trimmed + 1. The log rows are the
 * retry records, so trimming a row also forgets its (session, si).
 */
import Database from 'better-sqlite3';
import { PatchbayError } from '../../errors.js';
import type { Json } from '../../json.js';
import type { Head, Ledger, LogPatch, NewScope, Plan } from '../../ports/index.js';
import { retryKey } from '../../ports/index.js';
import type { ScopeSummary } from '../../ports/ledger.js';
import type { PatchRecord } from '../../protocol.js';

interface ScopeRow {
  id: string;
  ii: number;
  epoch: number;
  lease_holder: string | null;
  lease_expires: number | null;
  published: number;
  bundled: number;
  trimmed: number;
  owner: string;
  domain: string;
  name: string | null;
  type: string | null;
  created: number;
  updated: number;
  size: number;
}

interface PatchRow {
  scope: string;
  ii: number;
  patch: string;
  at: number;
  by: string;
  session: string | null;
  si: number | null;
  hash: string;
  epoch: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS scopes (
  id TEXT PRIMARY KEY,
  ii INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  lease_holder TEXT,
  lease_expires INTEGER,
  published INTEGER NOT NULL,
  bundled INTEGER NOT NULL,
  trimmed INTEGER NOT NULL DEFAULT 0,
  unpublished_since INTEGER,
  owner TEXT NOT NULL,
  domain TEXT NOT NULL,
  name TEXT,
  type TEXT,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  size INTEGER NOT NULL,
  initial TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS patches (
  scope TEXT NOT NULL,
  ii INTEGER NOT NULL,
  patch TEXT NOT NULL,
  at INTEGER NOT NULL,
  by TEXT NOT NULL,
  session TEXT,
  si INTEGER,
  hash TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  PRIMARY KEY (scope, ii)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS patches_retry ON patches(scope, session, si) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS cursors (
  consumer TEXT NOT NULL,
  scope TEXT NOT NULL,
  ii INTEGER NOT NULL,
  PRIMARY KEY (consumer, scope)
) WITHOUT ROWID;
`;

const HEAD_COLUMNS = 'id, ii, epoch, lease_holder, lease_expires, published, bundled, trimmed, owner, domain, name, type, created, updated, size';

function toHead(r: ScopeRow): Head {
  return {
    id: r.id,
    ii: r.ii,
    epoch: r.epoch,
    lease: r.lease_holder === null ? null : { holder: r.lease_holder, expires: r.lease_expires as number },
    published: r.published,
    bundled: r.bundled,
    trimmed: r.trimmed,
    meta: { owner: r.owner, domain: r.domain, name: r.name, type: r.type, created: r.created, updated: r.updated, size: r.size },
  };
}

function toRecord(r: PatchRow): PatchRecord {
  return { scope: r.scope, ii: r.ii, patch: JSON.parse(r.patch), at: r.at, by: r.by, session: r.session, si: r.si, hash: r.hash, epoch: r.epoch };
}

/** A write waiting for the next batch (see the top of the file). */
interface Queued {
  /** Runs inside the batch's transaction; what it returns or throws is this write's outcome. */
  run: () => unknown;
  /** Several statements: run inside a savepoint, so a failure undoes all of them and only them. */
  savepoint: boolean;
  /** Must be on disk when it resolves (a commit). A batch of only non-durable writes skips the fsync. */
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Settled = { value: unknown } | { error: unknown };

export class SqliteLedger implements Ledger {
  private readonly db: Database.Database;
  private readonly sync: 'full' | 'normal';
  private readonly stmt;
  /** The batch's own transaction control (db.transaction() cannot give each write its outcome). */
  private readonly tx;
  private queued: Queued[] = [];
  private flushing: NodeJS.Immediate | null = null;

  /** `file` is a path, or ':memory:'. */
  constructor(file: string, opts: { sync?: 'full' | 'normal' } = {}) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.sync = opts.sync ?? 'full';
    this.db.pragma(`synchronous = ${this.sync === 'normal' ? 'NORMAL' : 'FULL'}`);
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    // Files made before cold storage existed have no `trimmed` column yet.
    const columns = this.db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('scopes')").all();
    if (!columns.some((c) => c.name === 'trimmed')) this.db.exec('ALTER TABLE scopes ADD COLUMN trimmed INTEGER NOT NULL DEFAULT 0');
    // ...nor an `unpublished_since` (the outbox used `updated`, which a busy scope kept moving).
    if (!columns.some((c) => c.name === 'unpublished_since')) {
      this.db.exec(
        'DROP INDEX IF EXISTS scopes_unpublished; ALTER TABLE scopes ADD COLUMN unpublished_since INTEGER; UPDATE scopes SET unpublished_since = updated WHERE published < ii',
      );
    }
    this.db.exec('CREATE INDEX IF NOT EXISTS scopes_outbox ON scopes(unpublished_since) WHERE unpublished_since IS NOT NULL');
    const db = this.db;
    this.stmt = {
      head: db.prepare<[string], ScopeRow>(`SELECT ${HEAD_COLUMNS} FROM scopes WHERE id = ?`),
      initial: db.prepare<[string], { initial: string }>('SELECT initial FROM scopes WHERE id = ?'),
      insertScope: db.prepare(
        `INSERT INTO scopes (id, ii, epoch, lease_holder, lease_expires, published, bundled, owner, domain, name, type, created, updated, size, initial)
         VALUES (@id, 0, 0, NULL, NULL, 0, 0, @owner, @domain, @name, @type, @created, @updated, @size, @initial)
         ON CONFLICT(id) DO NOTHING`,
      ),
      insertPatch: db.prepare(
        'INSERT INTO patches (scope, ii, patch, at, by, session, si, hash, epoch) VALUES (@scope, @ii, @patch, @at, @by, @session, @si, @hash, @epoch)',
      ),
      // The commit's head check and move in one statement: it changes the row only if the head is
      // still where the plan saw it. Without new meta (null), updated and size stay. A commit
      // leaves patches unpublished: start the outbox clock unless it is already running.
      advance: db.prepare(
        `UPDATE scopes SET ii = @ii, updated = COALESCE(@updated, updated), size = COALESCE(@size, size),
           unpublished_since = COALESCE(unpublished_since, @updated, updated)
         WHERE id = @id AND ii = @expected AND epoch = @epoch`,
      ),
      retry: db.prepare<[string, string, number], PatchRow>('SELECT * FROM patches WHERE scope = ? AND session = ? AND si = ?'),
      log: db.prepare<[string, number, number, number], PatchRow>('SELECT * FROM patches WHERE scope = ? AND ii >= ? AND ii <= ? ORDER BY ii LIMIT ?'),
      // What a rebuild reads: the same rows as `log`, two columns, as arrays (no object per row).
      patches: db
        .prepare<[string, number, number, number], [number, string]>(
          'SELECT ii, patch FROM patches WHERE scope = ? AND ii >= ? AND ii <= ? ORDER BY ii LIMIT ?',
        )
        .raw(),
      // Caught up: the clock stops. Still behind: it keeps the oldest unpublished commit's time.
      markPublished: db.prepare(
        `UPDATE scopes SET published = @to, unpublished_since = CASE WHEN @to >= ii THEN NULL ELSE unpublished_since END
         WHERE id = @id AND published < @to AND published >= @floor`,
      ),
      unpublished: db.prepare<[number, number], { id: string; published: number; ii: number }>(
        'SELECT id, published, ii FROM scopes WHERE unpublished_since < ? AND published < ii ORDER BY unpublished_since LIMIT ?',
      ),
      setLease: db.prepare('UPDATE scopes SET lease_holder = ?, lease_expires = ?, epoch = ? WHERE id = ?'),
      listScopes: db.prepare<[string, number], { id: string; ii: number; bundled: number; trimmed: number }>(
        'SELECT id, ii, bundled, trimmed FROM scopes WHERE id > ? ORDER BY id LIMIT ?',
      ),
      setBundled: db.prepare('UPDATE scopes SET bundled = ? WHERE id = ?'),
      trim: db.prepare('DELETE FROM patches WHERE scope = ? AND ii > ? AND ii <= ?'),
      setTrimmed: db.prepare('UPDATE scopes SET trimmed = ? WHERE id = ?'),
      cursor: db.prepare<[string, string], { ii: number }>('SELECT ii FROM cursors WHERE consumer = ? AND scope = ?'),
      advanceCursor: db.prepare(
        `INSERT INTO cursors (consumer, scope, ii) VALUES (@consumer, @scope, @to)
         ON CONFLICT(consumer, scope) DO UPDATE SET ii = @to WHERE ii = @expected`,
      ),
    };
    this.tx = {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      savepoint: db.prepare('SAVEPOINT one_commit'),
      release: db.prepare('RELEASE one_commit'),
      rollbackTo: db.prepare('ROLLBACK TO one_commit'),
    };
  }

  async createScope(scope: NewScope): Promise<Head> {
    const { meta } = scope;
    const info = this.stmt.insertScope.run({ id: scope.id, ...meta, initial: JSON.stringify(scope.initial) });
    if (info.changes === 0) throw new PatchbayError('scope_exists', `scope ${scope.id} already exists`, { id: scope.id });
    return this.headOrThrow(scope.id);
  }

  async getHead(id: string): Promise<Head | null> {
    const row = this.stmt.head.get(id);
    return row ? toHead(row) : null;
  }

  private headOrThrow(id: string): Head {
    const row = this.stmt.head.get(id);
    if (!row) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    return toHead(row);
  }

  async getInitial(id: string): Promise<Json | null> {
    const row = this.stmt.initial.get(id);
    return row ? (JSON.parse(row.initial) as Json) : null;
  }

  async commit<T>(id: string, plan: Plan<T>): Promise<T> {
    for (;;) {
      // Read outside any transaction: the write below checks this same head again (guarantee 1).
      const head = this.headOrThrow(id);
      const { records, meta, result } = await plan({
        head,
        findRetries: async (keys) => {
          const found = new Map<string, PatchRecord>();
          for (const k of keys) {
            const row = this.stmt.retry.get(id, k.session, k.si);
            if (row) found.set(retryKey(k.session, k.si), toRecord(row));
          }
          return found;
        },
      });
      if (records.length === 0) return result;
      records.forEach((r, i) => {
        if (r.scope !== id || r.ii !== head.ii + 1 + i) throw new PatchbayError('internal', 'commit plan produced non-consecutive records');
      });
      // Serialized before queueing, so the batch holds the write lock only to write.
      const rows = records.map((r) => ({ ...r, patch: JSON.stringify(r.patch) }));
      const update = { id, expected: head.ii, epoch: head.epoch, ii: head.ii + rows.length, updated: meta?.updated ?? null, size: meta?.size ?? null };
      const written = await this.write(
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
   * Queues `run` for the next batch, which starts once this event-loop turn is over, and resolves
   * with its outcome once the batch's transaction is committed.
   */
  private write<R>(run: () => R, opts: { savepoint: boolean; durable: boolean }): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queued.push({ run, ...opts, resolve: resolve as (value: unknown) => void, reject });
      this.flushing ??= setImmediate(() => this.flush());
    });
  }

  /** Writes everything queued in one transaction and settles each write with its own outcome. */
  private flush(): void {
    this.flushing = null;
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    // Only watermark moves in this batch: no fsync for it (see the top of the file).
    const relax = this.sync === 'full' && !batch.some((w) => w.durable);
    let settled: Settled[];
    try {
      if (relax) this.db.pragma('synchronous = NORMAL');
      settled = this.runBatch(batch);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    } finally {
      if (relax && this.db.open) this.db.pragma('synchronous = FULL');
    }
    batch.forEach((w, i) => {
      const s = settled[i] as Settled;
      if ('error' in s) w.reject(s.error);
      else w.resolve(s.value);
    });
  }

  /**
   * One BEGIN IMMEDIATE ... COMMIT, synchronous from end to end (nothing else runs on this
   * connection meanwhile). A write that throws is undone (its savepoint, or SQLite's own
   * statement rollback for a single statement) and the batch goes on; if SQLite rolled back the
   * whole transaction, this throws and no write of the batch happened.
   */
  private runBatch(batch: Queued[]): Settled[] {
    const { tx } = this;
    const settled: Settled[] = [];
    tx.begin.run();
    try {
      for (const w of batch) {
        if (w.savepoint) tx.savepoint.run();
        try {
          const value = w.run();
          if (w.savepoint) tx.release.run();
          settled.push({ value });
        } catch (error) {
          if (!this.db.inTransaction) throw error;
          if (w.savepoint) {
            tx.rollbackTo.run();
            tx.release.run();
          }
          settled.push({ error });
        }
      }
      tx.commit.run();
    } catch (err) {
      if (this.db.inTransaction) tx.rollback.run();
      throw err;
    }
    return settled;
  }

  async readLog(id: string, from: number, to: number, limit = 1000): Promise<PatchRecord[]> {
    if (to < from) return [];
    return this.stmt.log.all(id, from, to, limit).map(toRecord);
  }

  async readPatches(id: string, from: number, to: number, limit = 1000): Promise<LogPatch[]> {
    if (to < from) return [];
    return this.stmt.patches.all(id, from, to, limit).map(([ii, patch]) => ({ ii, patch: JSON.parse(patch) }));
  }

  /**
   * Queued like a commit, so it rides in a commit's transaction when there is one; a batch of only
   * watermark moves is not fsynced: losing one in a power cut only makes the sweeper republish
   * (consumers deduplicate by (scope, ii)). One statement, atomic by itself: no savepoint.
   */
  async markPublished(id: string, to: number, from?: number): Promise<void> {
    const floor = from === undefined ? Number.MIN_SAFE_INTEGER : from - 1;
    await this.write(
      () => {
        this.stmt.markPublished.run({ id, to, floor });
      },
      { savepoint: false, durable: false },
    );
  }

  async listUnpublished(before: number, limit: number) {
    return this.stmt.unpublished.all(before, limit);
  }

  async acquireLease(id: string, holder: string, ttlMs: number, now = Date.now()): Promise<number | null> {
    return this.db
      .transaction(() => {
        const head = this.headOrThrow(id);
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
        const head = this.headOrThrow(id);
        if (!head.lease || head.lease.holder !== holder || head.epoch !== epoch) return false;
        this.stmt.setLease.run(null, null, epoch, id);
        return true;
      })
      .immediate();
  }

  async listScopes(after: string, limit: number): Promise<ScopeSummary[]> {
    return this.stmt.listScopes.all(after, limit);
  }

  /** The head, if `holder` still holds the lease at `epoch` (see Ledger.advanceBundled). */
  private leased(id: string, holder: string, epoch: number): Head | null {
    const head = this.headOrThrow(id);
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

  async getCursor(consumer: string, id: string): Promise<number> {
    return this.stmt.cursor.get(consumer, id)?.ii ?? 0;
  }

  async advanceCursor(consumer: string, id: string, expected: number, to: number): Promise<boolean> {
    if (!(to > expected)) throw new PatchbayError('internal', 'a cursor only moves forward');
    return this.db
      .transaction(() => {
        const current = this.stmt.cursor.get(consumer, id)?.ii ?? 0;
        if (current !== expected) return false;
        this.stmt.advanceCursor.run({ consumer, scope: id, expected, to });
        return true;
      })
      .immediate();
  }

  /** Writes what is queued first (so a watermark noted just before closing is kept), then closes. */
  async close(): Promise<void> {
    if (this.flushing) {
      clearImmediate(this.flushing);
      this.flush();
    }
    if (this.db.open) this.db.close();
  }
}
