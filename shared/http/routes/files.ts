/**
 * Route group `files`: the embedded stack's signed file URLs (shared/adapters/embedded/signed-files.ts),
 * answered by the same server. `PUT /v1/files/{token}` stores an upload's bytes if the token is
 * ours, for PUT, unexpired, and the request's `Content-Type` (and `Content-MD5`, when signed) are
 * the signed ones, within the signed size; the upload is then ready (or failed) at once.
 * `GET /v1/files/{token}` answers the bytes (`Cache-Control: public` for a public file's URL,
 * bounded by the URL's end; `private, max-age=0` otherwise). A refused token is 403 `forbidden`, as Cloud Storage
 * refuses a bad signature; on the Google stack these routes do not exist (404). The request log
 * writes the path with the token redacted (respond.ts `redact`).
 */
import { createHash } from 'node:crypto';
import { PatchbayError } from '../../errors.js';
import type { FileGrant, FileServer } from '../../ports/files.js';
import { uploadOfObject } from '../../uploads/uploads.js';
import { readRaw } from '../body.js';
import type { Ctx } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

function fileServer(ctx: Ctx): FileServer {
  const { server } = ctx.deps.uploads.files;
  if (!server) throw new PatchbayError('not_found', 'signed file URLs are served by Cloud Storage here');
  return server;
}

const token = (ctx: Ctx): string => decodeURIComponent(ctx.params[0] as string);

export const fileRoutes: Route<Ctx>[] = [
  {
    method: 'PUT',
    path: '/v1/files/{token}',
    name: 'files.put',
    run: async (ctx) => {
      const files = fileServer(ctx);
      const grant = files.verify(token(ctx), 'PUT');
      const type = ctx.req.headers['content-type'] ?? '';
      if (type !== grant.contentType) throw new PatchbayError('forbidden', `signed URL refused: signed for Content-Type ${grant.contentType}`);
      if (grant.md5 !== undefined && ctx.req.headers['content-md5'] !== grant.md5)
        throw new PatchbayError('forbidden', 'signed URL refused: signed for another Content-MD5');
      const data = await readRaw(ctx.req, grant.maxBytes ?? 0, ctx.deps.config.bodyTimeoutMs, 'maxUploadBytes');
      if (grant.md5 !== undefined && createHash('md5').update(data).digest('base64') !== grant.md5) {
        throw new PatchbayError('invalid_request', 'the body does not match Content-MD5', {
          issues: [{ path: ['body'], message: 'MD5 differs from Content-MD5' }],
        });
      }
      const info = await files.write(grant, data);
      const id = uploadOfObject(grant.key);
      if (id !== null) {
        ctx.log.scope = id;
        await ctx.deps.uploads.landed(id, info);
      }
      sendJson(ctx.res, 200, { size: info.size, md5: info.md5 });
    },
  },
  {
    method: 'GET',
    path: '/v1/files/{token}',
    name: 'files.get',
    run: async (ctx) => {
      const files = fileServer(ctx);
      const grant = files.verify(token(ctx), ctx.req.method ?? 'GET');
      const found = await files.read(grant.key);
      if (!found) throw new PatchbayError('not_found', 'no such file');
      ctx.res.writeHead(200, {
        'content-type': found.contentType,
        'content-length': String(found.data.byteLength),
        'cache-control': cacheControl(grant),
        'x-content-type-options': 'nosniff',
        'content-disposition': 'attachment',
      });
      ctx.res.end(found.data);
    },
  },
];

/**
 * A public file's bytes may be cached by anyone, but never past its URL's end (a cache then
 * holds nothing the URL would not give); anything else is private and not cached.
 */
function cacheControl(grant: FileGrant): string {
  if (grant.publicCacheSeconds === undefined) return 'private, max-age=0';
  const left = Math.floor((grant.expires - Date.now()) / 1000);
  return `public, max-age=${Math.max(0, Math.min(grant.publicCacheSeconds, left))}`;
}
