/**
 * The Firestore record store (RecordStore port): one document per record at
 * `<root>/~records/<kind>/k<encodeURIComponent(key)>` holding {key, value (JSON text), rev}.
 * The document id is the key, URI-encoded (no `/`), after a `k` (so no id is `.`, `..` or
 * `__x__`): the encoding keeps prefixes, so a prefix listing is a range of document ids, and
 * document-id order is the key order `after` compares in. `~records` collides with no scope's
 * head document (shared/adapters/google/firestore/layout.ts escapes ids to `~` + an encoding
 * that never yields it).
 *
 * The guarantee kept here (compare-and-set): a put reads the record and writes it in one
 * transaction, conditional on what it read; a delete is conditional on the update time of the
 * revision it checked. So a record changes only from the revision its writer expected.
 *
 * A put with an expiry also writes `expireAt` (RECORD_TTL_FIELD), a timestamp: the field the TTL
 * policies of the expiring kinds read (set by the deploy). A put without one writes no such field,
 * so the record never expires.
 */
import { type DocumentData, FieldPath, type Firestore, Timestamp } from '@google-cloud/firestore';
import type { Json } from '../../../json.js';
import type { ListOptions, PutOptions, RecordStore, StoredRecord } from '../../../ports/records.js';
import { checkRecord, RECORD_TTL_FIELD } from '../../../ports/records.js';
import { FAILED_PRECONDITION, hasCode, NOT_FOUND } from './codec.js';

const docKey = (key: string): string => `k${encodeURIComponent(key)}`;

function toRecord(data: DocumentData | undefined): StoredRecord | null {
  if (!data) return null;
  return { key: data.key as string, value: JSON.parse(data.value as string) as Json, rev: data.rev as number };
}

export class FirestoreRecords implements RecordStore {
  constructor(
    private readonly db: Firestore,
    private readonly root: string,
  ) {}

  private kind(kind: string) {
    return this.db.collection(this.root).doc('~records').collection(kind);
  }

  async get(kind: string, key: string): Promise<StoredRecord | null> {
    checkRecord(kind, key);
    return toRecord((await this.kind(kind).doc(docKey(key)).get()).data());
  }

  async put(kind: string, key: string, value: Json, expectedRev: number, opts: PutOptions = {}): Promise<StoredRecord | null> {
    const text = checkRecord(kind, key, value);
    const ref = this.kind(kind).doc(docKey(key));
    return this.db.runTransaction(async (tx) => {
      const current = toRecord((await tx.get(ref)).data());
      if ((current?.rev ?? 0) !== expectedRev) return null;
      const next = {
        key,
        value: text,
        rev: expectedRev + 1,
        ...(opts.expireAt !== undefined ? { [RECORD_TTL_FIELD]: Timestamp.fromMillis(opts.expireAt) } : {}),
      };
      tx.set(ref, next);
      return { key, value: JSON.parse(text) as Json, rev: next.rev };
    });
  }

  async delete(kind: string, key: string, expectedRev: number): Promise<boolean> {
    checkRecord(kind, key);
    const ref = this.kind(kind).doc(docKey(key));
    const snap = await ref.get();
    if (!snap.exists || snap.get('rev') !== expectedRev) return false;
    try {
      await ref.delete({ lastUpdateTime: snap.updateTime });
      return true;
    } catch (err) {
      if (hasCode(err, FAILED_PRECONDITION) || hasCode(err, NOT_FOUND)) return false;
      throw err;
    }
  }

  async list(kind: string, opts: ListOptions): Promise<StoredRecord[]> {
    checkRecord(kind);
    const prefix = docKey(opts.prefix ?? '');
    const after = opts.after === undefined ? null : docKey(opts.after);
    const id = FieldPath.documentId();
    // Ids of the prefix's range: from the prefix itself up to the prefix followed by the highest
    // character an encoded key can hold (encodeURIComponent's output is ASCII, below '\u007f').
    let q = this.kind(kind).where(id, '>=', prefix).where(id, '<', `${prefix}\u007f`).orderBy(id).limit(Math.max(1, opts.limit));
    if (after !== null && after >= prefix) q = q.startAfter(after);
    const snap = await q.get();
    return snap.docs.map((d) => toRecord(d.data()) as StoredRecord);
  }
}
