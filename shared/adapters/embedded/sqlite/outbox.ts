/**
 * The embedded ledger's outbox: the published watermark (`published`) and the outbox clock
 * (`unpublished_since`: the oldest unpublished commit's time, set by a commit, cleared once the
 * watermark catches up), both columns of the head row.
 *
 * The watermark is not durable on purpose: `markPublished` joins the write queue
 * (./write-queue.ts), and a batch holding only watermark moves runs with synchronous=NORMAL (no
 * fsync; a batch with a commit in it is fsynced anyway). A power cut can then lose a watermark
 * move, never a patch: the watermark only says what has certainly been handed to the bus, so a
 * lost move means the sweeper republishes those patches, and every consumer deduplicates by
 * (scope, ii). The WAL is one file written in order, so the next commit's fsync makes every
 * earlier move durable too: a power cut loses at most the moves made since the last commit.
 */
import type Database from 'better-sqlite3';
import type { Outbox } from '../../../ports/index.js';
import type { WriteQueue } from './write-queue.js';

export class SqliteOutbox implements Outbox {
  private readonly stmt;

  constructor(
    db: Database.Database,
    private readonly queue: WriteQueue,
  ) {
    this.stmt = {
      // Caught up: the clock stops. Still behind: it keeps the oldest unpublished commit's time.
      markPublished: db.prepare(
        `UPDATE scopes SET published = @to, unpublished_since = CASE WHEN @to >= ii THEN NULL ELSE unpublished_since END
         WHERE id = @id AND published < @to AND published >= @floor`,
      ),
      unpublished: db.prepare<[number, number], { id: string; published: number; ii: number }>(
        'SELECT id, published, ii FROM scopes WHERE unpublished_since < ? AND published < ii ORDER BY unpublished_since LIMIT ?',
      ),
    };
  }

  /**
   * Queued like a commit, so it rides in a commit's transaction when there is one; a batch of only
   * watermark moves is not fsynced (see the top of this file). One statement, atomic by itself:
   * no savepoint.
   */
  async markPublished(id: string, to: number, from?: number): Promise<void> {
    const floor = from === undefined ? Number.MIN_SAFE_INTEGER : from - 1;
    await this.queue.write(
      () => {
        this.stmt.markPublished.run({ id, to, floor });
      },
      { savepoint: false, durable: false },
    );
  }

  async listUnpublished(before: number, limit: number) {
    return this.stmt.unpublished.all(before, limit);
  }
}
