/**
 * Route group `webhooks`: a domain's webhooks and their deliveries, for the domain's admins only
 * (anyone else: 403 `forbidden`, whether or not the domain exists), each page at the caller's
 * list rate (PATCHBAY_RATE_LIST). Answers are `Cache-Control: no-store`; secrets never reach the
 * request log (it records the route and status only).
 * - `GET /v1/domains/{domain}/webhooks`: the active configuration's webhooks, each with its
 *   signing secret (`whsec_…`, to verify deliveries with) and its delivery state: last delivered
 *   patch and its lag, last error, last write-back, counts, and the deliveries failing now.
 * - `GET /v1/domains/{domain}/webhooks/{name}/dead?limit=&after=`: its dead letters, by scope and
 *   index, paged (`next` is the following page's `after`).
 */
import { PatchbayError } from '../../errors.js';
import { type Ctx, intParam } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { admin } from './config.js';

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const AFTER = /^[A-Za-z0-9_.:-]{1,128}\/[0-9]{16}$/;

export const webhookRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/domains/{domain}/webhooks',
    name: 'webhooks.list',
    run: async (ctx) => {
      const { domain, userId } = await admin(ctx);
      await ctx.deps.limits.list(userId);
      sendJson(ctx.res, 200, { domain, webhooks: await ctx.deps.webhooks.list(domain) });
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/webhooks/{name}/dead',
    name: 'webhooks.dead',
    run: async (ctx) => {
      const { domain, userId } = await admin(ctx);
      let name = '';
      try {
        name = decodeURIComponent(ctx.params[1] as string);
      } catch {}
      if (!NAME.test(name))
        throw new PatchbayError('invalid_request', 'not a webhook name', { issues: [{ path: ['name'], message: 'must match [a-z0-9][a-z0-9-]{0,62}' }] });
      const max = ctx.deps.config.maxListPage;
      const limit = intParam(ctx.url, 'limit') ?? max;
      const after = ctx.url.searchParams.get('after') ?? undefined;
      if (limit < 1 || limit > max)
        throw new PatchbayError('invalid_request', `limit must be 1..${max}`, { issues: [{ path: ['limit'], message: `1..${max}` }] });
      if (after !== undefined && !AFTER.test(after))
        throw new PatchbayError('invalid_request', 'after must be a `next` from the previous page', {
          issues: [{ path: ['after'], message: 'not a page cursor' }],
        });
      await ctx.deps.limits.list(userId);
      sendJson(ctx.res, 200, { domain, name, ...(await ctx.deps.webhooks.records.dead(domain, name, limit, after)) });
    },
  },
];
