/**
 * Ordered delivery of committed patches to a named consumer (the target of a Pub/Sub push
 * subscription: a mirror updater, a domain worker).
 *
 * Guarantee 4, for push subscribers: a consumer handles the patches of a scope in index order.
 * A duplicate or redelivery (ii at or below the consumer's cursor) is acknowledged without being
 * handled again; an event past cursor + 1 is preceded by the missing patches, read from the log.
 * The cursor moves after each handled patch, so a handler that fails is called again with the
 * same patch on redelivery: handling is at least once per patch, and in order.
 *
 * A coalescing consumer (`{ catchUp }` instead of a PatchHandler: the mirror) keeps something
 * equal to a scope's state, not a record of each patch, so it is not handed every patch. On an
 * event past its cursor it is called once with that event, brings what it keeps to the scope's
 * state at some `ii` at or past the event (the head, which it reads itself: the state at head
 * folds every patch, so gaps need no separate fill) and says which; the cursor then moves once,
 * from where it was to that `ii`. The events a burst left queued behind it are then at or below
 * the cursor: duplicates, acknowledged with no write, and with no read either while this process
 * remembers the cursor it moved (below). Guarantee 4 holds for what it keeps: in `ii` order (it
 * only moves forward: the handler writes a state at or past the cursor, and its store keeps the
 * newest), at least once (a failure leaves the cursor, and the event is delivered again). A scope
 * the handler finds gone writes no cursor (the purge removed its cursors; none is made again).
 * Remembered cursors expire after `cacheMs`: a deleted scope's id can be created again once its
 * tombstone is dropped (PATCHBAY_DELETE_RETENTION_MS after the deletion), and that new scope's
 * cursor starts at 0; an entry younger than the retention cannot have outlived the scope it was
 * read for (the app passes half the retention, at most 10 s).
 *
 * While a burst lasts, its events reach the consumer more slowly than they are written (Pub/Sub
 * pushes a scope's messages one at a time), and every one queued behind a catch-up is a
 * duplicate: the first event past the cursor, which would catch up again, waits for the queue to
 * drain down to it. So a duplicate that arrives `refreshMs` or more after the scope's last catch-up
 * in this process catches up all the same (a head read, and a write only if the head moved): the
 * mirror then follows the head within about `refreshMs` however long the queue, at the cost of at
 * most one catch-up per `refreshMs` per scope, and only while its events keep coming.
 *
 * A consumer may want only some scopes (`accepts`, by id): the others are acknowledged as
 * skipped, without a cursor write (on Google its push subscription filters them out already).
 * `wants` is a finer filter, asked per event when the answer needs a read (the webhooks consumer:
 * does the scope's domain have a matching webhook?): an event it does not want is skipped the
 * same way, without reading or writing the cursor. The cursor stays behind it, so a later wanted
 * event's gap fill hands the skipped patches to the handler, which filters what it should not see.
 */
import { LRUCache } from 'lru-cache';
import { PatchbayError } from '../errors.js';
import type { ConsumerCursors } from '../ports/index.js';
import type { PatchEvent, PatchRecord } from '../protocol.js';
import { toEvent } from '../protocol.js';

export type PatchHandler = (event: PatchEvent) => Promise<void>;

/**
 * A coalescing consumer's handler (see the top of this file): brings what it keeps for the event's
 * scope to the scope's state at an `ii` at or past `event.ii` (and `cursor`, the consumer's, which
 * says what it keeps already: a head not past it needs no write) and returns that `ii`, or null when
 * the scope no longer exists (what it kept of it removed; no cursor is written then). Throws to be
 * called again later.
 */
export type CatchUpHandler = (event: PatchEvent, cursor: number) => Promise<number | null>;

export interface Coalescing {
  catchUp: CatchUpHandler;
  /** How long a cursor this process moved is trusted without a read (default 0: never; see the top of this file). */
  cacheMs?: number;
  /** A duplicate arriving this long after the scope's last catch-up here catches up again (default REFRESH_MS; see the top of this file). */
  refreshMs?: number;
}

/** Default `refreshMs`: the lag a burst's queued events add at most, while they keep arriving. */
export const REFRESH_MS = 100;

export interface Delivery {
  /** Indices handled by this delivery, in order (gap fill first); a coalescing consumer's: the `ii` it caught up to. Empty for a duplicate. */
  handled: number[];
  duplicate: boolean;
  /** The scope is not one this consumer accepts: nothing was handled or recorded. */
  skipped?: boolean;
  /** A coalescing consumer found the scope gone (deleted): what it kept removed, no cursor written. */
  gone?: boolean;
}

type ReadLog = (id: string, from: number, to: number) => AsyncIterable<PatchRecord>;

export class Consumer {
  /** Cursors this process moved, per scope, and when it last caught the scope up, while younger than `cacheMs` (coalescing only). */
  private readonly known: LRUCache<string, { ii: number; at: number }> | null;
  private readonly refreshMs: number;

