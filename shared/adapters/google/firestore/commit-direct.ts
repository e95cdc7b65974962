/**
 * The Firestore ledger's direct commit: most commits take this shorter way to guarantee 1, one
 * batched write, no transaction, conditional on the head document's exact version (its update
 * time). The head the plan sees is the one this instance wrote last (the version its own last
 * commit returned, remembered here), or, when it has none, one it reads first. The batch moves the
 * head only if the head is still that version, and creates the log and retry documents only if
 * none of them exists, all or nothing: so it commits exactly when the transaction
 * (./commit-transaction.ts) would have committed the same plan, and otherwise writes nothing
 * (FAILED_PRECONDITION, ALREADY_EXISTS), and the transaction runs the plan again.
 *
 * Retry documents are not read on this way: the plan is told that no (session, si) it asks about
 * is recorded, and the batch makes that answer true at its commit or fails. A key the plan then
 * writes is checked by its retry document's `create`; a key it refuses without writing (a retry
 * carrying its original ii, now at or below head, is refused as out_of_sync unless it is found;
 * so is one whose patch no longer applies) by a delete of that document with the precondition
 * that it does not exist, which deletes nothing. Either fails the batch (ALREADY_EXISTS) when the
 * key is recorded, and the transaction then finds the record. Without the second check a retry
 * sharing its group with new patches was answered out_of_sync instead of its original ack. A plan
 * that writes nothing is always re-run in the transaction, since nothing would check the head it
 * decided against. For a scope's writers held by one instance that is one round trip per commit
 * instead of two, and no document read (a refused request with a session adds one write to the
 * batch, never a round trip); a scope written from several instances at once falls back to
 * transactions for a while (CONTENDED_MS).
 *
 * The client library re-sends a batch whose response was lost (UNAVAILABLE), and that attempt
 * then fails its precondition against the head the first one moved: each batch therefore stamps a
 * random token on its first log document, and a failed batch whose token is found there counts as
 * committed. Any other failure of the batch is not retried here (it may have been applied).
 */
import { randomUUID } from 'node:crypto';
import type { DocumentReference, DocumentSnapshot, Timestamp } from '@google-cloud/firestore';
import { type Head, type Plan, retryKey } from '../../../ports/index.js';
import { ABORTED, ALREADY_EXISTS, FAILED_PRECONDITION, HEAD_FIELDS, hasCode, isLive, NOT_FOUND, num, toHead, WEPOCH } from './codec.js';
import type { Layout } from './layout.js';
import { fits, type Limits, runPlan, type Write, writesFor } from './plan.js';

/**
 * Heads this instance remembers writing, at most; also the bound of the contended map. By count:
 * a head is its small fields and meta (name 256 chars, type 128 at most), about 1-2 KB, so some
 * 20 MB for unshared scopes; a scope's access lists add up to PATCHBAY_MAX_ACCESS_USERS user ids
 * of at most 256 chars (docs/architecture.md, Memory, has the worst case).
 */
const KNOWN_HEADS = 10_000;
/** After a direct commit lost to another writer, the scope's commits use transactions this long. */
const CONTENDED_MS = 5_000;

/** A head as of one version of its document (its update time): what a direct commit builds on. */
export interface KnownHead {
  /** The head document's fields (published, bundled and trimmed are not in it: 0). */
  head: Head;
  version: Timestamp;
  /** The head's write epoch at that version (./leaders.ts). */
  wepoch: number;
}

export type DirectOutcome<T> = { done: true; result: T } | { done: false };

export class DirectCommits {
  /** The head version each scope was left at by this instance's last direct commit (LRU). */
  private readonly known = new Map<string, KnownHead>();
  /** Scopes whose direct commits lost to another writer recently, until when (ms). */
  private readonly contended = new Map<string, number>();

  constructor(
    private readonly docs: Layout,
    private readonly limits: Limits,
  ) {}

