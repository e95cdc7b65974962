/**
 * Route group `me`: `GET /v1/me` answers the caller as the service sees it: id, kind, the domain
 * the request acts in, and the identity provider's profile (name, email, picture...) if any.
 */
import { userJson } from '../auth.js';
import { type Ctx, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export const meRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/me',
    name: 'me',
    run: async (ctx) => sendJson(ctx.res, 200, userJson(await user(ctx))),
  },
];
