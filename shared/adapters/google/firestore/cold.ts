/**
 * The Firestore ledger's cold pointers and the lease that fences them (guarantee 6, the ledger's
 * half). The pointers have their own document (<root>/~cold/pointers/{id}), so the bundler's
 * fenced writes never touch the head: `advanceBundled` and each `trimLog` chunk are transactions
 * that READ the head (lease and epoch: the fence) and write only the pointer document (and, for a
 * trim, delete the oldest log and retry documents). A commit waits at most for such a short
 * transaction's read lock; the head is written only to take and release the lease. A trim chunk
 * deletes its log documents and moves `trimmed` atomically, so the hot log is always exactly
 * trimmed+1..ii, and a bundler whose lease passed on (a new epoch) can move neither pointer.
 */
import type { QueryDocumentSnapshot, Transaction } from '@google-cloud/firestore';
import { PatchbayError } from '../../../errors.js';
import type { ColdPointers, Lease, ScopeSummary } from '../../../ports/index.js';
import { DELETED, isLive, leaseOf, notFound, num, POINTER_FIELDS } from './codec.js';
import type { Layout } from './layout.js';

/** What the modules that write the head outside a commit (this one, ./delete.ts) are given. */
export interface HeadWriterOptions {
  /** Attempts per transaction under contention. */
  maxAttempts: number;
  /** Most writes per transaction or batch: bounds a trim chunk, a purge batch. */
  maxWrites: number;
  /** Told before the head is written (a lease taken or released, a tombstone): its version changes. */
  onHeadWrite: (id: string) => void;
}

export class FirestoreColdPointers implements ColdPointers {
  constructor(
    private readonly docs: Layout,
    private readonly opts: HeadWriterOptions,
  ) {}

  async acquireLease(id: string, holder: string, ttlMs: number, now = Date.now()): Promise<number | null> {
    return this.leaseTx(id, (lease, epoch, update) => {
      if (lease && lease.holder !== holder && lease.expires > now) return null;
      const next = lease && lease.holder === holder && lease.expires > now ? epoch : epoch + 1;
      update({ lease: { holder, expires: now + ttlMs }, epoch: next });
      return next;
    });
  }

  async releaseLease(id: string, holder: string, epoch: number): Promise<boolean> {
    return this.leaseTx(id, (lease, current, update) => {
      if (!lease || lease.holder !== holder || current !== epoch) return false;
      update({ lease: null });
      return true;
    });
  }

  /**
   * One transaction on the head's lease and epoch: `decide` sees them and may update the head.
   * Throws `scope_not_found` when there is no head.
   */
  private leaseTx<T>(id: string, decide: (lease: Lease | null, epoch: number, update: (data: Record<string, unknown>) => void) => T): Promise<T> {
    const ref = this.docs.head(id);
    this.opts.onHeadWrite(id); // the head's version changes (its direct commits would fail once)
    return this.docs.db.runTransaction(
      async (tx) => {
        const [snap] = await tx.getAll(ref, { fieldMask: ['epoch', 'lease', DELETED] });
        if (!isLive(snap)) throw notFound(id);
        return decide(leaseOf(snap), num(snap.get('epoch')), (data) => tx.update(ref, data));
      },
      { maxAttempts: this.opts.maxAttempts },
    );
  }

  async listScopes(after: string, limit: number): Promise<ScopeSummary[]> {
    if (limit <= 0) return [];
    // Tombstones are left out, and the page filled up past them: a short page means the last one.
    const docs: QueryDocumentSnapshot[] = [];
    let from = after;
    for (;;) {
      const page = await this.docs.scopes().where('id', '>', from).orderBy('id').limit(limit).select('id', 'ii', DELETED).get();
      for (const d of page.docs) if (d.get(DELETED) === undefined && docs.length < limit) docs.push(d);
      if (page.size < limit || docs.length >= limit) break;
      from = page.docs[page.docs.length - 1]?.get('id') as string;
    }
    if (docs.length === 0) return [];
    const pointers = await this.docs.db.getAll(...docs.map((d) => this.docs.pointer(d.get('id') as string)), { fieldMask: POINTER_FIELDS });
    return docs.map((d, i) => ({
      id: d.get('id') as string,
      ii: num(d.get('ii')),
      bundled: num(pointers[i]?.get('bundled')),
      trimmed: num(pointers[i]?.get('trimmed')),
    }));
  }

