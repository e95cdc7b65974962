/**
 * Route group `scopes`: creating a scope (`POST /v1/scopes`, in the caller's domain, private unless
 * it says otherwise) and reading one (`GET /v1/scopes/{id}`, with `ETag: "<ii>"` and a 304 for a
 * matching `If-None-Match`; no token needed for a public scope; `404` for a caller who may not read it).
 */
import { type Caller, metaFor } from '../../engine/access.js';
import type { ScopeView } from '../../engine/engine.js';
import { createScopeSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, etagMatches, readableHead, reader, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** A scope as `caller` may see it: its access lists only to the owner (shared/engine/access.ts). */
const scopeBody = (v: ScopeView, caller: Caller | null) => ({ id: v.id, ii: v.ii, state: v.state, meta: { ...metaFor(v.meta, caller), ii: v.ii } });

export const scopeRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/scopes',
    name: 'scopes.create',
    run: async (ctx) => {
      const u = await user(ctx);
      const req = await readBody(ctx.req, createScopeSchema, ctx.deps.config);
      await ctx.deps.limits.createScope(u.id);
      const view = await ctx.deps.engine.createScope(u.id, req, { domain: u.domain });
      ctx.deps.limits.created(u.id, view.meta.size);
      ctx.log.scope = view.id;
      ctx.log.ii = 0;
      sendJson(ctx.res, 201, scopeBody(view, u), { etag: '"0"', location: `/v1/scopes/${encodeURIComponent(view.id)}` });
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
