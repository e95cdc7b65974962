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

/** A request; behind the Functions Framework, the body has already been read into `rawBody`. */
export type BodyRequest = IncomingMessage & { rawBody?: Buffer };

/** Reads and parses a JSON body, enforcing the content type and the size limit. */
export async function readJson(req: BodyRequest, limit: number): Promise<unknown> {
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
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new PatchbayError('invalid_request', 'the body is not valid JSON', { issues: [{ path: [], message: 'invalid JSON' }] });
  }
}

/** Reads a JSON body and checks it against a request schema. */
export async function readBody<T>(req: BodyRequest, schema: z.ZodType<T>, config: Pick<Config, 'maxBodyBytes' | 'maxValueDepth'>): Promise<T> {
  const raw = await readJson(req, config.maxBodyBytes);
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
}
