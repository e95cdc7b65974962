/**
 * Presence (issue 15, item 9): who is watching each scope, over the PresenceStore port
 * (shared/ports/presence.ts: memory embedded, Upstash Redis on Google) plus a `presence` bus
 * signal per change, which reaches the scope's streams on every instance; each stream re-reads
 * the scope's presence and sends its subscriber what differs (shared/http/routes/events.ts). The
 * signal carries nothing, so a late, lost or doubled signal costs at most a stale view until the
 * next change. Presence never enters the patch log.
 *
 * Who may do what is the caller's (shared/http/routes/presence.ts and shared/sessions/sessions.ts):
 * here, only the store and the signals.
 */
import type { Json } from '../json.js';
import type { Bus } from '../ports/bus.js';
import type { PresenceEntry, PresenceStore } from '../ports/presence.js';

/** An entry as clients see it (no `expires`: that is the session's). */
export interface PresenceView {
  user: string;
  session: string;
  since: number;
  status: Json;
}

export const presenceView = (e: PresenceEntry): PresenceView => ({ user: e.user, session: e.session, since: e.since, status: e.status });

export class Presence {
  constructor(
    readonly store: PresenceStore,
    private readonly bus: Bus,
    private readonly logError: (e: Record<string, unknown>) => void,
    /** PATCHBAY_PRESENCE_MAX_LISTED: most entries a read answers (and a stream diffs). */
    private readonly maxListed: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Sets the session's entry on the scope (a join, or an update of its status), until `expires`; signals the change. */
  async set(scope: string, user: string, session: string, status: Json, expires: number): Promise<{ joined: boolean; entry: PresenceView }> {
    const r = await this.store.put(scope, { user, session, since: this.now(), status, expires });
    await this.signal(scope);
    return { joined: r.joined, entry: presenceView(r.entry) };
  }

  /** Keeps the session's entries on these scopes alive until `expires` (a heartbeat). */
  async touch(scopes: readonly string[], session: string, expires: number): Promise<void> {
    await Promise.all(scopes.map((s) => this.store.touch(s, session, expires)));
  }

  /** Removes the session from these scopes (a leave), signalling each it was present in. */
  async leave(scopes: readonly string[], session: string): Promise<void> {
    await Promise.all(
      scopes.map(async (s) => {
        await this.store.remove(s, session);
        // Signalled even when the entry had lapsed already: the streams have not yet sent its leave.
        await this.signal(s);
      }),
    );
  }

  /** Ticks of this instance's clock for `list`'s `after`: a read, and a stream's receipt of a signal. */
  private ticks = 0;
  /** The read of each scope's presence in flight, and the tick it started at. */
  private readonly reading = new Map<string, { started: number; read: Promise<PresenceView[]> }>();

  /** Now, on the clock `list(scope, after)` compares against: take it when a signal arrives. */
  mark(): number {
    return ++this.ticks;
  }

  /**
   * The scope's entries, oldest first. With `after` (a `mark()` taken when a change's signal
   * arrived), a read of the scope already in flight that started after that mark is shared
   * instead of a new one: it started after the change was stored, so it sees it. So the streams
   * of one scope on this instance, all woken by one signal, cost one store read, not one each.
   */
  async list(scope: string, after?: number): Promise<PresenceView[]> {
    const current = this.reading.get(scope);
    if (after !== undefined && current !== undefined && current.started > after) return current.read;
    const entry = { started: ++this.ticks, read: this.store.list(scope, this.maxListed).then((es) => es.map(presenceView)) };
    this.reading.set(scope, entry);
    try {
      return await entry.read;
    } finally {
      if (this.reading.get(scope) === entry) this.reading.delete(scope);
    }
  }

  private async signal(scope: string): Promise<void> {
    await this.bus.signal({ scope, kind: 'presence' }).catch((err: unknown) => this.logError({ message: 'presence signal failed', scope, err: String(err) }));
  }
}
