/**
 * What a route handler gets (the request, its response, the parsed URL, the path parameters, the
 * service) and the reading of path and query parameters every route group shares: the scope id,
 * non-negative indices, `If-None-Match`, the caller's identity and whether it may read the scope.
 */
import type { ServerResponse } from 'node:http';
import type { HttpConfig } from '../config.js';
import type { ConfigService } from '../domains/apply.js';
import type { Claims } from '../domains/claims.js';
import type { Domains } from '../domains/domains.js';
import type { LiveQueries } from '../domains/live-queries.js';
import type { DomainMirrorStatus } from '../domains/mirror-status.js';
import type { NamedQueries } from '../domains/queries.js';
import type { ServiceTokens } from '../domains/service-tokens.js';
import type { Tags } from '../domains/tags.js';
import type { Webhooks } from '../domains/webhooks.js';
import { type Caller, checkRead, serviceUser } from '../engine/access.js';
import type { Engine } from '../engine/engine.js';
import { PatchbayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Head } from '../ports/index.js';
import { DOMAIN, SCOPE_ID } from '../protocol.js';
import type { Sessions } from '../sessions/sessions.js';
import type { Uploads } from '../uploads/uploads.js';
import type { Auth, User } from './auth.js';
import type { BodyRequest } from './body.js';
import { requestDomain } from './domain.js';
import type { Limits } from './limits.js';

export interface HandlerDeps {
  engine: Engine;
  auth: Auth;
  config: HttpConfig;
  logger: Logger;
  /** Rate limits, quotas and stream caps (shared/http/limits.ts). */
  limits: Limits;
  /** Domains: admins and settings (shared/domains/domains.ts). */
  domains: Domains;
  /** Domain configurations: upload, versions, apply (shared/domains/apply.ts). */
  domainConfigs: ConfigService;
  /** Domain claims (shared/domains/claims.ts). */
  claims: Claims;
  /** Service tokens' records (shared/domains/service-tokens.ts). */
  serviceTokens: ServiceTokens;
  /** The domains' webhooks and their delivery state (shared/domains/webhooks.ts). */
  webhooks: Webhooks;
  /** Sessions, their guarantees and close hooks, and presence (shared/sessions/). */
  sessions: Sessions;
  /** Tags and their index (shared/domains/tags.ts). */
  tags: Tags;
  /** The domains' named queries over the mirror (shared/domains/queries.ts). */
  queries: NamedQueries;
  /** A domain's mirror status for its admins (shared/domains/mirror-status.ts). */
  mirrorStatus: (domain: string) => Promise<DomainMirrorStatus>;
  /** Live queries over SSE (shared/domains/live-queries.ts). */
  liveQueries: LiveQueries;
  /** Uploads and downloads by signed URL (shared/uploads/uploads.ts). */
  uploads: Uploads;
}

export interface Ctx {
  req: BodyRequest;
  res: ServerResponse;
  url: URL;
  /** The route template's parameters, percent-encoded. */
  params: string[];
  deps: HandlerDeps;
  /** Filled in by handlers for the request log. */
  log: { scope?: string; ii?: number };
}

/** Path parameter `i`, percent-decoded ('' when it does not decode: every pattern refuses it). */
export function pathParam(ctx: Ctx, i: number): string {
  try {
    return decodeURIComponent(ctx.params[i] as string);
  } catch {
    return '';
  }
}

/** Path parameter `i`, decoded; 400 `invalid_request` naming `name` when it breaks `pattern`. */
export function checkedParam(ctx: Ctx, i: number, name: string, pattern: RegExp, message: string): string {
  const v = pathParam(ctx, i);
  if (!pattern.test(v)) throw new PatchbayError('invalid_request', message, { issues: [{ path: [name], message }] });
  return v;
}

/** The `{domain}` parameter (the first of the path), checked. */
export function domainParam(ctx: Ctx): string {
  return checkedParam(ctx, 0, 'domain', DOMAIN, 'a domain is a lower-case host name, optionally with :port');
}

/**
 * The caller, if it administers `domain` (as the Domains cache says); 403 `forbidden` otherwise,
 * for a domain nobody claimed too. A service identity is never an admin, whatever a list says:
 * a leaked worker token must not manage its domain. The one exception is asked for by the
 * configuration routes alone (`configToken`): the deploy's own config-capable token of that very
 * domain (its record carries `config: true`, shared/domains/service-tokens.ts), which uploads the
 * domain's configuration and reads it back.
 */
export async function domainAdmin(ctx: Ctx, domain: string, opts: { configToken?: boolean } = {}): Promise<User> {
  const u = await user(ctx);
  const allowed =
    u.kind === 'service' ? opts.configToken === true && u.config === true && u.id === serviceUser(domain) : await ctx.deps.domains.isAdmin(domain, u.id);
  if (!allowed) throw new PatchbayError('forbidden', `only an admin of ${domain} may do this`, { domain });
  return u;
}

/** The `{id}` parameter, decoded and checked; recorded for the request log. */
export function scopeId(ctx: Ctx): string {
  const id = pathParam(ctx, 0);
  if (!SCOPE_ID.test(id)) {
    throw new PatchbayError('invalid_request', 'a scope id matches [A-Za-z0-9_.:-]{1,128}', { issues: [{ path: ['id'], message: 'invalid scope id' }] });
  }
  ctx.log.scope = id;
  return id;
}

/**
 * The caller, from `Authorization: Bearer <token>` (401 without a valid one), acting in the domain
 * its request and token agree on (shared/http/domain.ts; 403 when they disagree).
 */
export function user(ctx: Ctx): Promise<User> {
  return ctx.deps.auth.fromHeader(ctx.req.headers.authorization, requestDomain(ctx.req.headers));
}

/**
 * The caller of a read, which public scopes allow without a token: null when the request has no
 * `Authorization` header, else its user (401 for an invalid one: a bad token is never read as none).
 */
export async function reader(ctx: Ctx): Promise<User | null> {
  return ctx.req.headers.authorization === undefined ? null : user(ctx);
}

/**
 * The scope's head, if `caller` may read the scope; `scope_not_found` otherwise, as for a missing
 * scope. A caller without a token is told `unauthorized` instead, for a missing scope too: all it
 * learns is that the scope, if there is one, is not public.
 */
export async function readableHead(ctx: Ctx, id: string, caller: Caller | null): Promise<Head> {
  try {
    const head = await ctx.deps.engine.head(id);
    checkRead(id, head.meta, caller);
    return head;
  } catch (err) {
    if (caller === null && err instanceof PatchbayError && err.code === 'scope_not_found') {
      throw new PatchbayError('unauthorized', 'send Authorization: Bearer <token> (only public scopes are readable without one)');
    }
    throw err;
  }
}

export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/** A non-negative integer from a header or query parameter named `name` (400 otherwise). */
export function parseIndex(raw: string, name: string): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new PatchbayError('invalid_request', `${name} must be a non-negative integer`, { issues: [{ path: [name], message: 'not a non-negative integer' }] });
  }
  return Number(raw);
}

/** An optional non-negative integer query parameter. */
export function intParam(url: URL, name: string): number | undefined {
  const raw = url.searchParams.get(name);
  return raw === null ? undefined : parseIndex(raw, name);
}
