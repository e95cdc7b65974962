/**
 * The write path: per-scope queues, one ledger transaction per group, and the work after it.
 *
 * Guarantee 1 (every acknowledged patch is in the log once, indices 1..n without holes) rests on
 * `Ledger.commit`: the plan reads the head, the group's retry records and the state at head
 * inside the ledger's transaction, and the pure decision (shared/engine/decide.ts) decides each
 * request against them, so a retried transaction re-decides from scratch. The plan writes no
 * cache: a ledger transaction may run it several times. It looks up the group's (session, si)
 * keys before deciding anything else, and the ledger keeps that answer true at the commit
 * (TxView.findRetries), so a recognised retry gets its original ack even when its old ii would be
 * refused and its group commits other patches.
 * Requests to one scope are committed in groups, in arrival order (shared/engine/queue.ts); a
 * group too big for one ledger transaction is committed as two halves, in order. A request is
 * acknowledged when PATCHBAY_ACK_AFTER says: at the commit, or once its group is published; the
 * cache put and the publish follow the commit in commit order (shared/engine/after-commit.ts).
 * When several instances share the ledger, a scope's requests are committed by its leader only
 * (shared/engine/leading.ts), each commit fenced by the leader's lease epoch.
 */
import * as crypto from 'node:crypto';
import type { Config } from '../config.js';
import { PatchbayError } from '../errors.js';
import { jsonHeapBytes } from '../json.js';
import { type CheckedPatch, checkPatch } from '../patch.js';
import type { Adapters, Head, TxView } from '../ports/index.js';
import { leaseLost } from '../ports/leaders.js';
import type { Patch, PatchRecord, PatchRequest } from '../protocol.js';
import { AfterCommit } from './after-commit.js';
import { type Ack, type Chain, type CommitRules, type Decision, decide, type Outcome, type Pending } from './decide.js';
import { HandoverBus } from './handover-bus.js';
import { Leading } from './leading.js';
import type { NearCache } from './near-cache.js';
import { ScopeQueues } from './queue.js';
import type { Reader } from './read.js';
import type { Outbox } from './sweeper.js';

export type WriterConfig = Pick<
  Config,
  | 'maxGroup'
  | 'ackAfter'
  | 'maxStateBytes'
  | 'maxValueDepth'
  | 'maxOps'
  | 'maxPatchBytes'
  | 'maxPathDepth'
  | 'scopeLeaders'
  | 'writeLeaseMs'
  | 'writeLeaseIdleMs'
  | 'handoverBus'
  | 'handoverInboxAfterMs'
  | 'handoverTimeoutMs'
  | 'jwtSecret'
>;

/**
 * The sha256 of a patch's JSON text, base64url: what a retry's patch is compared by. One-shot
 * `crypto.hash` (Node >= 20.12) where there is one: about 8 times cheaper than a `createHash`
 * object for a patch's short text, and it runs for every patch written.
 */
const hashOf: (patch: Patch) => string =
  typeof crypto.hash === 'function' // a namespace import: a missing export is undefined, not a link error
    ? (patch) => crypto.hash('sha256', JSON.stringify(patch), 'base64url')
    : (patch) => crypto.createHash('sha256').update(JSON.stringify(patch)).digest('base64url');

export class Writer {
  private readonly queues: ScopeQueues<Pending, Ack>;
  private readonly after: AfterCommit;
  /** Whether an ack waits for its publish (PATCHBAY_ACK_AFTER, resolved by loadConfig). */
  private readonly ackAfterPublish: boolean;
  /** Scope leaders (./leading.ts): null when this process commits every scope (embedded, or PATCHBAY_SCOPE_LEADERS off). */
  private readonly leading: Leading | null;

  constructor(
    private readonly ports: Pick<Adapters, 'ledger' | 'leaders' | 'bus'>,
    private readonly config: WriterConfig,
    private readonly reader: Reader,
    private readonly near: NearCache,
    outbox: Outbox,
    private readonly rules: CommitRules,
    private readonly now: () => number,
    /** Told, after each commit, how much the state of a scope of `owner` grew (quotas). */
    private readonly onStored: (owner: string, delta: number) => void = () => {},
    logError: (e: Record<string, unknown>) => void = () => {},
  ) {
    this.queues = new ScopeQueues(config.maxGroup, (id, group) => this.commitGroup(id, group));
    this.ackAfterPublish = config.ackAfter === 'publish';
    this.after = new AfterCommit({
      cache: (id, ii, state, bytes) => reader.putCache(id, ii, state, bytes),
      publish: (id, records) => outbox.publish(id, records),
    });
    const holder = crypto.randomUUID();
    this.leading =
      ports.leaders && config.scopeLeaders
        ? new Leading(
            ports.leaders,
            holder,
            config,
            (id, p) => this.local(id, p),
            (req) => hashOf(req.patch),
            logError,
            now,
            config.handoverBus ? new HandoverBus(ports.bus, holder, config.jwtSecret, logError) : null,
          )
        : null;
  }

  /** Checks a patch against the limits (shared/patch.ts `checkPatch`), with this writer's config. */
  check(patch: Patch): CheckedPatch {
    return checkPatch(patch, this.config);
  }

