/** Route group `auth`: `POST /v1/auth/anonymous` issues a token for a new anonymous user. */
import type { Ctx } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export const authRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/auth/anonymous',
    name: 'auth.anonymous',
    run: async (ctx) => {
      await ctx.deps.limits.signIn(ctx.req);
      sendJson(ctx.res, 200, await ctx.deps.auth.issueAnonymous());
    },
  },
];
