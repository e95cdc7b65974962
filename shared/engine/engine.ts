/**
 * The engine: the write path, the read path and live streams, written against the ports only.
 *
 * Guarantee 1 (every acknowledged patch is in the log once, indices 1..n without holes) rests on
 * `Ledger.commit`: the plan below decides each request's outcome against the head the ledger
 * read inside its transaction, so a retried transaction re-decides from scratch.
 * Guarantee 2 (state = initial state + patches 1..ii): `stateAt` trusts a cache entry only at
 * the exact ii it is asked for, and otherwise folds the log onto the newest state it can trust:
 * a cache entry behind ii, the latest snapshot at or below ii, or the initial state.
 * Guarantee 6 (cold storage plus the log tail hold every patch): `readLog` reads below the hot
 * log's start from bundles (shared/cold/log.ts), so history, streams, rebuilds, the sweeper and
 * push consumers see the whole log whatever the bundler has trimmed.
 * Guarantee 3 (a rejected request changes nothing): a group writes only accepted records, and a
 * failed patch is applied to a working copy that is then rebuilt.
 * Guarantee 4 (each subscriber sees each patch once, in order): `openStream` subscribes before it
 * reads the log, drops what it has already sent and fills gaps from the log.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readLog } from '../cold/log.js';
import { rebuildState } from '../cold/rebuild.js';
import { ColdStore } from '../cold/store.js';
import type { Config } from '../config.js';
import { asPatchbayError, PatchbayError } from '../errors.js';
import { cloneJson, type Json, jsonBytes, jsonHeapBytes } from '../json.js';
import { applyPatch, type Budget, checkPatch, checkValueDepth } from '../patch.js';
import type { Adapters, Head, TxView } from '../ports/index.js';
import { retryKey } from '../ports/index.js';
import type { CreateScopeRequest, PatchRecord, PatchRequest, ScopeMeta } from '../protocol.js';
import { toEvent } from '../protocol.js';
import { AfterCommit } from './after-commit.js';
import { NearCache } from './near-cache.js';
import { ScopeQueues } from './queue.js';
import { openStream, type StreamOptions, type StreamSink } from './stream.js';

export type { StreamSink } from './stream.js';

import { WatermarkWriter } from './watermarks.js';

export interface Ack {
  id: string;
  ii: number;
  duplicate?: true;
}

export interface ScopeView {
  id: string;
  ii: number;
  state: Json;
  meta: ScopeMeta;
}

/** The sweeper lists this many scopes at a time, for at most this many pages per run. */
const SWEEP_SCOPES = 100;
const SWEEP_PAGES = 20;

type Logger = (entry: Record<string, unknown>) => void;

const SWEEP_BATCH = 1000;

export interface Pending {
  req: PatchRequest;
  user: string;
  hash: string;
}

type Outcome = { ack: Ack } | { error: PatchbayError };

export class Engine {
  readonly config: Config;
  /** Bundles and snapshots of every scope (read side). */
  readonly cold: ColdStore;
  private readonly ports: Adapters;
  private readonly queues: ScopeQueues<Pending, Ack>;
  private readonly watermarks: WatermarkWriter;
  private readonly near: NearCache;
  /** Whether an ack waits for its publish (PATCHBAY_ACK_AFTER). */
  private readonly ackAfterPublish: boolean;
  private readonly after: AfterCommit;
  private readonly now: () => number;
  private readonly logError: Logger;

  constructor(ports: Adapters, config: Config, opts: { now?: () => number; logError?: Logger } = {}) {
    this.ports = ports;
    this.config = config;
    this.cold = new ColdStore(ports.blobs);
    this.now = opts.now ?? Date.now;
    this.logError = opts.logError ?? ((e) => console.error(JSON.stringify({ severity: 'ERROR', ...e })));
    this.queues = new ScopeQueues(config.maxGroup, (id, group) => this.commitGroup(id, group));
    this.watermarks = new WatermarkWriter(ports.ledger, config.publishMarkMs, (id, err) =>
      this.logError({ message: 'watermark write failed; the sweeper will republish', scope: id, err: String(err) }),
    );
    this.near = new NearCache(config.nearCacheBytes);
    this.ackAfterPublish = config.ackAfter === 'publish' || (config.ackAfter === 'auto' && config.mode === 'google');
    this.after = new AfterCommit({ cache: (id, ii, state, bytes) => this.putCache(id, ii, state, bytes), publish: (id, records) => this.publish(id, records) });
  }

  async createScope(owner: string, req: CreateScopeRequest): Promise<ScopeView> {
    const state: Json = req.state === undefined ? {} : req.state;
    checkValueDepth(state, this.config.maxValueDepth);
    const size = this.checkStateSize(state);
    const now = this.now();
    const meta: ScopeMeta = {
      owner,
      domain: 'default',
      name: req.name ?? null,
      type: req.type ?? null,
      created: now,
      updated: now,
      size,
    };
    const id = req.id ?? randomUUID();
    await this.ports.ledger.createScope({ id, meta, initial: state });
    return { id, ii: 0, state, meta };
  }

  async head(id: string): Promise<Head> {
    const head = await this.ports.ledger.getHead(id);
    if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    return head;
  }

