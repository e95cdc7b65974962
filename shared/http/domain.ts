/**
 * The domain (the app) a request acts in. The rule, so that a browser page on origin A can never
 * act for domain B:
 * - A request with an `Origin` header comes from a browser, and its domain is the origin's host
 *   (lower case, with the port when it is not the scheme's default: `app.example.com`,
 *   `localhost:5173`). Browsers set `Origin` themselves; a page cannot forge it. An
 *   `X-Patchbay-Domain` naming another domain is then refused (403 `forbidden`), and an Origin
 *   that is not an http(s) origin (`Origin: null` from sandboxed frames and files) is refused
 *   (400 `invalid_request`).
 * - A request without `Origin` (a server, curl) may name its domain in `X-Patchbay-Domain`.
 * - Nothing named: the token's domain, else `default`.
 * A patchbay token carries the domain it was issued for, and is accepted only in that domain: a
 * request whose Origin or X-Patchbay-Domain names another one is refused (403 `forbidden`). A
 * Firebase ID token names no patchbay domain (it is issued for a Firebase project, which may
 * serve several apps), so the request decides it as above.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { DEFAULT_DOMAIN } from '../engine/decide.js';
import { PatchbayError } from '../errors.js';
import { DOMAIN } from '../protocol.js';

export const DOMAIN_HEADER = 'x-patchbay-domain';

/** What a request says about its domain, before its token is known. */
export interface RequestDomain {
  /** The host of the request's Origin (a browser), else null. */
  origin: string | null;
  /** X-Patchbay-Domain (a server client), else null. */
  named: string | null;
}

function invalid(message: string, header: string): PatchbayError {
  return new PatchbayError('invalid_request', message, { issues: [{ path: [header], message }] });
}

/** Reads `Origin` and `X-Patchbay-Domain` (400 if malformed, 403 if they disagree). */
export function requestDomain(headers: IncomingHttpHeaders): RequestDomain {
  const rawOrigin = headers.origin;
  const rawNamed = headers[DOMAIN_HEADER];
  let origin: string | null = null;
  if (typeof rawOrigin === 'string') {
    let url: URL | null = null;
    try {
      url = new URL(rawOrigin);
    } catch {}
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !DOMAIN.test(url.host)) {
      throw invalid('Origin must be an http(s) origin; requests from opaque origins have no domain', 'origin');
    }
    origin = url.host; // lower-cased, default port dropped
  }
  let named: string | null = null;
  if (rawNamed !== undefined) {
    named = Array.isArray(rawNamed) ? (rawNamed[0] ?? '') : rawNamed;
    if (!DOMAIN.test(named)) throw invalid('X-Patchbay-Domain must be a lower-case host name, optionally with :port', DOMAIN_HEADER);
  }
  if (origin !== null && named !== null && named !== origin) {
    throw new PatchbayError('forbidden', `a page on ${origin} cannot act for domain ${named}`, { domain: named, origin });
  }
  return { origin, named };
}

/**
 * The domain a request acts in, given the domain its token was issued for (`tokenDomain`; none
 * for a Firebase ID token). 403 `forbidden` when the request names another domain than its token.
 */
export function resolveDomain(rd: RequestDomain, tokenDomain?: string): string {
  const asked = rd.origin ?? rd.named;
  if (tokenDomain === undefined) return asked ?? DEFAULT_DOMAIN;
  if (asked !== null && asked !== tokenDomain) {
    throw new PatchbayError('forbidden', `this token was issued for domain ${tokenDomain}, not ${asked}`, { domain: tokenDomain, requested: asked });
  }
  return tokenDomain;
}
