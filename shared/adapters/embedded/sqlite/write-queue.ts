/**
 * The embedded ledger's group commit across scopes (one fsync for many commits). Writes do not
 * open a transaction each: they queue, and a `setImmediate` flushes everything queued in this
 * event-loop turn as ONE `BEGIN IMMEDIATE` transaction, each write that needs it inside its own
 * SAVEPOINT. A commit whose head check fails, or whose insert fails (a retry key recorded twice),
 * rolls back its savepoint only and gets its own outcome; the others commit. A batch resolves its
 * callers only after COMMIT returned (synchronous=FULL: after the fsync), so an ack still means
 * "on disk".
 *
 * The flush is one synchronous better-sqlite3 call from BEGIN to COMMIT, so no other statement of
 * this connection (another commit, a lease, a trim) can interleave in it, and the write lock is
 * held only for the few milliseconds of the writes and the fsync. That is why plans run outside
 * the transaction (./log.ts): a plan that is slow, or never resolves, holds no lock.
 * If SQLite aborts the whole transaction inside one write (disk full, I/O error), the rest of the
 * batch is not run and every write of the batch is rejected: none of them was written.
 *
 * Guarantee 5 (a crash leaves an unacknowledged commit complete or absent): a batch is one
 * transaction; a kill -9 before COMMIT loses all of its commits, none of which was acked. A
 * batch of only non-durable writes (watermark moves: ./outbox.ts) runs with synchronous=NORMAL.
 */
import type Database from 'better-sqlite3';

/** A write waiting for the next batch. */
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

export class WriteQueue {
  /** The batch's own transaction control (db.transaction() cannot give each write its outcome). */
  private readonly tx;
  private queued: Queued[] = [];
  private flushing: NodeJS.Immediate | null = null;

  constructor(
    private readonly db: Database.Database,
    private readonly sync: 'full' | 'normal',
  ) {
    this.tx = {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      savepoint: db.prepare('SAVEPOINT one_commit'),
      release: db.prepare('RELEASE one_commit'),
      rollbackTo: db.prepare('ROLLBACK TO one_commit'),
    };
  }

  /**
   * Queues `run` for the next batch, which starts once this event-loop turn is over, and resolves
   * with its outcome once the batch's transaction is committed.
   */
  write<R>(run: () => R, opts: { savepoint: boolean; durable: boolean }): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queued.push({ run, ...opts, resolve: resolve as (value: unknown) => void, reject });
      this.flushing ??= setImmediate(() => this.flush());
    });
  }

  /** Writes what is queued now, without waiting for the turn to end (before closing the database). */
  drain(): void {
    if (this.flushing) {
      clearImmediate(this.flushing);
      this.flush();
    }
  }

  /** Writes everything queued in one transaction and settles each write with its own outcome. */
  private flush(): void {
    this.flushing = null;
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    // Only watermark moves in this batch: no fsync for it (see ./outbox.ts).
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
}
