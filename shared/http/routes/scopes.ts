/**
 * Route group `scopes`: creating a scope (`POST /v1/scopes`, in the caller's domain) and reading one
 * (`GET /v1/scopes/{id}`, with `ETag: "<ii>"` and a 304 for a matching `If-None-Match`).
 */
import type { ScopeView } from '../../engine/engine.js';
import { createScopeSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, etagMatches, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const scopeBody = (v: ScopeView) => ({ id: v.id, ii: v.ii, state: v.state, meta: { ...v.meta, ii: v.ii } });

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
      sendJson(ctx.res, 201, scopeBody(view), { etag: '"0"', location: `/v1/scopes/${encodeURIComponent(view.id)}` });
    },
  },
  {
    method: 'GET',
    path: '/v1/scopes/{id}',
    name: 'scopes.get',
    run: async (ctx) => {
      const id = scopeId(ctx);
      await user(ctx);
      const { engine } = ctx.deps;
      const head = await engine.head(id);
      const etag = `"${head.ii}"`;
      ctx.log.ii = head.ii;
      if (etagMatches(ctx.req.headers['if-none-match'], etag)) {
        ctx.res.writeHead(304, { etag });
        ctx.res.end();
        return;
      }
      const state = await engine.stateAt(id, head.ii, { trimmed: head.trimmed });
      sendJson(ctx.res, 200, scopeBody({ id, ii: head.ii, state, meta: head.meta }), { etag });
    },
  },
];
