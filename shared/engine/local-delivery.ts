/**
 * In-process delivery to push consumers, for embedded mode: what Pub/Sub push subscriptions and
 * the `push` function do on Google (shared/http/push.ts), with the same semantics, so a consumer
 * (a domain's webhooks, the mirror, a configuration apply) behaves alike in both modes.
 *
 * Guarantee 4 for consumers, as on Google: each consumer handles each scope's patches in index
 * order, at least once (shared/engine/consumer.ts keeps the cursor in the ledger, so it survives
 * restarts, and fills gaps from the log). Here:
 * - Live: every record the engine hands to the bus is offered to every consumer (`offer`), and
 *   delivered by one runner per (consumer, scope), so deliveries of one scope never overlap and
 *   scopes do not wait for one another.
 * - Failures: a failed delivery is tried again after a delay that doubles from 1 s up to 60 s
 *   (Pub/Sub's retry policy in spirit), for as long as the process runs; the consumer's cursor
 *   has not moved, so nothing is skipped.
 * - Restarts: `catchUp` walks every scope and delivers to each consumer what its cursor lacks.
 *   The app runs it at start, which covers a crash between a commit and its delivery.
 */
import type { ColdPointers, ConsumerCursors } from '../ports/index.js';
import type { PatchEvent, PatchRecord } from '../protocol.js';
import { toEvent } from '../protocol.js';
import type { Consumer } from './consumer.js';
import type { Logger } from './read.js';

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;
const CATCH_UP_PAGE = 500;

interface Runner {
  /** The newest event offered for this scope; delivering it delivers everything before it too. */
  latest: PatchEvent;
  running: Promise<void> | null;
  failures: number;
  timer: NodeJS.Timeout | null;
}

type ReadLog = (id: string, from: number, to: number) => AsyncIterable<PatchRecord>;

export class LocalDelivery {
  private readonly runners = new Map<string, Runner>();
  private closed = false;

  constructor(
    private readonly consumers: Consumer[],
    private readonly ledger: Pick<ColdPointers, 'listScopes'> & Pick<ConsumerCursors, 'getCursor'>,
    private readonly readLog: ReadLog,
    private readonly logError: Logger,
    private readonly opts: { firstRetryMs?: number } = {},
  ) {}

  /** Offers published events (one scope's, ascending) to every consumer. */
  offer(events: PatchEvent[]): void {
    const last = events[events.length - 1];
    if (!last || this.closed) return;
    for (const c of this.consumers) if (c.accepts(last.scope)) this.push(c, last);
  }

  /** Delivers to every consumer what its cursor lacks, scope by scope (at start: see the top of this file). */
  async catchUp(): Promise<void> {
    if (this.consumers.length === 0) return;
    let after = '';
    for (;;) {
      const page = await this.ledger.listScopes(after, CATCH_UP_PAGE);
      for (const s of page) {
        if (this.closed) return;
        const behind: Consumer[] = [];
        for (const c of this.consumers) if (c.accepts(s.id) && (await this.ledger.getCursor(c.name, s.id)) < s.ii) behind.push(c);
        if (behind.length === 0) continue;
        for await (const r of this.readLog(s.id, s.ii, s.ii)) for (const c of behind) this.push(c, toEvent(r));
      }
      if (page.length < CATCH_UP_PAGE) return;
      after = (page[page.length - 1] as { id: string }).id;
    }
  }

  /** Resolves once nothing is being delivered or waiting for a retry (tests). */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [...this.runners.values()];
      if (busy.length === 0) return;
      await Promise.all(busy.map((r) => r.running ?? new Promise((res) => setTimeout(res, 10))));
    }
  }

  /** Stops: no new deliveries, no retries; waits for the ones running. */
  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.runners.values()) if (r.timer) clearTimeout(r.timer);
    await Promise.all([...this.runners.values()].map((r) => r.running));
    this.runners.clear();
  }

  private push(consumer: Consumer, event: PatchEvent): void {
    const key = `${consumer.name}\u0000${event.scope}`;
    const runner = this.runners.get(key);
    if (runner) {
      if (event.ii > runner.latest.ii) runner.latest = event;
      return; // its loop (or its retry) takes the newer event
    }
    const fresh: Runner = { latest: event, running: null, failures: 0, timer: null };
    this.runners.set(key, fresh);
    this.run(key, consumer, fresh);
  }

  private run(key: string, consumer: Consumer, runner: Runner): void {
    runner.timer = null;
    runner.running = (async () => {
      for (;;) {
        const target = runner.latest;
        try {
          await consumer.deliver(target);
          runner.failures = 0;
        } catch (err) {
          runner.failures += 1;
          const delay = Math.min(MAX_RETRY_MS, (this.opts.firstRetryMs ?? FIRST_RETRY_MS) * 2 ** (runner.failures - 1));
          this.logError({
            message: 'consumer delivery failed; retrying',
            consumer: consumer.name,
            scope: target.scope,
            ii: target.ii,
            retryInMs: delay,
            err: String(err),
          });
          if (this.closed) break;
          runner.running = null;
          runner.timer = setTimeout(() => this.run(key, consumer, runner), delay);
          runner.timer.unref();
          return;
        }
        if (runner.latest === target || this.closed) break; // nothing newer arrived meanwhile
      }
      runner.running = null;
      this.runners.delete(key);
    })();
  }
}
