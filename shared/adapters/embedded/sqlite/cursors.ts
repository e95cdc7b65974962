/**
 * The embedded ledger's consumer cursors: one row per (consumer, scope), which may exist for a
 * scope id the log does not know. The guarantee kept here: a cursor moves only from the position
 * its mover expected (read and moved in one IMMEDIATE transaction), so of two racing deliveries
 * exactly one wins.
 */
import type Database from 'better-sqlite3';
import { PatchbayError } from '../../../errors.js';
import type { ConsumerCursors } from '../../../ports/index.js';

export class SqliteCursors implements ConsumerCursors {
  private readonly stmt;

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      cursor: db.prepare<[string, string], { ii: number }>('SELECT ii FROM cursors WHERE consumer = ? AND scope = ?'),
      advanceCursor: db.prepare(
        `INSERT INTO cursors (consumer, scope, ii) VALUES (@consumer, @scope, @to)
         ON CONFLICT(consumer, scope) DO UPDATE SET ii = @to WHERE ii = @expected`,
      ),
    };
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
}
