/**
 * Mirror lag, the time from a patch's commit to its row being visible to queries: collected by
 * the mirror consumer (shared/mirror/consumer.ts) for every patch event it mirrors, as
 * `visible - event.at` (the row is visible once the upsert's transaction has committed), and the
 * newest row written per table. Samples are kept in memory and written to the domain's mirror
 * (Mirror.recordLag, a row per domain per flush) at most once per FLUSH_MS, on the mirror's own
 * handling path when one is due (so a Cloud Function instance writes them while it still has
 * CPU) and by a timer otherwise; rows older than LAG_WINDOW_MS are dropped then. The admin reads
 * the percentiles of every process's samples over the window (GET /v1/domains/{domain}/mirror).
 * Best effort: samples a process held when it stopped are lost; a failed write is logged and dropped.
 */
import type { LagRecord, Mirror } from '../ports/mirror.js';

/** The window the admin's percentiles cover. */
export const LAG_WINDOW_MS = 5 * 60_000;
/** How often a process writes its samples at most. */
export const FLUSH_MS = 1000;
/** Samples kept per domain between flushes (beyond: the oldest are dropped). */
const MAX_PENDING = 10_000;

export class LagRecorder {
  private pending = new Map<string, LagRecord>();
  private lastFlush = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly mirror: Mirror,
    private readonly logError: (e: Record<string, unknown>) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** A row of `scope` at `ii` became visible in `tables` of `domain` just now; its patch committed at `committedAt`. */
  note(domain: string, tables: string[], scope: string, ii: number, committedAt: number): void {
    const now = this.now();
    let rec = this.pending.get(domain);
    if (!rec) {
      rec = { lags: [], last: {} };
      this.pending.set(domain, rec);
    }
    rec.lags.push(Math.max(0, now - committedAt));
    if (rec.lags.length > MAX_PENDING) rec.lags.splice(0, rec.lags.length - MAX_PENDING);
    for (const t of tables) rec.last[t] = { scope, ii, at: now };
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Writes the samples if a flush is due (called on the handling path). */
  async maybeFlush(): Promise<void> {
    if (this.pending.size > 0 && this.now() - this.lastFlush >= FLUSH_MS) await this.flush();
  }

  /** Writes every pending sample now. */
  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = new Map();
    this.lastFlush = this.now();
    this.flushing = (async () => {
      for (const [domain, rec] of batch) {
        await this.mirror
          .recordLag(domain, rec, LAG_WINDOW_MS)
          .catch((err: unknown) => this.logError({ message: 'mirror lag not recorded', domain, err: String(err) }));
      }
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
