/**
 * Route group `patches`: `POST /v1/scopes/{id}/patches` submits one patch, from the caller's
 * domain (the engine's rules refuse another domain's scope), and answers its ack.
 */
import { patchRequestSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export const patchRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/scopes/{id}/patches',
    name: 'patches.submit',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      const req = await readBody(ctx.req, patchRequestSchema, ctx.deps.config);
      await ctx.deps.limits.write(u.id);
      const ack = await ctx.deps.engine.submit(id, u.id, req, { domain: u.domain });
      ctx.log.ii = ack.ii;
      sendJson(ctx.res, 200, ack);
    },
  },
];
