/**
 * The read path: a scope's head, its state at an index, and its log.
 *
 * Guarantee 2 (state = initial state + patches 1..ii): `stateAt` trusts the near cache or the
 * hot cache only at the exact ii it is asked for, and otherwise folds the log onto the newest
 * state it can trust: a cache entry behind ii, the latest snapshot at or below ii, or the initial
 * state (shared/cold/rebuild.ts).
 * Guarantee 6 (cold storage plus the log tail hold every patch): `readLog` reads below the hot
 * log's start from bundles (shared/cold/log.ts), so history, streams, rebuilds, the sweeper and
 * push consumers see the whole log whatever the bundler has trimmed.
 */
import { readLog } from '../cold/log.js';
import { rebuildState } from '../cold/rebuild.js';
import type { ColdStore } from '../cold/store.js';
import type { Config } from '../config.js';
import { PatchbayError } from '../errors.js';
import { cloneJson, type Json } from '../json.js';
import type { Adapters, Head } from '../ports/index.js';
import type { PatchRecord } from '../protocol.js';
import type { NearCache } from './near-cache.js';

export type Logger = (entry: Record<string, unknown>) => void;

export class Reader {
  constructor(
    private readonly ports: Pick<Adapters, 'ledger' | 'cache'>,
    private readonly cold: ColdStore,
    private readonly near: NearCache,
    private readonly config: Pick<Config, 'snapshotEvery'>,
    private readonly logError: Logger,
  ) {}

  async head(id: string): Promise<Head> {
    const head = await this.ports.ledger.getHead(id);
    if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    return head;
  }

  /**
   * The state at exactly `ii` (which must not be past head). The result must not be mutated.
   * From the cache when it holds exactly ii; otherwise rebuilt (shared/cold/rebuild.ts) from a
   * cache entry behind ii or, when that is missing or far behind, the latest snapshot, folded
   * forward with bundles and the hot log; then cached. `trimmed`: the head's, when the caller has
   * read it (a rebuild then goes to cold storage straight away for what was trimmed).
   */
  async stateAt(id: string, ii: number, opts: { cache?: boolean; trimmed?: number } = {}): Promise<Json> {
    const near = this.near.get(id, ii);
    if (near !== undefined) return near;
    const { cache, ledger } = this.ports;
    const cached = await cache.get(id).catch(() => null);
    if (cached && cached.ii === ii) return cached.state;
    const start = cached && cached.ii < ii ? { ii: cached.ii, state: cloneJson(cached.state) } : null;
    const state = await rebuildState(ledger, this.cold, id, ii, {
      start,
      snapshotGap: this.config.snapshotEvery,
      trimmed: opts.trimmed,
      onDamaged: (err) => this.logError({ message: 'damaged snapshot skipped', scope: id, err: String(err) }),
    });
    if (opts.cache ?? true) await this.putCache(id, ii, state);
    return state;
  }

  async putCache(id: string, ii: number, state: Json, bytes?: number): Promise<void> {
    await this.ports.cache.put(id, ii, state, bytes).catch((err) => this.logError({ message: 'cache put failed', scope: id, err: String(err) }));
  }

  /**
   * Records from..to (inclusive) in order, from cold storage and the hot log, page by page.
   * `trimmed`: the head's, when the caller has read it (see LogReadOptions.trimmed).
   */
  readLog(id: string, from: number, to: number, trimmed?: number): AsyncGenerator<PatchRecord> {
    return readLog(this.ports.ledger, this.cold, id, from, to, { trimmed });
  }

  /** History from..to, clamped to 1..head. */
  async history(id: string, from: number, to: number | undefined): Promise<AsyncGenerator<PatchRecord>> {
    const head = await this.head(id);
    return this.readLog(id, Math.max(1, from), Math.min(to ?? head.ii, head.ii), head.trimmed);
  }
}
