/** A minimal typed event emitter (no Node `events` in the browser). */
export class Emitter<Events extends Record<string, unknown>> {
  private readonly listeners = new Map<keyof Events, Set<(e: never) => void>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(type: K, listener: (e: Events[K]) => void): () => void {
    const set = this.listeners.get(type) ?? new Set();
    this.listeners.set(type, set);
    set.add(listener as (e: never) => void);
    return () => set.delete(listener as (e: never) => void);
  }

  protected emit<K extends keyof Events>(type: K, event: Events[K]): void {
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        (listener as (e: Events[K]) => void)(event);
      } catch (err) {
        // A listener's bug must not break the client's bookkeeping; surface it asynchronously.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
