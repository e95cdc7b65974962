/**
 * The embedded record store (RecordStore port): one table `records (kind, key, value, rev)` in
 * the ledger's SQLite file, on the ledger's connection. The guarantee kept here (compare-and-set):
 * each put and delete reads the revision and writes in one IMMEDIATE transaction, so a record
 * changes only from the revision its writer expected. Keys list in SQLite's BINARY order (UTF-8
 * bytes), which `after` compares in too.
 */
import type Database from 'better-sqlite3';
import type { Json } from '../../../json.js';
import type { ListOptions, RecordStore, StoredRecord } from '../../../ports/records.js';
import { checkRecord } from '../../../ports/records.js';

interface Row {
  key: string;
  value: string;
  rev: number;
}

const toRecord = (r: Row): StoredRecord => ({ key: r.key, value: JSON.parse(r.value) as Json, rev: r.rev });

export class SqliteRecords implements RecordStore {
  private readonly stmt;

  constructor(private readonly db: Database.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS records (
      kind TEXT NOT NULL,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      rev INTEGER NOT NULL,
      PRIMARY KEY (kind, key)
    ) WITHOUT ROWID`);
    this.stmt = {
      get: db.prepare<[string, string], Row>('SELECT key, value, rev FROM records WHERE kind = ? AND key = ?'),
      insert: db.prepare('INSERT INTO records (kind, key, value, rev) VALUES (?, ?, ?, 1)'),
      update: db.prepare('UPDATE records SET value = ?, rev = rev + 1 WHERE kind = ? AND key = ? AND rev = ?'),
      delete: db.prepare('DELETE FROM records WHERE kind = ? AND key = ? AND rev = ?'),
      // substr(key, 1, length(prefix)) = prefix: a prefix match with no LIKE wildcards to escape.
      list: db.prepare<[string, string, string, string, number], Row>(
        `SELECT key, value, rev FROM records
         WHERE kind = ? AND substr(key, 1, length(?)) = ? AND key > ?
         ORDER BY key LIMIT ?`,
      ),
    };
  }

  async get(kind: string, key: string): Promise<StoredRecord | null> {
    checkRecord(kind, key);
    const row = this.stmt.get.get(kind, key);
    return row ? toRecord(row) : null;
  }

  async put(kind: string, key: string, value: Json, expectedRev: number): Promise<StoredRecord | null> {
    const text = checkRecord(kind, key, value);
    return this.db
      .transaction((): StoredRecord | null => {
        if (expectedRev === 0) {
          if (this.stmt.get.get(kind, key)) return null;
          this.stmt.insert.run(kind, key, text);
        } else if (this.stmt.update.run(text, kind, key, expectedRev).changes === 0) {
          return null;
        }
        return toRecord(this.stmt.get.get(kind, key) as Row);
      })
      .immediate();
  }

  async delete(kind: string, key: string, expectedRev: number): Promise<boolean> {
    checkRecord(kind, key);
    return this.stmt.delete.run(kind, key, expectedRev).changes === 1;
  }

  async list(kind: string, opts: ListOptions): Promise<StoredRecord[]> {
    checkRecord(kind);
    const prefix = opts.prefix ?? '';
    // '' sorts before every key, so "after ''" is "from the first".
    return this.stmt.list.all(kind, prefix, prefix, opts.after ?? '', Math.max(1, opts.limit)).map(toRecord);
  }
}
