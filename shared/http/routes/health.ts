/** Route group `health`: `GET /healthz` answers `{ok: true}` while the process serves requests. */
import type { Ctx } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export const healthRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/healthz',
    name: 'health',
    run: async (ctx) => sendJson(ctx.res, 200, { ok: true }),
  },
];
