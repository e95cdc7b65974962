/**
 * Route group `uploads`: starting an upload (`POST /v1/uploads`: 201 with the upload scope's id
 * and a signed PUT URL; rate, size, type and file-bytes quota checked first), saying it is done
 * (`POST /v1/uploads/{id}/complete`, the owner: marks it ready if its object is there, else 409
 * `upload_incomplete`; needed only where no notification arrives), and downloading
 * (`GET /v1/uploads/{id}/download`: a signed GET URL for whoever may read the scope, 404 for
 * anyone else as for any scope, no token needed for a public one; `GET /v1/uploads/{id}/file`:
 * the same, as a 302 to the URL, for `<img src>`). A public scope's file gets a long-lived URL,
 * the same for every caller for half its life, and both answers may be cached publicly until
 * then (shared/uploads/uploads.ts `download`). The state machine and the
 * limits are shared/uploads/uploads.ts; the embedded signed URLs are answered by routes/files.ts.
 * Signed URLs are not logged (the request log records routes and scopes only).
 */
import { checkOwner } from '../../engine/access.js';
import type { SignedUrl } from '../../ports/files.js';
import { createUploadSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, readableHead, reader, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** A signed URL as the client gets it: an embedded one given as a path is resolved against the request's Host. */
function shown(ctx: Ctx, s: SignedUrl) {
  const url = s.url.startsWith('/') ? `http://${ctx.req.headers.host ?? 'localhost'}${s.url}` : s.url;
  return { url, method: s.method, headers: s.headers, expires: s.expires };
}

export const uploadRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/uploads',
    name: 'uploads.create',
    run: async (ctx) => {
      const u = await user(ctx);
      const req = await readBody(ctx.req, createUploadSchema, ctx.deps.config);
      const { id, upload, state } = await ctx.deps.uploads.create(u.id, u.domain, req);
      ctx.log.scope = id;
      sendJson(ctx.res, 201, { id, ...shown(ctx, upload), state }, { location: `/v1/scopes/${encodeURIComponent(id)}` });
    },
  },
  {
    method: 'POST',
    path: '/v1/uploads/{id}/complete',
    name: 'uploads.complete',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      const head = await readableHead(ctx, id, u);
      checkOwner(id, head.meta, u, 'complete it');
      const state = await ctx.deps.uploads.landed(id);
      sendJson(ctx.res, 200, { id, state });
    },
  },
  {
    method: 'GET',
    path: '/v1/uploads/{id}/download',
    name: 'uploads.download',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const url = await downloadFor(ctx, id);
      sendJson(ctx.res, 200, { id, ...shown(ctx, url), cache: url.cache }, answerCache(url));
    },
  },
  {
    method: 'GET',
    path: '/v1/uploads/{id}/file',
    name: 'uploads.file',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const url = await downloadFor(ctx, id);
      ctx.res.writeHead(302, { location: shown(ctx, url).url, 'content-length': '0', ...answerCache(url) });
      ctx.res.end();
    },
  },
];

/** The download of an upload for this request's caller: 404 for anyone who may not read it, as for any scope; public scopes get the cacheable URL. */
async function downloadFor(ctx: Ctx, id: string) {
  const head = await readableHead(ctx, id, await reader(ctx));
  return ctx.deps.uploads.download(id, { public: head.meta.access?.visibility === 'public' });
}

/**
 * How long the answer naming a URL may be reused: a public file's URL until its window ends (the
 * next caller would get the next window's URL), by anyone; a private one by nobody.
 */
function answerCache(url: { cache: 'public' | 'private'; windowEnd?: number; expires: number }): Record<string, string> {
  if (url.cache === 'private') return { 'cache-control': 'private, no-store' };
  const windowEnd = url.windowEnd ?? url.expires;
  return { 'cache-control': `public, max-age=${Math.max(0, Math.floor((windowEnd - Date.now()) / 1000))}` };
}
