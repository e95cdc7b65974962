/**
 * Pub/Sub push deliveries: decoding the wrapped push body, and the HTTP handler of the `push`
 * function. Bus signals travel on the same topic and are acknowledged and skipped. The emulator does not put the ordering key in the body, so everything a consumer
 * needs travels in the message: attributes `scope` and `ii`, data = the PatchEvent as JSON.
 *
 * Responses follow Pub/Sub's rules: 2xx acknowledges (handled, or a duplicate), anything else is
 * redelivered later (a failed handler, a gap the log cannot fill yet). A body that is not a push
 * delivery at all is 400: with a dead-letter topic on the subscription it ends there.
 * Callers are authenticated by the platform (push subscription with a service account, function
 * deployed without unauthenticated access; see docs/deploy.md) and, with PATCHBAY_OIDC on, again
 * here by their OIDC token (internal-auth.ts), before the body is read: a refused delivery is
 * 401 and handles nothing, so the consumer's cursor does not move.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { LimitsConfig } from '../config.js';
import type { Consumer } from '../engine/consumer.js';
import { PatchbayError } from '../errors.js';
import type { Logger } from '../log.js';
import { type PatchEvent, patchSchema, SCOPE_ID } from '../protocol.js';
import { type BodyRequest, readJson } from './body.js';
import { type InternalAuth, refusalFields } from './internal-auth.js';
import type { ExchangeConfig } from './respond.js';
import { begin, logRequest, sendError } from './respond.js';
import { requestUrl } from './router.js';

const pushBody = z.object({
  message: z.object({
    data: z.string().min(1),
    attributes: z.record(z.string(), z.string()).optional(),
    messageId: z.string().optional(),
  }),
  subscription: z.string().optional(),
});

const eventSchema = z.strictObject({
  scope: z.string().regex(SCOPE_ID),
  ii: z.number().int().min(1),
  patch: patchSchema,
  at: z.number(),
  by: z.string(),
});

/**
 * The PatchEvent in a push delivery, or null for a bus signal (attribute `signal`: the scope's
 * access changed...), which consumers acknowledge and skip; throws `invalid_request` for anything else.
 */
export function decodePush(body: unknown): PatchEvent | null {
  const wrapped = pushBody.safeParse(body);
  if (!wrapped.success)
    throw new PatchbayError('invalid_request', 'not a Pub/Sub push delivery', {
      issues: wrapped.error.issues.map((i) => ({ path: i.path, message: i.message })),
    });
  if (wrapped.data.message.attributes?.signal !== undefined) return null;
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(wrapped.data.message.data, 'base64').toString('utf8'));
  } catch {
    throw new PatchbayError('invalid_request', 'message data is not base64 JSON');
  }
  const event = eventSchema.safeParse(data);
  if (!event.success)
    throw new PatchbayError('invalid_request', 'message data is not a patch event', {
      issues: event.error.issues.map((i) => ({ path: i.path, message: i.message })),
    });
  const attrs = wrapped.data.message.attributes ?? {};
  if ((attrs.scope !== undefined && attrs.scope !== event.data.scope) || (attrs.ii !== undefined && attrs.ii !== String(event.data.ii))) {
    throw new PatchbayError('invalid_request', 'message attributes disagree with its data');
  }
  return event.data as PatchEvent;
}

/** A push endpoint that is not a patch consumer (`uploads`: Cloud Storage notifications); answers what the log line records. */
export type PushEndpoint = (body: unknown) => Promise<Record<string, unknown>>;

/**
 * `POST /<consumer>` (or `/push/<consumer>`): one push delivery for that consumer, or for one of
 * `endpoints` (deliveries that are not patch events), checked the same way.
 */
export function createPushHandler(
  consumers: Consumer[],
  internal: InternalAuth,
  logger: Logger,
  config: ExchangeConfig & Pick<LimitsConfig, 'maxBodyBytes'>,
  endpoints: Record<string, PushEndpoint> = {},
) {
  const byName = new Map(consumers.map((c) => [c.name, c]));
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const x = begin(req, res, config, logger);
    let name: string | undefined;
    let status = 204;
    let entry: Record<string, unknown> = {};
    try {
      name = /^\/(?:push\/)?([A-Za-z0-9_.-]+)\/?$/.exec(requestUrl(req.url).pathname)?.[1];
      await internal.check(req, `push/${name ?? ''}`);
      if (req.method !== 'POST') throw new PatchbayError('method_not_allowed', 'push deliveries are POSTs', { allow: ['POST'] });
      const endpoint = name === undefined ? undefined : endpoints[name];
      const consumer = name === undefined ? undefined : byName.get(name);
      if (endpoint && Object.hasOwn(endpoints, name as string)) {
        entry = await endpoint(await readJson(req as BodyRequest, config.maxBodyBytes, config.bodyTimeoutMs));
        res.writeHead(204);
        res.end();
        return;
      }
      if (!consumer) throw new PatchbayError('not_found', `no consumer named ${name}`);
      const event = decodePush(await readJson(req as BodyRequest, config.maxBodyBytes, config.bodyTimeoutMs));
      if (event === null) entry = { signal: true };
      else entry = { scope: event.scope, ii: event.ii, ...(await consumer.deliver(event)) };
      res.writeHead(204);
      res.end();
    } catch (err) {
      status = await sendError(x, err, { route: 'push', consumer: name });
      entry = { ...entry, ...refusalFields(err) };
    } finally {
      logRequest(x, status, { message: `push ${name} ${status}`, route: 'push', consumer: name, ...entry });
    }
  };
}
