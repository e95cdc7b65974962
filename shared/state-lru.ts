/**
 * Scope states held in this process: (ii, state) by scope id, bounded by an estimate of the
 * memory they hold (`jsonHeapBytes`, or the estimate a caller already made), least recently used
 * out first (lru-cache's `maxSize`). A put never moves an entry backwards (an older ii loses). A
 * state whose estimate exceeds the whole bound is not kept (and drops the scope's older entry).
 * The embedded hot cache and each instance's near cache are one of these each; their bounds are
 * settings (PATCHBAY_CACHE_BYTES, PATCHBAY_NEAR_CACHE_BYTES).
 * Stored states are shared with callers, who must treat them as read-only.
 */
import { LRUCache } from 'lru-cache';
import { type Json, jsonHeapBytes } from './json.js';

export interface StateEntry {
  ii: number;
  state: Json;
}

/** Counted per entry besides its state: the entry object, its key, the LRU's slots for it. */
const ENTRY_OVERHEAD = 160;

export class StateLru {
  /** Null when the bound is 0: nothing is kept. */
  private readonly lru: LRUCache<string, StateEntry> | null;

  constructor(readonly maxBytes: number) {
    this.lru = maxBytes > 0 ? new LRUCache<string, StateEntry>({ maxSize: maxBytes }) : null;
  }

  /** The entry of `id`, now the most recently used; undefined on a miss. */
  get(id: string): StateEntry | undefined {
    return this.lru?.get(id);
  }

  /**
   * Stores (ii, state) unless `id` has an entry at ii or later, evicting the least recently used
   * entries past the bound. `bytes`: the state's jsonHeapBytes, when the caller has it (else it
   * is measured here). Returns whether it stored.
   */
  put(id: string, ii: number, state: Json, bytes?: number): boolean {
    if (!this.lru) return false;
    const e = this.lru.peek(id);
    if (e && e.ii >= ii) return false;
    const size = (bytes ?? jsonHeapBytes(state)) + ENTRY_OVERHEAD + 2 * id.length;
    if (size > this.maxBytes) {
      this.lru.delete(id);
      return false;
    }
    this.lru.set(id, { ii, state }, { size });
    return true;
  }

  delete(id: string): void {
    this.lru?.delete(id);
  }

  clear(): void {
    this.lru?.clear();
  }

  /** The estimated bytes held now (for tests and diagnostics). */
  get bytes(): number {
    return this.lru?.calculatedSize ?? 0;
  }
}
