/**
 * The embedded hot cache: a bounded in-memory LRU of (ii, state). A put never moves an entry
 * backwards. Stored states are shared with callers, who must treat them as read-only.
 */
import type { Json } from '../../json.js';
import type { CachedState, HotCache } from '../../ports/index.js';

export class MemoryCache implements HotCache {
  private readonly entries = new Map<string, CachedState>();

  constructor(private readonly maxScopes = 10_000) {}

  async get(id: string): Promise<CachedState | null> {
    const e = this.entries.get(id);
    if (!e) return null;
    this.entries.delete(id); // re-insert: Map order is recency order
    this.entries.set(id, e);
    return e;
  }

  async put(id: string, ii: number, state: Json): Promise<boolean> {
    const e = this.entries.get(id);
    if (e && e.ii >= ii) return false;
    this.entries.delete(id);
    this.entries.set(id, { ii, state });
    if (this.entries.size > this.maxScopes) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return true;
  }

  async delete(id: string): Promise<void> {
    this.entries.delete(id);
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}
