/**
 * The embedded hot cache: scope states in memory, bounded by an estimate of the bytes they hold
 * (PATCHBAY_CACHE_BYTES; shared/state-lru.ts), least recently used out first. A put never moves
 * an entry backwards. Stored states are shared with callers, who must treat them as read-only.
 */
import { CONFIG_TABLE } from '../../config.js';
import type { Json } from '../../json.js';
import type { CachedState, HotCache } from '../../ports/index.js';
import { StateLru } from '../../state-lru.js';

export class MemoryCache implements HotCache {
  private readonly states: StateLru;

  constructor(maxBytes = CONFIG_TABLE.cacheBytes.default) {
    this.states = new StateLru(maxBytes);
  }

  async get(id: string): Promise<CachedState | null> {
    return this.states.get(id) ?? null;
  }

  async put(id: string, ii: number, state: Json, bytes?: number): Promise<boolean> {
    return this.states.put(id, ii, state, bytes);
  }

  async delete(id: string): Promise<void> {
    this.states.delete(id);
  }

  async close(): Promise<void> {
    this.states.clear();
  }
}