  /**
   * Queues a patch for the scope and resolves with its ack once it is committed (and, with
   * PATCHBAY_ACK_AFTER=publish, published). `checked`: what `check` answered for this very patch
   * (the same array), so it is not checked twice. `chain`: the batch sequence it belongs to
   * (shared/engine/decide.ts `Chain`).
   */
  submit(id: string, user: string, req: PatchRequest, domain: string, checked?: CheckedPatch, chain?: Chain): Promise<Ack> {
    if (checked?.patch !== req.patch) this.check(req.patch);
    // A batch's chain (decide.ts) is an in-memory object: it keeps the batch's order on the leader
    // it was made on; a request handed over to another instance's leader travels without it.
    const p: Pending = { req, user, domain, hash: hashOf(req.patch), ...(chain ? { chain } : {}) };
    return this.leading ? this.leading.submit(id, p) : this.local(id, p);
  }

  /** Queues a request in this instance's queue of the scope (as its leader, when scopes are led). */
  private local(id: string, p: Pending): Promise<Ack> {
    const ack = this.queues.push(id, p);
    // With PATCHBAY_ACK_AFTER=publish the ack also waits for the publish (not the cache put); the
    // scope's next group commits meanwhile (the queue does not wait for them).
    if (!this.ackAfterPublish) return ack;
    return ack.then(async (a) => {
      await this.after.passed(id, a.ii);
      return a;
    });
  }

  /**
   * Commits one group: one ledger transaction, each request checked in order. A group too big for
   * one ledger transaction (the ledger says so before writing anything) is committed as two
   * halves, in order.
   */
  private async commitGroup(id: string, group: Pending[]): Promise<Outcome[]> {
    try {
      const outcomes = await this.commitOnce(id, group);
      // What was decided is now committed: a refused item's batch sequence stops here (decide.ts `Chain`).
      outcomes.forEach((o, i) => {
        const chain = group[i]?.chain;
        if (chain && 'error' in o) chain.refused = true;
      });
      return outcomes;
    } catch (err) {
      if (group.length > 1 && err instanceof PatchbayError && err.details.reason === 'ledger_transaction_limit') {
        const half = Math.ceil(group.length / 2);
        return [...(await this.commitGroup(id, group.slice(0, half))), ...(await this.commitGroup(id, group.slice(half)))];
      }
      for (const p of group) if (p.chain) p.chain.refused = true; // refused whole: their sequences stop too
      throw err;
    }
  }

  private async commitOnce(id: string, group: Pending[]): Promise<Outcome[]> {
    const now = this.now();
    let before = { owner: '', size: 0 };
    // Led scopes: fenced by this instance's lease epoch, so a leader that lost its lease writes nothing.
    const fence = this.leading?.fence(id);
    if (this.leading && fence === undefined) throw leaseLost(id, undefined);
    const { records, outcomes, state, size } = await this.ports.ledger.commit(
      id,
      async (view) => {
        before = view.head.meta; // the head of the attempt that commits: the last one planned
        const planned = await this.plan(id, view.head, group, view, now);
        const meta = planned.records.length > 0 ? { updated: now, size: planned.size } : undefined;
        return { records: planned.records, meta, result: planned };
      },
      fence,
    );
    if (records.length > 0) {
      const last = records[records.length - 1] as PatchRecord;
      // Measured once for both caches that keep this state (the near cache and, embedded, the hot
      // cache): one walk of the state per group, next to the clone and the size check it already
      // costs. `size` (its JSON text) would undercount its memory up to 9x (shared/json.ts).
      const bytes = jsonHeapBytes(state);
      this.near.put(id, last.ii, state, bytes);
      this.after.add(id, records, state, bytes);
      this.onStored(before.owner, size - before.size);
    }
    return outcomes;
  }

  /** Reads what the decision needs inside the transaction, then decides (shared/engine/decide.ts). */
  private async plan(id: string, head: Head, group: Pending[], view: TxView, now: number): Promise<Decision> {
    const keys = group.flatMap((p) => (p.req.session === undefined ? [] : [{ session: p.req.session, si: p.req.si as number }]));
    const retries = keys.length > 0 ? await view.findRetries(keys) : new Map<string, PatchRecord>();
    // No cache write from inside the plan: a ledger transaction may run it several times.
    const base = await this.reader.stateAt(id, head.ii, { cache: false });
    await this.rules.prepare?.(head.meta.domain);
    return decide({ id, head, base, group, retries, limits: this.config, now, rules: this.rules });
  }

  /** Resolves once every patch acknowledged so far has been put in the cache and handed to the bus. */
  settled(): Promise<void> {
    return this.after.idle();
  }

  /** Resolves once every queued request is answered and the work after their commits is done. */
  async idle(): Promise<void> {
    await this.queues.idle();
    await this.after.idle();
  }

  /** Shutdown: answers what is queued, and gives back the scopes this instance leads (their leases). */
  async close(): Promise<void> {
    if (this.leading) await this.leading.close(() => this.idle());
    await this.idle();
  }
}
