/**
 * Route group `access`: a scope's access, for its owner only. `GET /v1/scopes/{id}/access` reads
 * it; `PUT /v1/scopes/{id}/access` replaces it with the whole object sent (idempotent: the same
 * object again changes nothing), rate-limited as a write. Anyone else gets 404 `scope_not_found`
 * if they may not read the scope, 403 `forbidden` if they may (shared/engine/access.ts).
 */
import { accessOf, checkOwner } from '../../engine/access.js';
import { accessSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export const accessRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/scopes/{id}/access',
    name: 'access.get',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      const { meta } = await ctx.deps.engine.head(id);
      checkOwner(id, meta, u);
      sendJson(ctx.res, 200, accessOf(meta));
    },
  },
  {
    method: 'PUT',
    path: '/v1/scopes/{id}/access',
    name: 'access.put',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      const req = await readBody(ctx.req, accessSchema, ctx.deps.config);
      await ctx.deps.limits.write(u.id, 0, true); // a write's rate; it stores no state bytes
      sendJson(ctx.res, 200, await ctx.deps.engine.setAccess(id, u, req));
    },
  },
];
