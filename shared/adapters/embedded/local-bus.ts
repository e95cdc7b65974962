/**
 * The embedded bus: in-process fan-out. Delivery is synchronous and in publish order; one
 * listener that throws does not keep the event from the others.
 */
import type { Bus, Listener, ScopeSignal, SignalListener } from '../../ports/index.js';
import type { PatchEvent } from '../../protocol.js';

interface Subscriber {
  event: Listener;
  signal?: SignalListener;
}

export class LocalBus implements Bus {
  private readonly listeners = new Map<string, Set<Subscriber>>();

  async publish(events: PatchEvent[]): Promise<void> {
    for (const e of events) this.each(e.scope, (s) => s.event(e));
  }

  async signal(signal: ScopeSignal): Promise<void> {
    this.each(signal.scope, (s) => s.signal?.(signal));
  }

  private each(scope: string, call: (s: Subscriber) => void): void {
    const set = this.listeners.get(scope);
    if (!set) return;
    for (const s of [...set]) {
      try {
        call(s);
      } catch (err) {
        console.error(JSON.stringify({ severity: 'ERROR', message: 'bus listener threw', scope, err: String(err) }));
      }
    }
  }

  async subscribe(scope: string, listener: Listener, onSignal?: SignalListener): Promise<() => Promise<void>> {
    let set = this.listeners.get(scope);
    if (!set) {
      set = new Set();
      this.listeners.set(scope, set);
    }
    const wrapped: Subscriber = { event: listener, signal: onSignal }; // a distinct entry per subscription
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
