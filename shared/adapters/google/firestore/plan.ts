/**
 * What both commit ways of the Firestore ledger share: running a plan on a head, and turning its
 * records into the documents one commit writes, checked before anything is written.
 *
 * The guarantees kept here: a plan's records continue the head it saw (consecutive from
 * head.ii + 1, of this scope), else nothing is written (guarantee 1); and a commit too large for
 * one Firestore request (a document over 1 MiB, more writes or bytes than `Limits`) is refused up
 * front, since past those limits it would fail only after the client library had retried it for
 * a minute (RESOURCE_EXHAUSTED is retryable).
 */
import { type DocumentReference, FieldValue } from '@google-cloud/firestore';
import { PatchbayError } from '../../../errors.js';
import type { CommitPlan, Head, Plan, TxView } from '../../../ports/index.js';
import type { PatchRecord } from '../../../protocol.js';
import { num, POINTER_FIELDS } from './codec.js';
import type { Layout } from './layout.js';

/** The fields of a Head that are not in the head document: read by a commit only on demand. */
const SIDE_FIELDS = ['published', 'bundled', 'trimmed'] as const;
/** Firestore's limit for one document is 1 MiB; keep a margin for our estimate. */
const MAX_DOC_BYTES = 1_000_000;

export interface Limits {
  /** Most documents one commit may write (records + retry records + head + outbox). */
  maxWrites: number;
  /** Most bytes (estimated) one commit may send. */
  maxBytes: number;
}

export type Write = { ref: DocumentReference; data: Record<string, unknown> };

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

/** Whether one commit can carry these documents (plus the head and the outbox). */
export function fits(limits: Limits, writes: Write[]): boolean {
  const { count, bytes } = commitCost(writes);
  return count <= limits.maxWrites && bytes <= limits.maxBytes;
}

/** Refuses a commit that one Firestore transaction cannot carry (nothing has been written yet). */
function checkSize(limits: Limits, id: string, records: number, writes: Write[]): void {
  for (const w of writes) {
    const doc = docBytes(w);
    if (doc > MAX_DOC_BYTES) {
      throw new PatchbayError('unavailable', `a record of ${id} needs a ${doc}-byte document; Firestore allows 1 MiB`, { reason: 'ledger_document_limit' });
    }
  }
  const { count, bytes } = commitCost(writes);
  if (!fits(limits, writes)) {
    throw new PatchbayError(
      'unavailable',
      `a commit of ${records} records to ${id} needs ${count} writes and about ${bytes} bytes; one transaction takes ${limits.maxWrites} and ${limits.maxBytes}`,
      { reason: 'ledger_transaction_limit' },
    );
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
export async function runPlan<T>(
  docs: Layout,
  id: string,
  findRetries: TxView['findRetries'],
  base: Head,
  plan: Plan<T>,
): Promise<{ head: Head; planned: CommitPlan<T> }> {
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
  const [outbox, pointer] = await docs.db.getAll(docs.outbox(id), docs.pointer(id), { fieldMask: ['published', ...POINTER_FIELDS] });
  const head: Head = { ...base, published: num(outbox?.get('published')), bundled: num(pointer?.get('bundled')), trimmed: num(pointer?.get('trimmed')) };
  return { head, planned: await plan({ head, findRetries }) };
}

/**
 * The documents a plan's records become: log and retry documents (created), the head's new
 * fields and the outbox mark. Checks that the records continue `head` and fit one commit.
 */
export function writesFor(docs: Layout, limits: Limits, id: string, head: Head, planned: CommitPlan<unknown>) {
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
    creates.push({ ref: docs.log(id, r.ii), data: { ...r, patch: JSON.stringify(r.patch) } });
    if (r.session !== null && r.si !== null) {
      creates.push({ ref: docs.retry(id, r.session, r.si), data: { session: r.session, si: r.si, ii: r.ii, hash: r.hash } });
    }
  }
  checkSize(limits, id, records.length, creates);
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
