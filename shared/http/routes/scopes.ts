/**
 * Route group `scopes`: creating a scope (`POST /v1/scopes`, in the caller's domain, private unless
 * it says otherwise), reading one (`GET /v1/scopes/{id}`, with `ETag: "<ii>"` and a 304 for a
 * matching `If-None-Match`; no token needed for a public scope; `404` for a caller who may not read it),
 * and listing the caller's (`GET /v1/scopes`: owned, or shared with them as a listed reader or
 * writer; filtered by domain, type and name; in pages of at most PATCHBAY_MAX_LIST_PAGE, each
 * with an opaque `next` cursor; rate-limited per user by PATCHBAY_RATE_LIST), and deleting one
 * (`DELETE /v1/scopes/{id}`, its owner only, rate-limited as a write: 204; 404 for a caller who
 * may not read it and for a scope deleted already, so a second delete is 404; 403 for a reader or
 * writer; the owner's quotas get the scope and its bytes back, and an upload's file bytes; a
 * deleted tag leaves the tag listings). Types and names starting with `patchbay/` are refused
 * (400): patchbay's own.
 */
import { SYSTEM_SCOPE_PREFIX } from '../../domains/apply.js';
import { type Caller, metaFor } from '../../engine/access.js';
import type { ScopeView } from '../../engine/engine.js';
import { PatchbayError } from '../../errors.js';
import { createScopeSchema, listScopesQuerySchema, RESERVED_PREFIX, type ScopeMeta } from '../../protocol.js';
import { isUploadScope, UPLOAD_PREFIX } from '../../uploads/rules.js';
import { parseWith, readBody } from '../body.js';
import { type Ctx, etagMatches, readableHead, reader, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** A scope's meta as `caller` may see it: its access lists only to the owner (shared/engine/access.ts). */
const shownMeta = (meta: ScopeMeta, ii: number, caller: Caller | null) => ({ ...metaFor(meta, caller), ii });
export const scopeBody = (v: ScopeView, caller: Caller | null) => ({ id: v.id, ii: v.ii, state: v.state, meta: shownMeta(v.meta, v.ii, caller) });

/** A page's `next` as the client sees it: opaque (base64url), so no client builds one. */
export const toCursor = (next: string | null): string | null => (next === null ? null : Buffer.from(next, 'utf8').toString('base64url'));

export function fromCursor(cursor: string): string {
  const next = Buffer.from(cursor, 'base64url').toString('utf8');
  if (toCursor(next) !== cursor)
    throw new PatchbayError('invalid_request', 'not a cursor a listing returned', { issues: [{ path: ['cursor'], message: 'unknown cursor' }] });
  return next;
}

/**
 * Refuses (400) a scope type or name a client may not use: those starting with RESERVED_PREFIX
 * are patchbay's own (a tag is made by `POST /v1/scopes/{id}/tags`, never by hand).
 */
export function checkUnreserved(req: { type?: string; name?: string | null }): void {
  for (const field of ['type', 'name'] as const) {
    const v = req[field];
    if (typeof v === 'string' && v.startsWith(RESERVED_PREFIX)) {
      throw new PatchbayError('invalid_request', `scope ${field}s starting with ${RESERVED_PREFIX} are the platform's`, {
        issues: [{ path: [field], message: `reserved prefix ${RESERVED_PREFIX}` }],
      });
    }
  }
}

/** A listing's page size: as asked, held to PATCHBAY_MAX_LIST_PAGE (400 past it), else that maximum. */
export function pageLimit(ctx: Ctx, limit: number | undefined): number {
  const max = ctx.deps.config.maxListPage;
  if (limit !== undefined && limit > max)
    throw new PatchbayError('invalid_request', `limit may be at most ${max}`, { issues: [{ path: ['limit'], message: `at most ${max}` }] });
  return limit ?? max;
}

export const scopeRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/scopes',
    name: 'scopes.list',
    run: async (ctx) => {
      const u = await user(ctx);
      const q = parseWith(listScopesQuerySchema, Object.fromEntries(ctx.url.searchParams), 'the query');
      const limit = pageLimit(ctx, q.limit);
      const after = q.cursor === undefined ? undefined : fromCursor(q.cursor);
      await ctx.deps.limits.list(u.id);
      const page = await ctx.deps.engine.listScopes(u, { limit, domain: q.domain, type: q.type, name: q.name, after });
      const scopes = page.scopes.map((s) => ({ id: s.id, ii: s.ii, meta: shownMeta(s.meta, s.ii, u) }));
      sendJson(ctx.res, 200, { scopes, next: toCursor(page.next) });
    },
  },
  {
    method: 'POST',
    path: '/v1/scopes',
    name: 'scopes.create',
    run: async (ctx) => {
      const u = await user(ctx);
      const req = await readBody(ctx.req, createScopeSchema, ctx.deps.config);
      for (const prefix of [SYSTEM_SCOPE_PREFIX, UPLOAD_PREFIX]) {
        if (req.id?.startsWith(prefix)) {
          throw new PatchbayError('invalid_request', `scope ids starting with ${prefix} are the platform's`, {
            issues: [{ path: ['id'], message: `reserved prefix ${prefix}` }],
          });
        }
      }
      checkUnreserved(req);
      await ctx.deps.limits.createScope(u.id);
      // No access named: the domain's configured default visibility, else private.
      const visibility = req.access ? undefined : await ctx.deps.domainConfigs.defaultVisibility(u.domain);
      const asked = visibility ? { ...req, access: { visibility, readers: [], writers: [] } } : req;
      const view = await ctx.deps.engine.createScope(u.id, asked, { domain: u.domain });
      ctx.deps.limits.created(u.id, view.meta.size);
      ctx.log.scope = view.id;
      ctx.log.ii = 0;
      sendJson(ctx.res, 201, scopeBody(view, u), { etag: '"0"', location: `/v1/scopes/${encodeURIComponent(view.id)}` });
    },
  },
  {
    method: 'DELETE',
    path: '/v1/scopes/{id}',
    name: 'scopes.delete',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      await ctx.deps.limits.write(u.id, 0, true); // a write's rate; it stores no state bytes
      const upload = isUploadScope(id) ? await ctx.deps.uploads.state(id).catch(() => null) : null;
      const meta = await ctx.deps.engine.deleteScope(id, u);
      ctx.deps.limits.deleted(meta.owner, meta.size);
      // A tag leaves the listings at once (else they skip it and remove its entry later: shared/domains/tags.ts).
      await ctx.deps.tags
        .forget(id, meta)
        .catch((err: unknown) => ctx.deps.logger.error({ message: 'tag index entry not removed', scope: id, err: String(err) }));
      if (upload) ctx.deps.uploads.deleted(meta.owner, upload.state); // its file goes with the purge (Uploads.purge)
      ctx.res.writeHead(204);
      ctx.res.end();
    },
  },
  {
    method: 'GET',
    path: '/v1/scopes/{id}',
    name: 'scopes.get',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const caller = await reader(ctx);
      const { engine } = ctx.deps;
      const head = await readableHead(ctx, id, caller);
      const etag = `"${head.ii}"`;
      ctx.log.ii = head.ii;
      if (etagMatches(ctx.req.headers['if-none-match'], etag)) {
        ctx.res.writeHead(304, { etag });
        ctx.res.end();
        return;
      }
      const state = await engine.stateAt(id, head.ii, { trimmed: head.trimmed });
      sendJson(ctx.res, 200, scopeBody({ id, ii: head.ii, state, meta: head.meta }, caller), { etag });
    },
  },
];
