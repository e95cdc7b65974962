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
 *
 * `GET /v1/domains/{domain}/queries/{name}/events?params=<JSON>` is the same query live, over SSE
 * (shared/domains/live-queries.ts): `event: result` with `{columns, rows, truncated}` first, then
 * again each time a change to a table the query reads gives a different result; `event: failed`
 * `{error}` and the end when a later run fails. Same caller, checks and errors as the POST (which
 * are answered as plain JSON before the stream starts: nothing is streamed for a refused query),
 * one PATCHBAY_RATE_QUERY token to open, a stream slot of the per-user and per-instance caps
 * (PATCHBAY_SSE_MAX_PER_USER, PATCHBAY_SSE_MAX_PER_INSTANCE) while open, heartbeats, and a clean
 * end after PATCHBAY_SSE_MAX_MS with a `retry:` hint. The bearer token comes in the
 * Authorization header (an SSE client over fetch, as @patchbay/client's): no stream ticket.
 *
 * `GET /v1/domains/{domain}/mirror`, for the domain's admins only (403 for anyone else, as every
 * admin route), at the list rate (PATCHBAY_RATE_LIST): the mirror's lag percentiles over the last
 * five minutes and the newest row per table (shared/domains/mirror-status.ts).
 */
import { z } from 'zod';
import { PatchbayError } from '../../errors.js';
import { readBody } from '../body.js';
import { type Ctx, domainAdmin, domainParam, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { SseWriter, streamEnd } from '../sse.js';

const QUERY_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The body: the parameters, checked against the query's declaration (`invalid_params`), not here. */
const queryBody = z.strictObject({ params: z.unknown().optional() });

/** The query's name from the path (`unknown_query` when it cannot be one). */
function queryName(ctx: Ctx): string {
  let name = '';
  try {
    name = decodeURIComponent(ctx.params[1] as string);
  } catch {}
  if (!QUERY_NAME.test(name)) throw new PatchbayError('unknown_query', 'no such query', { query: name.slice(0, 64) });
  return name;
}

/** `?params=` of a live query: a JSON object, as the POST's `params` (`invalid_params` when it is not JSON). */
function paramsOf(url: URL): unknown {
  const text = url.searchParams.get('params');
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new PatchbayError('invalid_params', 'params must be a JSON object');
  }
}

async function live(ctx: Ctx): Promise<void> {
  const { config, limits, liveQueries, logger } = ctx.deps;
  const domain = domainParam(ctx);
  const caller = await user(ctx);
  await limits.query(caller.id);
  const name = queryName(ctx);
  const params = paramsOf(ctx.url);
  const release = await limits.openStream(caller.id);
  const sse = new SseWriter(ctx.res);
  const { finished, finish, gone, goneAlready } = streamEnd(ctx.res);
  let seq = 0;
  let stop: () => Promise<void> = async () => {};
  try {
    if (goneAlready) return;
    stop = await liveQueries.open(
      domain,
      name,
      params,
      { requester: caller.id, domain: caller.domain },
      {
        result: async (r) => {
          if (gone()) return;
          sse.start(config.sseRetryMs);
          seq += 1;
          await sse.event('result', JSON.stringify(r), seq);
        },
        failed: (err) => {
          if (!gone()) void sse.event('failed', JSON.stringify(err.toBody())).finally(finish);
          else finish();
          logger.error({ message: 'live query failed', domain, query: name, code: err.code });
        },
      },
    );
    await sse.hold(finished, config.sseHeartbeatMs, config.sseMaxMs);
  } finally {
    await stop();
    release();
  }
  sse.end(config.sseRetryMs);
}

export const queryRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/domains/{domain}/queries/{name}',
    name: 'queries.run',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const caller = await user(ctx);
      await ctx.deps.limits.query(caller.id);
      const body = await readBody(ctx.req, queryBody, ctx.deps.config);
      const name = queryName(ctx);
      const result = await ctx.deps.queries.run(domain, name, body.params, { requester: caller.id, domain: caller.domain });
      sendJson(ctx.res, 200, result);
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/queries/{name}/events',
    name: 'queries.live',
    run: live,
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/mirror',
    name: 'queries.mirrorStatus',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const admin = await domainAdmin(ctx, domain);
      await ctx.deps.limits.list(admin.id);
      sendJson(ctx.res, 200, await ctx.deps.mirrorStatus(domain));
    },
  },
];
