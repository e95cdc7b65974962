/**
 * Who may do what with a scope: the rules over its access (`meta.access`: a visibility and lists
 * of readers and writers), pure functions of the scope's meta and the caller. The HTTP routes
 * apply `checkRead` before reading (get, stream, ticket, history); the commit decision applies
 * `canWrite` inside the ledger's transaction (shared/engine/decide.ts, `writersOnly`), against
 * the head that transaction read, so a write can never be accepted after a revoke committed.
 *
 * | role    | who                                          | read | patch | manage access |
 * |---------|----------------------------------------------|------|-------|---------------|
 * | owner   | meta.owner                                   | yes  | yes   | yes           |
 * | writer  | listed in writers; `domain:<d>` for d's scopes | yes  | yes   | no            |
 * | reader  | listed in readers, or let in by visibility   | yes  | no    | no            |
 * | none    | anyone else (and, unless public, no token)   | no   | no    | no            |
 *
 * Refusals (docs/openapi.yaml): a caller who may not read gets `404 scope_not_found`, exactly as
 * for a scope that does not exist, so a private scope's existence leaks to nobody; a caller who
 * may read but not do what it asked (patch, manage access) gets `403 forbidden`. A request
 * without a token on a scope that is not public is `401 unauthorized` before any of this.
 *
 * Scopes stored before access existed have no `access`: they read as LEGACY_ACCESS, what every
 * scope allowed then (any signed-in user reads, only the owner writes), so no stored scope
 * becomes less or more visible by an upgrade.
 */
import type { LimitsConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import { type AccessRequest, DEFAULT_DOMAIN, type ScopeAccess, type ScopeMeta } from '../protocol.js';

/** The access of a scope created without one: only its owner. */
export const NEW_SCOPE_ACCESS: ScopeAccess = { visibility: 'private', readers: [], writers: [], rev: 0 };

/** The access of a scope stored before access existed (see the top of this file). */
export const LEGACY_ACCESS: ScopeAccess = { visibility: 'authenticated', readers: [], writers: [], rev: 0 };

/** Who is asking: a signed-in user, or null for a request without a token. */
export interface Caller {
  id: string;
  /** The domain the caller's token was issued for; absent until tokens carry one. */
  domain?: string;
}

export type Role = 'owner' | 'writer' | 'reader' | 'none';

/**
 * The domain a caller acts in, compared with a scope's `meta.domain` by the `domain`
 * visibility. Until tokens carry a domain, every caller is in DEFAULT_DOMAIN.
 */
export function callerDomain(caller: Caller): string {
  return caller.domain ?? DEFAULT_DOMAIN;
}

/** The scope's access, LEGACY_ACCESS when it has none stored. */
export function accessOf(meta: ScopeMeta): ScopeAccess {
  return meta.access ?? LEGACY_ACCESS;
}

/** What `caller` may do with a scope of this meta. */
export function roleOf(meta: ScopeMeta, caller: Caller | null): Role {
  const access = accessOf(meta);
  if (caller === null) return access.visibility === 'public' ? 'reader' : 'none';
  if (caller.id === meta.owner) return 'owner';
  // The domain's service identity (its webhooks' write-backs, shared/domains/webhooks.ts) writes every scope of its domain.
  if (caller.id === `domain:${meta.domain}`) return 'writer';
  if (access.writers.includes(caller.id)) return 'writer';
  if (access.readers.includes(caller.id)) return 'reader';
  switch (access.visibility) {
    case 'public':
    case 'authenticated':
      return 'reader';
    case 'domain':
      return callerDomain(caller) === meta.domain ? 'reader' : 'none';
    case 'private':
      return 'none';
  }
}

/** Whether `caller` may get, stream, get a stream ticket for and read the history of the scope. */
export function canRead(meta: ScopeMeta, caller: Caller | null): boolean {
  return roleOf(meta, caller) !== 'none';
}

/** Whether user `userId` may patch the scope: its owner and its listed writers. */
export function canWrite(meta: ScopeMeta, userId: string): boolean {
  const role = roleOf(meta, { id: userId });
  return role === 'owner' || role === 'writer';
}

/** The refusal of a caller who may not read: the same answer as for a scope that does not exist. */
export function notFound(id: string): PatchbayError {
  return new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
}

/** Throws `scope_not_found` unless `caller` may read the scope. */
export function checkRead(id: string, meta: ScopeMeta, caller: Caller | null): void {
  if (!canRead(meta, caller)) throw notFound(id);
}

/** Throws unless `caller` owns the scope: `scope_not_found` if it may not even read it, else `forbidden`. */
export function checkOwner(id: string, meta: ScopeMeta, caller: Caller): void {
  checkRead(id, meta, caller);
  if (caller.id !== meta.owner) throw new PatchbayError('forbidden', "only a scope's owner may change its access", { id });
}

/**
 * The access to store for a request: lists deduplicated (in the order given), the owner left
 * out (it needs no listing), a writer not listed again as a reader (a writer reads). Throws
 * `too_large` past `maxAccessUsers` users in both lists together. `rev` is the caller's to set.
 */
export function normalizeAccess(req: AccessRequest, owner: string, limits: Pick<LimitsConfig, 'maxAccessUsers'>): Omit<ScopeAccess, 'rev'> {
  const writers = [...new Set(req.writers)].filter((u) => u !== owner);
  const readers = [...new Set(req.readers)].filter((u) => u !== owner && !writers.includes(u));
  const listed = readers.length + writers.length;
  if (listed > limits.maxAccessUsers) {
    throw new PatchbayError('too_large', `a scope's access may list at most ${limits.maxAccessUsers} users`, {
      limit: 'maxAccessUsers',
      max: limits.maxAccessUsers,
      actual: listed,
    });
  }
  return { visibility: req.visibility, readers, writers };
}

/**
 * The scope's meta as `caller` may see it: the owner sees the whole access; anyone else sees the
 * visibility only, never who else is listed (a reader must not learn other users' ids).
 */
export function metaFor(meta: ScopeMeta, caller: Caller | null): Omit<ScopeMeta, 'access'> & { access: ScopeAccess | Pick<ScopeAccess, 'visibility'> } {
  const access = accessOf(meta);
  return { ...meta, access: caller?.id === meta.owner ? access : { visibility: access.visibility } };
}
