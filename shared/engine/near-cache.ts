/**
 * The instance's own copy of the states it committed last: (scope, ii, state), an LRU bounded
 * by the states' JSON size. It spares a commit the hot cache read (a network round trip on
 * Google) when this instance wrote the scope's head itself, which is the common case for a
 * scope's writers held by one instance.
 *
 * Why it cannot serve a wrong state (guarantee 2): an entry is only ever used for exactly the
 * ii it was stored with, and the state at an ii is fixed once committed (initial state +
 * patches 1..ii; records are never rewritten). An entry behind head is simply not used. Stored
 * states are shared with callers, who must treat them as read-only (as with the hot cache).
 */
import type { Json } from '../json.js';

interface Entry {
  ii: number;
  state: Json;
  bytes: number;
}

export class NearCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** The state of `id` at exactly `ii`, or undefined. */
  get(id: string, ii: number): Json | undefined {
    const e = this.entries.get(id);
    if (!e || e.ii !== ii) return undefined;
    this.entries.delete(id); // re-insert: Map order is recency order
    this.entries.set(id, e);
    return e.state;
  }

  /** Stores the state at ii unless an entry at ii or later is there. `bytes`: its JSON size. */
  put(id: string, ii: number, state: Json, bytes: number): void {
    if (bytes > this.maxBytes) return;
    const e = this.entries.get(id);
    if (e && e.ii >= ii) return;
    if (e) this.drop(id, e);
    this.entries.set(id, { ii, state, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.drop(oldest, entry);
    }
  }

  private drop(id: string, e: Entry): void {
    this.entries.delete(id);
    this.bytes -= e.bytes;
  }
}
