/**
 * The bundler: moves each scope's patch log into cold storage and trims the hot log behind it.
 * It runs from a timer (embedded), from Cloud Scheduler through the `bundle` function (Google), or
 * from the operator CLI (`patchbay bundle`). Per scope:
 *
 *   1. take the scope's lease: a new holder gets epoch + 1, which fences any earlier bundler;
 *   2. read the hot log from bundled + 1 and write bundles of contiguous patches (full ones of
 *      PATCHBAY_BUNDLE_PATCHES, or cut at PATCHBAY_BUNDLE_MAX_BYTES; a shorter last one only for
 *      patches that are leaving the retention window), and a snapshot at every multiple of
 *      PATCHBAY_SNAPSHOT_EVERY they cover;
 *   3. after each bundle and its snapshots are stored, move `bundled` to its end (a transaction
 *      that checks the epoch);
 *   4. trim the hot log up to min(bundled, retention horizon), one chunk per transaction (each
 *      checks the epoch);
 *   5. release the lease.
 *
 * Guarantee 6 (cold storage plus the log tail reproduce every acknowledged patch; bundling and
 * trimming never lose one) holds at every step, so a crash anywhere is harmless:
 * - an object is stored before the pointer that relies on it moves, and objects are immutable
 *   copies of immutable records under deterministic names (a re-run rewrites nothing);
 * - the ledger trims only up to `bundled`, and moves `trimmed` with each chunk, so 1..trimmed is
 *   in bundles and trimmed+1..ii in the hot log at every moment, whatever was interrupted;
 * - a bundler whose lease passed on (it stalled past its TTL and another took over) can neither
 *   move the pointer nor trim: the ledger checks holder and epoch inside the transaction.
 *
 * A deleted scope (shared/engine/deleter.ts): its tombstone makes the lease calls and
 * `advanceBundled` throw `scope_not_found`. A run that wrote a bundle and its snapshots just before
 * the delete learns it at that `advanceBundled` and deletes what it wrote, so that nothing is left
 * behind the purge, which may have listed the scope's objects before they were written. Objects
 * written before a successful `advanceBundled` were there before the tombstone, so the purge finds them.
 *
 * Retention: the hot log keeps a scope's last PATCHBAY_RETAIN_PATCHES patches and every patch
 * younger than PATCHBAY_RETAIN_MINUTES (by its commit time `at`); only older patches are trimmed.
 * Retries are recognised only while their patch is in the hot log (see docs/cold-storage.md).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { ColdConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import { applyPatch } from '../patch.js';
import type { BlobStore, ColdPointers, LogReader, ScopeSummary } from '../ports/index.js';
import type { PatchRecord } from '../protocol.js';
import { recordLine } from './format.js';
import { LOG_PAGE } from './log.js';
import { bundleKey, snapshotKey } from './names.js';
import { rebuildState } from './rebuild.js';
import { ColdStore } from './store.js';

/** The bundler reads the cold-storage section of the configuration. */
export type BundlerConfig = ColdConfig;

export interface BundlerOptions {
  /** The lease holder name (default: host, pid and a random suffix). Two bundlers must differ. */
  holder?: string;
  /** Clock for leases and retention (ms since epoch). */
  now?: () => number;
  logError?: (entry: Record<string, unknown>) => void;
}

export interface ScopeReport {
  id: string;
  /** done: worked under its lease; leased: another bundler holds it; fenced: the lease passed on mid-way; stopped: stop() was called. */
  outcome: 'done' | 'leased' | 'fenced' | 'stopped';
  bundles: number;
  snapshots: number;
  /** Patches newly covered by `bundled`. */
  patches: number;
  /** Records removed from the hot log. */
  trimmed: number;
  /** The scope's pointers as this run left them (as far as it knows). */
  bundledTo: number;
  trimmedTo: number;
}

