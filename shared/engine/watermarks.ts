/**
 * Batches published-watermark writes. After a group is published, the engine notes the run
 * [from..to]; runs of one scope that follow each other merge, and each scope's merged runs are
 * written once per `delayMs` with `Ledger.markPublished(id, to, from)`. The ledger only advances
 * a watermark that already covers `from - 1`, so a run that failed to publish (and was never
 * noted) blocks the watermark until the sweeper republishes it: late, never lost.
 * A watermark that lags by up to `delayMs` only means the sweeper may republish a little, and
 * subscribers deduplicate by ii.
 *
 * One write per scope at a time: a scope's next runs wait (and merge) until its write in flight
 * has finished. Two overlapping writes of runs that follow each other would each read the
 * watermark before the other moved it, and the later one, seeing `from - 1` uncovered, would be
 * dropped; every later run then finds the same gap, so the watermark would stay stuck until the
 * sweeper republished the whole stretch: a burst of duplicates queued ahead of the scope's live
 * events on its ordering key (seconds of fan-out delay on a slow Firestore).
 */
import type { Outbox } from '../ports/index.js';

interface Run {
  from: number;
  to: number;
}

export class WatermarkWriter {
  /** Each scope's runs not yet handed to the ledger, in order; contiguous ones merged. */
  private pending = new Map<string, Run[]>();
  /** Each scope's write in flight (it writes its runs one after the other). */
  private readonly writing = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ledger: Outbox,
    private readonly delayMs: number,
    private readonly onError: (id: string, err: unknown) => void,
  ) {}

  note(id: string, from: number, to: number): void {
    const runs = this.pending.get(id);
    const last = runs?.[runs.length - 1];
    // A run that does not follow the last one is kept apart: the older run is still written first.
    if (last && last.to + 1 === from) last.to = to;
    else if (runs) runs.push({ from, to });
    else this.pending.set(id, [{ from, to }]);
    if (this.delayMs === 0) this.start(id);
    else this.schedule();
  }

  /**
   * Notes the run and writes the scope's pending runs now, through the same one-write-per-scope
   * path (the sweeper's marks: a direct write beside a batched one would bring back the overlap
   * described above). Resolves once this run (and the scope's runs before it) are written.
   */
  async markNow(id: string, from: number, to: number): Promise<void> {
    this.note(id, from, to);
    while (this.pending.has(id) || this.writing.has(id)) {
      this.start(id);
      await this.writing.get(id);
    }
  }

  /** Writes every pending run now; resolves when all of them (and those before) are written. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.pending.size > 0 || this.writing.size > 0) {
      for (const id of [...this.pending.keys()]) this.start(id);
      await Promise.all(this.writing.values());
    }
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = null;
      for (const id of [...this.pending.keys()]) this.start(id);
    }, this.delayMs);
    this.timer.unref?.();
  }

  /** Starts writing the scope's pending runs, unless a write is in flight (it re-arms the timer). */
  private start(id: string): void {
    const runs = this.pending.get(id);
    if (!runs || this.writing.has(id)) return;
    this.pending.delete(id);
    const write = (async () => {
      for (const run of runs) await this.ledger.markPublished(id, run.to, run.from).catch((err) => this.onError(id, err));
    })().finally(() => {
      this.writing.delete(id);
      if (!this.pending.has(id)) return;
      if (this.delayMs === 0) this.start(id);
      else this.schedule();
    });
    this.writing.set(id, write);
  }
}
