/**
 * The embedded bus: in-process fan-out. Delivery is synchronous and in publish order; one
 * listener that throws does not keep the event from the others.
 */
import type { Bus, Listener } from '../../ports/index.js';
import type { PatchEvent } from '../../protocol.js';

export class LocalBus implements Bus {
  private readonly listeners = new Map<string, Set<Listener>>();

  async publish(events: PatchEvent[]): Promise<void> {
    for (const e of events) {
      const set = this.listeners.get(e.scope);
      if (!set) continue;
      for (const l of [...set]) {
        try {
          l(e);
        } catch (err) {
          console.error(JSON.stringify({ severity: 'ERROR', message: 'bus listener threw', scope: e.scope, err: String(err) }));
        }
      }
    }
  }

  async subscribe(scope: string, listener: Listener): Promise<() => Promise<void>> {
    let set = this.listeners.get(scope);
    if (!set) {
      set = new Set();
      this.listeners.set(scope, set);
    }
    const wrapped: Listener = (e) => listener(e); // a distinct entry per subscription
    set.add(wrapped);
    return async () => {
      set.delete(wrapped);
      if (set.size === 0 && this.listeners.get(scope) === set) this.listeners.delete(scope);
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
