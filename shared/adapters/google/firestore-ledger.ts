/**
 * The Firestore ledger. Data model, under one top collection `root` (default `scopes`):
 *
 *   <root>/{id}                    head: ii, epoch, lease, meta, initial (JSON text)
 *   <root>/{id}/log/{ii, 12 digits} one PatchRecord per accepted patch (patch as JSON text)
 *   <root>/{id}/retries/{session}~{si}  {session, si, ii, hash}: finds a retried patch's record
 *   <root>/~outbox/watermarks/{id} outbox: id, ii, published, and `pending` while maybe unpublished
 *   <root>/~cold/pointers/{id}     cold storage: id, bundled, trimmed (missing: both 0)
 *   <root>/{id}/cursors/{consumer} a consumer's cursor {consumer, scope, ii}, even for unknown ids
 *
 * Guarantee 1 is enforced by `commit`: ONE Firestore transaction reads the head (and the retry
 * documents the plan asks for), runs the plan, checks that its records continue the head it saw,
 * and then creates the log documents (`create`: an index can never be written twice), creates the
 * retry documents and moves the head. Firestore re-runs the transaction, plan included, when
 * another transaction touched the head in between, so the plan always decides against the head
 * it is committed on. A plan too large for one transaction is refused before anything is written.
 *
 * Most commits take a shorter way to the same guarantee (`commitDirect`): one batched write, no
 * transaction, conditional on the head document's exact version (its update time). The head the
 * plan sees is the one this instance wrote last (the version its own last commit returned), or,
 * when it has none, one it reads first. The batch moves the head only if the head is still that
 * version, and creates the log and retry documents only if none of them exists, all or nothing:
 * so it commits exactly when the transaction would have committed the same plan, and otherwise
 * writes nothing (FAILED_PRECONDITION, ALREADY_EXISTS), and the transaction runs the plan again.
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
 * transactions for a while.
 *
 * The outbox document keeps the published watermark away from the head: publishers and the
 * sweeper never read or write the head, so they never contend with commits for it (contention on
 * one document is what makes Firestore slow). A commit writes the outbox blindly (no read, so no
 * lock): `ii` and `pending` = the oldest unpublished commit's `updated` time (a minimum
 * transform). It reads the outbox (and the cold pointer) only for a plan that looks at
 * `head.published`, `bundled` or `trimmed` (see runPlan). `pending` is removed only by a write
 * that is conditional on the exact outbox version in which published >= ii; a commit in between
 * changes that version, so an unpublished scope is never lost from `listUnpublished`.
 *
 * The cold pointers have their own document too, so the bundler's fenced writes never touch the
 * head: `advanceBundled` and each `trimLog` chunk are transactions that READ the head (lease and
 * epoch: the fence) and write only the pointer document (and, for a trim, delete the oldest log
 * and retry documents). A commit waits at most for such a short transaction's read lock; the
 * head is written only to take and release the lease. A trim chunk deletes its log documents and
 * moves `trimmed` atomically, so the hot log is always exactly trimmed+1..ii (guarantee 6).
 *
 * Firestore cannot store every JSON value faithfully (nested arrays, 20 levels at most, some keys),
 * so states and patches are stored as JSON text. Scope ids that are not valid document ids
 * (`.`, `..`, `__x__`) are escaped with a `~` prefix, which no valid scope id starts with.
 */

import { randomUUID } from 'node:crypto';
import { type DocumentReference, type DocumentSnapshot, FieldValue, type Firestore, type Timestamp, type Transaction } from '@google-cloud/firestore';
import { isBackendError, PatchbayError } from '../../errors.js';
import type { Json } from '../../json.js';
import type { CommitPlan, Head, Lease, Ledger, LogPatch, NewScope, Plan, TxView } from '../../ports/index.js';
import { retryKey } from '../../ports/index.js';
import type { ScopeSummary } from '../../ports/ledger.js';
import type { Patch, PatchRecord, ScopeMeta } from '../../protocol.js';

