/**
 * The work that follows a commit once its writers have their acks: the hot cache put, then the
 * publish, per scope in commit order.
 *
 * The brief orders the write path commit → cache → publish → mark → ack. patchbay acks right
 * after the commit and does the rest here, because the ack's correctness never depended on it:
 * - Guarantee 5 (a crash leaves no trace or a complete, eventually published patch): the
 *   committed record is the outbox. A crash or failed publish after the ack leaves the patch
 *   unmarked, and the sweeper republishes it, exactly as for a publish that failed before.
 * - The cache is only a shortcut (shared/ports/cache.ts): a reader that finds it behind folds
 *   the log tail onto it.
 * - Per scope, runs are published in commit order: one runner per scope takes whatever has been
 *   committed since its last run (so a backlog is published in a few large calls, not one call
 *   per group) and publishes it in one ordered call, with the cache put of its last state
 *   alongside.
 * What a writer gains is the cache and bus round trips (two network calls on Google) per group;
 * what it gives up is that its own ack no longer proves the event left the instance.
 */
import type { Json } from '../json.js';
import type { PatchRecord } from '../protocol.js';

/** Records handed to the bus in one call at most, when a backlog is merged. */
const MAX_RUN = 1000;

interface Pending {
  records: PatchRecord[];
  /** The state after the last record. */
  state: Json;
  running: Promise<void>;
}

export interface AfterCommitSteps {
  /** Stores the state at ii in the hot cache. Must not throw (failures are logged by the step). */
  cache(id: string, ii: number, state: Json): Promise<void>;
  /** Publishes an ordered run of records. Must not throw (failures are left to the sweeper). */
  publish(id: string, records: PatchRecord[]): Promise<unknown>;
}

export class AfterCommit {
  private readonly scopes = new Map<string, Pending>();

  constructor(private readonly steps: AfterCommitSteps) {}

  /** Queues a committed run of records (in commit order for the scope) and the state after it. */
  add(id: string, records: PatchRecord[], state: Json): void {
    const pending = this.scopes.get(id);
    if (pending) {
      pending.records.push(...records);
      pending.state = state;
      return;
    }
    const fresh: Pending = { records: [...records], state, running: Promise.resolve() };
    this.scopes.set(id, fresh);
    fresh.running = this.run(id, fresh);
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
      const cached = pending.records.length === 0 ? this.steps.cache(id, last.ii, pending.state) : null;
      await Promise.all([cached, this.steps.publish(id, records)]);
    }
    this.scopes.delete(id);
  }

  /** Resolves when everything queued so far has been cached and published (or given up on). */
  async idle(): Promise<void> {
    while (this.scopes.size > 0) await Promise.all([...this.scopes.values()].map((p) => p.running));
  }
}
