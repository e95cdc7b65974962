/**
 * The embedded ledger: SQLite through better-sqlite3, in WAL mode, one object playing every role
 * of the Ledger port (ComposedLedger), built from modules with one job each, each stating the
 * guarantee it enforces:
 *
 *   ./schema.ts       the tables, migrations of older files, rows to values
 *   ./write-queue.ts  group commit: every write of an event-loop turn in one transaction (guarantee 5)
 *   ./log.ts          scopes, heads, commits (guarantees 1 and 3) and log reads
 *   ./outbox.ts       the published watermark (not fsynced on purpose) and `listUnpublished`
 *   ./cold.ts         the lease, `bundled` and `trimmed` (guarantee 6)
 *   ./cursors.ts      consumer cursors
 *   ./delete.ts       tombstones and the purge of a deleted scope
 *   ./records.ts      the record store (not a ledger role: the RecordStore port, `records`)
 *
 * All of them share one connection, so a commit, a lease and a trim never interleave inside one
 * another's transaction (better-sqlite3 runs each synchronously).
 */
import type Database from 'better-sqlite3';
import { ComposedLedger } from '../../../ports/index.js';
import { SqliteColdPointers } from './cold.js';
import { SqliteCursors } from './cursors.js';
import { SqliteDeletions } from './delete.js';
import { SqliteScopeLog } from './log.js';
import { SqliteOutbox } from './outbox.js';
import { SqliteRecords } from './records.js';
import { openDatabase } from './schema.js';
import { WriteQueue } from './write-queue.js';

export class SqliteLedger extends ComposedLedger {
  /** The connection every role shares. */
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: test/sqlite-ledger.test.ts reads its pragmas (synchronous after a watermark-only batch)
  private readonly db: Database.Database;
  /** The record store (RecordStore port) in the same file, on the same connection. */
  readonly records: SqliteRecords;

  /** `file` is a path, or ':memory:'. `sync`: `full` (default) fsyncs every commit; `normal` survives process crashes only. */
  constructor(file: string, opts: { sync?: 'full' | 'normal' } = {}) {
    const sync = opts.sync ?? 'full';
    const db = openDatabase(file, sync);
    const queue = new WriteQueue(db, sync);
    super({
      log: new SqliteScopeLog(db, queue),
      outbox: new SqliteOutbox(db, queue),
      cold: new SqliteColdPointers(db),
      cursors: new SqliteCursors(db),
      deletions: new SqliteDeletions(db, queue),
      // Writes what is queued first (so a watermark noted just before closing is kept), then closes.
      close: async () => {
        queue.drain();
        if (db.open) db.close();
      },
    });
    this.db = db;
    this.records = new SqliteRecords(db);
  }
}