export interface FirestoreLedgerOptions {
  /** Top collection name: a namespace (one per deployment, or per test). Default `scopes`. */
  root?: string;
  /**
   * Most documents one commit may write (records + retry records + head + outbox). Default 500:
   * the limit Firestore documented until 2023 and still the figure most tooling assumes; Firestore
   * itself no longer limits the count (only the request size), so deployments may raise it.
   */
  maxWrites?: number;
  /**
   * Most bytes (estimated, from Firestore's document size rules plus per-write overhead) one commit
   * may send. Default 4,000,000: under the emulator's 4 MiB gRPC message limit and Firestore's
   * 10 MiB request limit. Past either, the commit would fail only after the client library had
   * retried it for a minute (RESOURCE_EXHAUSTED is retryable), so it is refused up front.
   */
  maxBytes?: number;
  /** Attempts per transaction under contention (the client library's default is 5). Default 10. */
  maxAttempts?: number;
  /** Whether commits try the direct way first (see the top of this file). Default true. */
  directCommits?: boolean;
  /** For tests: runs in markPublished/listUnpublished between reading the outbox and writing it. */
  beforeOutboxWrite?: (id: string) => Promise<void>;
}

const HEAD_FIELDS = ['id', 'ii', 'epoch', 'lease', 'meta'];
const POINTER_FIELDS = ['bundled', 'trimmed'];
/** The fields of a Head that are not in the head document: read by a commit only on demand. */
const SIDE_FIELDS = ['published', 'bundled', 'trimmed'] as const;
/** Firestore's limit for one document is 1 MiB; keep a margin for our estimate. */
const MAX_DOC_BYTES = 1_000_000;
/** FAILED_PRECONDITION (a stale lastUpdateTime) and ALREADY_EXISTS (create of an existing document). */
const FAILED_PRECONDITION = 9;
const ABORTED = 10;
const ALREADY_EXISTS = 6;
const NOT_FOUND = 5;
const OUTBOX_RETRIES = 20;
/**
 * Heads this instance remembers writing (for commitDirect), at most; also the bound of the
 * contended map. By count: a head is its small fields and meta (name 256 chars, type 128 at most),
 * about 1-2 KB, so some 20 MB at most.
 */
const KNOWN_HEADS = 10_000;
/** After a direct commit lost to another writer, the scope's commits use transactions this long. */
const CONTENDED_MS = 5_000;

const SAFE_ID = /^[A-Za-z0-9_.:-]+$/;

/** A scope id or session as a document id: itself when Firestore allows it, else `~` + URI-encoded. */
export function docId(s: string): string {
  return SAFE_ID.test(s) && s !== '.' && s !== '..' && !/^__.*__$/.test(s) ? s : `~${encodeURIComponent(s)}`;
}

export const logDocId = (ii: number): string => String(ii).padStart(12, '0');

function hasCode(err: unknown, code: number): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

const num = (v: unknown, fallback = 0): number => (typeof v === 'number' ? v : fallback);

/** Firestore's storage size of a value (strings: UTF-8 bytes + 1, numbers 8, maps: keys + values). */
function storedSize(v: unknown): number {
  if (typeof v === 'string') return Buffer.byteLength(v, 'utf8') + 1;
  if (typeof v === 'number') return 8;
  if (v === null || typeof v !== 'object') return 1;
  if (Array.isArray(v)) return v.reduce((n: number, x) => n + storedSize(x), 0);
  let n = 0;
  for (const [k, x] of Object.entries(v)) n += Buffer.byteLength(k, 'utf8') + 1 + storedSize(x);
  return n;
}

type Write = { ref: DocumentReference; data: Record<string, unknown> };

/** Estimated bytes of one written document (name, fields, overhead). */
function docBytes(w: Write): number {
  return Buffer.byteLength(w.ref.path, 'utf8') + 16 + storedSize(w.data) + 32;
}

/** Writes and estimated bytes of a commit of these documents plus the head and the outbox. */
function commitCost(writes: Write[]): { count: number; bytes: number } {
  let bytes = 2000; // head and outbox updates, request framing
  for (const w of writes) bytes += docBytes(w) + 200; // + the full resource name (projects/…/documents/…) and framing
  return { count: writes.length + 2, bytes };
}

