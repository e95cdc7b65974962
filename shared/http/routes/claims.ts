/**
 * Route group `claims`: a signed-in user claims a domain (shared/domains/claims.ts;
 * docs/domains.md, "Claiming a domain").
 * - `POST /v1/domains/{domain}/claim` starts a claim (201) or, when the caller has one pending,
 *   checks it again and answers it (200, the same token); rate-limited by PATCHBAY_RATE_CLAIM.
 * - `GET /v1/domains/{domain}/claim` answers the caller's claim of the domain (404
 *   `claim_not_found` when there is none).
 * Each caller sees only their own claim: a claim is keyed by its user, so nobody learns who else
 * claims a domain. The token is in the response body only, never in the request log.
 */
import { isAnonymous } from '../auth.js';
import { type Ctx, pathParam, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export const claimRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/domains/{domain}/claim',
    name: 'claims.start',
    run: async (ctx) => {
      const domain = pathParam(ctx, 0); // shared/domains/claims.ts checks it (stricter than DOMAIN)
      const u = await user(ctx);
      ctx.deps.claims.checkDomain(domain); // before the rate: a malformed request spends no token
      await ctx.deps.limits.claim(u.id);
      const { claim, created } = await ctx.deps.claims.start(domain, { id: u.id, anonymous: isAnonymous(u) });
      sendJson(ctx.res, created ? 201 : 200, ctx.deps.claims.view(claim));
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/claim',
    name: 'claims.get',
    run: async (ctx) => {
      const domain = pathParam(ctx, 0); // shared/domains/claims.ts checks it (stricter than DOMAIN)
      const u = await user(ctx);
      sendJson(ctx.res, 200, ctx.deps.claims.view(await ctx.deps.claims.get(domain, u.id)));
    },
  },
];
