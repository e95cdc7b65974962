/**
 * Where the Firestore ledger keeps what: every document path, and the escaping of scope ids and
 * sessions into document ids. Data model, under one top collection `root` (default `scopes`):
 *
 *   <root>/{id}                    head: ii, epoch, lease, meta, initial (JSON text)
 *   <root>/{id}/log/{ii, 12 digits} one PatchRecord per accepted patch (patch as JSON text)
 *   <root>/{id}/retries/{session}~{si}  {session, si, ii, hash}: finds a retried patch's record
 *   <root>/~outbox/watermarks/{id} outbox: id, ii, published, and `pending` while maybe unpublished
 *   <root>/~cold/pointers/{id}     cold storage: id, bundled, trimmed (missing: both 0)
 *   <root>/{id}/cursors/{consumer} a consumer's cursor {consumer, scope, ii}, even for unknown ids
 *   <root>/~names/names/{key}      the scope a (domain, owner, name) names: {domain, owner, name, scope}
 *   <root>/~leaders/leases/{id}    a scope's write lease: {id, holder, expires, epoch} (./leaders.ts)
 *   <root>/{id}/inbox/{key}        a request handed to the scope's leader, then its outcome (./leaders.ts)
 *
 * A deleted scope's head document is replaced by its tombstone {id, owner, domain, epoch, lease:
 * null, deleted: {at, purged}} (./delete.ts) until the purge and the retention period are over.
 *
 * The guarantee kept here: distinct scope ids (and sessions) map to distinct document ids, and
 * none collides with `~outbox`, `~cold`, `~names` or `~leaders`. Ids that are not valid document ids (`.`, `..`,
 * `__x__`, or with other characters) are escaped with a `~` prefix, which no valid id starts with.
 *
 * A name's key (`nameKey`) is its three parts, each as its UTF-8 bytes with every byte outside
 * `[A-Za-z0-9_.-]` written `%XX`, joined by `~` (which no part then contains): distinct triples of
 * well-formed strings get distinct keys, and a key is never `.`, `..` or `__x__`. A key longer than
 * NAME_KEY_MAX bytes (Firestore allows 1,500 per document id; a name of 256 characters outside
 * ASCII takes up to 2,304) is `=` + the SHA-256 of the triple instead, which no readable key starts
 * with: two triples share such a key only by a SHA-256 collision, and the document holds the
 * triple, which readers compare with the one they asked for.
 */
import { createHash } from 'node:crypto';
import type { CollectionReference, DocumentReference, Firestore } from '@google-cloud/firestore';

const SAFE_ID = /^[A-Za-z0-9_.:-]+$/;

/** A scope id or session as a document id: itself when Firestore allows it, else `~` + URI-encoded. */
export function docId(s: string): string {
  return SAFE_ID.test(s) && s !== '.' && s !== '..' && !/^__.*__$/.test(s) ? s : `~${encodeURIComponent(s)}`;
}

export const logDocId = (ii: number): string => String(ii).padStart(12, '0');

/** The longest readable name key; longer ones are hashed (see the top of this file). */
export const NAME_KEY_MAX = 1400;

const keyPart = (s: string): string => {
  let out = '';
  for (const b of Buffer.from(s, 'utf8'))
    out += /[A-Za-z0-9_.-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
};

/** The document id of a (domain, owner, name) (see the top of this file). */
export function nameKey(domain: string, owner: string, name: string): string {
  const key = `${keyPart(domain)}~${keyPart(owner)}~${keyPart(name)}`;
  return key.length <= NAME_KEY_MAX
    ? key
    : `=${createHash('sha256')
        .update(JSON.stringify([domain, owner, name]))
        .digest('hex')}`;
}

/** The ledger's documents under one root collection (see the top of this file). */
export class Layout {
  constructor(
    readonly db: Firestore,
    readonly root: string,
  ) {}

  /** The heads: one document per scope. */
  scopes(): CollectionReference {
    return this.db.collection(this.root);
  }

  head(id: string): DocumentReference {
    return this.scopes().doc(docId(id));
  }

  outboxes(): CollectionReference {
    return this.scopes().doc('~outbox').collection('watermarks');
  }

  outbox(id: string): DocumentReference {
    return this.outboxes().doc(docId(id));
  }

  pointer(id: string): DocumentReference {
    return this.scopes().doc('~cold').collection('pointers').doc(docId(id));
  }

  logs(id: string): CollectionReference {
    return this.head(id).collection('log');
  }

  log(id: string, ii: number): DocumentReference {
    return this.logs(id).doc(logDocId(ii));
  }

  retries(id: string): CollectionReference {
    return this.head(id).collection('retries');
  }

  retry(id: string, session: string, si: number): DocumentReference {
    return this.retries(id).doc(`${docId(session)}~${si}`);
  }

  cursors(id: string): CollectionReference {
    return this.head(id).collection('cursors');
  }

  /** The document saying which scope (domain, owner, name) names (./names.ts). */
  name(domain: string, owner: string, name: string): DocumentReference {
    return this.scopes()
      .doc('~names')
      .collection('names')
      .doc(nameKey(domain, owner, name));
  }

  /** The scope's write lease (./leaders.ts); the head keeps only its epoch (`wepoch`). */
  writeLease(id: string): DocumentReference {
    return this.scopes().doc('~leaders').collection('leases').doc(docId(id));
  }

  /** Requests handed to the scope's leader (./leaders.ts). */
  inbox(id: string): CollectionReference {
    return this.head(id).collection('inbox');
  }

  cursor(consumer: string, id: string): DocumentReference {
    return this.cursors(id).doc(docId(consumer));
  }
}