function notFound(id: string): PatchbayError {
  return new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
}

function toRecord(d: DocumentSnapshot): PatchRecord {
  return {
    scope: d.get('scope'),
    ii: d.get('ii'),
    patch: JSON.parse(d.get('patch')) as Patch,
    at: d.get('at'),
    by: d.get('by'),
    session: d.get('session') ?? null,
    si: d.get('si') ?? null,
    hash: d.get('hash'),
    epoch: d.get('epoch'),
  };
}

/** The head's lease (null: none), as a plain object. */
function leaseOf(d: DocumentSnapshot): Lease | null {
  const lease = d.get('lease') as Lease | null | undefined;
  return lease ? { holder: lease.holder, expires: lease.expires } : null;
}

/** `pointer` is the cold-pointer document (missing: nothing bundled or trimmed yet). */
function toHead(d: DocumentSnapshot, published: number, pointer: DocumentSnapshot | undefined): Head {
  const m = d.get('meta') as ScopeMeta;
  return {
    id: d.get('id'),
    ii: d.get('ii'),
    epoch: d.get('epoch'),
    lease: leaseOf(d),
    published,
    bundled: num(pointer?.get('bundled')),
    trimmed: num(pointer?.get('trimmed')),
    meta: { owner: m.owner, domain: m.domain, name: m.name ?? null, type: m.type ?? null, created: m.created, updated: m.updated, size: m.size },
  };
}

/** A head as of one version of its document (its update time): what commitDirect builds on. */
interface KnownHead {
  /** The head document's fields (published, bundled and trimmed are not in it: 0). */
  head: Head;
  version: Timestamp;
}

export class FirestoreLedger implements Ledger {
  private readonly db: Firestore;
  /** The head version each scope was left at by this instance's last direct commit (LRU). */
  private readonly known = new Map<string, KnownHead>();
  /** Scopes whose direct commits lost to another writer recently, until when (ms). */
  private readonly contended = new Map<string, number>();
  private readonly root: string;
  private readonly maxWrites: number;
  private readonly maxBytes: number;
  private readonly maxAttempts: number;
  private readonly directCommits: boolean;
  private readonly beforeOutboxWrite: (id: string) => Promise<void>;

  constructor(db: Firestore, opts: FirestoreLedgerOptions = {}) {
    this.db = db;
    this.root = opts.root ?? 'scopes';
    this.maxWrites = opts.maxWrites ?? 500;
    this.maxBytes = opts.maxBytes ?? 4_000_000;
    this.maxAttempts = opts.maxAttempts ?? 10;
    this.directCommits = opts.directCommits ?? true;
    this.beforeOutboxWrite = opts.beforeOutboxWrite ?? (async () => {});
  }

  private head(id: string): DocumentReference {
    return this.db.collection(this.root).doc(docId(id));
  }

  private outbox(id: string): DocumentReference {
    return this.outboxes().doc(docId(id));
  }

  private outboxes() {
    return this.db.collection(this.root).doc('~outbox').collection('watermarks');
  }

  private pointer(id: string): DocumentReference {
    return this.db.collection(this.root).doc('~cold').collection('pointers').doc(docId(id));
  }

  private log(id: string, ii: number): DocumentReference {
    return this.head(id).collection('log').doc(logDocId(ii));
  }

  private retry(id: string, session: string, si: number): DocumentReference {
    return this.head(id)
      .collection('retries')
      .doc(`${docId(session)}~${si}`);
  }

