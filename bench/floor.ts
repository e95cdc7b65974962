/**
 * The transport floor: a bare server of the same v1 contract on the same HTTP stack, with no
 * persistence and no engine. It uses patchbay's own pieces for what every request pays anyway:
 * node:http, the bearer-token check (`Auth` from shared/http/auth.ts, so the floor's auth cost
 * follows patchbay's), the body reader with its limit (`readJson` from shared/http/body.ts),
 * the JSON responses and the SSE framing (`SseWriter`, one write per event, with back-pressure).
 * What it leaves out is the service: no zod, no limits on patches, no patch application, no
 * ledger, no cache, no queue, no bus. A patch is answered with the scope's next ii, kept as its
 * event text in an in-memory log and written to every open stream of the scope. What patchbay
 * costs above this is what the service costs above the transport.
 *
 * Routes: POST /v1/auth/anonymous, POST /v1/scopes, POST /v1/scopes/{id}/patches (ii checked),
 * GET /v1/scopes/{id}/events (state then live, or ?since=n: the log from n+1 then live),
 * GET /healthz, and for the bench only POST /bench/seed {id, n}: a scope of n patches (catch-up).
 *
 * Run: node dist/bench/floor.js (prints {"port": N} when listening on 127.0.0.1).
 */

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { loadConfig } from '../shared/config.js';
import { PatchbayError } from '../shared/errors.js';
import { Auth } from '../shared/http/auth.js';
import { readJson as readBody } from '../shared/http/body.js';
import { SseWriter } from '../shared/http/sse.js';
import { LONG_INITIAL, longPatch } from './patches.js';

const config = loadConfig({}, { logLevel: 'off' });
const auth = new Auth(new TextEncoder().encode('bench-floor-secret-bench-floor-secret!!'), config);

interface Scope {
  owner: string;
  state: unknown;
  /** `data` of the SSE events of patches 1..ii (index i-1). */
  events: string[];
  streams: Set<SseWriter>;
}

const scopes = new Map<string, Scope>();

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

async function user(req: IncomingMessage): Promise<string> {
  return (await auth.fromHeader(req.headers.authorization)).id;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readBody(req, config.maxBodyBytes);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'invalid_request', 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

function scope(id: string): Scope {
  const s = scopes.get(id);
  if (!s) throw new HttpError(404, 'scope_not_found', `scope ${id} does not exist`);
  return s;
}

function append(s: Scope, patch: unknown, by: string): number {
  const ii = s.events.length + 1;
  const data = JSON.stringify({ ii, patch, at: Date.now(), by });
  s.events.push(data);
  for (const w of s.streams) void w.event('patch', data, ii);
  return ii;
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(`http://local${req.url ?? '/'}`);
  const path = url.pathname;
  const patches = /^\/v1\/scopes\/([^/]+)\/patches$/.exec(path);
  const events = /^\/v1\/scopes\/([^/]+)\/events$/.exec(path);
  if (req.method === 'POST' && path === '/v1/auth/anonymous') return send(res, 200, await auth.issueAnonymous());
  if (req.method === 'POST' && path === '/v1/scopes') {
    const owner = await user(req);
    const body = await readJson(req);
    const id = typeof body.id === 'string' ? body.id : randomUUID();
    if (scopes.has(id)) throw new HttpError(409, 'scope_exists', `scope ${id} already exists`);
    const state = body.state ?? {};
    scopes.set(id, { owner, state, events: [], streams: new Set() });
    const now = Date.now();
    return send(res, 201, { id, ii: 0, state, meta: { owner, domain: 'default', name: null, type: null, created: now, updated: now, size: 0, ii: 0 } });
  }
  if (req.method === 'POST' && patches) {
    const id = decodeURIComponent(patches[1] as string);
    const by = await user(req);
    const body = await readJson(req);
    const s = scope(id);
    if (s.owner !== by) throw new HttpError(403, 'forbidden', 'only the owner of a scope may patch it');
    if (!Array.isArray(body.patch)) throw new HttpError(400, 'invalid_request', 'patch must be an array');
    const next = s.events.length + 1;
    if (typeof body.ii === 'number' && body.ii > next) throw new HttpError(409, 'replay_required', 'ahead', { expected: next });
    if (typeof body.ii === 'number' && body.ii < next) throw new HttpError(409, 'out_of_sync', 'behind', { head: next - 1 });
    const ii = append(s, body.patch, by);
    return send(res, 200, { id, ii });
  }
  if (req.method === 'GET' && events) {
    const id = decodeURIComponent(events[1] as string);
    await user(req);
    const s = scope(id);
    const sinceRaw = url.searchParams.get('since');
    const since = sinceRaw === null ? undefined : Number(sinceRaw);
    if (since !== undefined && !(since >= 0 && since <= s.events.length)) throw new HttpError(409, 'out_of_sync', 'past head', { head: s.events.length });
    const sse = new SseWriter(res);
    sse.start(config.sseRetryMs);
    if (since === undefined) {
      await sse.event('state', JSON.stringify({ ii: s.events.length, state: s.state }), s.events.length);
    } else {
      // Catch up from the in-memory log (one write per event, with back-pressure, as patchbay does).
      for (let i = since; i < s.events.length && sse.open; i++) await sse.event('patch', s.events[i] as string, i + 1);
    }
    s.streams.add(sse);
    res.once('close', () => s.streams.delete(sse));
    return;
  }
  if (req.method === 'POST' && path === '/bench/seed') {
    const body = await readJson(req);
    const id = String(body.id);
    const n = Number(body.n);
    const s: Scope = { owner: 'seed', state: LONG_INITIAL, events: [], streams: new Set() };
    for (let i = 1; i <= n; i++) append(s, longPatch(i), 'seed');
    scopes.set(id, s);
    return send(res, 200, { id, ii: n });
  }
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
  throw new HttpError(404, 'not_found', `no route for ${path}`);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    const e =
      err instanceof HttpError
        ? err
        : err instanceof PatchbayError
          ? new HttpError(err.status, err.code, err.message)
          : new HttpError(500, 'internal', String(err));
    if (!res.headersSent) send(res, e.status, { error: { code: e.code, message: e.message, ...e.details } });
    else res.destroy();
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  console.log(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 }));
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
