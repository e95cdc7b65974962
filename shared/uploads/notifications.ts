/**
 * Cloud Storage's object notifications, as Pub/Sub push delivers them to `POST /push/uploads`
 * (the `push` function): the envelope's attributes name the event (`eventType`, `bucketId`,
 * `objectId`, `payloadFormat`) and, with `JSON_API_V1`, its data is the object's resource as the
 * JSON API has it (`name`, `size` as a string, `md5Hash`, `contentType`). Only `OBJECT_FINALIZE`
 * of an upload's object in the deployment's bucket means anything here: the upload has landed.
 * Everything else is acknowledged and ignored (a push that is refused would be redelivered).
 */
import { z } from 'zod';
import { PatchbayError } from '../errors.js';
import type { FileInfo } from '../ports/files.js';

const envelope = z.object({
  message: z.object({
    data: z.string().optional(),
    attributes: z.record(z.string(), z.string()).optional(),
    messageId: z.string().optional(),
  }),
  subscription: z.string().optional(),
});

const objectResource = z.object({
  name: z.string().min(1),
  bucket: z.string().min(1),
  size: z.union([z.string().regex(/^[0-9]+$/), z.number().int().min(0)]),
  md5Hash: z.string().optional(),
  contentType: z.string().optional(),
});

export interface Finalized {
  bucket: string;
  object: string;
  info: FileInfo;
}

/** The finalized object a notification reports, or null for any other event; `invalid_request` for what is not a notification. */
export function decodeNotification(body: unknown): Finalized | null {
  const parsed = envelope.safeParse(body);
  if (!parsed.success) {
    throw new PatchbayError('invalid_request', 'not a Pub/Sub push delivery', {
      issues: parsed.error.issues.map((i) => ({ path: i.path, message: i.message })),
    });
  }
  const attrs = parsed.data.message.attributes ?? {};
  if (attrs.eventType !== 'OBJECT_FINALIZE') return null;
  if (attrs.payloadFormat !== 'JSON_API_V1' || parsed.data.message.data === undefined) {
    throw new PatchbayError('invalid_request', 'an upload notification must carry its object (payload format JSON_API_V1)');
  }
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(parsed.data.message.data, 'base64').toString('utf8'));
  } catch {
    throw new PatchbayError('invalid_request', 'message data is not base64 JSON');
  }
  const obj = objectResource.safeParse(data);
  if (!obj.success) {
    throw new PatchbayError('invalid_request', 'message data is not an object resource', {
      issues: obj.error.issues.map((i) => ({ path: i.path, message: i.message })),
    });
  }
  if ((attrs.objectId !== undefined && attrs.objectId !== obj.data.name) || (attrs.bucketId !== undefined && attrs.bucketId !== obj.data.bucket)) {
    throw new PatchbayError('invalid_request', 'message attributes disagree with its data');
  }
  return {
    bucket: obj.data.bucket,
    object: obj.data.name,
    info: { size: Number(obj.data.size), md5: obj.data.md5Hash ?? '', contentType: obj.data.contentType ?? 'application/octet-stream' },
  };
}
