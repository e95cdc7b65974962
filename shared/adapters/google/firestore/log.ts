/**
 * The Firestore ledger's scope log: creating scopes, reading heads and the log, and routing each
 * commit: the direct way first (./commit-direct.ts; unless direct commits are off, or the scope
 * was contended lately), the transaction (./commit-transaction.ts) whenever the direct way wrote
 * nothing. Both reach guarantee 1; which one committed is invisible to the caller. A head is
 * three documents (the head, the outbox, the cold pointer), read together.
 *
 * Access lives in the head document (`meta.access`), so changing it changes the head's version:
 * a direct commit planned on the old access fails its precondition, and a transaction that read
 * the head holds it until it commits, so no commit is ever decided on an access since replaced.
 *
 * Names (`resolveName`, `rename`, and the name a scope is created with) are documents of their
 * own (./names.ts), created in the head's batch or moved in one transaction with it.
 *
 * Listings (`listFor`) are three queries on the head documents, one per way a user has a scope
 * (`meta.owner ==`, `meta.access.readers array-contains`, `meta.access.writers array-contains`),
 * each with the filters as equalities, ordered by document id and starting after the page
 * before's last; the page is the first `limit` of their union in that order, which each query's
 * own first `limit` is enough to find. Document ids are ASCII (./layout.ts), so JavaScript's
 * string order is Firestore's. Firestore serves the queries with no filter from its automatic
 * single-field indexes, and merges those for filtered ones; firestore.indexes.json adds composite
 * indexes for the domain filter, what an app's listing always sets. A deleted scope's tombstone
 * (./delete.ts) has no `meta`, so none of these queries finds it, and every head read here treats
 * it as missing (`isLive`).
 */
import { FieldPath, type Timestamp } from '@google-cloud/firestore';
import { PatchbayError } from '../../../errors.js';
import type { Json } from '../../../json.js';
import type { Head, ListPage, ListQuery, LogPatch, NewScope, Plan, ScopeListing, ScopeLog } from '../../../ports/index.js';
import type { Patch, PatchRecord, ScopeAccess } from '../../../protocol.js';
import {
  ALREADY_EXISTS,
  accessOf,
  DELETED,
  HEAD_FIELDS,
  hasCode,
  isLive,
  LIST_BY,
  LISTING_FIELDS,
  notFound,
  num,
  POINTER_FIELDS,
  toHead,
  toListing,
  toRecord,
} from './codec.js';
import type { DirectCommits } from './commit-direct.js';
import type { TransactionCommits } from './commit-transaction.js';
import type { Layout } from './layout.js';
import type { FirestoreNames } from './names.js';

export class FirestoreScopeLog implements ScopeLog {
  constructor(
    private readonly docs: Layout,
    /** Null when direct commits are off. */
    private readonly direct: DirectCommits | null,
    private readonly transactions: TransactionCommits,
    private readonly names: FirestoreNames,
  ) {}

  async createScope(scope: NewScope): Promise<Head> {
    const { id } = scope;
    const { access, ...fields } = scope.meta;
    const meta = access ? { ...fields, access: { ...access } } : fields; // Firestore refuses an undefined field
    let version: Timestamp | undefined;
    for (let attempt = 0; version === undefined; attempt++) {
      const batch = this.docs.db.batch();
      // create() fails the whole batch if the head (or the name: ./names.ts) exists, so a taken id or name changes nothing.
      batch.create(this.docs.head(id), { id, ii: 0, epoch: 0, lease: null, meta: { ...meta }, initial: JSON.stringify(scope.initial) });
      batch.set(this.docs.outbox(id), { id, ii: 0, published: 0 });
      this.names.addToCreate(batch, id, fields);
      try {
        version = ((await batch.commit())[0] as { writeTime: Timestamp }).writeTime;
      } catch (err) {
        if (!hasCode(err, ALREADY_EXISTS)) throw err;
        const taken = await this.names.whyTaken(id, fields);
        if (taken) throw taken;
        if (attempt >= 2) throw new PatchbayError('unavailable', `creating ${id} keeps conflicting; retry`);
      }
    }
    const head: Head = { id, ii: 0, epoch: 0, lease: null, published: 0, bundled: 0, trimmed: 0, meta: { ...meta } };
    this.direct?.remember(id, { head: { ...head, meta: { ...meta } }, version, wepoch: 0 });
    return head;
  }

  resolveName(domain: string, owner: string, name: string): Promise<string | null> {
    return this.names.resolve(domain, owner, name);
  }

