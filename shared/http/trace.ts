/**
 * Which request a log line is about: the request id (`X-Request-Id`, taken from the request when
 * it is sane, else generated, and sent back on the response) and Cloud Run's trace context
 * (`X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`), written as the structured-log field
 * `logging.googleapis.com/trace` so Cloud Logging groups a request's lines under its trace.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** A request id a client may choose: bounded, and nothing that could break a header or a log. */
const SANE_ID = /^[A-Za-z0-9._:@+=/-]{1,128}$/;
const TRACE = /^([0-9a-f]{32})(?:\/|$)/i;

export interface RequestIds {
  requestId: string;
  /** `projects/<project>/traces/<trace id>` (the bare trace id when no project is configured). */
  trace?: string;
}

export function requestIds(req: IncomingMessage, gcpProject: string): RequestIds {
  const given = req.headers['x-request-id'];
  const requestId = typeof given === 'string' && SANE_ID.test(given) ? given : randomUUID();
  const context = req.headers['x-cloud-trace-context'];
  const traceId = typeof context === 'string' ? TRACE.exec(context)?.[1]?.toLowerCase() : undefined;
  if (traceId === undefined) return { requestId };
  return { requestId, trace: gcpProject === '' ? traceId : `projects/${gcpProject}/traces/${traceId}` };
}

/** The fields a structured log line carries for these ids. */
export function logFields(ids: RequestIds): Record<string, string> {
  return ids.trace === undefined ? { requestId: ids.requestId } : { requestId: ids.requestId, 'logging.googleapis.com/trace': ids.trace };
}
