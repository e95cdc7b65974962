/**
 * Route group `patches`: `POST /v1/scopes/{id}/patches` submits one patch, from the caller's
 * domain (the engine's rules refuse another domain's scope), and answers its ack. The patch's own
 * limits are checked before the rate limits take tokens, so an oversize patch (413) spends none;
 * the engine is handed that check and does not repeat it. A `session` of the session id form
 * (`sess_…`) must name the writer's open session (shared/sessions/sessions.ts `checkWriter`).
 */
import { cannotGrow } from '../../patch.js';
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
      const checked = ctx.deps.engine.check(req.patch);
      await ctx.deps.sessions.checkWriter(req.session, u.id); // a session id must be the writer's open session
      await ctx.deps.limits.write(u.id, checked.bytes, cannotGrow(req.patch));
      const ack = await ctx.deps.engine.submit(id, u.id, req, { domain: u.domain, checked });
      ctx.log.ii = ack.ii;
      sendJson(ctx.res, 200, ack);
    },
  },
];
