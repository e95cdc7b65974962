/**
 * Batches published-watermark writes. After a group is published, the engine notes the run
 * [from..to]; runs of one scope that follow each other merge, and each scope's merged run is
 * written once per `delayMs` with `Ledger.markPublished(id, to, from)`. The ledger only advances
 * a watermark that already covers `from - 1`, so a run that failed to publish (and was never
 * noted) blocks the watermark until the sweeper republishes it: late, never lost.
 * A watermark that lags by up to `delayMs` only means the sweeper may republish a little, and
 * subscribers deduplicate by ii.
 */
import type { Outbox } from '../ports/index.js';

interface Run {
  from: number;
  to: number;
}

export class WatermarkWriter {
  private pending = new Map<string, Run>();
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly ledger: Outbox,
    private readonly delayMs: number,
    private readonly onError: (id: string, err: unknown) => void,
  ) {}

  note(id: string, from: number, to: number): void {
    const run = this.pending.get(id);
    if (run && run.to + 1 === from) {
      run.to = to;
    } else {
      if (run) this.write(id, run); // not contiguous: write the older run as it is
      this.pending.set(id, { from, to });
    }
    if (this.delayMs === 0) {
      void this.flush();
      return;
    }
    this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
    this.timer.unref?.();
  }

  /** Writes every pending run now; resolves when all writes so far are done. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const runs = this.pending;
    this.pending = new Map();
    for (const [id, run] of runs) this.write(id, run);
    await this.writing;
  }

  private write(id: string, run: Run): void {
    const p = this.ledger.markPublished(id, run.to, run.from).catch((err) => this.onError(id, err));
    this.writing = Promise.all([this.writing, p]).then(() => {});
  }
}
