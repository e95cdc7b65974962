/**
 * Route group `sessions` (issue 15, items 7 and 8; docs/uploads-and-sessions.md): a signed-in
 * user's sessions, each request at the user's session rate (PATCHBAY_RATE_SESSION). Another
 * user's session, like a missing one, is 404 `session_not_found`: a stranger learns nothing of it.
 * - `POST /v1/sessions`: opens one (201 `{id, expires, timeoutMs}`); 403 `quota_exceeded` past
 *   PATCHBAY_SESSION_MAX_PER_USER.
 * - `GET /v1/sessions/{id}`: the session, its guarantees and, once closing or closed, what ran.
 * - `POST /v1/sessions/{id}/heartbeat`: keeps it open PATCHBAY_SESSION_TIMEOUT_MS longer.
 * - `DELETE /v1/sessions/{id}` with an optional body `{reason?, info?}`: closes it (its guarantees
 *   run, its close hooks are delivered, its presence leaves); 409 `session_closed` if it is not open.
 * - `POST /v1/sessions/{id}/guarantees` `{scope, patch}`: a patch to apply as the user when the
 *   session ends (201 `{id, ...}`), for a scope the user may read; `DELETE .../guarantees/{gid}` cancels it.
 * The request log records the route and status only; reason and info are not logged.
 */
import { z } from 'zod';
import { PatchbayError } from '../../errors.js';
import type { Json } from '../../json.js';
import { jsonValue, patchSchema, SCOPE_ID } from '../../protocol.js';
import { MAX_REASON, sessionView } from '../../sessions/sessions.js';
import { readBody } from '../body.js';
import { type Ctx, checkedParam, readableHead, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const closeSchema = z.strictObject({
  reason: z.string().min(1).max(MAX_REASON).optional(),
  info: jsonValue.optional(),
});
const guaranteeSchema = z.strictObject({ scope: z.string().regex(SCOPE_ID, 'must match [A-Za-z0-9_.:-]{1,128}'), patch: patchSchema });

/** A path parameter, decoded (400 when it does not decode or breaks `re`). */
const param = (ctx: Ctx, i: number, name: string, re: RegExp): string => checkedParam(ctx, i, name, re, `must match ${re.source}`);
const SESSION_PARAM = /^[A-Za-z0-9_.:-]{1,128}$/;
const GUARANTEE_PARAM = /^g_[0-9a-f]{16}$/;

async function caller(ctx: Ctx) {
  const u = await user(ctx);
  await ctx.deps.limits.session(u.id);
  return u;
}

export const sessionRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/sessions',
    name: 'sessions.open',
    run: async (ctx) => {
      const u = await caller(ctx);
      const s = await ctx.deps.sessions.open(u.id, u.domain);
      sendJson(ctx.res, 201, { ...s, timeoutMs: ctx.deps.sessions.timeoutMs }, { location: `/v1/sessions/${s.id}` });
    },
  },
  {
    method: 'GET',
    path: '/v1/sessions/{id}',
    name: 'sessions.get',
    run: async (ctx) => {
      const id = param(ctx, 0, 'session', SESSION_PARAM);
      const u = await caller(ctx);
      sendJson(ctx.res, 200, sessionView(id, await ctx.deps.sessions.get(id, u.id)));
    },
  },
  {
    method: 'POST',
    path: '/v1/sessions/{id}/heartbeat',
    name: 'sessions.heartbeat',
    run: async (ctx) => {
      const id = param(ctx, 0, 'session', SESSION_PARAM);
      const u = await caller(ctx);
      sendJson(ctx.res, 200, await ctx.deps.sessions.heartbeat(id, u.id));
    },
  },
  {
    method: 'DELETE',
    path: '/v1/sessions/{id}',
    name: 'sessions.close',
    run: async (ctx) => {
      const id = param(ctx, 0, 'session', SESSION_PARAM);
      const u = await caller(ctx);
      const hasBody = ctx.req.headers['content-length'] !== undefined && ctx.req.headers['content-length'] !== '0';
      const body = hasBody || ctx.req.headers['transfer-encoding'] !== undefined ? await readBody(ctx.req, closeSchema, ctx.deps.config) : {};
      const info: Json = body.info ?? null;
      const max = ctx.deps.sessions.maxInfoBytes;
      if (Buffer.byteLength(JSON.stringify(info)) > max) {
        throw new PatchbayError('too_large', `a close's info is at most ${max} bytes of JSON`, { limit: 'sessionMaxInfoBytes', max });
      }
      const v = await ctx.deps.sessions.close(id, u.id, body.reason ?? 'closed', info);
      sendJson(ctx.res, 200, sessionView(id, v));
    },
  },
  {
    method: 'POST',
    path: '/v1/sessions/{id}/guarantees',
    name: 'sessions.guarantee',
    run: async (ctx) => {
      const id = param(ctx, 0, 'session', SESSION_PARAM);
      const u = await caller(ctx);
      const req = await readBody(ctx.req, guaranteeSchema, ctx.deps.config);
      ctx.deps.engine.check(req.patch); // the patch limits, now rather than at close
      await ctx.deps.sessions.requireOpen(id, u.id);
      await readableHead(ctx, req.scope, u); // 404 for a scope the user may not read (writing is checked when it runs)
      const g = await ctx.deps.sessions.addGuarantee(id, u.id, req.scope, req.patch);
      sendJson(ctx.res, 201, g, { location: `/v1/sessions/${id}/guarantees/${g.id}` });
    },
  },
  {
    method: 'DELETE',
    path: '/v1/sessions/{id}/guarantees/{gid}',
    name: 'sessions.cancelGuarantee',
    run: async (ctx) => {
      const id = param(ctx, 0, 'session', SESSION_PARAM);
      const gid = param(ctx, 1, 'guarantee', GUARANTEE_PARAM);
      const u = await caller(ctx);
      await ctx.deps.sessions.cancelGuarantee(id, u.id, gid);
      ctx.res.writeHead(204);
      ctx.res.end();
    },
  },
];