  rename(id: string, name: string | null): Promise<void> {
    return this.names.rename(id, name);
  }

  async getHead(id: string): Promise<Head | null> {
    const { docs } = this;
    const [h, o, p] = await docs.db.getAll(docs.head(id), docs.outbox(id), docs.pointer(id), { fieldMask: [...HEAD_FIELDS, 'published', ...POINTER_FIELDS] });
    if (!isLive(h)) return null;
    return toHead(h, num(o?.get('published')), p);
  }

  async getInitial(id: string): Promise<Json | null> {
    const [h] = await this.docs.db.getAll(this.docs.head(id), { fieldMask: ['initial', DELETED] });
    if (!isLive(h)) return null;
    return JSON.parse(h.get('initial')) as Json;
  }

  async commit<T>(id: string, plan: Plan<T>, fence?: number): Promise<T> {
    if (this.direct) {
      const direct = await this.direct.commit(id, plan, fence);
      if (direct.done) return direct.result;
      this.direct.forget(id); // the transaction below returns no version to build on
    }
    return this.transactions.commit(id, plan, fence);
  }

  async setAccess(id: string, access: Omit<ScopeAccess, 'rev'>, expectedRev: number): Promise<ScopeAccess | null> {
    const ref = this.docs.head(id);
    this.direct?.forget(id); // the head's version changes: its next direct commit must read it first
    return this.docs.db.runTransaction(
      async (tx) => {
        const [snap] = await tx.getAll(ref, { fieldMask: ['meta.access', DELETED] });
        if (!isLive(snap)) throw notFound(id);
        const stored = snap.get('meta.access') as ScopeAccess | undefined;
        if ((stored ? accessOf(stored).rev : 0) !== expectedRev) return null;
        const next: ScopeAccess = { visibility: access.visibility, readers: [...access.readers], writers: [...access.writers], rev: expectedRev + 1 };
        tx.update(ref, { 'meta.access': next });
        return accessOf(next);
      },
      { maxAttempts: 10 },
    );
  }

  async listFor(user: string, query: ListQuery): Promise<ListPage> {
    const { limit, after } = query;
    if (after?.includes('/'))
      throw new PatchbayError('invalid_request', 'not a cursor a listing returned', { issues: [{ path: ['cursor'], message: 'unknown cursor' }] });
    const ways: Array<[string, '==' | 'array-contains']> = [
      [LIST_BY.owner, '=='],
      [LIST_BY.readers, 'array-contains'],
      [LIST_BY.writers, 'array-contains'],
    ];
    const pages = await Promise.all(
      ways.map(([field, op]) => {
        let q = this.docs.scopes().where(field, op, user);
        for (const key of ['domain', 'type', 'name'] as const) {
          const want = query[key];
          if (want !== undefined) q = q.where(LIST_BY[key], '==', want);
        }
        q = q.orderBy(FieldPath.documentId());
        if (after !== undefined) q = q.startAfter(after);
        return q
          .limit(limit)
          .select(...LISTING_FIELDS)
          .get();
      }),
    );
    const found = new Map<string, ScopeListing>();
    for (const page of pages) for (const d of page.docs) found.set(d.id, toListing(d));
    const ids = [...found.keys()].sort().slice(0, limit);
    const more = found.size > limit || pages.some((p) => p.size === limit);
    return { scopes: ids.map((id) => found.get(id) as ScopeListing), next: more ? (ids[ids.length - 1] ?? null) : null };
  }

  /** The log documents from <= ii <= to, ascending, at most `limit`. */
  private logRange(id: string, from: number, to: number, limit: number) {
    return this.docs.logs(id).where('ii', '>=', from).where('ii', '<=', to).orderBy('ii').limit(limit);
  }

  async readLog(id: string, from: number, to: number, limit = 1000): Promise<PatchRecord[]> {
    if (to < from || limit <= 0) return [];
    return (await this.logRange(id, from, to, limit).get()).docs.map(toRecord);
  }

  /** Only the two fields come over the wire (a projection); each patch is parsed afresh from its JSON text. */
  async readPatches(id: string, from: number, to: number, limit = 1000): Promise<LogPatch[]> {
    if (to < from || limit <= 0) return [];
    const q = await this.logRange(id, from, to, limit).select('ii', 'patch').get();
    return q.docs.map((d) => ({ ii: d.get('ii') as number, patch: JSON.parse(d.get('patch')) as Patch }));
  }
}
