/**
 * Route group `presence` (issue 15, item 9; docs/uploads-and-sessions.md): who is watching a
 * scope, for its readers only (404 `scope_not_found` for anyone else, as for the scope itself).
 * - `GET /v1/scopes/{id}/presence`: `{scope, present: [{user, session, since, status}]}`, oldest
 *   first (at most PATCHBAY_PRESENCE_MAX_LISTED). A public scope's presence needs no token.
 * - `PUT /v1/scopes/{id}/presence` `{session, status?}`: joins the caller's open session to the
 *   scope, or updates its status (JSON, at most PATCHBAY_PRESENCE_MAX_STATUS_BYTES), at the
 *   user's presence rate (PATCHBAY_RATE_PRESENCE). The entry lasts as long as the session: it
 *   leaves when the session closes or times out (shared/sessions/sessions.ts).
 * Each change reaches the scope's SSE subscribers as a `presence` event (join, update, leave).
 * Statuses are not logged.
 */
import { z } from 'zod';
import { PatchbayError } from '../../errors.js';
import { jsonValue } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, readableHead, reader, scopeId, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const putSchema = z.strictObject({
  session: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be a session id'),
  status: jsonValue.optional(),
});

export const presenceRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/scopes/{id}/presence',
    name: 'presence.get',
    run: async (ctx) => {
      const id = scopeId(ctx);
      await readableHead(ctx, id, await reader(ctx));
      sendJson(ctx.res, 200, { scope: id, present: await ctx.deps.sessions.presence.list(id) });
    },
  },
  {
    method: 'PUT',
    path: '/v1/scopes/{id}/presence',
    name: 'presence.put',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      const req = await readBody(ctx.req, putSchema, ctx.deps.config);
      const status = req.status ?? null;
      const max = ctx.deps.sessions.maxStatusBytes;
      if (Buffer.byteLength(JSON.stringify(status)) > max) {
        throw new PatchbayError('too_large', `a presence status is at most ${max} bytes of JSON`, { limit: 'presenceMaxStatusBytes', max });
      }
      await readableHead(ctx, id, u);
      await ctx.deps.sessions.requireOpen(req.session, u.id);
      await ctx.deps.limits.presence(u.id);
      const s = await ctx.deps.sessions.markPresent(req.session, u.id, id);
      const r = await ctx.deps.sessions.presence.set(id, u.id, req.session, status, s.expires);
      sendJson(ctx.res, 200, { scope: id, joined: r.joined, entry: r.entry });
    },
  },
];
