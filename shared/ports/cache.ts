/**
 * The hot cache port: a scope's state at some ii. It is only ever a shortcut: the engine checks
 * the tag against the ledger's head and falls back to the log, so a lost or stale entry costs
 * time, never correctness. A `put` never moves an entry backwards (older ii loses), which is
 * what keeps two writers finishing out of order from leaving the older state behind.
 */
import type { Json } from '../json.js';

export interface CachedState {
  ii: number;
  state: Json;
}

export interface HotCache {
  get(id: string): Promise<CachedState | null>;
  /**
   * Stores (ii, state) unless the entry is already at ii or later. Returns whether it stored.
   * `bytes`: the state's estimated memory (`jsonHeapBytes`), when the caller has measured it; an
   * in-memory adapter bounds itself by it (and measures when it is missing), others ignore it.
   */
  put(id: string, ii: number, state: Json, bytes?: number): Promise<boolean>;
  delete(id: string): Promise<void>;
  close(): Promise<void>;
}
