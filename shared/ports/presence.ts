/**
 * Port: presence, who is watching each scope now. An entry per (scope, session): the session's
 * user, when it joined the scope (`since`), a small client-set `status` (a cursor, say), and
 * when it lapses (`expires`). Presence is ephemeral and never enters the patch log: a lost entry
 * costs a client its dot on a screen until its next update, never data.
 *
 * Contracts every adapter keeps:
 * - `put` stores the entry, keeping the `since` of an entry of that session that has not lapsed
 *   (an update), else taking `entry.since` (a join), and answers which it was with the stored entry.
 * - An entry lapses at its `expires` (ms since epoch): `list` never returns it after that, and an
 *   adapter forgets it by then or soon after (memory: on the next read; Redis: the key's expiry).
 * - `remove` drops the entry and answers whether there was one that had not lapsed.
 * - `list` answers the scope's live entries, oldest `since` first, at most `limit`.
 * Writes to one scope from many instances are safe: each command is atomic on its entry.
 */
import type { Json } from '../json.js';

export interface PresenceEntry {
  user: string;
  session: string;
  /** When the session joined the scope (ms since epoch). */
  since: number;
  /** The client's status (JSON, bounded by PATCHBAY_PRESENCE_MAX_STATUS_BYTES), null for none. */
  status: Json;
  /** When the entry lapses unless refreshed (ms since epoch). */
  expires: number;
}

export interface PresenceStore {
  put(scope: string, entry: PresenceEntry): Promise<{ joined: boolean; entry: PresenceEntry }>;
  /** Moves a live entry's `expires` to `expires` (a heartbeat); answers whether there was a live entry. */
  touch(scope: string, session: string, expires: number): Promise<boolean>;
  remove(scope: string, session: string): Promise<boolean>;
  list(scope: string, limit: number): Promise<PresenceEntry[]>;
  close(): Promise<void>;
}
