/**
 * The transport floor: a bare server of the same v1 contract on the same HTTP stack (node:http,
 * the same JSON bodies and SSE framing, an HS256 bearer token verified with jose on every request
 * as patchbay does), with no persistence and no engine: no zod, no patch application, no ledger,
 * no cache, no queue. A patch is answered with the scope's next ii, appended as its SSE frame to
 * an in-memory log, and written to every open stream of the scope. What patchbay costs above this
 * is what the service costs above the transport.
 *
 * Routes: POST /v1/auth/anonymous, POST /v1/scopes, POST /v1/scopes/{id}/patches (ii checked),
 * GET /v1/scopes/{id}/events (state then live, or ?since=n: the log from n+1 then live),
 * GET /healthz, and for the bench only POST /bench/seed {id, n}: a scope of n patches (catch-up).
 *
 * Run: node dist/bench/floor.js (prints {"port": N} when listening on 127.0.0.1).
 */

import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import { LONG_INITIAL, longPatch } from './patches.js';

const SECRET = new TextEncoder().encode('bench-floor-secret-bench-floor-secret!!');
const MAX_BODY = 1024 * 1024;

interface Scope {
  owner: string;
  state: unknown;
  /** SSE frames of patches 1..ii (index i-1). */
  frames: string[];
  streams: Set<ServerResponse>;
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
  const m = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(req.headers.authorization?.trim() ?? '');
  if (!m) throw new HttpError(401, 'unauthorized', 'send Authorization: Bearer <token>');
  try {
    const { payload } = await jwtVerify(m[1] as string, SECRET, { issuer: 'patchbay', audience: 'patchbay', algorithms: ['HS256'] });
    return payload.sub as string;
  } catch (err) {
    throw new HttpError(401, 'unauthorized', `invalid credential: ${String(err)}`);
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if ((req.headers['content-type'] ?? '').split(';')[0]?.trim() !== 'application/json') throw new HttpError(415, 'unsupported_media_type', 'send JSON');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'too_large', 'body too large');
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_request', 'the body is not valid JSON');
  }
}

function scope(id: string): Scope {
  const s = scopes.get(id);
  if (!s) throw new HttpError(404, 'scope_not_found', `scope ${id} does not exist`);
  return s;
}

const frame = (type: string, ii: number, data: string) => `event: ${type}\nid: ${ii}\ndata: ${data}\n\n`;

function append(s: Scope, patch: unknown, by: string): number {
  const ii = s.frames.length + 1;
  const f = frame('patch', ii, JSON.stringify({ ii, patch, at: Date.now(), by }));
  s.frames.push(f);
  for (const r of s.streams) r.write(f);
  return ii;
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(`http://local${req.url ?? '/'}`);
  const path = url.pathname;
  const patches = /^\/v1\/scopes\/([^/]+)\/patches$/.exec(path);
  const events = /^\/v1\/scopes\/([^/]+)\/events$/.exec(path);
  if (req.method === 'POST' && path === '/v1/auth/anonymous') {
    const id = `anon:${randomUUID()}`;
    const token = await new SignJWT({ anon: true })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(id)
      .setIssuer('patchbay')
      .setAudience('patchbay')
      .setIssuedAt()
      .setExpirationTime('1d')
      .sign(SECRET);
    return send(res, 200, { token, user: { id, anonymous: true } });
  }
  if (req.method === 'POST' && path === '/v1/scopes') {
    const owner = await user(req);
    const body = await readJson(req);
    const id = typeof body.id === 'string' ? body.id : randomUUID();
    if (scopes.has(id)) throw new HttpError(409, 'scope_exists', `scope ${id} already exists`);
    const state = body.state ?? {};
    scopes.set(id, { owner, state, frames: [], streams: new Set() });
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
    const next = s.frames.length + 1;
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
    if (since !== undefined && !(since >= 0 && since <= s.frames.length)) throw new HttpError(409, 'out_of_sync', 'past head', { head: s.frames.length });
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' });
    res.write('retry: 1000\n\n');
    if (since === undefined) {
      res.write(frame('state', s.frames.length, JSON.stringify({ ii: s.frames.length, state: s.state })));
    } else {
      // Catch up from the in-memory log, with back-pressure, before joining the live set.
      for (let i = since; i < s.frames.length; i++) {
        if (!res.write(s.frames[i] as string)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
        if (res.destroyed) return;
      }
    }
    s.streams.add(res);
    res.once('close', () => s.streams.delete(res));
    return;
  }
  if (req.method === 'POST' && path === '/bench/seed') {
    const body = await readJson(req);
    const id = String(body.id);
    const n = Number(body.n);
    const s: Scope = { owner: 'seed', state: LONG_INITIAL, frames: [], streams: new Set() };
    for (let i = 1; i <= n; i++) append(s, longPatch(i), 'seed');
    scopes.set(id, s);
    return send(res, 200, { id, ii: n });
  }
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
  throw new HttpError(404, 'not_found', `no route for ${path}`);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    const e = err instanceof HttpError ? err : new HttpError(500, 'internal', String(err));
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