  async createScope(scope: NewScope): Promise<Head> {
    const { id, meta } = scope;
    const batch = this.db.batch();
    // create() fails the whole batch if the head exists, so a taken id changes nothing.
    batch.create(this.head(id), { id, ii: 0, epoch: 0, lease: null, meta: { ...meta }, initial: JSON.stringify(scope.initial) });
    batch.set(this.outbox(id), { id, ii: 0, published: 0 });
    let version: Timestamp;
    try {
      version = ((await batch.commit())[0] as { writeTime: Timestamp }).writeTime;
    } catch (err) {
      if (hasCode(err, ALREADY_EXISTS)) throw new PatchbayError('scope_exists', `scope ${id} already exists`, { id });
      throw err;
    }
    const head: Head = { id, ii: 0, epoch: 0, lease: null, published: 0, bundled: 0, trimmed: 0, meta: { ...meta } };
    this.remember(id, { head: { ...head, meta: { ...meta } }, version });
    return head;
  }

  async getHead(id: string): Promise<Head | null> {
    const [h, o, p] = await this.db.getAll(this.head(id), this.outbox(id), this.pointer(id), { fieldMask: [...HEAD_FIELDS, 'published', ...POINTER_FIELDS] });
    if (!h?.exists) return null;
    return toHead(h, num(o?.get('published')), p);
  }

  async getInitial(id: string): Promise<Json | null> {
    const [h] = await this.db.getAll(this.head(id), { fieldMask: ['initial'] });
    if (!h?.exists) return null;
    return JSON.parse(h.get('initial')) as Json;
  }

