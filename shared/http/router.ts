/**
 * The router: a table of routes (method, path template, name, handler) and the lookup that picks
 * the route of a request. Path templates name their parameters in braces (`/v1/scopes/{id}`); a
 * parameter is one non-empty path segment, passed to the handler still percent-encoded. A path no
 * route matches is 404 `not_found`; a path whose routes lack the method is 405
 * `method_not_allowed`, with the methods it has in `allow`. `HEAD` is answered wherever `GET` is,
 * by the GET route (Node's response drops the body of a HEAD; a streaming route ends early).
 */
import { PatchbayError } from '../errors.js';

export interface Route<C> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** The path template, as docs/openapi.yaml writes it. */
  path: string;
  /** The route's name in request logs. */
  name: string;
  run: (ctx: C) => Promise<void>;
}

export interface Match<C> {
  route: Route<C>;
  /** The template's parameters, in order, as they appear in the path (percent-encoded). */
  params: string[];
}

/** The lookup over a route table; throws `not_found` / `method_not_allowed` when nothing fits. */
export function createRouter<C>(routes: readonly Route<C>[]): (method: string | undefined, path: string) => Match<C> {
  const compiled = routes.map((route) => ({ route, pattern: templatePattern(route.path) }));
  return (method, path) => {
    const matching = compiled.filter((r) => r.pattern.test(path));
    const wanted = method === 'HEAD' ? 'GET' : method;
    const found = matching.find((r) => r.route.method === wanted);
    if (!found) {
      if (matching.length > 0) {
        const allow = matching.flatMap((r) => (r.route.method === 'GET' ? ['GET', 'HEAD'] : [r.route.method]));
        throw new PatchbayError('method_not_allowed', `${method} is not allowed here`, { allow });
      }
      throw new PatchbayError('not_found', `no route for ${path}`);
    }
    return { route: found.route, params: (found.pattern.exec(path) as RegExpExecArray).slice(1) };
  };
}

function templatePattern(template: string): RegExp {
  const escaped = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[A-Za-z]+\}/g, '([^/]+)');
  return new RegExp(`^${escaped}$`);
}

/**
 * The request target as a URL. Always relative to a fixed origin: `//host/path` is a path here
 * (resolving it as a URL would make `host` the origin and route `/path`), and anything that does
 * not parse is a 400.
 */
export function requestUrl(target: string | undefined): URL {
  try {
    return new URL(`http://local${target?.startsWith('/') ? target : `/${target ?? ''}`}`);
  } catch {
    throw new PatchbayError('invalid_request', 'the request target is not a valid path');
  }
}
