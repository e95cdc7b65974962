/**
 * Request bodies: reading one (content type, the body size limit) and parsing it into a request
 * type (a coarse nesting guard, no `__proto__` members, the zod schema). Every failure is a coded
 * error: 415 `unsupported_media_type`, 413 `too_large`, 400 `invalid_request` with `issues`.
 * The reader enforces the limit itself: the Functions Framework accepts bodies up to 1 GB.
 */
import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import type { Config } from '../config.js';
import { PatchbayError } from '../errors.js';
import { findProtoKey, jsonDepth } from '../json.js';
import { parseJsonBody } from '../strict-json.js';

/** A request; behind the Functions Framework, the body has already been read into `rawBody`. */
export type BodyRequest = IncomingMessage & { rawBody?: Buffer };

/**
 * Reads and parses a JSON body, enforcing the content type, the size limit and (when `timeoutMs`
 * is set) the time the body may take. Past the limit it stops reading and leaves the rest unread
 * (sendError reads and drops it, bounded, before answering); a client that hangs up is ClientClosed.
 */
export async function readJson(req: BodyRequest, limit: number, timeoutMs = 0): Promise<unknown> {
  if (contentType(req) !== 'application/json') throw new PatchbayError('unsupported_media_type', 'send Content-Type: application/json');
  return parseJsonBody(await readRaw(req, limit, timeoutMs, 'maxBodyBytes'));
}

/** The request's media type, lower case, without parameters ('' when absent). */
export function contentType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/**
 * Reads a whole body of at most `limit` bytes (413 `too_large` naming the limit `limitName`
 * past it, the rest left unread; 408 past `timeoutMs`; ClientClosed when the client hangs up).
 */
export async function readRaw(req: BodyRequest, limit: number, timeoutMs: number, limitName: string): Promise<Buffer> {
  const tooLarge = (actual?: number) =>
    new PatchbayError('too_large', `a request body may be at most ${limit} bytes`, {
      limit: limitName,
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
    const outcome = await readUpTo(req, limit, timeoutMs, (chunk) => chunks.push(chunk));
    if (outcome === 'over') throw tooLarge();
    if (outcome === 'timeout') throw bodyTimeout(timeoutMs);
    if (outcome === 'closed') throw new ClientClosed();
    buf = Buffer.concat(chunks);
  }
  return buf;
}

/** Reads a JSON body and checks it against a request schema. */
export async function readBody<T>(
  req: BodyRequest,
  schema: z.ZodType<T>,
  config: Pick<Config, 'maxBodyBytes' | 'maxValueDepth' | 'bodyTimeoutMs'>,
): Promise<T> {
  const raw = await readJson(req, config.maxBodyBytes, config.bodyTimeoutMs);
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
  return parseWith(schema, raw, 'the request body');
}

/** `raw` as `schema` has it, or 400 `invalid_request` listing the issues; `what` names it in the message. */
export function parseWith<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new PatchbayError('invalid_request', `${what} does not match the schema`, {
      issues: parsed.error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), message: i.message })),
    });
  }
  return parsed.data;
}

/** The client hung up before its request was complete: there is nobody to answer (logged as 499). */
export class ClientClosed extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientClosed';
  }
}

export function bodyTimeout(timeoutMs: number): PatchbayError {
  return new PatchbayError('request_timeout', `the request body did not arrive within ${timeoutMs} ms`, { timeoutMs });
}

/** How reading a body ended: all of it, more than the bound, out of time, or the client gone. */
export type ReadOutcome = 'end' | 'over' | 'timeout' | 'closed';

/**
 * Reads the rest of a request body, handing each chunk to `onChunk`, until it ends, passes `max`
 * bytes (the chunk that passes is not handed over), takes longer than `timeoutMs` (0: no limit)
 * or the client leaves. It stops without destroying the request: the response can still be sent.
 */
export function readUpTo(req: IncomingMessage, max: number, timeoutMs: number, onChunk: (chunk: Buffer) => void): Promise<ReadOutcome> {
  if (req.complete && req.readableEnded) return Promise.resolve('end');
  if (req.destroyed) return Promise.resolve('closed');
  return new Promise((resolve) => {
    let size = 0;
    const done = (outcome: ReadOutcome) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onClose).off('close', onClose);
      if (outcome !== 'end') req.pause();
      resolve(outcome);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) done('over');
      else onChunk(chunk);
    };
    const onEnd = () => done('end');
    const onClose = () => done('closed');
    const timer = timeoutMs > 0 ? setTimeout(() => done('timeout'), timeoutMs) : undefined;
    req.on('data', onData).on('end', onEnd).on('error', onClose).on('close', onClose);
    req.resume();
  });
}
