/**
 * Route group `auth`: `POST /v1/auth/anonymous` issues a token for a new anonymous user of one
 * domain: a browser's is its Origin's host; a server client may name it in the optional body
 * `{domain}` (or X-Patchbay-Domain); else `default` (shared/http/domain.ts).
 */
import { PatchbayError } from '../../errors.js';
import { anonymousRequestSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import type { Ctx } from '../context.js';
import { requestDomain, resolveDomain } from '../domain.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** Whether the request has a body at all (`curl -X POST` sends none, and needs no Content-Type). */
function hasBody(ctx: Ctx): boolean {
  const h = ctx.req.headers;
  return h['content-type'] !== undefined || h['transfer-encoding'] !== undefined || Number(h['content-length'] ?? 0) > 0;
}

export const authRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/auth/anonymous',
    name: 'auth.anonymous',
    run: async (ctx) => {
      const rd = requestDomain(ctx.req.headers);
      const body = hasBody(ctx) ? await readBody(ctx.req, anonymousRequestSchema, ctx.deps.config) : {};
      const asked = rd.origin ?? rd.named;
      if (body.domain !== undefined && asked !== null && body.domain !== asked) {
        throw new PatchbayError('forbidden', `a request from ${asked} cannot sign in to domain ${body.domain}`, { domain: body.domain, requested: asked });
      }
      const domain = body.domain ?? resolveDomain(rd);
      await ctx.deps.limits.signIn(ctx.req);
      sendJson(ctx.res, 200, await ctx.deps.auth.issueAnonymous(domain));
    },
  },
];
