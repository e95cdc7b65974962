/**
 * The v1 HTTP API as one Node request handler: `(req, res) => Promise<void>`. The same function is
 * the Cloud Function (functions/index.ts, via the Functions Framework, whose Express request
 * carries `rawBody`) and what `npm start` serves with a plain `http.Server`.
 *
 * This module is the request's frame: CORS and the preflight (cors.ts), routing (router.ts over the route
 * table in routes/), the error response and the request log (respond.ts). Every response is JSON
 * (or SSE / NDJSON where the contract says so); every error body is `{"error": {"code",
 * "message", ...}}`, its status taken from the error table in errors.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PatchbayError } from '../errors.js';
import type { Ctx, HandlerDeps } from './context.js';
import { answerPreflight, setCorsHeaders } from './cors.js';
import { begin, logRequest, sendError } from './respond.js';
import { createRouter, requestUrl } from './router.js';
import { ROUTES } from './routes/index.js';

export type { HandlerDeps } from './context.js';

export type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

const route = createRouter(ROUTES);

export function createHandler(deps: HandlerDeps): Handler {
  const { config, logger } = deps;
  return async (req: IncomingMessage, res: ServerResponse) => {
    const x = begin(req, res, config, logger);
    const ctx: Ctx = { req, res, url: new URL('http://local/'), params: [], deps, log: {} };
    let routeName = 'unmatched';
    let status: number | undefined;
    let shed = false;
    const corsAllowed = await setCorsHeaders(req, res, config.corsOrigins, deps.domains, (err) =>
      logger.error({ message: "CORS: a domain's allowed origins could not be read; answered without CORS headers", err: String(err) }),
    );
    try {
      if (req.method === 'OPTIONS') {
        answerPreflight(res, corsAllowed);
        return;
      }
      ctx.url = requestUrl(req.url);
      const match = route(req.method, ctx.url.pathname);
      routeName = match.route.name;
      ctx.params = match.params;
      await match.route.run(ctx);
    } catch (err) {
      status = await sendError(x, err, { route: routeName });
      shed = err instanceof PatchbayError && err.code === 'unavailable' && err.details.limit !== undefined;
    } finally {
      // A request refused at a capacity limit (e.g. a full instance's stream cap) is load shed on
      // purpose: a warning, so that ERROR keeps meaning a backend failure.
      const severity = shed ? { severity: 'WARNING' } : {};
      logRequest(x, status ?? res.statusCode, { route: routeName, scope: ctx.log.scope, ii: ctx.log.ii, ...severity });
    }
  };
}
