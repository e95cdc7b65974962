/**
 * The v1 HTTP API as one Node request handler: `(req, res) => Promise<void>`. The same function is
 * the Cloud Function (functions/index.ts, via the Functions Framework, whose Express request
 * carries `rawBody`) and what `npm start` serves with a plain `http.Server`.
 *
 * Every response is JSON (or SSE / NDJSON where the contract says so); every error body is
 * `{"error": {"code", "message", ...}}`, its status taken from the error table in errors.ts.
 * The handler enforces its own body limit: the Functions Framework accepts up to 1 GB.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import type { Config } from '../config.js';
import type { Engine, ScopeView } from '../engine/engine.js';
import { asPatchbayError, PatchbayError } from '../errors.js';
import { findProtoKey, jsonDepth } from '../json.js';
import type { Logger } from '../log.js';
import { createScopeSchema, patchRequestSchema, SCOPE_ID } from '../protocol.js';
import { parseJsonBody } from '../strict-json.js';
import type { Auth, User } from './auth.js';
import { drained, patchFrame, SseWriter } from './sse.js';

type Req = IncomingMessage & { rawBody?: Buffer };

interface Ctx {
  req: Req;
  res: ServerResponse;
  url: URL;
  params: string[];
  /** Filled in by handlers for the request log. */
  log: { scope?: string; ii?: number };
}

interface Route {
  method: string;
  pattern: RegExp;
  name: string;
  run: (ctx: Ctx) => Promise<void>;
}

