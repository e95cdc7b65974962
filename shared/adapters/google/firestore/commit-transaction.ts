/**
 * The Firestore ledger's transactional commit: the way every commit can take, and the one that
 * decides whenever the direct way (./commit-direct.ts) cannot.
 *
 * Guarantee 1 is enforced here: ONE Firestore transaction reads the head (and the retry documents
 * the plan asks for), runs the plan, checks that its records continue the head it saw, and then
 * creates the log documents (`create`: an index can never be written twice), creates the retry
 * documents and moves the head. Firestore re-runs the transaction, plan included, when another
 * transaction touched the head in between, so the plan always decides against the head it is
 * committed on, and `findRetries`' answers (read inside the transaction) hold when it commits. A
 * plan too large for one transaction is refused before anything is written (./plan.ts). A commit
 * fenced by a write-lease epoch (./leaders.ts) reads the head's write epoch in the same
 * transaction and writes nothing unless it is still that epoch.
 */
import type { DocumentReference, DocumentSnapshot, Transaction } from '@google-cloud/firestore';
import { isBackendError, PatchbayError } from '../../../errors.js';
import { type Plan, retryKey } from '../../../ports/index.js';
import { leaseLost } from '../../../ports/leaders.js';
import type { PatchRecord } from '../../../protocol.js';
import { ABORTED, HEAD_FIELDS, hasCode, isLive, notFound, num, toHead, toRecord, WEPOCH } from './codec.js';
import type { Layout } from './layout.js';
import { type Limits, runPlan, writesFor } from './plan.js';

export class TransactionCommits {
  constructor(
    private readonly docs: Layout,
    private readonly limits: Limits,
    /** Attempts per transaction under contention. */
    private readonly maxAttempts: number,
  ) {}

  /**
   * The client library would re-run the whole transaction, plan included, after a commit whose
   * response was lost (UNAVAILABLE, DEADLINE_EXCEEDED...) although it went through: the plan
   * would then decide again against a head that already holds its own records, and append the
   * same requests twice. So the library runs each attempt once, and this loop retries only
   * where nothing can have been written: ABORTED (contention), or a failure before the plan
   * queued any write. An ambiguous commit surfaces as an error (503 unavailable); the client
   * retries, and a retry with (session, si) is recognised.
   */
  async commit<T>(id: string, plan: Plan<T>, fence?: number): Promise<T> {
    const headRef = this.docs.head(id);
    for (let attempt = 1; ; attempt++) {
      let wrote = false;
      try {
        return await this.commitOnce(id, headRef, plan, fence, () => {
          wrote = true;
        });
      } catch (err) {
        const contention = hasCode(err, ABORTED);
        const safe = contention || (!wrote && !(err instanceof PatchbayError) && isBackendError(err));
        // Contention only costs time, so it gets twice the attempts, with a longer backoff: the
        // emulator resolves lock conflicts by timing one side out after about 2 s.
        if (!safe || attempt >= (contention ? 2 * this.maxAttempts : this.maxAttempts)) throw err;
        await new Promise((r) => setTimeout(r, Math.min(contention ? 4000 : 2000, 100 * 2 ** attempt) * (0.5 + Math.random())));
      }
    }
  }

  private commitOnce<T>(id: string, headRef: DocumentReference, plan: Plan<T>, fence: number | undefined, onWrites: () => void): Promise<T> {
    return this.docs.db.runTransaction(
      async (tx) => {
        const [snap] = await tx.getAll(headRef, { fieldMask: HEAD_FIELDS });
        if (!isLive(snap)) throw notFound(id); // missing, or a tombstone (a delete won the head: ./delete.ts)
        // The fence: read in this transaction, so a lease taken after this read conflicts with it.
        if (fence !== undefined && num(snap.get(WEPOCH)) !== fence) throw leaseLost(id, fence);
        const { head, planned } = await runPlan(this.docs, id, (keys) => this.findRetries(tx, id, keys), toHead(snap, 0, undefined), plan);
        const { records, result } = planned;
        if (records.length === 0) return result;
        const w = writesFor(this.docs, this.limits, id, head, planned);
        for (const c of w.creates) tx.create(c.ref, c.data);
        tx.update(headRef, w.head);
        tx.set(this.docs.outbox(id), w.outbox, { merge: true });
        onWrites();
        return result;
      },
      { maxAttempts: 1 },
    );
  }

  private async findRetries(tx: Transaction, id: string, keys: ReadonlyArray<{ session: string; si: number }>): Promise<Map<string, PatchRecord>> {
    const found = new Map<string, PatchRecord>();
    const unique = [...new Map(keys.map((k) => [retryKey(k.session, k.si), k])).values()];
    if (unique.length === 0) return found;
    const hits = (await tx.getAll(...unique.map((k) => this.docs.retry(id, k.session, k.si)))).filter((s) => s.exists);
    if (hits.length === 0) return found;
    // The retry documents point at log documents, which hold the full record.
    const logs = await tx.getAll(...hits.map((s) => this.docs.log(id, s.get('ii'))));
    logs.forEach((d, i) => {
      const hit = hits[i] as DocumentSnapshot;
      if (!d.exists || d.get('session') !== hit.get('session') || d.get('si') !== hit.get('si')) {
        throw new PatchbayError('internal', `retry record ${hit.id} of ${id} points at a missing or different log entry ${hit.get('ii')}`);
      }
      const r = toRecord(d);
      found.set(retryKey(r.session as string, r.si as number), r);
    });
    return found;
  }
}
