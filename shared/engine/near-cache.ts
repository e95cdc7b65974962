/**
 * The instance's own copy of the states it committed last: (scope, ii, state), an LRU bounded
 * by an estimate of the bytes the states hold (PATCHBAY_NEAR_CACHE_BYTES; shared/state-lru.ts).
 * It spares a commit the hot cache read (a network round trip on Google) when this instance
 * wrote the scope's head itself, which is the common case for a scope's writers held by one
 * instance.
 *
 * Why it cannot serve a wrong state (guarantee 2): an entry is only ever used for exactly the
 * ii it was stored with, and the state at an ii is fixed once committed (initial state +
 * patches 1..ii; records are never rewritten). An entry behind head is simply not used. Stored
 * states are shared with callers, who must treat them as read-only (as with the hot cache).
 */
import type { Json } from '../json.js';
import { StateLru } from '../state-lru.js';

export class NearCache {
  private readonly states: StateLru;

  constructor(maxBytes: number) {
    this.states = new StateLru(maxBytes);
  }

  /** The state of `id` at exactly `ii`, or undefined. */
  get(id: string, ii: number): Json | undefined {
    const e = this.states.get(id);
    return e && e.ii === ii ? e.state : undefined;
  }

  /** Forgets the scope (it was deleted). */
  delete(id: string): void {
    this.states.delete(id);
  }

  /** Stores the state at ii unless an entry at ii or later is there. `bytes`: its jsonHeapBytes. */
  put(id: string, ii: number, state: Json, bytes: number): void {
    this.states.put(id, ii, state, bytes);
  }
}
