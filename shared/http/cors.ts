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
 * Who is allowed: an origin the operator allows (PATCHBAY_CORS_ORIGINS: `*` in embedded mode by
 * default, no origin in google mode), or one the domain a page on that origin acts in allows:
 * the record of the domain named by the origin's host (shared/http/domain.ts: a page on
 * `https://app.example.com` acts in `app.example.com`) lists that exact origin in `origins`,
 * set by the domain's admins (`PUT /v1/domains/{domain}/origins`). That record is read through
 * the Domains cache (PATCHBAY_DOMAIN_CACHE_MS), so the decision is asynchronous; a lookup that
 * fails (the record store is down) allows nothing and is logged, so the request is still
 * answered, without CORS headers, never with `*`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CorsOrigins } from '../config.js';
import { DOMAIN } from '../protocol.js';

/** Where the origins a domain allows are read (shared/domains/domains.ts `Domains`). */
export interface DomainOrigins {
  get(domain: string): Promise<{ origins: string[] } | null>;
}

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

/**
 * The domain a page on `origin` acts in (its host, as shared/http/domain.ts reads `Origin`), or
 * null for something that is not an http(s) origin exactly as browsers serialize one.
 */
export function originDomain(origin: string): string | null {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin || !DOMAIN.test(url.host)) return null;
  return url.host;
}

/**
 * `origin` itself if the domain a page on it acts in lists it (see the top of this file), else
 * null; a failed lookup is reported to `onError` and allows nothing.
 */
export async function domainAllows(origin: string | undefined, domains: DomainOrigins, onError: (err: unknown) => void): Promise<string | null> {
  if (origin === undefined) return null;
  const domain = originDomain(origin);
  if (domain === null) return null;
  try {
    return (await domains.get(domain))?.origins.includes(origin) ? origin : null;
  } catch (err) {
    onError(err);
    return null;
  }
}

/**
 * Sets the CORS headers of a response to `req` (allowed origins only): the operator's list first,
 * then, when `domains` is given, the origin's domain's list. Returns whether the origin is
 * allowed. Never throws.
 */
export async function setCorsHeaders(
  req: IncomingMessage,
  res: ServerResponse,
  allowed: CorsOrigins,
  domains?: DomainOrigins,
  onError: (err: unknown) => void = () => {},
): Promise<boolean> {
  // The answer depends on Origin whenever the list is not `*`, even when it is refused.
  if (allowed !== '*') res.setHeader('vary', 'Origin');
  let origin = allowedOrigin(req.headers.origin, allowed);
  if (origin === null && domains) origin = await domainAllows(req.headers.origin, domains, onError);
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