  /** The scope at its current head. */
  async getScope(id: string): Promise<ScopeView> {
    const head = await this.head(id);
    const state = await this.stateAt(id, head.ii, { trimmed: head.trimmed });
    return { id, ii: head.ii, state, meta: head.meta };
  }

  /**
   * Queues a patch for the scope and resolves with its ack once it is committed (and, with
   * PATCHBAY_ACK_AFTER=publish, published). Requests to one scope are committed in
   * groups, in arrival order; the cache put and the publish follow the commit
   * (shared/engine/after-commit.ts).
   */
  submit(id: string, user: string, req: PatchRequest): Promise<Ack> {
    checkPatch(req.patch, this.config);
    const hash = createHash('sha256').update(JSON.stringify(req.patch)).digest('base64url');
    const ack = this.queues.push(id, { req, user, hash });
    // With PATCHBAY_ACK_AFTER=publish the ack also waits for the publish (not the cache put); the
    // scope's next group commits meanwhile (the queue does not wait for them).
    if (!this.ackAfterPublish) return ack;
    return ack.then(async (a) => {
      await this.after.passed(id, a.ii);
      return a;
    });
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

  private async putCache(id: string, ii: number, state: Json, bytes?: number): Promise<void> {
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

  private checkStateSize(state: Json): number {
    const size = jsonBytes(state);
    if (size > this.config.maxStateBytes) {
      throw new PatchbayError('too_large', `a scope's state may be at most ${this.config.maxStateBytes} bytes`, {
        limit: 'maxStateBytes',
        max: this.config.maxStateBytes,
        actual: size,
      });
    }
    return size;
  }

  private checkState(state: Json): number {
    checkValueDepth(state, this.config.maxValueDepth);
    return this.checkStateSize(state);
  }

  /**
   * Commits one group: one ledger transaction, each request checked in order. A group too big for
   * one ledger transaction (the ledger says so before writing anything) is committed as two
   * halves, in order.
   */
  private async commitGroup(id: string, group: Pending[]): Promise<Outcome[]> {
    try {
      return await this.commitOnce(id, group);
    } catch (err) {
      if (group.length > 1 && err instanceof PatchbayError && err.details.reason === 'ledger_transaction_limit') {
        const half = Math.ceil(group.length / 2);
        return [...(await this.commitGroup(id, group.slice(0, half))), ...(await this.commitGroup(id, group.slice(half)))];
      }
      throw err;
    }
  }

  private async commitOnce(id: string, group: Pending[]): Promise<Outcome[]> {
    const now = this.now();
    const { records, outcomes, state } = await this.ports.ledger.commit(id, async (view) => {
      const planned = await this.plan(id, view.head, group, view, now);
      const meta = planned.records.length > 0 ? { updated: now, size: planned.size } : undefined;
      return { records: planned.records, meta, result: planned };
    });
    if (records.length > 0) {
      const last = records[records.length - 1] as PatchRecord;
      // Measured once for both caches that keep this state (the near cache and, embedded, the hot
      // cache): one walk of the state per group, next to the clone and the size check it already
      // costs. `size` (its JSON text) would undercount its memory up to 9x (shared/json.ts).
      const bytes = jsonHeapBytes(state);
      this.near.put(id, last.ii, state, bytes);
      this.after.add(id, records, state, bytes);
    }
    return outcomes;
  }

  private async plan(id: string, head: Head, group: Pending[], view: TxView, now: number) {
    const keys = group.flatMap((p) => (p.req.session === undefined ? [] : [{ session: p.req.session, si: p.req.si as number }]));
    const retries = keys.length > 0 ? await view.findRetries(keys) : new Map<string, PatchRecord>();
    // No cache write from inside the plan: a ledger transaction may run it several times.
    const base = await this.stateAt(id, head.ii, { cache: false });
    // Each patch is checked op by op against a running size and depth budget (shared/patch.ts),
    // so a patch that would break a limit is refused at that op, whatever else its group holds.
    // The exact size and depth of the result are then checked once for the group; only if that
    // fails (the budget started from a stale size) is the group redone checking every patch.
    const fast = this.runGroup(id, head, group, retries, base, now, false);
    if (fast.records.length === 0) return { ...fast, size: head.meta.size };
    try {
      return { ...fast, size: this.checkState(fast.state) };
    } catch {
      const slow = this.runGroup(id, head, group, retries, base, now, true);
      return { ...slow, size: slow.records.length > 0 ? jsonBytes(slow.state) : head.meta.size };
    }
  }

  private runGroup(id: string, head: Head, group: Pending[], retries: Map<string, PatchRecord>, base: Json, now: number, checkEach: boolean) {
    let state: Json | null = null; // working copy, made on first use
    const budget: Budget = { maxBytes: this.config.maxStateBytes, maxDepth: this.config.maxValueDepth, bytes: head.meta.size };
    let acceptedBytes = budget.bytes;
    const records: PatchRecord[] = [];
    const inGroup = new Map<string, PatchRecord>();
    const outcomes: Outcome[] = [];
    const rebuild = (): Json => {
      let s = cloneJson(base);
      for (const r of records) s = applyPatch(s, r.patch);
      return s;
    };
    for (const p of group) {
      const next = head.ii + records.length + 1;
      const { req } = p;
      if (head.meta.owner !== p.user) {
        outcomes.push({ error: new PatchbayError('forbidden', 'only the owner of a scope may patch it', { id }) });
        continue;
      }
      if (req.session !== undefined) {
        const key = retryKey(req.session, req.si as number);
        const prior = retries.get(key) ?? inGroup.get(key);
        if (prior) {
          outcomes.push(
            prior.hash === p.hash
              ? { ack: { id, ii: prior.ii, duplicate: true } }
              : { error: new PatchbayError('duplicate_mismatch', `session ${req.session} already sent a different patch as si ${req.si}`, { ii: prior.ii }) },
          );
          continue;
        }
      }
      if (req.ii !== undefined && req.ii > next) {
        outcomes.push({ error: new PatchbayError('replay_required', `patch ii ${req.ii} is ahead of the next index ${next}`, { expected: next }) });
        continue;
      }
      if (req.ii !== undefined && req.ii < next) {
        outcomes.push({ error: new PatchbayError('out_of_sync', `patch ii ${req.ii} is at or below head ${next - 1}`, { head: next - 1 }) });
        continue;
      }
      try {
        state = applyPatch(state ?? cloneJson(base), req.patch, budget);
        if (checkEach) budget.bytes = this.checkState(state);
      } catch (err) {
        outcomes.push({ error: asPatchbayError(err) });
        state = rebuild();
        budget.bytes = acceptedBytes;
        continue;
      }
      acceptedBytes = budget.bytes;
      const record: PatchRecord = {
        scope: id,
        ii: next,
        patch: req.patch,
        at: now,
        by: p.user,
        session: req.session ?? null,
        si: req.si ?? null,
        hash: p.hash,
        epoch: head.epoch,
      };
      records.push(record);
      if (req.session !== undefined) inGroup.set(retryKey(req.session, req.si as number), record);
      outcomes.push({ ack: { id, ii: next } });
    }
    return { records, outcomes, state: state ?? base };
  }

  /**
   * Hands records to the bus, then notes them for the (batched) watermark. A failure is only
   * logged: the run is never noted, so the watermark cannot pass it and the sweeper republishes it.
   */
  private async publish(id: string, records: PatchRecord[], markNow = false): Promise<boolean> {
    const from = (records[0] as PatchRecord).ii;
    const to = (records[records.length - 1] as PatchRecord).ii;
    try {
      await this.ports.bus.publish(records.map(toEvent));
    } catch (err) {
      this.logError({ message: 'publish failed; the sweeper will retry', scope: id, err: String(err) });
      return false;
    }
    if (markNow) await this.ports.ledger.markPublished(id, to, from);
    else this.watermarks.note(id, from, to);
    return true;
  }

  /** The outbox sweeper: republishes committed patches that were never marked published. */
  async sweep(now = this.now()): Promise<number> {
    let count = 0;
    // Page by page (scopes drop out of the listing as they are published), while pages are full
    // and publishing makes progress: a backlog of thousands of scopes is cleared in one run.
    for (let page = 0; page < SWEEP_PAGES; page++) {
      const before = count;
      const stale = await this.ports.ledger.listUnpublished(now - this.config.sweepAgeMs, SWEEP_SCOPES);
      count += await this.sweepScopes(stale);
      if (stale.length < SWEEP_SCOPES || count === before) break;
    }
    return count;
  }

  private async sweepScopes(stale: Array<{ id: string; published: number; ii: number }>): Promise<number> {
    let count = 0;
    for (const s of stale) {
      let batch: PatchRecord[] = [];
      const flush = async () => {
        if (batch.length === 0) return true;
        const ok = await this.publish(s.id, batch, true);
        if (ok) count += batch.length;
        batch = [];
        return ok;
      };
      for await (const r of this.readLog(s.id, s.published + 1, s.ii)) {
        batch.push(r);
        if (batch.length === SWEEP_BATCH && !(await flush())) break;
      }
      await flush();
    }
    return count;
  }

  /**
   * Streams a scope: without `since`, a `state` at head then every later patch; with `since`,
   * every patch after it. Resolves once subscribed and caught up; the returned function stops it.
   */
  openStream(id: string, since: number | undefined, sink: StreamSink, opts: StreamOptions = {}): Promise<() => Promise<void>> {
    return openStream(
      {
        bus: this.ports.bus,
        head: (i) => this.head(i),
        stateAt: (i, ii, trimmed) => this.stateAt(i, ii, { trimmed }),
        readLog: (i, f, t, trimmed) => this.readLog(i, f, t, trimmed),
        logError: this.logError,
      },
      id,
      since,
      sink,
      opts,
    );
  }

  /**
   * Resolves once every patch acknowledged so far has been put in the cache and handed to the bus
   * (or left to the sweeper, when the bus failed).
   */
  async settled(): Promise<void> {
    await this.after.idle();
  }

  async close(): Promise<void> {
    await this.queues.idle();
    await this.after.idle();
    await this.watermarks.flush();
  }
}
