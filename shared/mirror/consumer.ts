/**
 * The mirror consumer: a coalescing push consumer's handler (shared/engine/consumer.ts; delivered
 * in-process by LocalDelivery embedded, by Pub/Sub push on Google) that keeps each domain's mirror
 * equal to its scopes.
 *
 * For a patch event of a scope it reads the scope's head and its state at the head's `ii` (cheap:
 * the engine's near cache holds it after a local commit), makes sure the domain's schema matches
 * its table definitions (once per process and definition), and upserts the scope's rows at that
 * `ii`. Mirroring the head rather than the event's own `ii` is what makes this safe however events
 * arrive: the row written is always a true state of the scope (guarantee 2) at some `ii` at or past
 * the event, and the mirror keeps the newest row (shared/ports/mirror.ts, Order). So duplicates,
 * reordering, gaps (the state at head folds the missing patches) and restarts (the Consumer
 * catches up from its cursor) all end with the rows at the head. It returns the `ii` it mirrored
 * and the Consumer moves its cursor there at once: the events of a burst queued behind this one
 * are then duplicates, so a hot scope costs one upsert and one cursor move per catch-up, not per
 * patch (docs/mirror.md, "Mirror lag").
 *
 * A scope that no longer exists (`scope_not_found`: deleted) has its rows removed from every
 * domain's mirror (the event does not say which domain it was in). A failure throws, so the
 * Consumer does not move its cursor and the event is delivered again.
 */
import type { CatchUpHandler, Coalescing } from '../engine/consumer.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { Head } from '../ports/ledger.js';
import type { Mirror } from '../ports/mirror.js';
import type { MirrorTables } from './definitions.js';
import type { LagRecorder } from './lag.js';
import { feeds, withBuiltins } from './sql.js';

export interface MirrorConsumerOptions {
  mirror: Mirror;
  /** The engine's reads (Engine.head and Engine.stateAt). `head` throws `scope_not_found` for a scope that does not exist. */
  source: { head(id: string): Promise<Head>; stateAt(id: string, ii: number): Promise<Json> };
  /** A domain's table definitions, or null when the domain has no mirror. */
  tables(domain: string): MirrorTables | null | Promise<MirrorTables | null>;
  /**
   * Whether the handler makes the domain's schema match `tables` itself (default: yes). Off when
   * something else owns the schema: uploaded configurations, whose apply's `mirror` step ensures
   * and backfills a version's tables before it is active (shared/domains/mirror-step.ts). A
   * handler still holding the previous version must not put the previous tables back then.
   */
  ensure?: boolean;
  /** Told of each patch event's row becoming visible (mirror lag, shared/mirror/lag.ts). */
  lag?: LagRecorder;
}

/** The mirror's two entry points: the consumer's handler, and `touch` for changes that are not patches. */
export interface MirrorSync {
  /** The handler for the mirror's Consumer (patch events): mirrors the head, returns the `ii` mirrored (null: the scope is gone). */
  catchUp: CatchUpHandler;
  /**
   * Mirrors the scope's head again, whatever this process mirrored before: for what changes a
   * scope without a patch, and so without an event (its creation, its access, its name). Calls
   * for one scope run one after another, and a call made while one runs runs again after it, so
   * the last row this process writes is built from a head read after the last change.
   */
  touch(id: string): Promise<void>;
}

/** The handler for the mirror's Consumer (coalescing; `cacheMs` and `refreshMs` as in shared/engine/consumer.ts). */
export function mirrorHandler(opts: MirrorConsumerOptions, tuning: Omit<Coalescing, 'catchUp'> = {}): Coalescing {
  return { catchUp: mirrorSync(opts).catchUp, ...tuning };
}

export function mirrorSync(opts: MirrorConsumerOptions): MirrorSync {
  /** Definitions `ensure` was last run with, per domain (as JSON): a change runs it again. */
  const ensured = new Map<string, string>();
  /** touch: the running call per scope, and whether another was asked for meanwhile. */
  const touching = new Map<string, { again: boolean; done: Promise<void> }>();

  /**
   * Mirrors the scope at its head; returns the `ii` written (`tables` null: the domain has no
   * mirror, nothing written), or null when the scope is gone (its rows removed).
   */
  const mirrorHead = async (id: string, above = -1): Promise<{ domain: string; tables: string[] | null; ii: number; updated: number } | null> => {
    let head: Head;
    try {
      head = await opts.source.head(id);
    } catch (err) {
      if (!(err instanceof PatchbayError) || err.code !== 'scope_not_found') throw err;
      await opts.mirror.remove(null, id);
      return null;
    }
    const domain = head.meta.domain;
    const tables = await opts.tables(domain);
    // No mirror: the scope's earlier events need nothing either (a catch-up replaying its history
    // reads the head once). Should the domain declare tables later, its apply backfills them.
    // Or a head not past `above` (the Consumer's cursor; `touch` passes none: a new scope's head is 0): the mirror holds it already.
    if (tables === null || head.ii <= above) return { domain, tables: null, ii: head.ii, updated: head.meta.updated };
    const key = JSON.stringify(tables);
    if ((opts.ensure ?? true) && ensured.get(domain) !== key) {
      await opts.mirror.ensure(domain, tables);
      ensured.set(domain, key);
    }
    const state = await opts.source.stateAt(id, head.ii);
    await opts.mirror.upsert(domain, tables, { id, ii: head.ii, meta: head.meta, state });
    const fed = Object.entries(withBuiltins(tables))
      .filter(([name, def]) => feeds(name, def, head.meta.type))
      .map(([name]) => name);
    return { domain, tables: fed, ii: head.ii, updated: head.meta.updated };
  };

  // Always reads the head: the Consumer takes a returned `ii` as proof that the scope existed after
  // it asked (shared/engine/consumer.ts), so no process-local shortcut answers for an event.
  const catchUp: CatchUpHandler = async (event, cursor) => {
    const done = await mirrorHead(event.scope, cursor);
    if (done?.tables && opts.lag) {
      // The lag of the event; for a duplicate that caught up all the same (shared/engine/consumer.ts),
      // of the head's own patch (its commit time is the scope's `updated`).
      opts.lag.note(done.domain, done.tables, event.scope, done.ii, event.ii > cursor ? event.at : done.updated);
      await opts.lag.maybeFlush();
    }
    return done === null ? null : done.ii;
  };

  return {
    catchUp,
    touch(id) {
      const running = touching.get(id);
      if (running) {
        running.again = true;
        return running.done;
      }
      const entry = { again: false, done: Promise.resolve() };
      entry.done = (async () => {
        try {
          do {
            entry.again = false;
            await mirrorHead(id);
          } while (entry.again);
        } finally {
          touching.delete(id);
        }
      })();
      touching.set(id, entry);
      return entry.done;
    },
  };
}