export interface HandlerDeps {
  engine: Engine;
  auth: Auth;
  config: Config;
  logger: Logger;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export function createHandler({ engine, auth, config, logger }: HandlerDeps): Handler {
  const send = (ctx: Ctx, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    ctx.res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
    ctx.res.end(text);
  };

  const scopeId = (ctx: Ctx): string => {
    let id: string;
    try {
      id = decodeURIComponent(ctx.params[0] as string);
    } catch {
      id = '';
    }
    if (!SCOPE_ID.test(id)) {
      throw new PatchbayError('invalid_request', 'a scope id matches [A-Za-z0-9_.:-]{1,128}', { issues: [{ path: ['id'], message: 'invalid scope id' }] });
    }
    ctx.log.scope = id;
    return id;
  };

  const user = (ctx: Ctx): Promise<User> => auth.fromHeader(ctx.req.headers.authorization);

  const body = async <T>(ctx: Ctx, schema: z.ZodType<T>): Promise<T> => {
    const raw = await readJson(ctx.req, config.maxBodyBytes);
    // A coarse guard before zod, whose JSON check recurses: a 4 KB body nested 5,000 deep would
    // overflow the stack. The exact depth checks (which name the op) run after parsing.
    const guard = config.maxValueDepth + 100;
    if (jsonDepth(raw, guard) > guard) {
      throw new PatchbayError('too_large', `JSON values may nest at most ${config.maxValueDepth} levels deep`, {
        limit: 'maxValueDepth',
        max: config.maxValueDepth,
      });
    }
    const proto = findProtoKey(raw, guard);
    if (proto) {
      throw new PatchbayError('invalid_request', 'JSON members named "__proto__" are not accepted', {
        issues: [{ path: proto, message: 'member "__proto__" is not accepted' }],
      });
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      throw new PatchbayError('invalid_request', 'the request body does not match the schema', {
        issues: parsed.error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), message: i.message })),
      });
    }
    return parsed.data;
  };

  const scopeBody = (v: ScopeView) => ({ id: v.id, ii: v.ii, state: v.state, meta: { ...v.meta, ii: v.ii } });

  const routes: Route[] = [
    {
      method: 'POST',
      pattern: /^\/v1\/auth\/anonymous$/,
      name: 'auth.anonymous',
      run: async (ctx) => send(ctx, 200, await auth.issueAnonymous()),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/scopes$/,
      name: 'scopes.create',
      run: async (ctx) => {
        const u = await user(ctx);
        const req = await body(ctx, createScopeSchema);
        const view = await engine.createScope(u.id, req);
        ctx.log.scope = view.id;
        ctx.log.ii = 0;
        send(ctx, 201, scopeBody(view), { etag: '"0"', location: `/v1/scopes/${encodeURIComponent(view.id)}` });
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/scopes\/([^/]+)$/,
      name: 'scopes.get',
      run: async (ctx) => {
        const id = scopeId(ctx);
        await user(ctx);
        const head = await engine.head(id);
        const etag = `"${head.ii}"`;
        ctx.log.ii = head.ii;
        if (etagMatches(ctx.req.headers['if-none-match'], etag)) {
          ctx.res.writeHead(304, { etag });
          ctx.res.end();
          return;
        }
        const state = await engine.stateAt(id, head.ii, { trimmed: head.trimmed });
        send(ctx, 200, scopeBody({ id, ii: head.ii, state, meta: head.meta }), { etag });
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/scopes\/([^/]+)\/patches$/,
      name: 'patches.submit',
      run: async (ctx) => {
        const id = scopeId(ctx);
        const u = await user(ctx);
        const req = await body(ctx, patchRequestSchema);
        const ack = await engine.submit(id, u.id, req);
        ctx.log.ii = ack.ii;
        send(ctx, 200, ack);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/scopes\/([^/]+)\/patches$/,
      name: 'patches.history',
      run: async (ctx) => {
        const id = scopeId(ctx);
        await user(ctx);
        const from = intParam(ctx.url, 'from') ?? 1;
        const to = intParam(ctx.url, 'to');
        const records = await engine.history(id, from, to);
        ctx.res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-cache' });
        for await (const r of records) {
          const line = `${JSON.stringify({ ii: r.ii, patch: r.patch, at: r.at, by: r.by })}\n`;
          if (!ctx.res.write(line)) await drained(ctx.res);
          if (ctx.res.destroyed) return;
        }
        ctx.res.end();
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/scopes\/([^/]+)\/events\/ticket$/,
      name: 'events.ticket',
      run: async (ctx) => {
        const id = scopeId(ctx);
        const u = await user(ctx);
        await engine.head(id);
        send(ctx, 200, await auth.issueTicket(u, id));
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/scopes\/([^/]+)\/events$/,
      name: 'events.stream',
      run: (ctx) => stream(ctx),
    },
    {
      method: 'GET',
      pattern: /^\/healthz$/,
      name: 'health',
      run: async (ctx) => send(ctx, 200, { ok: true }),
    },
  ];

  const stream = async (ctx: Ctx) => {
    const id = scopeId(ctx);
    const lastEventId = ctx.req.headers['last-event-id'];
    const reconnect = typeof lastEventId === 'string' && lastEventId !== '';
    const ticket = ctx.url.searchParams.get('ticket');
    // A browser's EventSource reconnects with the URL it opened, so a reconnect (Last-Event-ID set)
    // may bring a ticket that expired during the stream it resumes: accept it for one stream's length.
    if (ticket !== null) await auth.fromTicket(ticket, id, reconnect ? Math.ceil(config.sseMaxMs / 1000) : 0);
    else await user(ctx);
    const since = reconnect ? parseIndex(lastEventId, 'Last-Event-ID') : intParam(ctx.url, 'since');

    const sse = new SseWriter(ctx.res);
    // Listen for the client leaving before anything is sent: a client that hangs up during
    // catch-up must stop the catch-up and release its subscription.
    let gone = false;
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    ctx.res.once('close', () => {
      gone = true;
      finish();
    });
    const send = async (type: string, data: string, ii: number) => {
      if (gone) throw new ClientGone();
      sse.start(config.sseRetryMs);
      await sse.event(type, data, ii);
    };
    let stop: () => Promise<void>;
    try {
      stop = await engine.openStream(id, since, {
        state: (ii, state) => send('state', JSON.stringify({ ii, state }), ii),
        // Live patches are written within the bus's dispatch: one frame per event for every
        // stream (patchFrame), and a promise only when this socket's buffer is full.
        patch: (e) => {
          if (gone) throw new ClientGone();
          sse.start(config.sseRetryMs);
          return sse.frame(patchFrame(e));
        },
        failed: () => finish(), // end with a retry hint: the client resumes from its last id
      });
    } catch (err) {
      if (err instanceof ClientGone) return;
      throw err;
    }
    sse.start(config.sseRetryMs);
    const heartbeat = setInterval(() => void sse.comment('hb'), config.sseHeartbeatMs);
    let limit: NodeJS.Timeout | undefined;
    await Promise.race([finished, new Promise<void>((resolve) => (limit = setTimeout(resolve, config.sseMaxMs)))]);
    clearTimeout(limit);
    clearInterval(heartbeat);
    await stop();
    sse.end(config.sseRetryMs);
  };

  return async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const ctx: Ctx = { req: req as Req, res, url: new URL('http://local/'), params: [], log: {} };
    let routeName = 'unmatched';
    if (config.corsOrigin !== '') {
      res.setHeader('access-control-allow-origin', config.corsOrigin);
      res.setHeader('access-control-expose-headers', 'ETag, Location');
    }
    try {
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          'access-control-allow-methods': 'GET, POST, OPTIONS',
          'access-control-allow-headers': 'Authorization, Content-Type, If-None-Match, Last-Event-ID',
          'access-control-max-age': '600',
        });
        res.end();
        return;
      }
      ctx.url = requestUrl(req.url);
      const path = ctx.url.pathname;
      const matching = routes.filter((r) => r.pattern.test(path));
      const route = matching.find((r) => r.method === req.method);
      if (!route) {
        if (matching.length > 0) {
          throw new PatchbayError('method_not_allowed', `${req.method} is not allowed here`, { allow: matching.map((r) => r.method) });
        }
        throw new PatchbayError('not_found', `no route for ${path}`);
      }
      routeName = route.name;
      ctx.params = (route.pattern.exec(path) as RegExpExecArray).slice(1);
      await route.run(ctx);
    } catch (err) {
      const e = asPatchbayError(err);
      if (e.code === 'internal' || (e.code === 'unavailable' && !(err instanceof PatchbayError))) {
        logger.error({
          message: e.code === 'internal' ? 'unhandled error' : 'backend failure',
          route: routeName,
          err: err instanceof Error ? err.stack : String(err),
        });
      }
      if (!res.headersSent) {
        const headers: Record<string, string> = e.code === 'method_not_allowed' ? { allow: (e.details.allow as string[]).join(', ') } : {};
        if (e.code === 'too_large' && e.details.limit === 'maxBodyBytes') headers.connection = 'close';
        send(ctx, e.status, e.toBody(), headers);
      } else {
        res.destroy();
      }
    } finally {
      const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
      logger.request({
        message: `${req.method} ${routeName} ${res.statusCode}`,
        method: req.method,
        route: routeName,
        scope: ctx.log.scope,
        ii: ctx.log.ii,
        status: res.statusCode,
        latencyMs: Math.round(latencyMs * 100) / 100,
        httpRequest: { requestMethod: req.method, requestUrl: redact(req.url), status: res.statusCode, latency: `${(latencyMs / 1000).toFixed(6)}s` },
      });
    }
  };
}

