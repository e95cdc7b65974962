/**
 * A development stand-in for Upstash Redis: an HTTP server speaking the Upstash REST protocol (as
 * `@upstash/redis` 1.39 uses it) in front of a real redis-server. No Upstash server can be
 * installed locally, so `npm run dev:cloud` and the tests put this in front of `redis-server`.
 *
 * The protocol it speaks:
 * - `POST /` with a JSON array command (`["SET", "k", "v"]`) → `200 {"result": ...}`; a Redis
 *   error → `400 {"error": "ERR ..."}`; Redis unreachable → `502 {"error": ...}`.
 * - `POST /pipeline` and `POST /multi-exec` with an array of commands → `200 [{"result"}|{"error"}]`.
 *   `/multi-exec` is atomic (MULTI/EXEC): no other client's command runs between its commands; a
 *   command refused while queueing (unknown command, wrong arity) discards the whole transaction
 *   (`400 {"error": "EXECABORT ..."}`), as Redis does.
 * - `GET|POST /COMMAND/arg1/arg2` (path form, for curl): a POST body is appended as the last argument.
 * - `Authorization: Bearer TOKEN` (or `?_token=TOKEN`), otherwise `401 {"error": "Unauthorized"}`.
 * - `Upstash-Encoding: base64`: every string in a result is base64 of its bytes, except a whole
 *   result of `OK` (inside arrays the client decodes every string, so there `OK` is encoded too);
 *   integers stay numbers, nil is `null`, arrays recurse. Without it strings are UTF-8 text.
 *
 * Binary safety: arguments go to Redis as Buffers and replies come back as Buffers (ioredis
 * `callBuffer`), so base64 results carry the exact bytes. Command names are sent upper case, which
 * also keeps ioredis's reply transformers (keyed by lower-case names, e.g. `hgetall`) out of the way.
 *
 * Not supported: subscribe (`/subscribe/...` answers 501; patchbay's bus is Pub/Sub, not Redis) and
 * commands that would change the state of the one shared connection (SELECT, MULTI, WATCH, ...).
 * Blocking commands (BLPOP...) work but hold that connection, and so every other request, while they wait.
 *
 * Run it: `node dist/infra/local/upstash-gateway.js --redis-url redis://127.0.0.1:6379 --port 8079 --token dev-token`
 * (or UPSTASH_GATEWAY_REDIS_URL, UPSTASH_GATEWAY_PORT, UPSTASH_GATEWAY_HOST, UPSTASH_REDIS_REST_TOKEN).
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { exitOnSignal } from '../../shared/http/listen.js';
import { runIfMain } from './proc.js';

export interface GatewayOptions {
  /** e.g. `redis://127.0.0.1:6379`. */
  redisUrl: string;
  /** 0 picks a free port (see the returned url). */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The bearer token clients must send. */
  token: string;
  /** Largest request body; larger is refused with 413. Default 64 MiB. */
  maxBodyBytes?: number;
}

export interface Gateway {
  /** `http://host:port`: what `new Redis({ url })` of `@upstash/redis` takes. */
  url: string;
  close(): Promise<void>;
}

type Arg = string | number | boolean;
type WireValue = null | number | string | WireValue[];
type Item = { result: WireValue } | { error: string };

/** Commands that would change the state of the shared connection, or take it over. */
const REFUSED = new Set([
  'SUBSCRIBE',
  'PSUBSCRIBE',
  'SSUBSCRIBE',
  'UNSUBSCRIBE',
  'PUNSUBSCRIBE',
  'SUNSUBSCRIBE',
  'MONITOR',
  'SYNC',
  'PSYNC',
  'QUIT',
  'RESET',
  'SELECT',
  'SWAPDB',
  'MULTI',
  'EXEC',
  'DISCARD',
  'WATCH',
  'UNWATCH',
  'HELLO',
  'AUTH',
  'CLIENT',
]);

/** A request we refuse before Redis sees it; `status` is the HTTP status of a single command. */
class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Command {
  name: string;
  args: Buffer[];
}

function toCommand(value: unknown): Command {
  if (!Array.isArray(value) || value.length === 0) throw new RequestError(400, 'ERR a command is a non-empty JSON array');
  const parts: Buffer[] = [];
  for (const v of value as unknown[]) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new RequestError(400, 'ERR command arguments must be strings, numbers or booleans');
    }
    parts.push(Buffer.from(String(v as Arg), 'utf8'));
  }
  const name = (parts.shift() as Buffer).toString('utf8').toUpperCase();
  if (REFUSED.has(name)) throw new RequestError(400, `ERR command ${name} is not supported by this gateway`);
  return { name, args: parts };
}

const OK = Buffer.from('OK');

/**
 * A RESP2 reply (Buffers from ioredis's callBuffer) as Upstash sends it. `OK` stays literal only as
 * a whole result: inside arrays @upstash/redis base64-decodes every string, `OK` included.
 */
function toWire(reply: unknown, base64: boolean, nested = false): WireValue {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === 'number') return reply;
  if (Buffer.isBuffer(reply)) {
    if (!nested && reply.equals(OK)) return 'OK';
    return reply.toString(base64 ? 'base64' : 'utf8');
  }
  if (typeof reply === 'string') return toWire(Buffer.from(reply, 'utf8'), base64, nested);
  if (Array.isArray(reply)) return reply.map((r) => toWire(r, base64, true));
  if (reply instanceof Error) return reply.message; // an error nested in an array (e.g. a Lua table)
  return String(reply);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A Redis error reply (the command ran and Redis refused it), as opposed to a connection failure. */
function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

