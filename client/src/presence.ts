/**
 * Who is in a scope (docs/uploads-and-sessions.md, "Presence"): one entry per open session that
 * joined it (./sessions.ts `join`), for the scope's readers. `readPresence` asks once (`GET
 * /v1/scopes/{id}/presence`); `watchPresence` keeps the list current from the scope's own stream
 * opened with `?presence=1` (the multiplexed stream does not carry presence): a `sync` event
 * replaces the list (once the stream is live, so again after every reconnect), then `join`,
 * `update` and `leave` change it. The stream also carries the scope's patches; only their index
 * is kept, so a reconnect resumes after them instead of sending the state again.
 */
import type { Json } from '../../shared/json.js';
import type { PatchbayClientError } from './errors.js';
import type { Transport } from './http.js';
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

/**
 * Calls `onChange` with the scope's presence (oldest first) whenever it changes; `onError` once
 * if the stream is refused for good (the scope is gone or no longer readable). Returns the
 * function that stops it.
 */
export function watchPresence(
  transport: Transport,
  scope: string,
  onChange: (present: PresenceEntry[]) => void,
  onError: (err: PatchbayClientError) => void,
): () => void {
  let ii: number | undefined;
  let present = new Map<string, PresenceEntry>();
  const stream = new ScopeStream(transport, `${path(scope)}/events?presence=1`, {
    lastId: () => ii,
    onEvent(type, data) {
      const e = JSON.parse(data) as { ii?: number; action?: string; present?: PresenceEntry[] } & PresenceEntry;
      if (type !== 'presence') {
        if (typeof e.ii === 'number') ii = e.ii;
        return;
      }
      if (e.action === 'sync') present = new Map((e.present ?? []).map((p) => [p.session, p]));
      else if (e.action === 'leave') present.delete(e.session);
      else present.set(e.session, { user: e.user, session: e.session, since: e.since, status: e.status });
      onChange([...present.values()].sort((a, b) => a.since - b.since));
    },
    onStatus() {},
    onFatal: onError,
  });
  return () => stream.close();
}
