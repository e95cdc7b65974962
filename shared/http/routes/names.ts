/**
 * Route group `names`: scopes addressed by (domain, owner, name) as well as by id. A name is unique
 * per (domain, owner) (the ledger enforces it, shared/ports/ledger.ts).
 *
 * - `PUT /v1/names/{name}`: create-or-resolve the caller's scope of that name in the caller's
 *   domain: `200` with the scope as it is, or `201` with a new one made from the body
 *   (`{state?, type?, access?}`, held to the same limits as `POST /v1/scopes` either way). Only a
 *   create spends the create rate and counts against the quotas. Concurrent calls get one id.
 * - `GET /v1/names/{name}?owner=&domain=`: the scope `owner` (default: the caller) named so in
 *   `domain` (default: the caller's), read as `GET /v1/scopes/{id}` reads it, for its readers
 *   only. A name that names nothing and a scope the caller may not read get the same answer (404
 *   `scope_not_found` naming only the name; 401 without a token), so a stranger learns neither
 *   that a private named scope exists nor its id. Rate-limited per user as a listing.
 * - `PUT /v1/scopes/{id}/name` `{name}` (null: unnamed): the owner renames; 403 for a reader, 404
 *   for anyone else (shared/engine/access.ts), 409 `name_taken`; rate-limited as a write.
 *
 * Names (and types) starting with `patchbay/` are refused (400): patchbay's own (tags). A tag is not renamed (403).
 *
 * The name travels percent-encoded in the path; the request log records the scope id, never the name.
 */
import { PatchbayError } from '../../errors.js';
import type { Head } from '../../ports/index.js';
import { createNamedSchema, nameSchema, renameSchema, resolveNameQuerySchema } from '../../protocol.js';
import { parseWith, readBody } from '../body.js';
import { type Ctx, etagMatches, readableHead, reader, scopeId, user } from '../context.js';
import { requestDomain, resolveDomain } from '../domain.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { checkUnreserved, scopeBody } from './scopes.js';

/** The `{name}` parameter, percent-decoded and checked (400 otherwise). */
function nameParam(ctx: Ctx): string {
  let raw: string;
  try {
    raw = decodeURIComponent(ctx.params[0] as string);
  } catch {
    throw new PatchbayError('invalid_request', 'the name is not valid percent-encoded UTF-8', {
      issues: [{ path: ['name'], message: 'bad percent-encoding' }],
    });
  }
  const parsed = nameSchema.safeParse(raw);
  if (!parsed.success)
    throw new PatchbayError('invalid_request', 'not a valid scope name', { issues: parsed.error.issues.map((i) => ({ path: ['name'], message: i.message })) });
  return parsed.data;
}

export const nameRoutes: Route<Ctx>[] = [
  {
    method: 'PUT',
    path: '/v1/names/{name}',
    name: 'names.put',
    run: async (ctx) => {
      const u = await user(ctx);
      const name = nameParam(ctx);
      const req = await readBody(ctx.req, createNamedSchema, ctx.deps.config);
      checkUnreserved({ ...req, name });
      const { limits, engine } = ctx.deps;
      const { view, created } = await engine.createOrResolve(u.id, name, req, { domain: u.domain, beforeCreate: () => limits.createScope(u.id) });
      if (created) limits.created(u.id, view.meta.size);
      ctx.log.scope = view.id;
      ctx.log.ii = view.ii;
      sendJson(ctx.res, created ? 201 : 200, scopeBody(view, u), { etag: `"${view.ii}"`, 'content-location': `/v1/scopes/${encodeURIComponent(view.id)}` });
    },
  },
  {
    method: 'GET',
    path: '/v1/names/{name}',
    name: 'names.get',
    run: async (ctx) => {
      const caller = await reader(ctx);
      const name = nameParam(ctx);
      const q = parseWith(resolveNameQuerySchema, Object.fromEntries(ctx.url.searchParams), 'the query');
      // The same refusal for a name that names nothing and for a scope the caller may not read.
      const missing = () =>
        caller === null
          ? new PatchbayError('unauthorized', 'send Authorization: Bearer <token> (only public scopes are readable without one)')
          : new PatchbayError('scope_not_found', `no scope of this name is readable here`, { name });
      const owner = q.owner ?? caller?.id;
      if (owner === undefined) throw missing();
      const domain = q.domain ?? caller?.domain ?? resolveDomain(requestDomain(ctx.req.headers));
      if (caller) await ctx.deps.limits.list(caller.id);
      const id = await ctx.deps.engine.resolveName(domain, owner, name);
      let head: Head | null = null;
      if (id !== null) {
        head = await readableHead(ctx, id, caller).catch((err: unknown) => {
          if (err instanceof PatchbayError && (err.code === 'scope_not_found' || err.code === 'unauthorized')) return null;
          throw err;
        });
      }
      if (id === null || head === null) throw missing();
      ctx.log.scope = id;
      ctx.log.ii = head.ii;
      const etag = `"${head.ii}"`;
      if (etagMatches(ctx.req.headers['if-none-match'], etag)) {
        ctx.res.writeHead(304, { etag });
        ctx.res.end();
        return;
      }
      const state = await ctx.deps.engine.stateAt(id, head.ii, { trimmed: head.trimmed });
      sendJson(ctx.res, 200, scopeBody({ id, ii: head.ii, state, meta: head.meta }, caller), {
        etag,
        'content-location': `/v1/scopes/${encodeURIComponent(id)}`,
      });
    },
  },
  {
    method: 'PUT',
    path: '/v1/scopes/{id}/name',
    name: 'names.rename',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const u = await user(ctx);
      const req = await readBody(ctx.req, renameSchema, ctx.deps.config);
      checkUnreserved(req);
      await ctx.deps.limits.write(u.id, 0, true); // a write's rate; it stores no state bytes
      const meta = await ctx.deps.engine.rename(id, u, req.name);
      sendJson(ctx.res, 200, { id, name: meta.name });
    },
  },
];