function tokenMatches(given: string | undefined, expected: Buffer): boolean {
  if (given === undefined) return false;
  const g = Buffer.from(given, 'utf8');
  return g.length === expected.length && timingSafeEqual(g, expected);
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new RequestError(413, `ERR request body larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startUpstashGateway(opts: GatewayOptions): Promise<Gateway> {
  const host = opts.host ?? '127.0.0.1';
  const maxBody = opts.maxBodyBytes ?? 64 * 1024 * 1024;
  const expected = Buffer.from(opts.token, 'utf8');
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  let lastRedisError = '';
  redis.on('error', (err: Error) => {
    lastRedisError = err.message; // reported through the failing requests; keeps ioredis from logging
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect(); // or ioredis keeps reconnecting in the background
    throw new Error(`cannot reach redis at ${opts.redisUrl}: ${errorMessage(err)}`);
  }

  const run = (c: Command): Promise<unknown> => redis.callBuffer(c.name, ...c.args);

  const single = async (c: Command, base64: boolean): Promise<[number, unknown]> => {
    try {
      return [200, { result: toWire(await run(c), base64) }];
    } catch (err) {
      return [isReplyError(err) ? 400 : 502, { error: errorMessage(err) || lastRedisError }];
    }
  };

  const pipeline = async (cmds: Command[], base64: boolean): Promise<Item[]> => {
    // Sent in one tick, so they go out back to back on the one connection, in order.
    const settled = await Promise.allSettled(cmds.map(run));
    return settled.map((s) => (s.status === 'fulfilled' ? { result: toWire(s.value, base64) } : { error: errorMessage(s.reason) }));
  };

  const multiExec = async (cmds: Command[], base64: boolean): Promise<[number, unknown]> => {
    const tx = redis.multi();
    for (const c of cmds) tx.callBuffer(c.name, ...c.args);
    try {
      const out = await tx.exec();
      if (out === null) return [400, { error: 'EXECABORT transaction aborted' }];
      return [200, out.map(([err, value]): Item => (err ? { error: err.message } : { result: toWire(value, base64) }))];
    } catch (err) {
      // EXECABORT: a command was refused while queueing; name the first reason.
      const previous = (err as { previousErrors?: Error[] }).previousErrors ?? [];
      const reason = previous.find((e) => e.message && !e.message.startsWith('EXECABORT'));
      const message = errorMessage(err) + (reason ? ` (${reason.message})` : '');
      return [isReplyError(err) ? 400 : 502, { error: message }];
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const auth = req.headers.authorization;
    const bearer = auth?.startsWith('Bearer ') ? auth.slice(7) : (url.searchParams.get('_token') ?? undefined);
    if (!tokenMatches(bearer, expected)) return send(res, 401, { error: 'Unauthorized' });
    if (req.method !== 'POST' && req.method !== 'GET') return send(res, 405, { error: `method ${req.method} not allowed` });
    const base64 = String(req.headers['upstash-encoding'] ?? '').toLowerCase() === 'base64';
    const body = await readBody(req, maxBody);
    const path = url.pathname.replace(/\/+$/, '');

    if (path === '' || path === '/pipeline' || path === '/multi-exec') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        throw new RequestError(400, 'ERR the request body is not JSON');
      }
      if (path === '') {
        const [status, out] = await single(toCommand(parsed), base64);
        return send(res, status, out);
      }
      if (!Array.isArray(parsed) || parsed.length === 0) throw new RequestError(400, 'ERR expected a non-empty JSON array of commands');
      const cmds = parsed.map(toCommand);
      if (path === '/pipeline') return send(res, 200, await pipeline(cmds, base64));
      const [status, out] = await multiExec(cmds, base64);
      return send(res, status, out);
    }

    const segments = path.slice(1).split('/').map(decodeURIComponent);
    if (segments[0] === 'subscribe' || segments[0] === 'psubscribe') throw new RequestError(501, 'ERR subscribe is not supported by this gateway');
    const c = toCommand(segments);
    if (body.length > 0) c.args.push(body); // the body is the last argument, byte for byte
    for (const [k, v] of url.searchParams) {
      if (k === '_token') continue;
      c.args.push(Buffer.from(k, 'utf8'));
      if (v !== '') c.args.push(Buffer.from(v, 'utf8'));
    }
    const [status, out] = await single(c, base64);
    return send(res, status, out);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof RequestError) send(res, err.status, { error: err.message });
      else send(res, 500, { error: errorMessage(err) });
    });
  });
  server.keepAliveTimeout = 30_000;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    close: async () => {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** `node dist/infra/local/upstash-gateway.js [--redis-url URL] [--port N] [--host H] [--token T]` */
async function main(): Promise<void> {
  const env = process.env;
  const { values } = parseArgs({
    options: {
      'redis-url': { type: 'string', default: env.UPSTASH_GATEWAY_REDIS_URL ?? 'redis://127.0.0.1:6379' },
      port: { type: 'string', default: env.UPSTASH_GATEWAY_PORT ?? '8079' },
      host: { type: 'string', default: env.UPSTASH_GATEWAY_HOST ?? '127.0.0.1' },
      token: { type: 'string', default: env.UPSTASH_REDIS_REST_TOKEN ?? 'dev-token' },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port / UPSTASH_GATEWAY_PORT: not a port: ${values.port}`);
  const gw = await startUpstashGateway({ redisUrl: values['redis-url'], port, host: values.host, token: values.token });
  // The first line is the url alone, so scripts can read it.
  process.stdout.write(`${gw.url}\n`);
  process.stdout.write(`upstash gateway for ${values['redis-url']}: UPSTASH_REDIS_REST_URL=${gw.url} UPSTASH_REDIS_REST_TOKEN=${values.token}\n`);
  exitOnSignal(gw.close);
}

runIfMain(import.meta.url, 'upstash gateway', main);
