/**
 * How every HTTP entry point (the v1 API, Pub/Sub push, the scheduled `sweep` and `bundle`
 * functions) writes a JSON response, an error response and its request log line. An error body
 * is always `{"error": {"code", "message", ...}}` with the status of errors.ts's table; a bug
 * (500) or a backend failure (503) is also logged at ERROR with its stack, nothing else is.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { asPatchbayError, PatchbayError } from '../errors.js';
import type { Logger } from '../log.js';

/** Writes a complete JSON response. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/**
 * Answers a failed request: the error response, or, when the response has already started (a
 * stream), a destroyed socket. `fields` (the route, say) go into the ERROR log entry of a bug or
 * a backend failure. Returns the error as sent.
 */
export function sendError(res: ServerResponse, err: unknown, logger: Logger, fields: Record<string, unknown>): PatchbayError {
  const e = asPatchbayError(err);
  if (e.code === 'internal' || (e.code === 'unavailable' && !(err instanceof PatchbayError))) {
    logger.error({
      message: e.code === 'internal' ? 'unhandled error' : 'backend failure',
      ...fields,
      err: err instanceof Error ? err.stack : String(err),
    });
  }
  if (res.headersSent) {
    res.destroy();
    return e;
  }
  const headers: Record<string, string> = e.code === 'method_not_allowed' ? { allow: (e.details.allow as string[]).join(', ') } : {};
  // The rest of an over-limit body is not read: the connection cannot be reused.
  if (e.code === 'too_large' && e.details.limit === 'maxBodyBytes') headers.connection = 'close';
  if (typeof e.details.retryAfter === 'number') headers['retry-after'] = String(e.details.retryAfter);
  sendJson(res, e.status, e.toBody(), headers);
  return e;
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
export function logRequest(logger: Logger, req: IncomingMessage, status: number, started: bigint, fields: RequestLogFields): void {
  const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
  logger.request({
    message: `${req.method} ${fields.route} ${status}`,
    method: req.method,
    ...fields,
    status,
    latencyMs: Math.round(latencyMs * 100) / 100,
    httpRequest: { requestMethod: req.method, requestUrl: redact(req.url), status, latency: `${(latencyMs / 1000).toFixed(6)}s` },
  });
}

/** A request URL fit for logs: stream tickets are credentials. */
function redact(url: string | undefined): string | undefined {
  return url?.replace(/([?&]ticket=)[^&]*/g, '$1REDACTED');
}
