/**
 * The deleter: finishes what deleting a scope leaves to do after its tombstone (Deletions in
 * shared/ports/ledger.ts), and ends the retention period of old tombstones.
 *
 * Durable and crash-safe: `Engine.deleteScope` writes the tombstone first, in one atomic step;
 * everything after it is repeatable and runs again until it is done. A purge is, per scope: the
 * ledger's records in chunks (`purgeScope`, PURGE_CHUNK at a time), then the cold-storage objects
 * (bundles and snapshots), then what else it stored (`onPurge`: an upload's file), then `markPurged`. The request that deleted the scope runs it once,
 * best effort; `sweep`, run by the same entry point as the outbox sweeper (the embedded timer,
 * the Google `sweep` function: Engine.sweep), lists the tombstones whose purge is unfinished and
 * runs it again, so a crash anywhere in between (the process killed mid-purge) is finished by the
 * next sweep. A tombstone is marked purged only after its cold objects are gone, so a crash
 * between the two leaves it listed.
 *
 * Retention (PATCHBAY_DELETE_RETENTION_MS): a purged tombstone deleted longer ago is dropped by
 * the sweep, after one more pass over cold storage (for objects a crashed bundler wrote after
 * the purge: shared/cold/bundler.ts deletes what it wrote when it learns of the delete, but a
 * crash can stop it first), the ledger's part and `onPurge` (a consumer's cursor and mirror row
 * written late) and the hot cache, and the id is free again.
 */
import type { ColdStore } from '../cold/store.js';
import type { Config } from '../config.js';
import type { Deletions, HotCache } from '../ports/index.js';
import type { Logger } from './read.js';

/** Ledger records removed per purge call (one transaction or batch each). */
export const PURGE_CHUNK = 400;
/** Tombstones the sweep lists at a time, for at most this many pages per run. */
const SWEEP_TOMBSTONES = 50;
const SWEEP_PAGES = 20;

export interface PurgeOptions {
  /** Most ledger chunks this call removes before it gives up (the rest is the sweep's). Default: no bound. */
  maxChunks?: number;
}

export class Deleter {
  constructor(
    private readonly ledger: Deletions,
    private readonly cache: HotCache,
    private readonly cold: ColdStore,
    private readonly config: Pick<Config, 'deleteRetentionMs'>,
    private readonly logError: Logger,
    private readonly onPurge: (id: string) => Promise<void> = async () => {},
  ) {}

  /**
   * Purges the deleted scope `id`: its ledger records, then its cold objects, then marks its
   * tombstone purged. Returns whether it finished (false: `maxChunks` ran out first). Throws what
   * a port throws: a purge cut short is finished by a later call.
   */
  async purge(id: string, opts: PurgeOptions = {}): Promise<boolean> {
    const max = opts.maxChunks ?? Number.POSITIVE_INFINITY;
    let chunks = 0;
    for (;;) {
      if (chunks >= max) return false;
      chunks++;
      if (await this.ledger.purgeScope(id, PURGE_CHUNK)) break;
    }
    await this.cold.deleteScope(id);
    await this.onPurge(id); // what else the scope stored (an upload's file), before the tombstone is marked purged
    await this.ledger.markPurged(id);
    return true;
  }

  /**
   * Finishes every unfinished purge, and drops the tombstones whose retention is over. Returns
   * how many tombstones it worked on. A failure is logged and leaves that tombstone to the next sweep.
   */
  async sweep(now: number): Promise<number> {
    const before = now - this.config.deleteRetentionMs;
    let count = 0;
    const failed = new Set<string>();
    for (let page = 0; page < SWEEP_PAGES; page++) {
      const listed = (await this.ledger.listDeleted(before, SWEEP_TOMBSTONES + failed.size)).filter((t) => !failed.has(t.id));
      for (const t of listed) {
        try {
          if (!t.purged) await this.purge(t.id);
          if (t.deleted < before) {
            // Once more before the id is free: a consumer that read the live head before the delete
            // can have written its cursor (a scope's first) and mirror row after the purge; a new
            // scope of this id must not meet them (its first events taken for duplicates).
            while (!(await this.ledger.purgeScope(t.id, PURGE_CHUNK))) {}
            await this.onPurge(t.id);
            await this.cold.deleteScope(t.id);
            await this.cache.delete(t.id); // an entry a late cache put left must not meet a new scope of this id
            await this.ledger.dropTombstone(t.id, before);
          }
          count++;
        } catch (err) {
          failed.add(t.id);
          this.logError({ message: 'purging a deleted scope failed; the next sweep retries', scope: t.id, err: String(err) });
        }
      }
      if (listed.length < SWEEP_TOMBSTONES) break;
    }
    return count;
  }
}
