/**
 * Per-scope queues for hot scopes. Requests for one scope that arrive while a commit for it is
 * running wait, and are then committed together as one group (one ledger transaction), in
 * arrival order. So concurrent writers on one instance never fight each other for the scope's
 * head; they share its transactions.
 */
export type Outcome<A> = { ack: A } | { error: Error };

interface Waiting<T, A> {
  item: T;
  resolve: (ack: A) => void;
  reject: (err: Error) => void;
}

export class ScopeQueues<T, A> {
  private readonly queues = new Map<string, Array<Waiting<T, A>>>();
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly maxGroup: number,
    private readonly commit: (scope: string, group: T[]) => Promise<Array<Outcome<A>>>,
  ) {}

  push(scope: string, item: T): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      const waiting = { item, resolve, reject };
      const queue = this.queues.get(scope);
      if (queue) {
        queue.push(waiting);
        return;
      }
      const fresh = [waiting];
      this.queues.set(scope, fresh);
      const run = this.drain(scope, fresh).finally(() => this.running.delete(run));
      this.running.add(run);
    });
  }

  private async drain(scope: string, queue: Array<Waiting<T, A>>): Promise<void> {
    while (queue.length > 0) {
      // Let the requests whose bodies arrive in this turn of the event loop (the other writers'
      // sockets) join the group first: without this, a request that starts the queue commits
      // alone, and hot-scope groups averaged 1.1 patches.
      await new Promise((resolve) => setImmediate(resolve));
      const group = queue.splice(0, this.maxGroup);
      try {
        const outcomes = await this.commit(
          scope,
          group.map((w) => w.item),
        );
        group.forEach((w, i) => {
          const o = outcomes[i];
          if (o && 'ack' in o) w.resolve(o.ack);
          else w.reject(o ? o.error : new Error('no outcome'));
        });
      } catch (err) {
        for (const w of group) w.reject(err as Error);
      }
    }
    this.queues.delete(scope);
  }

  /** Resolves when every queued request has been settled. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }
}
