/**
 * One scope's presence events on a stream (issue 15 item 9, issue 16 item 6): `sync` with the
 * scope's entries once the stream is live, then `join`, `update` and `leave`, each the difference
 * between what the client was last told and a read made after a `presence` signal, one at a time.
 * Used by a scope's own stream with `?presence=1` (./routes/events.ts) and by the multiplexed
 * stream for each scope it carries presence of (./routes/mux.ts); the caller decides who may see
 * it (both carry only scopes their reader may read) and how an event is framed.
 */
import type { Presence, PresenceView } from '../sessions/presence.js';

export type PresenceEvent = { action: 'sync'; present: PresenceView[] } | ({ action: 'join' | 'update' | 'leave' } & PresenceView);

export class PresenceFeed {
  /** What the client was last told, by session (null until the `sync`). */
  private known: Map<string, PresenceView> | null = null;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly presence: Presence,
    private readonly scope: string,
    /** Writes one event to the stream. */
    private readonly emit: (e: PresenceEvent) => Promise<void> | undefined,
    /** The client has gone (or the stream is ending): nothing more is read or sent. */
    private readonly gone: () => boolean,
    private readonly logError: (e: Record<string, unknown>) => void,
  ) {}

  /** Sends the `sync`; call once the scope's stream is live and subscribed to its signals. */
  start(): void {
    this.chain = this.chain.then(async () => {
      const present = await this.presence.list(this.scope).catch(() => []);
      if (this.done()) return;
      this.known = new Map(present.map((e) => [e.session, e]));
      await this.emit({ action: 'sync', present });
    });
    this.changed(); // a change between the subscription and the read above
  }

  /** A `presence` signal arrived for the scope: re-read it and send what differs. */
  changed(): void {
    const signalled = this.presence.mark(); // a read started after this sees the change: the scope's streams share one
    this.chain = this.chain
      .then(async () => {
        if (this.done() || this.known === null) return;
        const known = this.known;
        const now = new Map((await this.presence.list(this.scope, signalled)).map((e) => [e.session, e]));
        for (const [s, e] of now) {
          const was = known.get(s);
          if (this.done()) return;
          if (!was) await this.emit({ action: 'join', ...e });
          else if (JSON.stringify(was.status) !== JSON.stringify(e.status)) await this.emit({ action: 'update', ...e });
        }
        for (const [s, e] of known) if (!now.has(s) && !this.done()) await this.emit({ action: 'leave', ...e });
        this.known = now;
      })
      .catch((err: unknown) => this.logError({ message: 'presence read failed', scope: this.scope, err: String(err) }));
  }

  /** Sends nothing more; resolves once what was being sent is done. */
  stop(): Promise<void> {
    this.stopped = true;
    return this.chain;
  }

  private done(): boolean {
    return this.stopped || this.gone();
  }
}
