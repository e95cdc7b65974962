/**
 * Presence in memory (embedded mode: one process holds every stream). A map per scope of its
 * sessions' entries; lapsed entries are dropped on the next read or write of their scope, and a
 * scope whose last entry went is forgotten. The PresenceStore contracts: shared/ports/presence.ts.
 */
import type { PresenceEntry, PresenceStore } from '../../ports/presence.js';

export class MemoryPresence implements PresenceStore {
  private readonly scopes = new Map<string, Map<string, PresenceEntry>>();

  constructor(private readonly now: () => number = Date.now) {}

  async put(scope: string, entry: PresenceEntry): Promise<{ joined: boolean; entry: PresenceEntry }> {
    const live = this.live(scope);
    const prior = live.get(entry.session);
    const stored = { ...entry, since: prior ? prior.since : entry.since };
    live.set(entry.session, stored);
    this.scopes.set(scope, live);
    return { joined: !prior, entry: { ...stored } };
  }

  async touch(scope: string, session: string, expires: number): Promise<boolean> {
    const e = this.live(scope).get(session);
    if (e) e.expires = Math.max(e.expires, expires);
    return e !== undefined;
  }

  async remove(scope: string, session: string): Promise<boolean> {
    const live = this.live(scope);
    const had = live.delete(session);
    if (live.size === 0) this.scopes.delete(scope);
    return had;
  }

  async list(scope: string, limit: number): Promise<PresenceEntry[]> {
    const live = this.live(scope);
    if (live.size === 0) this.scopes.delete(scope);
    return [...live.values()]
      .sort((a, b) => a.since - b.since || (a.session < b.session ? -1 : 1))
      .slice(0, limit)
      .map((e) => ({ ...e }));
  }

  async close(): Promise<void> {
    this.scopes.clear();
  }

  /** The scope's entries without the lapsed ones (dropped here). */
  private live(scope: string): Map<string, PresenceEntry> {
    const entries = this.scopes.get(scope) ?? new Map<string, PresenceEntry>();
    const now = this.now();
    for (const [s, e] of entries) if (e.expires <= now) entries.delete(s);
    return entries;
  }
}
