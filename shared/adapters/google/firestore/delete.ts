/**
 * The Firestore ledger's deletions (the Deletions role of shared/ports/ledger.ts). A deleted
 * scope's head document is replaced by its tombstone: {id, owner, domain, epoch (bumped), lease:
 * null, deleted: {at, purged}}, without `ii`, `meta` or `initial`. Its id stays taken (createScope's
 * `create` of the head fails), and no listing query finds it (they query `meta` fields).
 *
 * The guarantee kept here: the tombstone is written by ONE transaction that reads the head and
 * replaces it, and deletes the scope's outbox document and cold pointer with it. Every other head
 * read of the ledger treats a tombstone as a missing scope (`isLive` in ./codec.ts). So a commit
 * racing the delete is ordered with it exactly as with setAccess: a direct commit's batch is
 * conditional on the head version its plan saw, which the tombstone changed (it fails, and the
 * transaction then reads the tombstone: `scope_not_found`); a transactional commit that read the
 * head either commits before the tombstone transaction (which then retries, and the records are
 * purged with the rest) or is retried after it and finds the tombstone. The lease holder is
 * fenced the same way (ColdPointers re-read the head inside their transactions).
 *
 * The purge deletes the log, retry, cursor and inbox documents under the head (and the write lease) in batches of at most
 * `maxWrites` (Firestore's limit per commit), each batch all or nothing, so a crash between
 * batches leaves a tombstone with fewer documents, which the next purge finishes. It works only
 * on a tombstone: a live scope's documents are never touched.
 */
import type { DocumentReference, DocumentSnapshot, Query } from '@google-cloud/firestore';
import type { Deletions, Head, Tombstone } from '../../../ports/index.js';
import { DELETED, HEAD_FIELDS, isLive, num, POINTER_FIELDS, toHead, WEPOCH } from './codec.js';
import type { HeadWriterOptions } from './cold.js';
import type { Layout } from './layout.js';

/** The tombstone's mark as stored. */
interface DeletedMark {
  at: number;
  purged: boolean;
}

const markOf = (d: DocumentSnapshot | undefined): DeletedMark | undefined => (d?.exists ? (d.get(DELETED) as DeletedMark | undefined) : undefined);

function toTombstone(d: DocumentSnapshot): Tombstone {
  const mark = d.get(DELETED) as DeletedMark;
  return { id: d.get('id'), owner: d.get('owner'), domain: d.get('domain'), deleted: num(mark.at), purged: mark.purged === true };
}

export class FirestoreDeletions implements Deletions {
  constructor(
    private readonly docs: Layout,
    private readonly opts: HeadWriterOptions,
  ) {}

  async deleteScope(id: string, at: number): Promise<Head | null> {
    const { docs } = this;
    const ref = docs.head(id);
    this.opts.onHeadWrite(id);
    return docs.db.runTransaction(
      async (tx) => {
        const [h, o, p] = await tx.getAll(ref, docs.outbox(id), docs.pointer(id), { fieldMask: [...HEAD_FIELDS, 'published', ...POINTER_FIELDS] });
        if (!isLive(h)) return null;
        const head = toHead(h, num(o?.get('published')), p);
        // Its name is free at once (the id is what stays reserved): its name document goes with the tombstone.
        const { name, domain, owner } = head.meta;
        const nameRef = name === null ? null : docs.name(domain, owner, name);
        const held = nameRef ? await tx.get(nameRef) : null;
        if (nameRef && held?.exists && held.get('scope') === id) tx.delete(nameRef);
        const mark: DeletedMark = { at, purged: false };
        // set() without merge replaces the whole document: ii, meta (the listings' fields) and the initial state go.
        // The write epoch stays (./leaders.ts): a leader of the scope's past can never commit again.
        tx.set(ref, {
          id,
          owner: head.meta.owner,
          domain: head.meta.domain,
          epoch: head.epoch + 1,
          lease: null,
          [WEPOCH]: num(h.get(WEPOCH)),
          [DELETED]: mark,
        });
        tx.delete(docs.outbox(id));
        tx.delete(docs.pointer(id));
        return head;
      },
      { maxAttempts: this.opts.maxAttempts },
    );
  }

  async purgeScope(id: string, limit: number): Promise<boolean> {
    const { docs } = this;
    const [h] = await docs.db.getAll(docs.head(id), { fieldMask: [DELETED] });
    if (!markOf(h)) return true; // no tombstone: nothing of ours to purge (a live scope is never touched)
    let left = Math.max(1, Math.min(limit, this.opts.maxWrites - 3)); // the batch also deletes the outbox, the pointer and the write lease
    const refs: DocumentReference[] = [];
    const collections: Query[] = [docs.logs(id), docs.retries(id), docs.cursors(id), docs.inbox(id)];
    for (const c of collections) {
      if (left <= 0) break;
      const page = await c.select().limit(left).get();
      for (const d of page.docs) refs.push(d.ref);
      left -= page.size;
    }
    // The tombstone transaction deleted these; a purge deletes them again, in case (idempotent).
    refs.push(docs.outbox(id), docs.pointer(id), docs.writeLease(id));
    const batch = docs.db.batch();
    for (const r of refs) batch.delete(r);
    await batch.commit();
    return left > 0; // every collection had fewer documents than were asked for: none is left
  }

  async markPurged(id: string): Promise<boolean> {
    const ref = this.docs.head(id);
    return this.docs.db.runTransaction(
      async (tx) => {
        const [h] = await tx.getAll(ref, { fieldMask: [DELETED] });
        const mark = markOf(h);
        if (!mark) return false;
        if (!mark.purged) tx.update(ref, { [`${DELETED}.purged`]: true });
        return true;
      },
      { maxAttempts: this.opts.maxAttempts },
    );
  }

  async listDeleted(before: number, limit: number): Promise<Tombstone[]> {
    if (limit <= 0) return [];
    const fields = ['id', 'owner', 'domain', DELETED];
    const unpurged = await this.docs
      .scopes()
      .where(`${DELETED}.purged`, '==', false)
      .limit(limit)
      .select(...fields)
      .get();
    const found = new Map(unpurged.docs.map((d) => [d.id, toTombstone(d)]));
    if (found.size < limit) {
      const expired = await this.docs
        .scopes()
        .where(`${DELETED}.at`, '<', before)
        .limit(limit)
        .select(...fields)
        .get();
      for (const d of expired.docs) if (found.size < limit && !found.has(d.id)) found.set(d.id, toTombstone(d));
    }
    return [...found.values()];
  }

  async dropTombstone(id: string, before: number): Promise<boolean> {
    const ref = this.docs.head(id);
    return this.docs.db.runTransaction(
      async (tx) => {
        const [h] = await tx.getAll(ref, { fieldMask: [DELETED] });
        const mark = markOf(h);
        if (!mark?.purged || !(num(mark.at) < before)) return false;
        tx.delete(ref);
        return true;
      },
      { maxAttempts: this.opts.maxAttempts },
    );
  }
}
