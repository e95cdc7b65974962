/**
 * CORS: which browser origins may call the API cross-origin, and the headers that say so.
 *
 * An allowed origin gets `Access-Control-Allow-Origin` (`*` when every origin is allowed, else the
 * request's own `Origin` echoed, with `Vary: Origin` so a cache never serves one origin's answer to
 * another) and the exposed headers; its preflight gets the methods and headers it may use. Any
 * other origin's request, preflight included, gets no CORS headers at all, so the browser keeps the
 * answer from the page. Bearer tokens travel in `Authorization`, never in cookies, so no
 * credentials are allowed (`*` is safe in that sense: it lets any page use a token it holds).
 *
 * The decision is `allowedOrigin`, a function of the origin and a list, so that per-domain origins
 * (from the domain configuration, to come) plug in by passing that domain's list.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CorsOrigins } from '../config.js';

export const EXPOSED_HEADERS = 'ETag, Location, Retry-After, X-Request-Id';
export const PREFLIGHT_HEADERS = {
  'access-control-allow-methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'access-control-allow-headers': 'Authorization, Content-Type, If-None-Match, Last-Event-ID, X-Request-Id',
  'access-control-max-age': '600',
} as const;

/**
 * The `Access-Control-Allow-Origin` value for a request from `origin` (its `Origin` header), or
 * null when that origin may not call cross-origin (or the request names none and the list is not
 * `*`). Origins compare exactly, as browsers serialize them (`https://app.example.com`, with a port
 * only when it is not the scheme's default).
 */
export function allowedOrigin(origin: string | undefined, allowed: CorsOrigins): string | null {
  if (allowed === '*') return '*';
  if (origin === undefined || origin === 'null') return null;
  return allowed.includes(origin) ? origin : null;
}

/** Sets the CORS headers of a response to `req` (allowed origins only). Returns whether the origin is allowed. */
export function setCorsHeaders(req: IncomingMessage, res: ServerResponse, allowed: CorsOrigins): boolean {
  // The answer depends on Origin whenever the list is not `*`, even when it is refused.
  if (allowed !== '*') res.setHeader('vary', 'Origin');
  const origin = allowedOrigin(req.headers.origin, allowed);
  if (origin === null) return false;
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
  return true;
}

/** Answers an `OPTIONS` request: 204, with the preflight headers only for an allowed origin. */
export function answerPreflight(res: ServerResponse, allowedOrigin: boolean): void {
  res.writeHead(204, allowedOrigin ? PREFLIGHT_HEADERS : {});
  res.end();
}