  async commit<T>(id: string, plan: Plan<T>): Promise<T> {
    const headRef = this.head(id);
    const until = this.contended.get(id);
    if (this.directCommits && (until === undefined || until < Date.now())) {
      if (until !== undefined) this.contended.delete(id);
      const direct = await this.commitDirect(id, headRef, plan);
      if (direct.done) return direct.result;
    }
    this.known.delete(id); // the transaction below returns no version to build on
    // The client library would re-run the whole transaction, plan included, after a commit whose
    // response was lost (UNAVAILABLE, DEADLINE_EXCEEDED...) although it went through: the plan
    // would then decide again against a head that already holds its own records, and append the
    // same requests twice. So the library runs each attempt once, and this loop retries only
    // where nothing can have been written: ABORTED (contention), or a failure before the plan
    // queued any write. An ambiguous commit surfaces as an error (503 unavailable); the client
    // retries, and a retry with (session, si) is recognised.
    for (let attempt = 1; ; attempt++) {
      let wrote = false;
      try {
        return await this.commitOnce(id, headRef, plan, () => {
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

  private commitOnce<T>(id: string, headRef: DocumentReference, plan: Plan<T>, onWrites: () => void): Promise<T> {
    return this.db.runTransaction(
      async (tx) => {
        const [snap] = await tx.getAll(headRef, { fieldMask: HEAD_FIELDS });
        if (!snap?.exists) throw notFound(id);
        const { head, planned } = await this.runPlan(id, (keys) => this.findRetries(tx, id, keys), toHead(snap, 0, undefined), plan);
        const { records, result } = planned;
        if (records.length === 0) return result;
        const w = this.writesFor(id, head, planned);
        for (const c of w.creates) tx.create(c.ref, c.data);
        tx.update(headRef, w.head);
        tx.set(this.outbox(id), w.outbox, { merge: true });
        onWrites();
        return result;
      },
      { maxAttempts: 1 },
    );
  }

  /**
   * The documents a plan's records become: log and retry documents (created), the head's new
   * fields and the outbox mark. Checks that the records continue `head` and fit one commit.
   */
  private writesFor(id: string, head: Head, planned: CommitPlan<unknown>) {
    const { records, meta } = planned;
    records.forEach((r, i) => {
      if (r.scope !== id || r.ii !== head.ii + 1 + i) {
        throw new PatchbayError('internal', `commit plan for ${id} produced record ${r.scope}#${r.ii}, expected ${id}#${head.ii + 1 + i}`);
      }
    });
    const last = records[records.length - 1] as PatchRecord;
    const updated = meta?.updated ?? head.meta.updated;
    const size = meta?.size ?? head.meta.size;
    const creates: Write[] = [];
    for (const r of records) {
      creates.push({ ref: this.log(id, r.ii), data: { ...r, patch: JSON.stringify(r.patch) } });
      if (r.session !== null && r.si !== null) {
        creates.push({ ref: this.retry(id, r.session, r.si), data: { session: r.session, si: r.si, ii: r.ii, hash: r.hash } });
      }
    }
    this.checkSize(id, records.length, creates);
    return {
      creates,
      ii: last.ii,
      meta: { ...head.meta, updated, size },
      head: { ii: last.ii, 'meta.updated': updated, 'meta.size': size },
      // Blind (no read, so no lock): marks the scope as possibly unpublished as of this commit.
      // `pending` keeps the oldest unpublished commit's time (minimum), so a scope written
      // without pause is still swept once its oldest unpublished patch has waited long enough.
      outbox: { id, ii: last.ii, pending: FieldValue.minimum(updated) },
    };
  }

  /**
   * The direct way (see the top of this file): the plan on the head this instance last wrote (or
   * on one read now), committed as one batch conditional on that head version and on the absence
   * of every retry document the plan asked about. `done: false` when it wrote nothing and the
   * transaction must decide: the head moved, one of those retry documents exists (a retry), the
   * plan wrote nothing, or the batch would be too large with its absence checks. A failure of the
   * batch itself is not retried (it may have been applied: see `commit`).
   */
  private async commitDirect<T>(id: string, headRef: DocumentReference, plan: Plan<T>): Promise<{ done: true; result: T } | { done: false }> {
    let k = this.known.get(id);
    if (!k) {
      let snap: DocumentSnapshot | undefined;
      try {
        [snap] = await this.db.getAll(headRef, { fieldMask: HEAD_FIELDS });
      } catch {
        return { done: false }; // nothing written; the transaction's loop handles backend failures
      }
      if (!snap?.exists || !snap.updateTime) return { done: false }; // the transaction says scope_not_found
      k = { head: toHead(snap, 0, undefined), version: snap.updateTime };
    }
    // No retry document is read here: the plan is told none of the keys it asks about is
    // recorded, and the batch checks that answer for each of them (see the top of this file).
    const asked = new Map<string, DocumentReference>();
    const { head, planned } = await this.runPlan(
      id,
      async (keys) => {
        for (const key of keys) asked.set(retryKey(key.session, key.si), this.retry(id, key.session, key.si));
        return new Map();
      },
      k.head,
      plan,
    );
    if (planned.records.length === 0) return { done: false };
    const w = this.writesFor(id, head, planned);
    // The keys the plan writes are checked by their creates; those it refused, by these.
    for (const r of planned.records) if (r.session !== null && r.si !== null) asked.delete(retryKey(r.session, r.si));
    const absent: Write[] = [...asked.values()].map((ref) => ({ ref, data: {} }));
    if (!this.fits([...w.creates, ...absent])) return { done: false }; // the transaction reads instead
    // The library retries a batch whose response was lost (UNAVAILABLE), and the retry then finds
    // the head moved by the first attempt. The token on the first log document tells that apart
    // from a commit of someone else's, so a write of ours is never taken for "nothing written".
    const token = randomUUID();
    const first = w.creates[0] as Write;
    first.data.w = token;
    const batch = this.db.batch();
    batch.update(headRef, w.head, { lastUpdateTime: k.version });
    for (const c of w.creates) batch.create(c.ref, c.data);
    for (const a of absent) batch.delete(a.ref, { exists: false }); // deletes nothing; fails if it exists
    batch.set(this.outbox(id), w.outbox, { merge: true });
    this.known.delete(id);
    let version: Timestamp | undefined;
    try {
      version = ((await batch.commit())[0] as { writeTime: Timestamp }).writeTime;
    } catch (err) {
      if (!(hasCode(err, FAILED_PRECONDITION) || hasCode(err, ALREADY_EXISTS) || hasCode(err, ABORTED) || hasCode(err, NOT_FOUND))) throw err;
      const [mine] = await this.db.getAll(first.ref, { fieldMask: ['w'] });
      if (mine?.get('w') === token) return { done: true, result: planned.result }; // applied; its version is unknown
      // Nothing was written (a batch is all or nothing). Another writer moved the head, or a
      // retry document exists (one to create, or one checked absent): the transaction decides,
      // and a scope that another writer is committing to goes through transactions for a while.
      if (!hasCode(err, ALREADY_EXISTS)) this.markContended(id);
      return { done: false };
    }
    this.remember(id, { head: { ...k.head, ii: w.ii, meta: w.meta }, version }); // k.head: a plain copy (runPlan's has getters)
    return { done: true, result: planned.result };
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

  private remember(id: string, k: KnownHead): void {
    this.known.delete(id); // re-insert: Map order is recency order
    this.known.set(id, k);
    for (const [oldest] of this.known) {
      if (this.known.size <= KNOWN_HEADS) break;
      this.known.delete(oldest);
    }
  }

  /**
   * Runs the plan on the head. `published`, `bundled` and `trimmed` live in other documents (the
   * outbox and the cold pointer), and plans rarely look at them (the engine's never does), so
   * they are read only for a plan that does: it is first shown a head on which reading one of
   * them throws, and if it read one (even if it then caught the error), it is run again on the
   * whole head. A plan may be run more than once anyway (Ledger.commit). Those two documents are
   * read outside the transaction, so that publishing and bundling never contend with committing:
   * they may lag; they never gate a commit.
   */
  private async runPlan<T>(id: string, findRetries: TxView['findRetries'], base: Head, plan: Plan<T>): Promise<{ head: Head; planned: CommitPlan<T> }> {
    let wanted = false;
    const partial: Head = { ...base };
    for (const field of SIDE_FIELDS) {
      Object.defineProperty(partial, field, {
        enumerable: true,
        get: () => {
          wanted = true;
          throw new PatchbayError('internal', `head.${field} of ${id} is read only on demand`);
        },
      });
    }
    try {
      const planned = await plan({ head: partial, findRetries });
      if (!wanted) return { head: partial, planned };
    } catch (err) {
      if (!wanted) throw err;
    }
    const [outbox, pointer] = await this.db.getAll(this.outbox(id), this.pointer(id), { fieldMask: ['published', ...POINTER_FIELDS] });
    const head: Head = { ...base, published: num(outbox?.get('published')), bundled: num(pointer?.get('bundled')), trimmed: num(pointer?.get('trimmed')) };
    return { head, planned: await plan({ head, findRetries }) };
  }

  /** Refuses a commit that one Firestore transaction cannot carry (nothing has been written yet). */
  private checkSize(id: string, records: number, writes: Write[]): void {
    for (const w of writes) {
      const doc = docBytes(w);
      if (doc > MAX_DOC_BYTES) {
        throw new PatchbayError('unavailable', `a record of ${id} needs a ${doc}-byte document; Firestore allows 1 MiB`, { reason: 'ledger_document_limit' });
      }
    }
    const { count, bytes } = commitCost(writes);
    if (!this.fits(writes)) {
      throw new PatchbayError(
        'unavailable',
        `a commit of ${records} records to ${id} needs ${count} writes and about ${bytes} bytes; one transaction takes ${this.maxWrites} and ${this.maxBytes}`,
        { reason: 'ledger_transaction_limit' },
      );
    }
  }

  /** Whether one commit can carry these documents (plus the head and the outbox). */
  private fits(writes: Write[]): boolean {
    const { count, bytes } = commitCost(writes);
    return count <= this.maxWrites && bytes <= this.maxBytes;
  }

  private async findRetries(tx: Transaction, id: string, keys: ReadonlyArray<{ session: string; si: number }>): Promise<Map<string, PatchRecord>> {
    const found = new Map<string, PatchRecord>();
    const unique = [...new Map(keys.map((k) => [retryKey(k.session, k.si), k])).values()];
    if (unique.length === 0) return found;
    const hits = (await tx.getAll(...unique.map((k) => this.retry(id, k.session, k.si)))).filter((s) => s.exists);
    if (hits.length === 0) return found;
    // The retry documents point at log documents, which hold the full record.
    const logs = await tx.getAll(...hits.map((s) => this.log(id, s.get('ii'))));
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

  /** The log documents from <= ii <= to, ascending, at most `limit`. */
  private logRange(id: string, from: number, to: number, limit: number) {
    return this.head(id).collection('log').where('ii', '>=', from).where('ii', '<=', to).orderBy('ii').limit(limit);
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

  async markPublished(id: string, to: number, from?: number): Promise<void> {
    const floor = from === undefined ? Number.NEGATIVE_INFINITY : from - 1;
    await this.advanceOutbox(id, (published) => (published >= floor ? to : published));
  }

  /**
   * Moves the outbox's watermark to `next(published)`, and drops its `pending` mark once the
   * watermark covers ii. Returns the outbox as it left it (null: no such scope).
   */
  private async advanceOutbox(id: string, next: (published: number) => number): Promise<{ published: number; ii: number } | null> {
    const ref = this.outbox(id);
    for (let attempt = 0; ; attempt++) {
      const snap = await ref.get();
      if (!snap.exists) return null;
      const published = num(snap.get('published'));
      const ii = num(snap.get('ii'));
      const target = Math.max(published, next(published));
      const clear = snap.get('pending') !== undefined && target >= ii;
      if (target === published && !clear) return { published, ii };
      await this.beforeOutboxWrite(id);
      if (!clear) {
        // The watermark only ever rises (maximum), and a floor checked above stays true as it
        // rises, so this needs no precondition.
        await ref.update({ published: FieldValue.maximum(target) });
        return { published: target, ii };
      }
      try {
        // Conditional on the version read: a commit since then (ii up, pending set) fails this.
        await ref.update({ published: FieldValue.maximum(target), pending: FieldValue.delete() }, { lastUpdateTime: snap.updateTime });
        return { published: target, ii };
      } catch (err) {
        if (!hasCode(err, FAILED_PRECONDITION) || attempt >= OUTBOX_RETRIES) throw err;
      }
    }
  }

  async listUnpublished(before: number, limit: number): Promise<Array<{ id: string; published: number; ii: number }>> {
    const out: Array<{ id: string; published: number; ii: number }> = [];
    const marked = this.outboxes().where('pending', '<', before).orderBy('pending');
    let query = marked;
    while (out.length < limit) {
      const want = limit - out.length;
      const page = await query.limit(want).get();
      for (const d of page.docs) {
        const id = d.get('id') as string;
        let s: { published: number; ii: number } | null = { published: num(d.get('published')), ii: num(d.get('ii')) };
        // A mark left where published >= ii (a watermark set past a later commit's index): drop
        // it, unless a commit has just moved ii again.
        if (s.published >= s.ii) s = await this.advanceOutbox(id, (p) => p);
        if (s && s.published < s.ii) out.push({ id, ...s });
      }
      if (page.size < want) break;
      query = marked.startAfter(page.docs[page.docs.length - 1] as DocumentSnapshot);
    }
    return out;
  }

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
    const ref = this.head(id);
    this.known.delete(id); // the head's version changes (its direct commits would fail once)
    return this.db.runTransaction(
      async (tx) => {
        const [snap] = await tx.getAll(ref, { fieldMask: ['epoch', 'lease'] });
        if (!snap?.exists) throw notFound(id);
        return decide(leaseOf(snap), num(snap.get('epoch')), (data) => tx.update(ref, data));
      },
      { maxAttempts: this.maxAttempts },
    );
  }

  async listScopes(after: string, limit: number): Promise<ScopeSummary[]> {
    if (limit <= 0) return [];
    const page = await this.db.collection(this.root).where('id', '>', after).orderBy('id').limit(limit).select('id', 'ii').get();
    if (page.empty) return [];
    const pointers = await this.db.getAll(...page.docs.map((d) => this.pointer(d.get('id') as string)), { fieldMask: POINTER_FIELDS });
    return page.docs.map((d, i) => ({
      id: d.get('id') as string,
      ii: num(d.get('ii')),
      bundled: num(pointers[i]?.get('bundled')),
      trimmed: num(pointers[i]?.get('trimmed')),
    }));
  }

  /**
   * Reads the head's lease and the cold pointers inside `tx`; null when `holder` no longer holds
   * the lease at `epoch` (see Ledger.advanceBundled).
   */
  private async leased(tx: Transaction, id: string, holder: string, epoch: number): Promise<{ ii: number; bundled: number; trimmed: number } | null> {
    const [h, p] = await tx.getAll(this.head(id), this.pointer(id), { fieldMask: ['ii', 'epoch', 'lease', ...POINTER_FIELDS] });
    if (!h?.exists) throw notFound(id);
    if (leaseOf(h)?.holder !== holder || num(h.get('epoch')) !== epoch) return null;
    return { ii: num(h.get('ii')), bundled: num(p?.get('bundled')), trimmed: num(p?.get('trimmed')) };
  }

  async advanceBundled(id: string, holder: string, epoch: number, to: number): Promise<number | null> {
    return this.db.runTransaction(
      async (tx) => {
        const cur = await this.leased(tx, id, holder, epoch);
        if (!cur) return null;
        if (to > cur.ii) throw new PatchbayError('internal', `cannot mark ${id} bundled up to ${to}: head is ${cur.ii}`);
        if (to <= cur.bundled) return cur.bundled;
        tx.set(this.pointer(id), { id, bundled: to }, { merge: true });
        return to;
      },
      { maxAttempts: this.maxAttempts },
    );
  }

  async trimLog(id: string, holder: string, epoch: number, upTo: number, limit: number): Promise<number | null> {
    // The chunk's records (for their retry keys) are read before the transaction, so that it
    // reads two documents instead of locking a range of the log: a committed record never
    // changes, so all the transaction has to check is that `trimmed` is still where this started.
    // They are read by name, not with a range query (which the emulator answers by scanning).
    const [p] = await this.db.getAll(this.pointer(id), { fieldMask: POINTER_FIELDS });
    const from = num(p?.get('trimmed'));
    const want = Math.min(upTo, from + Math.max(1, Math.min(limit, this.maxWrites - 1)));
    const refs = Array.from({ length: Math.max(0, want - from) }, (_, i) => this.log(id, from + 1 + i));
    const read = refs.length > 0 ? await this.db.getAll(...refs, { fieldMask: ['ii', 'session', 'si'] }) : [];
    return this.db.runTransaction(
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
          if (writes > this.maxWrites && end > from) break;
          tx.delete(d.ref);
          if (retry) tx.delete(this.retry(id, session, si));
          end++;
        }
        tx.set(this.pointer(id), { id, trimmed: end }, { merge: true });
        return end;
      },
      { maxAttempts: this.maxAttempts },
    );
  }

  private cursor(consumer: string, id: string): DocumentReference {
    return this.head(id).collection('cursors').doc(docId(consumer));
  }

  async getCursor(consumer: string, id: string): Promise<number> {
    return num((await this.cursor(consumer, id).get()).get('ii'));
  }

  /**
   * Compare-and-set without a transaction: every write moves a cursor strictly forward, so a
   * document that changed since it was read (a failed precondition), or that already exists when
   * we expected none, is no longer at `expected`.
   */
  async advanceCursor(consumer: string, id: string, expected: number, to: number): Promise<boolean> {
    if (!(to > expected)) throw new PatchbayError('internal', 'a cursor only moves forward');
    const ref = this.cursor(consumer, id);
    const data = { consumer, scope: id, ii: to };
    try {
      if (expected === 0) {
        await ref.create(data);
        return true;
      }
      const snap = await ref.get();
      if (num(snap.get('ii')) !== expected) return false;
      await ref.update(data, { lastUpdateTime: snap.updateTime });
      return true;
    } catch (err) {
      if (hasCode(err, ALREADY_EXISTS) || hasCode(err, FAILED_PRECONDITION)) return false;
      throw err;
    }
  }

  /** The Firestore client belongs to whoever constructed this ledger: it is not terminated here. */
  async close(): Promise<void> {}
}
