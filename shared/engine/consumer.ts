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
 * A consumer may want only some scopes (`accepts`, by id): the others are acknowledged as
 * skipped, without a cursor write (on Google its push subscription filters them out already).
 * `wants` is a finer filter, asked per event when the answer needs a read (the webhooks consumer:
 * does the scope's domain have a matching webhook?): an event it does not want is skipped the
 * same way, without reading or writing the cursor. The cursor stays behind it, so a later wanted
 * event's gap fill hands the skipped patches to the handler, which filters what it should not see.
 */
import { PatchbayError } from '../errors.js';
import type { ConsumerCursors } from '../ports/index.js';
import type { PatchEvent, PatchRecord } from '../protocol.js';
import { toEvent } from '../protocol.js';

export type PatchHandler = (event: PatchEvent) => Promise<void>;

export interface Delivery {
  /** Indices handled by this delivery, in order (gap fill first). Empty for a duplicate. */
  handled: number[];
  duplicate: boolean;
  /** The scope is not one this consumer accepts: nothing was handled or recorded. */
  skipped?: boolean;
}

type ReadLog = (id: string, from: number, to: number) => AsyncIterable<PatchRecord>;

export class Consumer {
  constructor(
    readonly name: string,
    private readonly ledger: ConsumerCursors,
    private readonly readLog: ReadLog,
    private readonly handler: PatchHandler,
    /** Which scopes it wants (default: all). */
    readonly accepts: (scope: string) => boolean = () => true,
    /** Which events it wants, of the accepted scopes (default: all; see the top of this file). */
    private readonly wants: (event: PatchEvent) => Promise<boolean> = async () => true,
  ) {}

  async deliver(event: PatchEvent): Promise<Delivery> {
    if (!this.accepts(event.scope) || !(await this.wants(event))) return { handled: [], duplicate: false, skipped: true };
    let cursor = await this.ledger.getCursor(this.name, event.scope);
    if (event.ii <= cursor) return { handled: [], duplicate: true };
    const handled: number[] = [];
    if (event.ii > cursor + 1) {
      for await (const r of this.readLog(event.scope, cursor + 1, event.ii - 1)) {
        if (r.ii !== cursor + 1) break;
        cursor = await this.handleOne(toEvent(r), cursor);
        handled.push(r.ii);
      }
      if (cursor !== event.ii - 1) {
        throw new PatchbayError('unavailable', `log of ${event.scope} does not have ${cursor + 1}..${event.ii - 1} yet`);
      }
    }
    await this.handleOne(event, cursor);
    handled.push(event.ii);
    return { handled, duplicate: false };
  }

  private async handleOne(event: PatchEvent, cursor: number): Promise<number> {
    await this.handler(event);
    if (!(await this.ledger.advanceCursor(this.name, event.scope, cursor, event.ii))) {
      // Another delivery of the same scope moved the cursor meanwhile (Pub/Sub delivers one
      // message per ordering key at a time, so this is a redelivery overlap): let it retry.
      throw new PatchbayError('unavailable', `cursor of ${this.name} on ${event.scope} moved concurrently`);
    }
    return event.ii;
  }
}
