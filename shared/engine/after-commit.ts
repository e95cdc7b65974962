/**
 * The work that follows a commit: the hot cache put and the publish, per scope in commit order,
 * off the scope's write queue (its next group commits meanwhile).
 *
 * When the writers get their acks is PATCHBAY_ACK_AFTER's choice: right after the commit
 * (`commit`), or once their records have been published (`publish`, via `passed`). `publish`
 * does not wait for the cache put that goes out alongside: the cache is a shortcut whose lag no
 * reader can see (a reader reads the head first and folds the log tail onto an older entry), so
 * the ack waits for the slower of two round trips only where the event's departure is at stake.
 * Acking at the commit is safe because the ack's correctness never depended on what follows:
 * - Guarantee 5 (a crash leaves no trace or a complete, eventually published patch): the
 *   committed record is the outbox. A crash or failed publish after the ack leaves the patch
 *   unmarked, and the sweeper republishes it, exactly as for a publish that failed before.
 * - The cache is only a shortcut (shared/ports/cache.ts): a reader that finds it behind folds
 *   the log tail onto it.
 * What a writer gains is the cache and bus round trips (two network calls on Google) per group;
 * what it gives up is that its ack no longer proves the event left the instance. It is not the
 * default on Google, where an instance's CPU is throttled once it has answered.
 *
 * Per scope, runs are published in commit order: one runner per scope takes whatever has been
 * committed since its last run (so a backlog is published in a few large calls, not one call per
 * group) and publishes it in one ordered call, with the cache put of its last state alongside.
 */
import type { Json } from '../json.js';
import type { PatchRecord } from '../protocol.js';

/** Records handed to the bus in one call at most, when a backlog is merged. */
const MAX_RUN = 1000;

interface Pending {
  records: PatchRecord[];
  /** Every record up to this ii has been published (or given up on, for the sweeper). */
  done: number;
  /** Callers waiting for a run to pass their ii. */
  waiters: Array<{ ii: number; resolve: () => void }>;
  /** The state after the last record, and its jsonHeapBytes. */
  state: Json;
  bytes: number;
  running: Promise<void>;
}

export interface AfterCommitSteps {
  /** Stores the state at ii in the hot cache. Must not throw (failures are logged by the step). */
  cache(id: string, ii: number, state: Json, bytes: number): Promise<void>;
  /** Publishes an ordered run of records. Must not throw (failures are left to the sweeper). */
  publish(id: string, records: PatchRecord[]): Promise<unknown>;
}

export class AfterCommit {
  private readonly scopes = new Map<string, Pending>();

  constructor(private readonly steps: AfterCommitSteps) {}

  /**
   * Queues a committed run of records (in commit order for the scope) and the state after it
   * (`bytes`: its jsonHeapBytes).
   */
  add(id: string, records: PatchRecord[], state: Json, bytes: number): void {
    const pending = this.scopes.get(id);
    if (pending) {
      pending.records.push(...records);
      pending.state = state;
      pending.bytes = bytes;
      return;
    }
    const first = records[0] as PatchRecord;
    const fresh: Pending = { records: [...records], done: first.ii - 1, waiters: [], state, bytes, running: Promise.resolve() };
    this.scopes.set(id, fresh);
    fresh.running = this.run(id, fresh);
  }

  /**
   * Resolves once the scope's record `ii`, committed earlier, has been published (or its
   * publish failed and was left to the sweeper); its cache put may still be out. For
   * PATCHBAY_ACK_AFTER=publish: the ack waits for this, while the scope's next group commits.
   */
  passed(id: string, ii: number): Promise<void> {
    const pending = this.scopes.get(id);
    if (!pending || ii <= pending.done) return Promise.resolve();
    return new Promise((resolve) => pending.waiters.push({ ii, resolve }));
  }

  private async run(id: string, pending: Pending): Promise<void> {
    // No waiting for more to arrive: a scope has one commit at a time on this instance (its
    // queue), so what piles up while a run is out is merged into the next one anyway.
    while (pending.records.length > 0) {
      const records = pending.records.splice(0, MAX_RUN);
      const last = records[records.length - 1] as PatchRecord;
      // The cache put and the publish go out together: neither depends on the other (a put never
      // moves the cache backwards; a reader that finds it behind folds the log tail), and the
      // events should not wait for a cache round trip. The state only belongs to the run that
      // ends at the last committed record.
      const cached = pending.records.length === 0 ? this.steps.cache(id, last.ii, pending.state, pending.bytes) : null;
      const published = this.steps.publish(id, records).then(() => {
        pending.done = last.ii;
        pending.waiters = pending.waiters.filter((w) => (w.ii <= last.ii ? void w.resolve() : true));
      });
      await Promise.all([cached, published]);
    }
    this.scopes.delete(id);
    for (const w of pending.waiters) w.resolve();
  }

  /** Resolves when everything queued so far has been cached and published (or given up on). */
  async idle(): Promise<void> {
    while (this.scopes.size > 0) await Promise.all([...this.scopes.values()].map((p) => p.running));
  }
}