  constructor(
    readonly name: string,
    private readonly ledger: ConsumerCursors,
    private readonly readLog: ReadLog,
    private readonly handler: PatchHandler | Coalescing,
    /** Which scopes it wants (default: all). */
    readonly accepts: (scope: string) => boolean = () => true,
    /** Which events it wants, of the accepted scopes (default: all; see the top of this file). */
    private readonly wants: (event: PatchEvent) => Promise<boolean> = async () => true,
  ) {
    const ttl = typeof handler === 'function' ? 0 : Math.floor(handler.cacheMs ?? 0);
    this.known = ttl > 0 ? new LRUCache({ max: 10_000, ttl }) : null;
    this.refreshMs = typeof handler === 'function' ? Number.POSITIVE_INFINITY : (handler.refreshMs ?? REFRESH_MS);
  }

  async deliver(event: PatchEvent): Promise<Delivery> {
    const known = this.known?.get(event.scope);
    const refresh = known !== undefined && known.ii >= event.ii;
    if (refresh && performance.now() - known.at < this.refreshMs) return { handled: [], duplicate: true };
    if (!this.accepts(event.scope) || !(await this.wants(event))) return { handled: [], duplicate: false, skipped: true };
    if (typeof this.handler !== 'function') return this.coalesce(event, this.handler.catchUp, refresh);
    let cursor = await this.ledger.getCursor(this.name, event.scope);
    if (event.ii <= cursor) return { handled: [], duplicate: true };
    const handled: number[] = [];
    if (event.ii > cursor + 1) {
      for await (const r of this.readLog(event.scope, cursor + 1, event.ii - 1)) {
        if (r.ii !== cursor + 1) break;
        cursor = await this.handleOne(this.handler, toEvent(r), cursor);
        handled.push(r.ii);
      }
      if (cursor !== event.ii - 1) {
        throw new PatchbayError('unavailable', `log of ${event.scope} does not have ${cursor + 1}..${event.ii - 1} yet`);
      }
    }
    await this.handleOne(this.handler, event, cursor);
    handled.push(event.ii);
    return { handled, duplicate: false };
  }

  /**
   * One call of a coalescing handler, at most one cursor move (see the top of this file). `handled`
   * is the `ii` it reached. `refresh`: a duplicate that catches up all the same.
   */
  private async coalesce(event: PatchEvent, catchUp: CatchUpHandler, refresh: boolean): Promise<Delivery> {
    const started = performance.now();
    const cursor = await this.ledger.getCursor(this.name, event.scope);
    // Not remembered: nothing here says the scope still exists (see the top of this file).
    if (event.ii <= cursor && !refresh) return { handled: [], duplicate: true };
    const reached = await catchUp(event, cursor);
    // Gone: no cursor is written, so none outlives the purge of the scope's cursors (its id may be
    // created again later). The scope's later events remove again, which changes nothing.
    if (reached === null) {
      this.known?.delete(event.scope);
      return { handled: [], duplicate: false, gone: true };
    }
    if (reached < Math.max(event.ii, cursor)) {
      throw new PatchbayError('internal', `consumer ${this.name} caught ${event.scope} up to ${reached}, behind ${Math.max(event.ii, cursor)}`);
    }
    // The handler saw the scope exist after `started`, so the scope was deleted (if at all) after
    // `started`, and its id cannot return before `started` + the retention.
    if (reached <= cursor) {
      this.remember(event.scope, cursor, started);
      return { handled: [], duplicate: true };
    }
    if (!(await this.ledger.advanceCursor(this.name, event.scope, cursor, reached))) {
      // Moved meanwhile by another delivery of the scope: fine if it covers this event.
      if ((await this.ledger.getCursor(this.name, event.scope)) < event.ii) {
        throw new PatchbayError('unavailable', `cursor of ${this.name} on ${event.scope} moved concurrently`);
      }
      return { handled: [], duplicate: true };
    }
    this.remember(event.scope, reached, started);
    return { handled: [reached], duplicate: event.ii <= cursor };
  }

  /** Remembers a cursor moved (or confirmed) after `since` (ms, performance.now), until `cacheMs` after `since`. */
  private remember(scope: string, cursor: number, since: number): void {
    if (!this.known) return;
    const left = (this.known.ttl ?? 0) - (performance.now() - since);
    if (left > 0 && cursor >= (this.known.get(scope)?.ii ?? 0)) this.known.set(scope, { ii: cursor, at: since }, { ttl: Math.floor(left) });
  }

  private async handleOne(handler: PatchHandler, event: PatchEvent, cursor: number): Promise<number> {
    await handler(event);
    if (!(await this.ledger.advanceCursor(this.name, event.scope, cursor, event.ii))) {
      // Another delivery of the same scope moved the cursor meanwhile (Pub/Sub delivers one
      // message per ordering key at a time, so this is a redelivery overlap): let it retry.
      throw new PatchbayError('unavailable', `cursor of ${this.name} on ${event.scope} moved concurrently`);
    }
    return event.ii;
  }
}
