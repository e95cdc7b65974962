/**
 * The outbox: hands committed records to the bus and moves the published watermark, and the
 * sweeper that republishes what was committed but never marked published.
 *
 * Guarantee 5 (a crash leaves no trace or a complete, eventually published patch): the committed
 * record is the outbox. A failed publish is only logged and its run never noted, so the watermark
 * cannot pass it (shared/engine/watermarks.ts); `sweep` later lists the scopes whose head is past
 * their watermark and that were last written more than PATCHBAY_SWEEP_AGE_MS ago, republishes
 * the missing records in order from the whole log (bundles included, guarantee 6) and marks them.
 * Consumers deduplicate by (scope, ii), so a record published twice is harmless.
 */
import type { Config } from '../config.js';
import type { Adapters } from '../ports/index.js';
import type { PatchEvent, PatchRecord } from '../protocol.js';
import { toEvent } from '../protocol.js';
import type { Logger } from './read.js';
import { WatermarkWriter } from './watermarks.js';

/** The sweeper lists this many scopes at a time, for at most this many pages per run. */
const SWEEP_SCOPES = 100;
const SWEEP_PAGES = 20;

/** The sweeper republishes at most this many records in one bus call. */
const SWEEP_BATCH = 1000;

export class Outbox {
  private readonly watermarks: WatermarkWriter;

  constructor(
    private readonly ports: Pick<Adapters, 'ledger' | 'bus'>,
    private readonly config: Pick<Config, 'publishMarkMs' | 'sweepAgeMs'>,
    private readonly readLog: (id: string, from: number, to: number) => AsyncGenerator<PatchRecord>,
    private readonly logError: Logger,
    /** Told of every run handed to the bus (embedded consumers: shared/engine/local-delivery.ts). */
    private readonly onPublished: (events: PatchEvent[]) => void = () => {},
  ) {
    this.watermarks = new WatermarkWriter(ports.ledger, config.publishMarkMs, (id, err) =>
      this.logError({ message: 'watermark write failed; the sweeper will republish', scope: id, err: String(err) }),
    );
  }

  /**
   * Hands records to the bus, then notes them for the (batched) watermark. A failure is only
   * logged: the run is never noted, so the watermark cannot pass it and the sweeper republishes it.
   */
  async publish(id: string, records: PatchRecord[], markNow = false): Promise<boolean> {
    const from = (records[0] as PatchRecord).ii;
    const to = (records[records.length - 1] as PatchRecord).ii;
    const events = records.map(toEvent);
    try {
      await this.ports.bus.publish(events);
    } catch (err) {
      this.logError({ message: 'publish failed; the sweeper will retry', scope: id, err: String(err) });
      return false;
    }
    this.onPublished(events);
    if (markNow) await this.watermarks.markNow(id, from, to);
    else this.watermarks.note(id, from, to);
    return true;
  }

  /** The outbox sweeper: republishes committed patches that were never marked published. */
  async sweep(now: number): Promise<number> {
    let count = 0;
    // Page by page (scopes drop out of the listing as they are published), while pages are full
    // and publishing makes progress: a backlog of thousands of scopes is cleared in one run.
    for (let page = 0; page < SWEEP_PAGES; page++) {
      const before = count;
      const stale = await this.ports.ledger.listUnpublished(now - this.config.sweepAgeMs, SWEEP_SCOPES);
      count += await this.sweepScopes(stale);
      if (stale.length < SWEEP_SCOPES || count === before) break;
    }
    return count;
  }

  private async sweepScopes(stale: Array<{ id: string; published: number; ii: number }>): Promise<number> {
    let count = 0;
    for (const s of stale) {
      let batch: PatchRecord[] = [];
      const flush = async () => {
        if (batch.length === 0) return true;
        const ok = await this.publish(s.id, batch, true);
        if (ok) count += batch.length;
        batch = [];
        return ok;
      };
      for await (const r of this.readLog(s.id, s.published + 1, s.ii)) {
        batch.push(r);
        if (batch.length === SWEEP_BATCH && !(await flush())) break;
      }
      await flush();
    }
    return count;
  }

  /** Writes the watermarks noted so far. */
  flush(): Promise<void> {
    return this.watermarks.flush();
  }
}
