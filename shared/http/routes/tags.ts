/**
 * Route group `tags` (shared/domains/tags.ts: what a tag is, its index, who sees it):
 *
 * - `POST /v1/scopes/{target}/tags` `{tagType, context?}`: the caller tags a scope it may read:
 *   `201` with the new tag scope, or `200` with the caller's existing tag of that type on that
 *   target, as it is (one tag per (tagger, target, tag type), concurrent calls included). `404`
 *   for a target the caller may not read (as for one that does not exist), `401` without a token,
 *   `400` for a bad body; each stores nothing. Spends the create rate and counts against the
 *   quotas, like `POST /v1/scopes`, only when it creates.
 * - `GET /v1/scopes/{target}/tags?tagType=&limit=&cursor=`: the tags on a target the caller may
 *   read (no token needed on a public target, as for reading it), each shown only if its own
 *   access lets the caller read it; `404` for a target the caller may not read.
 * - `GET /v1/tags?tagType=&domain=&limit=&cursor=`: the caller's own tags in `domain` (default: the
 *   caller's).
 *
 * Listings come in pages of at most PATCHBAY_MAX_LIST_PAGE with an opaque `next` cursor (a page
 * may hold fewer tags than `limit` and still have a `next`), rate-limited per user by
 * PATCHBAY_RATE_LIST. A tag is deleted as a scope (`DELETE /v1/scopes/{id}`, by its tagger). The
 * request log records the target's id, never the context.
 */
import { createTagSchema, listMyTagsQuerySchema, listTargetTagsQuerySchema } from '../../protocol.js';
import { parseWith, readBody } from '../body.js';
import { type Ctx, readableHead, reader, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { fromCursor, pageLimit, scopeBody, toCursor } from './scopes.js';

export const tagRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/scopes/{id}/tags',
    name: 'tags.create',
    run: async (ctx) => {
      const target = scopeId(ctx);
      const u = await user(ctx);
      const req = await readBody(ctx.req, createTagSchema, ctx.deps.config);
      const { limits, tags } = ctx.deps;
      const { view, created } = await tags.tag(u, target, req, () => limits.createScope(u.id));
      if (created) limits.created(u.id, view.meta.size);
      sendJson(ctx.res, created ? 201 : 200, scopeBody(view, u), { etag: `"${view.ii}"`, location: `/v1/scopes/${encodeURIComponent(view.id)}` });
    },
  },
  {
    method: 'GET',
    path: '/v1/scopes/{id}/tags',
    name: 'tags.onTarget',
    run: async (ctx) => {
      const target = scopeId(ctx);
      const caller = await reader(ctx);
      const q = parseWith(listTargetTagsQuerySchema, Object.fromEntries(ctx.url.searchParams), 'the query');
      const limit = pageLimit(ctx, q.limit);
      const after = q.cursor === undefined ? undefined : fromCursor(q.cursor);
      if (caller) await ctx.deps.limits.list(caller.id);
      await readableHead(ctx, target, caller);
      const page = await ctx.deps.tags.onTarget(caller, target, { tagType: q.tagType, after, limit });
      sendJson(ctx.res, 200, { tags: page.tags, next: toCursor(page.next) });
    },
  },
  {
    method: 'GET',
    path: '/v1/tags',
    name: 'tags.mine',
    run: async (ctx) => {
      const u = await user(ctx);
      const q = parseWith(listMyTagsQuerySchema, Object.fromEntries(ctx.url.searchParams), 'the query');
      const limit = pageLimit(ctx, q.limit);
      const after = q.cursor === undefined ? undefined : fromCursor(q.cursor);
      await ctx.deps.limits.list(u.id);
      const page = await ctx.deps.tags.mine(u, { domain: q.domain ?? u.domain, tagType: q.tagType, after, limit });
      sendJson(ctx.res, 200, { tags: page.tags, next: toCursor(page.next) });
    },
  },
];