export interface RunReport {
  /** Scopes looked at, and those that had work. */
  scopes: number;
  worked: number;
  bundles: number;
  snapshots: number;
  patches: number;
  trimmed: number;
  leased: number;
  fenced: number;
  failed: Array<{ id: string; error: string }>;
  /** False when the run stopped early (its budget ran out, or stop() was called). */
  complete: boolean;
}

export interface ScopeRunOptions {
  /** Also bundle the last, short bundle even when its patches are inside the retention window. */
  all?: boolean;
  /** Called with the number of patches each stored bundle added. */
  onPatches?: (n: number) => void;
}

/** Thrown inside a scope's run when the lease passed on; the run ends without releasing it. */
class Fenced extends Error {}
/** Thrown inside a scope's run when stop() was called; the run ends and releases its lease. */
class Stop extends Error {}

export class Bundler {
  readonly holder: string;
  readonly cold: ColdStore;
  private readonly now: () => number;
  private readonly logError: (entry: Record<string, unknown>) => void;
  private stopping = false;
  /** Scopes this bundler is working on: the lease is per holder, so this instance must not work on one twice at once. */
  private readonly busy = new Set<string>();

  constructor(
    private readonly ledger: LogReader & ColdPointers,
    blobs: BlobStore,
    private readonly config: BundlerConfig,
    opts: BundlerOptions = {},
  ) {
    this.cold = new ColdStore(blobs);
    this.holder = opts.holder ?? `bundler:${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.now = opts.now ?? Date.now;
    this.logError = opts.logError ?? ((e) => console.error(JSON.stringify({ severity: 'ERROR', ...e })));
  }

  /** Makes running work stop at its next step (between bundles or scopes), releasing its lease. */
  stop(): void {
    this.stopping = true;
  }

  /** Whether the scope has work (a full bundle's worth unbundled, or patches leaving retention), judged without its lease. */
  async due(s: ScopeSummary): Promise<boolean> {
    if (s.ii - s.bundled >= this.config.bundlePatches) return true;
    if (s.ii - this.config.retainPatches <= s.trimmed) return false;
    if (this.config.retainMinutes === 0) return true;
    const [first] = await this.ledger.readLog(s.id, s.trimmed + 1, s.trimmed + 1, 1);
    return first !== undefined && first.at < this.cutoff();
  }

  /** Every scope that is `due`, in id order. */
  async *dueScopes(): AsyncGenerator<ScopeSummary> {
    let after = '';
    for (;;) {
      const page = await this.ledger.listScopes(after, 100);
      for (const s of page) if (await this.due(s)) yield s;
      if (page.length < 100) return;
      after = (page[page.length - 1] as ScopeSummary).id;
    }
  }

  /** One pass over every scope with work, within PATCHBAY_BUNDLE_BUDGET_MS. Failures are reported, not thrown. */
  async run(opts: { onScope?: (r: ScopeReport) => void; budgetMs?: number } = {}): Promise<RunReport> {
    const started = Date.now();
    const budget = opts.budgetMs ?? this.config.bundleBudgetMs;
    const report: RunReport = { scopes: 0, worked: 0, bundles: 0, snapshots: 0, patches: 0, trimmed: 0, leased: 0, fenced: 0, failed: [], complete: true };
    let after = '';
    for (;;) {
      const page = await this.ledger.listScopes(after, 100);
      for (const s of page) {
        if (this.stopping || Date.now() - started > budget) {
          report.complete = false;
          return report;
        }
        report.scopes++;
        try {
          if (!(await this.due(s))) continue;
          const r = await this.bundleScope(s.id);
          report.worked++;
          report.bundles += r.bundles;
          report.snapshots += r.snapshots;
          report.patches += r.patches;
          report.trimmed += r.trimmed;
          if (r.outcome === 'leased') report.leased++;
          if (r.outcome === 'fenced') report.fenced++;
          if (r.outcome === 'stopped') report.complete = false;
          opts.onScope?.(r);
        } catch (err) {
          report.failed.push({ id: s.id, error: String(err) });
          this.logError({ message: 'bundling failed; the next run retries', scope: s.id, err: String(err) });
        }
      }
      if (page.length < 100) return report;
      after = (page[page.length - 1] as ScopeSummary).id;
    }
  }

  /** Bundles, snapshots and trims one scope under its lease (steps 1-5 above). */
  async bundleScope(id: string, opts: ScopeRunOptions = {}): Promise<ScopeReport> {
    const report: ScopeReport = { id, outcome: 'done', bundles: 0, snapshots: 0, patches: 0, trimmed: 0, bundledTo: 0, trimmedTo: 0 };
    if (this.busy.has(id)) return { ...report, outcome: 'leased' };
    this.busy.add(id);
    try {
      const first = await this.ledger.acquireLease(id, this.holder, this.config.bundleLeaseMs, this.now());
      if (first === null) return { ...report, outcome: 'leased' };
      const lease = { epoch: first, at: this.now() };
      let fenced = false;
      try {
        await this.work(id, lease, report, opts);
      } catch (err) {
        if (!(err instanceof Fenced)) throw err;
        fenced = true;
        report.outcome = 'fenced';
      } finally {
        if (!fenced) await this.ledger.releaseLease(id, this.holder, lease.epoch).catch(() => false);
      }
      return report;
    } finally {
      this.busy.delete(id);
    }
  }

  private cutoff(): number {
    return this.now() - this.config.retainMinutes * 60_000;
  }

  /**
   * Extends the lease once a third of it has passed. A lease that lapsed meanwhile (another
   * holder has it, or we got it back as a new generation) ends the run as fenced: whatever
   * happened in between, the run's view of the scope is no longer its own.
   */
  private async renew(id: string, lease: { epoch: number; at: number }): Promise<void> {
    if (this.now() - lease.at < this.config.bundleLeaseMs / 3) return;
    const epoch = await this.ledger.acquireLease(id, this.holder, this.config.bundleLeaseMs, this.now());
    if (epoch !== lease.epoch) {
      if (epoch !== null) await this.ledger.releaseLease(id, this.holder, epoch).catch(() => false);
      throw new Fenced();
    }
    lease.at = this.now();
  }

  private async work(id: string, lease: { epoch: number; at: number }, report: ScopeReport, opts: ScopeRunOptions): Promise<void> {
    const { bundlePatches, bundleMaxBytes, snapshotEvery, retainPatches, retainMinutes } = this.config;
    const head = await this.ledger.getHead(id);
    if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    report.bundledTo = head.bundled;
    report.trimmedTo = head.trimmed;
    const cutoff = this.cutoff();
    const old = (r: PatchRecord) => retainMinutes === 0 || r.at < cutoff;
    const countHorizon = head.ii - retainPatches;

    // The retention horizon: the end of the run of patches from trimmed + 1 that are outside both
    // windows. First over what is bundled already, then (below) over what this run reads.
    let horizon = head.trimmed;
    let open = countHorizon > head.trimmed;
    if (open && retainMinutes === 0) {
      horizon = Math.min(head.bundled, countHorizon);
      open = countHorizon > head.bundled;
    } else if (open) {
      let next = head.trimmed + 1;
      const end = Math.min(head.bundled, countHorizon);
      scan: while (next <= end) {
        const page = await this.ledger.readLog(id, next, end, LOG_PAGE);
        if (page.length === 0) throw new PatchbayError('internal', `hot log of ${id} has no ${next} (trimmed ${head.trimmed})`);
        for (const r of page) {
          if (r.ii !== next) throw new PatchbayError('internal', `hot log of ${id} has a hole at ${next}`);
          if (!old(r)) {
            open = false;
            break scan;
          }
          horizon = r.ii;
          next++;
        }
      }
      open = open && countHorizon > head.bundled;
    }

    // Bundles (and snapshots) from bundled + 1.
    let bundled = head.bundled;
    const needsState = Math.floor(head.ii / snapshotEvery) > Math.floor(bundled / snapshotEvery);
    let state: Json | null = needsState ? await rebuildState(this.ledger, this.cold, id, bundled, { onDamaged: (err) => this.damaged(id, err) }) : null;
    const snapshots: Array<{ ii: number; json: string }> = [];
    let lines: string[] = [];
    let bytes = 0;

    const flush = async (to: number) => {
      const from = bundled + 1;
      if (to < from) return;
      if (this.stopping) throw new Stop();
      await this.renew(id, lease);
      const count = to - from + 1;
      const written = [bundleKey(id, from, to)];
      await this.cold.writeBundle(id, from, to, count === lines.length ? lines : lines.slice(0, count));
      report.bundles++;
      while (snapshots.length > 0 && (snapshots[0] as { ii: number }).ii <= to) {
        const snap = snapshots.shift() as { ii: number; json: string };
        written.push(snapshotKey(id, snap.ii));
        await this.cold.writeSnapshot(id, snap.ii, snap.json);
        report.snapshots++;
      }
      const moved = await this.ledger.advanceBundled(id, this.holder, lease.epoch, to).catch(async (err: unknown) => {
        // Deleted meanwhile: what this flush wrote may have been written after the purge listed the scope's objects.
        if (err instanceof PatchbayError && err.code === 'scope_not_found') await this.cold.deleteKeys(written);
        throw err;
      });
      if (moved === null) throw new Fenced();
      report.patches += to - bundled;
      opts.onPatches?.(to - bundled);
      bundled = to;
      report.bundledTo = moved;
      lines = lines.slice(count);
      bytes = lines.reduce((n, l) => n + Buffer.byteLength(l, 'utf8'), 0);
    };

    try {
      let next = bundled + 1;
      while (next <= head.ii) {
        const page = await this.ledger.readLog(id, next, head.ii, LOG_PAGE);
        if (page.length === 0) throw new PatchbayError('internal', `hot log of ${id} has no ${next} (head ${head.ii})`);
        for (const r of page) {
          if (r.ii !== next) throw new PatchbayError('internal', `hot log of ${id} has a hole at ${next}`);
          // Serialise before folding: applying a patch may share its values with the state.
          const line = recordLine(r);
          const size = Buffer.byteLength(line, 'utf8');
          if (lines.length > 0 && (lines.length >= bundlePatches || bytes + size > bundleMaxBytes)) await flush(bundled + lines.length);
          lines.push(line);
          bytes += size;
          if (state !== null) {
            state = applyPatch(state, r.patch);
            if (r.ii % snapshotEvery === 0) snapshots.push({ ii: r.ii, json: JSON.stringify(state) });
          }
          if (open) {
            if (r.ii <= countHorizon && old(r)) horizon = r.ii;
            else open = false;
          }
          next++;
        }
      }
      if (lines.length >= bundlePatches) await flush(bundled + lines.length);
      // The short remainder: only what must leave the hot log, unless asked for everything.
      await flush(opts.all ? bundled + lines.length : Math.min(horizon, bundled + lines.length));

      // Trim up to the horizon, never past what is bundled.
      let trimmed = head.trimmed;
      const upTo = Math.min(horizon, bundled);
      while (trimmed < upTo) {
        if (this.stopping) throw new Stop();
        await this.renew(id, lease);
        const t = await this.ledger.trimLog(id, this.holder, lease.epoch, upTo, this.config.trimChunk);
        if (t === null) throw new Fenced();
        if (t <= trimmed) throw new PatchbayError('internal', `trimming ${id} made no progress at ${trimmed}`);
        report.trimmed += t - trimmed;
        trimmed = t;
        report.trimmedTo = t;
      }
    } catch (err) {
      if (!(err instanceof Stop)) throw err;
      report.outcome = 'stopped';
    }
  }

  private damaged(id: string, err: unknown): void {
    this.logError({ message: 'damaged snapshot skipped', scope: id, err: String(err) });
  }
}
