/**
 * Route group `config`: a domain's configuration, for the domain's admins only (anyone else:
 * 403 `forbidden`, whether or not the domain exists), and for the deploy's own config-capable
 * service token of the domain (shared/http/context.ts `domainAdmin`; no other service token).
 * - `PUT /v1/domains/{domain}/config?replaces=<n>`: uploads a new version (YAML or JSON text, at
 *   most PATCHBAY_MAX_CONFIG_BYTES) replacing version n (0 for the first): 202 with its number and
 *   its report scope, whose progress the admin streams (`GET /v1/scopes/{report}/events`). An
 *   invalid text is 400 `invalid_config` naming lines; a stale `replaces` is 409
 *   `version_conflict`; neither stores anything. Rate-limited as a write of its size.
 * - `GET /v1/domains/{domain}/config`: the latest and active versions, and their reports.
 * - `GET /v1/domains/{domain}/config/versions/{n}`: one version, with its text.
 */
import { reportId } from '../../domains/apply.js';
import { PatchbayError } from '../../errors.js';
import { contentType, readRaw } from '../body.js';
import { type Ctx, domainAdmin, domainParam, parseIndex, pathParam } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

const TEXT_TYPES = new Set(['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml', 'application/json', 'text/plain']);

/** The caller, if it administers the domain in the path (anyone else, every service identity included: 403 `forbidden`). */
export async function admin(ctx: Ctx): Promise<{ domain: string; userId: string }> {
  const domain = domainParam(ctx);
  const u = await domainAdmin(ctx, domain);
  return { domain, userId: u.id };
}

/** The caller, if it administers the domain in the path or holds its deploy's config-capable token (anyone else: 403 `forbidden`). */
async function configAdmin(ctx: Ctx): Promise<{ domain: string; userId: string }> {
  const domain = domainParam(ctx);
  const u = await domainAdmin(ctx, domain, { configToken: true });
  return { domain, userId: u.id };
}

export const configRoutes: Route<Ctx>[] = [
  {
    method: 'PUT',
    path: '/v1/domains/{domain}/config',
    name: 'config.put',
    run: async (ctx) => {
      const { domain, userId } = await configAdmin(ctx);
      const raw = ctx.url.searchParams.get('replaces');
      if (raw === null) {
        throw new PatchbayError('invalid_request', 'name the version this upload replaces: ?replaces=<n> (0 for the first)', {
          issues: [{ path: ['replaces'], message: 'required' }],
        });
      }
      const replaces = parseIndex(raw, 'replaces');
      if (!TEXT_TYPES.has(contentType(ctx.req))) {
        throw new PatchbayError('unsupported_media_type', 'send the configuration as Content-Type: application/yaml or application/json');
      }
      const { config } = ctx.deps;
      const body = await readRaw(ctx.req, config.maxConfigBytes, config.bodyTimeoutMs, 'maxConfigBytes');
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(body);
      } catch {
        throw new PatchbayError('invalid_request', 'the configuration is not UTF-8 text', { issues: [{ path: [], message: 'not UTF-8' }] });
      }
      await ctx.deps.limits.write(userId, body.length);
      const { version, report } = await ctx.deps.domainConfigs.upload(domain, text, userId, replaces);
      sendJson(ctx.res, 202, { domain, version, replaces, report });
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/config',
    name: 'config.get',
    run: async (ctx) => {
      const { domain } = await configAdmin(ctx);
      const head = await ctx.deps.domainConfigs.head(domain);
      const report = (n: number) => (n > 0 ? reportId(domain, n) : null);
      sendJson(ctx.res, 200, { domain, latest: head.latest, active: head.active, latestReport: report(head.latest), activeReport: report(head.active) });
    },
  },
  {
    method: 'GET',
    path: '/v1/domains/{domain}/config/versions/{version}',
    name: 'config.version',
    run: async (ctx) => {
      const { domain } = await configAdmin(ctx);
      const n = parseIndex(pathParam(ctx, 1), 'version');
      const v = await ctx.deps.domainConfigs.version(domain, n);
      if (!v) throw new PatchbayError('not_found', `${domain} has no configuration version ${n}`, { domain, version: n });
      sendJson(ctx.res, 200, { domain, ...v, report: reportId(domain, n) });
    },
  },
];