/** Thrown into a stream's catch-up when its client has gone, to stop it. */
class ClientGone extends Error {}

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

/** A request URL fit for logs: stream tickets are credentials. */
function redact(url: string | undefined): string | undefined {
  return url?.replace(/([?&]ticket=)[^&]*/g, '$1REDACTED');
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

function parseIndex(raw: string, name: string): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new PatchbayError('invalid_request', `${name} must be a non-negative integer`, { issues: [{ path: [name], message: 'not a non-negative integer' }] });
  }
  return Number(raw);
}

function intParam(url: URL, name: string): number | undefined {
  const raw = url.searchParams.get(name);
  return raw === null ? undefined : parseIndex(raw, name);
}

/** Reads and parses a JSON body, enforcing the content type and the size limit. */
export async function readJson(req: Req, limit: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new PatchbayError('unsupported_media_type', 'send Content-Type: application/json');
  const tooLarge = (actual?: number) =>
    new PatchbayError('too_large', `a request body may be at most ${limit} bytes`, {
      limit: 'maxBodyBytes',
      max: limit,
      ...(actual === undefined ? {} : { actual }),
    });
  let buf: Buffer;
  if (Buffer.isBuffer(req.rawBody)) {
    buf = req.rawBody;
    if (buf.length > limit) throw tooLarge(buf.length);
  } else {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) throw tooLarge(declared);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > limit) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
    buf = Buffer.concat(chunks);
  }
  return parseJsonBody(buf);
}
