/**
 * Who is in a scope (docs/uploads-and-sessions.md, "Presence"): one entry per open session that
 * joined it (./sessions.ts `join`), for the scope's readers. `readPresence` asks once (`GET
 * /v1/scopes/{id}/presence`); `watchPresence` keeps the list current from `presence` events: on
 * the client's shared connection when it is multiplexed (./mux.ts, `presence=` on the stream;
 * relayed among tabs by ./tabs.ts), else on the scope's own stream opened with `?presence=1`. A
 * `sync` event replaces the list (once the stream is live, so again after every reconnect), then
 * `join`, `update` and `leave` change it. The own stream also carries the scope's patches; only
 * their index is kept, so a reconnect resumes after them instead of sending the state again.
 */
import type { Json } from '../../shared/json.js';
import type { PatchbayClientError } from './errors.js';
import type { Transport } from './http.js';
import type { PresenceWatcher, Subscription } from './mux.js';
import { ScopeStream } from './stream.js';

export interface PresenceEntry {
  user: string;
  session: string;
  /** When the session joined the scope (ms since the epoch). */
  since: number;
  status: Json;
}

const path = (scope: string) => `/v1/scopes/${encodeURIComponent(scope)}`;

export async function readPresence(transport: Transport, scope: string): Promise<PresenceEntry[]> {
  return (await transport.json<{ present: PresenceEntry[] }>('GET', `${path(scope)}/presence`)).present;
}

/** A shared connection that carries presence (./mux.ts `MuxStream`, ./tabs.ts `TabShare`). */
export interface PresenceSource {
  watchPresence(scope: string, w: PresenceWatcher): Subscription;
}

/**
 * Calls `onChange` with the scope's presence (oldest first) whenever it changes; `onError` once
 * if the stream is refused for good (the scope is gone or no longer readable). On `shared` when
 * given, else on the scope's own stream. Returns the function that stops it.
 */
export function watchPresence(
  transport: Transport,
  scope: string,
  onChange: (present: PresenceEntry[]) => void,
  onError: (err: PatchbayClientError) => void,
  shared?: PresenceSource,
): () => void {
  let present = new Map<string, PresenceEntry>();
  const apply = (data: string) => {
    const e = JSON.parse(data) as { action?: string; present?: PresenceEntry[] } & PresenceEntry;
    if (e.action === 'sync') present = new Map((e.present ?? []).map((p) => [p.session, p]));
    else if (e.action === 'leave') present.delete(e.session);
    else present.set(e.session, { user: e.user, session: e.session, since: e.since, status: e.status });
    onChange([...present.values()].sort((a, b) => a.since - b.since));
  };
  if (shared) {
    const sub = shared.watchPresence(scope, { onPresence: apply, onFatal: onError });
    return () => sub.close();
  }
  let ii: number | undefined;
  const stream = new ScopeStream(transport, `${path(scope)}/events?presence=1`, {
    lastId: () => ii,
    onEvent(type, data) {
      if (type === 'presence') return apply(data);
      const e = JSON.parse(data) as { ii?: number };
      if (typeof e.ii === 'number') ii = e.ii;
    },
    onStatus() {},
    onFatal: onError,
  });
  return () => stream.close();
}
