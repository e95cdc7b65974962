/**
 * How every HTTP entry point (the v1 API, Pub/Sub push, the scheduled `sweep` and `bundle`
 * functions) frames an exchange: its request id and common headers, JSON responses, the error
 * response and the request log line.
 *
 * An error body is always `{"error": {"code", "message", ...}}` with the status of errors.ts's
 * table. A refused body the client is still sending is read and dropped (bounded in size and
 * time) before the answer, so the client receives the answer rather than a reset connection.
 * Only a bug (500) or a backend failure (503) is logged at ERROR; a client that hangs up is 499
 * and a body that does not arrive in time 408, both request-log lines at WARNING.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GoogleConfig, LimitsConfig, ServerConfig } from '../config.js';
import { asPatchbayError, PatchbayError } from '../errors.js';
import type { Logger } from '../log.js';
import { ClientClosed, readUpTo } from './body.js';
import { logFields, type RequestIds, requestIds } from './trace.js';

/** nginx's "client closed request": the client left before it could be answered. */
export const CLIENT_CLOSED = 499;

export type ExchangeConfig = Pick<GoogleConfig, 'gcpProject'> & Pick<LimitsConfig, 'maxDiscardBytes'> & Pick<ServerConfig, 'bodyTimeoutMs'>;

/** One request and its response, as the entry point sees them. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  started: bigint;
  ids: RequestIds;
  config: ExchangeConfig;
  logger: Logger;
}

/** Starts an exchange: its ids, `X-Request-Id` and `X-Content-Type-Options` on the response. */
export function begin(req: IncomingMessage, res: ServerResponse, config: ExchangeConfig, logger: Logger): Exchange {
  const ids = requestIds(req, config.gcpProject);
  res.setHeader('x-request-id', ids.requestId);
  res.setHeader('x-content-type-options', 'nosniff');
  return { req, res, started: process.hrtime.bigint(), ids, config, logger };
}

/** Writes a complete JSON response; never stored by caches (it is a user's data or a credential). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * Answers a failed request: the error response, or, when the response has already started (a
 * stream), a destroyed socket. `fields` (the route, say) go into the ERROR log entry of a bug or
 * a backend failure. Returns the status to log.
 */
export async function sendError(x: Exchange, err: unknown, fields: Record<string, unknown>): Promise<number> {
  const { req, res, config } = x;
  if (clientLeft(err)) {
    res.destroy();
    return CLIENT_CLOSED;
  }
  const e = asPatchbayError(err);
  if (e.code === 'internal' || (e.code === 'unavailable' && !(err instanceof PatchbayError))) {
    x.logger.error({
      message: e.code === 'internal' ? 'unhandled error' : 'backend failure',
      ...fields,
      ...logFields(x.ids),
      err: err instanceof Error ? err.stack : String(err),
    });
  }
  if (res.headersSent) {
    res.destroy();
    return res.statusCode;
  }
  const headers: Record<string, string> = e.code === 'method_not_allowed' ? { allow: (e.details.allow as string[]).join(', ') } : {};
  // Answering while the client is still sending makes many clients (fetch, node:http) see a
  // reset instead of the answer: read the rest first, within bounds, and close past them.
  let complete = e.code !== 'request_timeout';
  if (complete && !req.complete) {
    const declared = Number(req.headers['content-length']);
    const hopeless = Number.isFinite(declared) && declared > config.maxDiscardBytes;
    const outcome = hopeless ? 'over' : await readUpTo(req, config.maxDiscardBytes, config.bodyTimeoutMs, () => {});
    if (outcome === 'closed') return CLIENT_CLOSED;
    complete = outcome === 'end';
  }
  if (!complete) headers.connection = 'close';
  if (typeof e.details.retryAfter === 'number') headers['retry-after'] = String(e.details.retryAfter);
  sendJson(res, e.status, e.toBody(), headers);
  return e.status;
}

/** Whether a failure is the client hanging up (Node's own error for it, or the body reader's). */
function clientLeft(err: unknown): boolean {
  if (err instanceof ClientClosed) return true;
  return err instanceof Error && (err as { code?: unknown }).code === 'ECONNRESET' && err.message === 'aborted';
}

/** What a request log line says beyond the request itself. */
export interface RequestLogFields {
  /** The route's name ('unmatched' when none). */
  route: string;
  /** Default: `<METHOD> <route> <status>`. */
  message?: string;
  [field: string]: unknown;
}

/** Writes the request log line: severity from the status, Cloud Logging's `httpRequest`. */
export function logRequest(x: Exchange, status: number, fields: RequestLogFields): void {
  const { req } = x;
  const latencyMs = Number(process.hrtime.bigint() - x.started) / 1e6;
  x.logger.request({
    message: `${req.method} ${fields.route} ${status}`,
    method: req.method,
    ...fields,
    status,
    latencyMs: Math.round(latencyMs * 100) / 100,
    ...logFields(x.ids),
    httpRequest: { requestMethod: req.method, requestUrl: redact(req.url), status, latency: `${(latencyMs / 1000).toFixed(6)}s` },
  });
}

/** Query parameter names that may carry a credential (any case; `access_token`, `X-Api-Key`...). */
const SECRET_PARAM = /token|ticket|secret|passw|pwd|auth|key|signature|^sig$|credential|jwt|session_?id|cookie/i;

/** Paths whose last segment is a credential: the embedded signed file URLs (routes/files.ts). */
const SECRET_PATH = /^(\/v1\/files\/)[^/?]+/;

/** A request URL fit for logs: a signed file token in the path, and the value of every credential-looking query parameter, are replaced. */
export function redact(raw: string | undefined): string | undefined {
  const url = raw?.replace(SECRET_PATH, '$1REDACTED');
  const q = url?.indexOf('?') ?? -1;
  if (url === undefined || q < 0) return url;
  const query = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const rawName = eq < 0 ? pair : pair.slice(0, eq);
      let name = rawName;
      try {
        name = decodeURIComponent(rawName.replace(/\+/g, ' '));
      } catch {
        // a malformed escape: judge the raw text
      }
      return eq >= 0 && SECRET_PARAM.test(name) ? `${rawName}=REDACTED` : pair;
    })
    .join('&');
  return `${url.slice(0, q + 1)}${query}`;
}
