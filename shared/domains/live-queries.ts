/**
 * Live queries: a named query whose result is sent again whenever the rows it reads may have
 * changed (`GET /v1/domains/{domain}/queries/{name}/events`, shared/http/routes/queries.ts).
 *
 * Invalidation is coarse, by table: the query is run again after any committed change to a
 * mirror table its SQL names (Mirror.watch: Postgres LISTEN/NOTIFY, so a change made by the
 * mirror consumer of any instance reaches every instance's live queries), whether or not the
 * changed rows are among its result; a run whose result equals the last one sent sends nothing.
 * A query that names no mirror table (`SELECT $REQUESTER`) never runs again. Runs are at most one
 * per PATCHBAY_LIVE_QUERY_INTERVAL_MS per live query: changes meanwhile are merged into the next
 * run, which starts after the notification, so it sees at least every change notified before it.
 *
 * Each run is a normal named query (NamedQueries.run): the caller's identity, its `$REQUESTER`,
 * per-row access, timeout and row cap, and the domain's active configuration at that moment (a
 * query removed meanwhile ends the live query with `unknown_query`).
 */
import type { MirrorConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import type { QueryCaller } from '../mirror/queries.js';
import type { Mirror, QueryResult } from '../ports/mirror.js';
import type { NamedQueries } from './queries.js';

export interface LiveQueryHandlers {
  /** A new result (the first one, then each that differs from the previous one). */
  result(r: QueryResult): Promise<void>;
  /** A run failed: the live query is over (it has already stopped watching). */
  failed(err: PatchbayError): void;
}

export class LiveQueries {
  constructor(
    private readonly queries: NamedQueries,
    private readonly mirror: Mirror | null,
    private readonly config: Pick<MirrorConfig, 'liveQueryIntervalMs'>,
  ) {}

  /**
   * The checks of `open` without opening anything (`unknown_query`, `invalid_params`,
   * `unavailable`); resolves with the mirror tables the query reads.
   */
  async check(domain: string, name: string, params: unknown, caller: QueryCaller): Promise<string[]> {
    const tables = await this.queries.tablesRead(domain, name, params, caller);
    if (this.mirror === null) throw new PatchbayError('unavailable', 'this deployment has no mirror to query');
    return tables;
  }

  /**
   * Starts a live query: checks it (`unknown_query`, `invalid_params`, `unavailable`), watches its
   * tables, runs it once and hands the first result to `h.result` before resolving (an error of
   * that first run is thrown, nothing left open). Resolves with the stop.
   */
  async open(domain: string, name: string, params: unknown, caller: QueryCaller, h: LiveQueryHandlers): Promise<() => Promise<void>> {
    const tables = await this.check(domain, name, params, caller);
    let stopped = false;
    let running = false;
    let dirty = false;
    let lastRun = 0;
    let last = '';
    let timer: NodeJS.Timeout | undefined;
    let unwatch: () => Promise<void> = async () => {};
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      await unwatch();
    };
    const runOnce = async () => {
      lastRun = Date.now();
      const r = await this.queries.run(domain, name, params, caller);
      const text = JSON.stringify(r);
      if (text === last || stopped) return;
      last = text;
      await h.result(r);
    };
    const schedule = () => {
      if (stopped) return;
      if (running || timer) {
        dirty = true;
        return;
      }
      const wait = lastRun + this.config.liveQueryIntervalMs - Date.now();
      timer = setTimeout(
        () => {
          timer = undefined;
          running = true;
          dirty = false;
          runOnce()
            .then(
              () => {
                running = false;
                if (dirty) schedule();
              },
              (err: unknown) => {
                running = false;
                void stop();
                h.failed(err instanceof PatchbayError ? err : new PatchbayError('internal', 'the live query failed'));
              },
            )
            .catch(() => {});
        },
        Math.max(0, wait),
      );
    };
    if (tables.length > 0) {
      const read = new Set(tables);
      // Watch first: a change committed while the first run reads is then run again for.
      // The mirror is not null: check() passed.
      unwatch = await (this.mirror as Mirror).watch(domain, (changed) => {
        if (changed.some((t) => t === '*' || read.has(t))) schedule();
      });
    }
    try {
      running = true;
      await runOnce();
      running = false;
      if (dirty) schedule();
    } catch (err) {
      await stop();
      throw err;
    }
    return stop;
  }
}
