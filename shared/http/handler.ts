/**
 * The v1 HTTP API as one Node request handler: `(req, res) => Promise<void>`. The same function is
 * the Cloud Function (functions/index.ts, via the Functions Framework, whose Express request
 * carries `rawBody`) and what `npm start` serves with a plain `http.Server`.
 *
 * This module is the request's frame: CORS and the preflight, routing (router.ts over the route
 * table in routes/), the error response and the request log (respond.ts). Every response is JSON
 * (or SSE / NDJSON where the contract says so); every error body is `{"error": {"code",
 * "message", ...}}`, its status taken from the error table in errors.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Ctx, HandlerDeps } from './context.js';
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
    if (config.corsOrigin !== '') {
      res.setHeader('access-control-allow-origin', config.corsOrigin);
      res.setHeader('access-control-expose-headers', 'ETag, Location, Retry-After, X-Request-Id');
    }
    try {
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          'access-control-allow-methods': 'GET, POST, PUT, OPTIONS',
          'access-control-allow-headers': 'Authorization, Content-Type, If-None-Match, Last-Event-ID, X-Request-Id',
          'access-control-max-age': '600',
        });
        res.end();
        return;
      }
      ctx.url = requestUrl(req.url);
      const match = route(req.method, ctx.url.pathname);
      routeName = match.route.name;
      ctx.params = match.params;
      await match.route.run(ctx);
    } catch (err) {
      status = await sendError(x, err, { route: routeName });
    } finally {
      logRequest(x, status ?? res.statusCode, { route: routeName, scope: ctx.log.scope, ii: ctx.log.ii });
    }
  };
}
