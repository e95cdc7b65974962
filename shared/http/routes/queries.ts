/**
 * Route group `queries`: `POST /v1/domains/{domain}/queries/{name}` with `{"params": {...}}` runs
 * one of the domain's named queries over its mirror (shared/domains/queries.ts) and answers
 * `{columns: [{name, type}], rows: [[...]], truncated}`.
 *
 * Who may: any signed-in caller (401 without a token) acting in the domain itself, or in a domain
 * the query's `domains` list matches (`*` is one host label); the calling domain is the request's
 * (shared/http/domain.ts), never the body's. `$REQUESTER` (the caller's user id) and `$DOMAIN`
 * (the calling domain) are bound by the server; a parameter of either name is 400
 * `invalid_params`. A stranger learns nothing about which queries exist: a missing domain, a
 * missing query and one it may not call are all 404 `unknown_query`. Rate-limited per user
 * (PATCHBAY_RATE_QUERY); the body is held to PATCHBAY_MAX_BODY_BYTES. Errors: `invalid_params`,
 * `query_failed` (with `pgCode`, never the database's text), `query_timeout`, `unavailable`
 * (no mirror in this deployment). The request log records the route and status, not the params.
 */
import { z } from 'zod';
import { PatchbayError } from '../../errors.js';
import { readBody } from '../body.js';
import { type Ctx, domainParam, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const QUERY_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The body: the parameters, checked against the query's declaration (`invalid_params`), not here. */
const queryBody = z.strictObject({ params: z.unknown().optional() });

export const queryRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/domains/{domain}/queries/{name}',
    name: 'queries.run',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const caller = await user(ctx);
      let name = '';
      try {
        name = decodeURIComponent(ctx.params[1] as string);
      } catch {}
      await ctx.deps.limits.query(caller.id);
      const body = await readBody(ctx.req, queryBody, ctx.deps.config);
      if (!QUERY_NAME.test(name)) throw new PatchbayError('unknown_query', 'no such query', { query: name.slice(0, 64) });
      const result = await ctx.deps.queries.run(domain, name, body.params, { requester: caller.id, domain: caller.domain });
      sendJson(ctx.res, 200, result);
    },
  },
];
