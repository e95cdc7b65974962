/**
 * Route group `domains`: what a domain's admins manage, for its admins only, from any domain (an
 * admin is a user, who may manage from a console or curl acting in another app):
 * - `GET /v1/domains/{domain}`: the domain's record (admins, allowed origins);
 * - `PUT /v1/domains/{domain}/origins`: the browser origins the domain allows (shared/http/cors.ts),
 *   the whole list each time. Each must be an origin of the domain's own host, port included (a
 *   page acts in the domain of its origin's host, so no other origin could use the list): the
 *   list says which of `https://<domain>` and `http://<domain>` may call cross-origin;
 * - `POST /v1/domains/{domain}/tokens`: mints a service token (shared/domains/service-tokens.ts),
 *   answered once with its value, which is stored nowhere and never logged; rate-limited per admin
 *   by PATCHBAY_RATE_SERVICE_TOKENS, at most PATCHBAY_MAX_SERVICE_TOKENS live per domain;
 * - `GET /v1/domains/{domain}/tokens`: the domain's tokens, without their values;
 * - `DELETE /v1/domains/{domain}/tokens/{id}`: revokes one.
 * Anyone else, a service identity included (a leaked worker token must not mint tokens that
 * outlive its revocation), gets 403 `forbidden`, whether or not the domain has a record: a
 * stranger learns nothing, not even whether the domain was claimed. Every refusal stores nothing.
 */

import { serviceUser } from '../../engine/access.js';
import { PatchbayError } from '../../errors.js';
import { domainOriginsSchema, serviceTokenRequestSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, checkedParam, domainAdmin, domainParam } from '../context.js';
import { originDomain } from '../cors.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const TOKEN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The origins to store: each an origin of `domain`'s host (so at most two), deduplicated in order. */
function checkOrigins(domain: string, origins: string[]): string[] {
  const unique = [...new Set(origins)];
  unique.forEach((o, i) => {
    if (originDomain(o) !== domain) {
      const message = `must be an origin of ${domain}, as browsers send it: http(s)://${domain}, no path or trailing slash`;
      throw new PatchbayError('invalid_request', `${JSON.stringify(o)} ${message}`, { issues: [{ path: ['origins', i], message }] });
    }
  });
  return unique;
}

export const domainRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/domains/{domain}',
    name: 'domains.get',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      await domainAdmin(ctx, domain);
      sendJson(ctx.res, 200, await ctx.deps.domains.get(domain));
    },
  },
  {
    method: 'PUT',
    path: '/v1/domains/{domain}/origins',
    name: 'domains.origins',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const u = await domainAdmin(ctx, domain);
      const req = await readBody(ctx.req, domainOriginsSchema, ctx.deps.config);
      const origins = checkOrigins(domain, req.origins);
      await ctx.deps.limits.write(u.id, 0, true); // a write's rate; it stores no state bytes
      // Checked again against the record being replaced: an admin removed meanwhile changes nothing.
      const stored = await ctx.deps.domains.update(domain, (current) => {
        if (!current?.admins.includes(u.id)) throw new PatchbayError('forbidden', `only an admin of ${domain} may do this`, { domain });
        return { origins };
      });
      sendJson(ctx.res, 200, stored);
    },
  },
  {
    method: 'POST',
    path: '/v1/domains/{domain}/tokens',
    name: 'domains.tokens.create',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const u = await domainAdmin(ctx, domain);
      const req = await readBody(ctx.req, serviceTokenRequestSchema, ctx.deps.config);
      await ctx.deps.limits.mintServiceToken(u.id);
      const record = await ctx.deps.serviceTokens.create(domain, u.id, req);
      const token = await ctx.deps.auth.issueService(domain, record.id, record.expires);
      sendJson(ctx.res, 201, { ...record, user: serviceUser(domain), token });
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/tokens',
    name: 'domains.tokens.list',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const u = await domainAdmin(ctx, domain);
      await ctx.deps.limits.list(u.id);
      sendJson(ctx.res, 200, { tokens: await ctx.deps.serviceTokens.list(domain) });
    },
  },
  {
    method: 'DELETE',
    path: '/v1/domains/{domain}/tokens/{id}',
    name: 'domains.tokens.revoke',
    run: async (ctx) => {
      const domain = domainParam(ctx);
      const u = await domainAdmin(ctx, domain);
      const id = checkedParam(ctx, 1, 'id', TOKEN_ID, 'a service token id is a lower-case UUID');
      await ctx.deps.limits.write(u.id, 0, true);
      await ctx.deps.serviceTokens.revoke(domain, id);
      ctx.res.writeHead(204);
      ctx.res.end();
    },
  },
];