  /**
   * The plan on the head this instance last wrote (or on one read now), committed as one batch
   * conditional on that head version and on the absence of every retry document the plan asked
   * about. `done: false` when it wrote nothing and the transaction must decide: the scope is
   * contended, the head moved, one of those retry documents exists (a retry), the plan wrote
   * nothing, or the batch would be too large with its absence checks. A failure of the batch
   * itself is not retried (it may have been applied: see the top of this file).
   */
  async commit<T>(id: string, plan: Plan<T>, fence?: number): Promise<DirectOutcome<T>> {
    const until = this.contended.get(id);
    if (until !== undefined) {
      if (until >= Date.now()) return { done: false };
      this.contended.delete(id);
    }
    const headRef = this.docs.head(id);
    let k = this.known.get(id);
    if (!k) {
      let snap: DocumentSnapshot | undefined;
      try {
        [snap] = await this.docs.db.getAll(headRef, { fieldMask: HEAD_FIELDS });
      } catch {
        return { done: false }; // nothing written; the transaction's loop handles backend failures
      }
      if (!isLive(snap) || !snap.updateTime) return { done: false }; // the transaction says scope_not_found
      k = { head: toHead(snap, 0, undefined), version: snap.updateTime, wepoch: num(snap.get(WEPOCH)) };
    }
    // A fenced commit builds only on a head at its epoch; the batch's version precondition then
    // keeps it so. Otherwise the transaction decides, and refuses it (./commit-transaction.ts).
    if (fence !== undefined && k.wepoch !== fence) return { done: false };
    // No retry document is read here: the plan is told none of the keys it asks about is
    // recorded, and the batch checks that answer for each of them (see the top of this file).
    const asked = new Map<string, DocumentReference>();
    const { head, planned } = await runPlan(
      this.docs,
      id,
      async (keys) => {
        for (const key of keys) asked.set(retryKey(key.session, key.si), this.docs.retry(id, key.session, key.si));
        return new Map();
      },
      k.head,
      plan,
    );
    if (planned.records.length === 0) return { done: false };
    const w = writesFor(this.docs, this.limits, id, head, planned);
    // The keys the plan writes are checked by their creates; those it refused, by these.
    for (const r of planned.records) if (r.session !== null && r.si !== null) asked.delete(retryKey(r.session, r.si));
    const absent: Write[] = [...asked.values()].map((ref) => ({ ref, data: {} }));
    if (!fits(this.limits, [...w.creates, ...absent])) return { done: false }; // the transaction reads instead
    // The token on the first log document tells a re-sent batch of ours from someone else's commit.
    const token = randomUUID();
    const first = w.creates[0] as Write;
    first.data.w = token;
    const batch = this.docs.db.batch();
    batch.update(headRef, w.head, { lastUpdateTime: k.version });
    for (const c of w.creates) batch.create(c.ref, c.data);
    for (const a of absent) batch.delete(a.ref, { exists: false }); // deletes nothing; fails if it exists
    batch.set(this.docs.outbox(id), w.outbox, { merge: true });
    this.known.delete(id);
    let version: Timestamp | undefined;
    try {
      version = ((await batch.commit())[0] as { writeTime: Timestamp }).writeTime;
    } catch (err) {
      if (!(hasCode(err, FAILED_PRECONDITION) || hasCode(err, ALREADY_EXISTS) || hasCode(err, ABORTED) || hasCode(err, NOT_FOUND))) throw err;
      const [mine] = await this.docs.db.getAll(first.ref, { fieldMask: ['w'] });
      if (mine?.get('w') === token) return { done: true, result: planned.result }; // applied; its version is unknown
      // Nothing was written (a batch is all or nothing). Another writer moved the head, or a
      // retry document exists (one to create, or one checked absent): the transaction decides,
      // and a scope that another writer is committing to goes through transactions for a while.
      if (!hasCode(err, ALREADY_EXISTS)) this.markContended(id);
      return { done: false };
    }
    this.remember(id, { head: { ...k.head, ii: w.ii, meta: w.meta }, version, wepoch: k.wepoch }); // k.head: a plain copy (runPlan's has getters)
    return { done: true, result: planned.result };
  }

  /** Builds the scope's next direct commit on this head version (one this instance wrote). */
  remember(id: string, k: KnownHead): void {
    this.known.delete(id); // re-insert: Map order is recency order
    this.known.set(id, k);
    for (const [oldest] of this.known) {
      if (this.known.size <= KNOWN_HEADS) break;
      this.known.delete(oldest);
    }
  }

  /** The head is being written some other way: its version changes, so read it before the next direct commit. */
  forget(id: string): void {
    this.known.delete(id);
  }

  private markContended(id: string): void {
    const now = Date.now();
    this.contended.delete(id);
    this.contended.set(id, now + CONTENDED_MS);
    // Bounded like `known`: entries are in the order they were set, so the oldest expire first.
    for (const [oldest, until] of this.contended) {
      if (this.contended.size <= KNOWN_HEADS && until >= now) break;
      this.contended.delete(oldest);
    }
  }
}