  /**
   * Reads the head's lease and the cold pointers inside `tx`; null when `holder` no longer holds
   * the lease at `epoch` (see ColdPointers.advanceBundled).
   */
  private async leased(tx: Transaction, id: string, holder: string, epoch: number): Promise<{ ii: number; bundled: number; trimmed: number } | null> {
    const [h, p] = await tx.getAll(this.docs.head(id), this.docs.pointer(id), { fieldMask: ['ii', 'epoch', 'lease', DELETED, ...POINTER_FIELDS] });
    if (!isLive(h)) throw notFound(id);
    if (leaseOf(h)?.holder !== holder || num(h.get('epoch')) !== epoch) return null;
    return { ii: num(h.get('ii')), bundled: num(p?.get('bundled')), trimmed: num(p?.get('trimmed')) };
  }

  async advanceBundled(id: string, holder: string, epoch: number, to: number): Promise<number | null> {
    return this.docs.db.runTransaction(
      async (tx) => {
        const cur = await this.leased(tx, id, holder, epoch);
        if (!cur) return null;
        if (to > cur.ii) throw new PatchbayError('internal', `cannot mark ${id} bundled up to ${to}: head is ${cur.ii}`);
        if (to <= cur.bundled) return cur.bundled;
        tx.set(this.docs.pointer(id), { id, bundled: to }, { merge: true });
        return to;
      },
      { maxAttempts: this.opts.maxAttempts },
    );
  }

  async trimLog(id: string, holder: string, epoch: number, upTo: number, limit: number): Promise<number | null> {
    const { db } = this.docs;
    const { maxWrites } = this.opts;
    // The chunk's records (for their retry keys) are read before the transaction, so that it
    // reads two documents instead of locking a range of the log: a committed record never
    // changes, so all the transaction has to check is that `trimmed` is still where this started.
    // They are read by name, not with a range query (which the emulator answers by scanning).
    const [p] = await db.getAll(this.docs.pointer(id), { fieldMask: POINTER_FIELDS });
    const from = num(p?.get('trimmed'));
    const want = Math.min(upTo, from + Math.max(1, Math.min(limit, maxWrites - 1)));
    const refs = Array.from({ length: Math.max(0, want - from) }, (_, i) => this.docs.log(id, from + 1 + i));
    const read = refs.length > 0 ? await db.getAll(...refs, { fieldMask: ['ii', 'session', 'si'] }) : [];
    return db.runTransaction(
      async (tx) => {
        const cur = await this.leased(tx, id, holder, epoch);
        if (!cur) return null;
        if (upTo > cur.bundled) throw new PatchbayError('internal', `cannot trim ${id} up to ${upTo}: only ${cur.bundled} is bundled`);
        if (cur.trimmed !== from || want <= from) return cur.trimmed; // moved meanwhile (the caller goes on from there), or nothing to do
        read.forEach((d, i) => {
          if (!d.exists || d.get('ii') !== from + 1 + i) throw new PatchbayError('internal', `log of ${id} has a hole at ${from + 1 + i}`);
        });
        // As many records as one transaction's writes allow: a delete for each, one for each retry
        // document, and the pointer.
        let writes = 1;
        let end = from;
        for (const d of read) {
          const session = d.get('session') as string | null | undefined;
          const si = d.get('si') as number | null | undefined;
          const retry = typeof session === 'string' && typeof si === 'number';
          writes += retry ? 2 : 1;
          if (writes > maxWrites && end > from) break;
          tx.delete(d.ref);
          if (retry) tx.delete(this.docs.retry(id, session, si));
          end++;
        }
        tx.set(this.docs.pointer(id), { id, trimmed: end }, { merge: true });
        return end;
      },
      { maxAttempts: this.opts.maxAttempts },
    );
  }
}
