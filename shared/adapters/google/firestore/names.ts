/**
 * The Firestore ledger's scope names (ScopeLog.resolveName, rename, and the name a scope is
 * created with). The guarantee kept here: a name names at most one scope. Each held name is one
 * document, `<root>/~names/names/{key}` (./layout.ts: distinct (domain, owner, name) get distinct
 * keys), holding `{domain, owner, name, scope}`, and it only ever appears through a conditional
 * write in the same atomic step as the head that takes it:
 *   - createScope: `create()` of the name document in the head's batch (the head's own `create()`
 *     beside it), so one of any number of creates under a name commits, and the others fail whole;
 *   - rename: one transaction that reads the head and both name documents, deletes the old one
 *     (if this scope holds it), creates the new one and sets `meta.name`; Firestore fails or
 *     retries it if any of them changed meanwhile, and a create of the new name then finds it held.
 *
 * Heads stored before names were unique have a `meta.name` and no name document, and several may
 * share a name. `resolve` registers them lazily: when no document holds the name, the newest head
 * with that (domain, owner, name) (`meta.created`, then the greater id) that holds no name is
 * given it, in a transaction that re-reads that head (so a rename of it meanwhile retries). The
 * others keep `meta.name` (listings show it) and are not found by the name.
 */
import type { DocumentReference, WriteBatch } from '@google-cloud/firestore';
import { PatchbayError } from '../../../errors.js';
import { nameTaken } from '../../../ports/index.js';
import type { ScopeMeta } from '../../../protocol.js';
import { LIST_BY, notFound } from './codec.js';
import type { Layout } from './layout.js';

/** Heads a lazy registration looks at, at most (they share one owner, domain and name: legacy duplicates). */
const LEGACY_MAX = 100;

interface NameDoc {
  domain: string;
  owner: string;
  name: string;
  scope: string;
}

export class FirestoreNames {
  constructor(
    private readonly docs: Layout,
    private readonly maxAttempts: number,
    /** Told before a rename writes a head (its next direct commit must read it first). */
    private readonly onHeadWrite: (id: string) => void,
  ) {}

  /** Adds the name document of a new scope to its creating batch (nothing for an unnamed one). */
  addToCreate(batch: WriteBatch, id: string, meta: Pick<ScopeMeta, 'domain' | 'owner' | 'name'>): void {
    if (meta.name === null) return;
    batch.create(this.docs.name(meta.domain, meta.owner, meta.name), { domain: meta.domain, owner: meta.owner, name: meta.name, scope: id });
  }

  /**
   * Why a creating batch failed with ALREADY_EXISTS: `scope_exists` if the head exists, else
   * `name_taken` if the name document does, else null (both gone meanwhile: the caller retries).
   */
  async whyTaken(id: string, meta: Pick<ScopeMeta, 'domain' | 'owner' | 'name'>): Promise<PatchbayError | null> {
    const refs = [this.docs.head(id), ...(meta.name === null ? [] : [this.docs.name(meta.domain, meta.owner, meta.name)])];
    const [head, name] = await this.docs.db.getAll(...refs, { fieldMask: ['id'] });
    if (head?.exists) return new PatchbayError('scope_exists', `scope ${id} already exists`, { id });
    if (name?.exists && meta.name !== null) return nameTaken(meta.domain, meta.name);
    return null;
  }

  async resolve(domain: string, owner: string, name: string): Promise<string | null> {
    const ref = this.docs.name(domain, owner, name);
    const snap = await ref.get();
    if (snap.exists) return holder(snap.data() as NameDoc, domain, owner, name);
    return this.registerLegacy(ref, domain, owner, name);
  }

  /** The newest head stored with this name and holding none, given the name (see the top of this file); null when there is none. */
  private async registerLegacy(ref: DocumentReference, domain: string, owner: string, name: string): Promise<string | null> {
    const found = await this.docs
      .scopes()
      .where(LIST_BY.owner, '==', owner)
      .where(LIST_BY.domain, '==', domain)
      .where(LIST_BY.name, '==', name)
      .limit(LEGACY_MAX)
      .select('id', 'meta.created')
      .get();
    if (found.empty) return null;
    const newest = found.docs
      .map((d) => ({ id: d.get('id') as string, created: d.get('meta.created') as number }))
      .sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))[0] as { id: string };
    const headRef = this.docs.head(newest.id);
    return this.docs.db.runTransaction(
      async (tx) => {
        const [held, head] = await tx.getAll(ref, headRef, { fieldMask: ['scope', 'domain', 'owner', 'name', 'meta.name'] });
        if (held?.exists) return holder(held.data() as NameDoc, domain, owner, name);
        if (!head?.exists || head.get('meta.name') !== name) return null; // renamed or gone meanwhile: nothing holds the name
        tx.create(ref, { domain, owner, name, scope: newest.id });
        return newest.id;
      },
      { maxAttempts: this.maxAttempts },
    );
  }

  async rename(id: string, name: string | null): Promise<void> {
    const headRef = this.docs.head(id);
    this.onHeadWrite(id);
    await this.docs.db.runTransaction(
      async (tx) => {
        const [head] = await tx.getAll(headRef, { fieldMask: ['meta.owner', 'meta.domain', 'meta.name'] });
        if (!head?.exists) throw notFound(id);
        const domain = head.get('meta.domain') as string;
        const owner = head.get('meta.owner') as string;
        const old = (head.get('meta.name') as string | null | undefined) ?? null;
        const oldRef = old === null ? null : this.docs.name(domain, owner, old);
        const newRef = name === null ? null : this.docs.name(domain, owner, name);
        const [oldSnap, newSnap] = await Promise.all([oldRef && tx.get(oldRef), newRef && tx.get(newRef)]);
        if (newSnap?.exists) {
          if ((newSnap.get('scope') as string) === id) return; // it holds that name already
          throw nameTaken(domain, name as string);
        }
        if (oldRef && oldSnap?.exists && oldSnap.get('scope') === id) tx.delete(oldRef);
        if (newRef) tx.create(newRef, { domain, owner, name, scope: id });
        tx.update(headRef, { 'meta.name': name });
      },
      { maxAttempts: this.maxAttempts },
    );
  }
}

/** The scope a name document names, if it is the document of exactly this triple (else a SHA-256 collision: internal). */
function holder(doc: NameDoc, domain: string, owner: string, name: string): string {
  if (doc.domain !== domain || doc.owner !== owner || doc.name !== name) throw new PatchbayError('internal', 'two names share a name document');
  return doc.scope;
}
