/**
 * The domains a deployment manages (DEPLOY_DOMAINS_FILE): read and checked before anything is
 * touched, then brought up by the bootstrap after the infrastructure, idempotently:
 * - admins: every listed admin becomes an admin of the domain (its record in the deployment's
 *   record store, shared/domains/domains.ts, compare-and-set); admins added otherwise stay, none
 *   is ever removed;
 * - configuration: the domain's LATEST version must have exactly the file's text; when it has
 *   not, the text is uploaded through the API (`PUT /v1/domains/{d}/config?replaces=<latest>`)
 *   with the deploy's config-capable token of that domain (bootstrap.ts), and the bootstrap waits,
 *   bounded, for its report to say `done` (or `failed`: the report's error is printed, exit 1).
 *   A latest version with the same text is not uploaded again; its apply is still waited for.
 *
 * The file's shape: `domains: { <domain>: { admins: [userId, ...], config: <path> } }`, `config`
 * relative to the file. Each configuration is compiled here with the deployment's own limits, so
 * an invalid one stops the deploy naming its lines before any resource is created.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Config } from '../../shared/config.js';
import { loadDomainConfig } from '../../shared/domains/active.js';
import { Domains } from '../../shared/domains/domains.js';
import { PatchbayError } from '../../shared/errors.js';
import type { RecordStore } from '../../shared/ports/records.js';
import { domainSchema } from '../../shared/protocol.js';
import type { MintedToken } from './bootstrap.js';
import { SettingsError } from './settings.js';

export interface ManagedDomain {
  domain: string;
  admins: string[];
  /** The configuration's text and where it was read from; none: the configuration is not managed. */
  config?: { path: string; text: string };
}

const fileSchema = z.strictObject({
  domains: z.record(
    domainSchema,
    z.strictObject({
      admins: z.array(z.string().min(1).max(256)).max(100).default([]),
      config: z.string().min(1).optional(),
    }),
  ),
});

/** Reads and checks the domains file at `path`, and every configuration it names (SettingsError naming what is wrong). */
export function loadDomainsFile(path: string, config: Pick<Config, 'maxConfigBytes'>): ManagedDomain[] {
  const read = (p: string, what: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch (e) {
      throw new SettingsError(`cannot read ${what} ${p}: ${(e as Error).message}`);
    }
  };
  let raw: unknown;
  try {
    raw = parseYaml(read(path, 'the domains file (DEPLOY_DOMAINS_FILE)'));
  } catch (e) {
    if (e instanceof SettingsError) throw e;
    throw new SettingsError(`the domains file ${path} is not YAML: ${(e as Error).message}`);
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new SettingsError(`the domains file ${path} is invalid:\n  ${issues.join('\n  ')}`);
  }
  return Object.entries(parsed.data.domains).map(([domain, d]) => {
    if (d.config === undefined) return { domain, admins: d.admins };
    const file = resolve(dirname(path), d.config);
    const text = read(file, `the configuration of ${domain}`);
    try {
      loadDomainConfig(text, config);
    } catch (e) {
      if (e instanceof PatchbayError) throw new SettingsError(`the configuration of ${domain} (${file}): ${describeError(e.code, e.message, e.details)}`);
      throw e;
    }
    return { domain, admins: d.admins, config: { path: file, text } };
  });
}

/** A coded error as the deploy prints it: `code: message`, then each issue with its line. */
function describeError(code: string, message: string, details: unknown): string {
  const issues = (details as { issues?: Array<{ line?: number; column?: number; path?: unknown[]; message?: string }> } | undefined)?.issues ?? [];
  const lines = issues.map(
    (i) => `\n    ${i.line !== undefined ? `line ${i.line}, column ${i.column}: ` : ''}${(i.path ?? []).join('.')}${i.path?.length ? ': ' : ''}${i.message}`,
  );
  return `${code}: ${message}${lines.join('')}`;
}

export interface DomainsBootstrapOptions {
  /** The api's base URL. */
  base: string;
  records: RecordStore;
  /** Mints the deploy's config-capable token of a domain (revoked by the bootstrap when done with it). */
  mint: (domain: string) => Promise<MintedToken>;
  out: (line: string) => void;
  /** How long to wait for an apply (default 5 minutes) and how often to look (default 1 s). */
  waitMs?: number;
  pollMs?: number;
}

/** Brings every managed domain up (see the top of this file); false when one failed (the reason printed). */
export async function bootstrapDomains(domains: ManagedDomain[], opts: DomainsBootstrapOptions): Promise<boolean> {
  // A cache of 0: each decision reads the record as stored now.
  const records = new Domains(opts.records, { cacheMs: 0 });
  let ok = true;
  for (const d of domains) {
    const say = (l: string) => opts.out(`bootstrap: ${d.domain}: ${l}`);
    let added: string[] = [];
    await records.update(d.domain, (current) => {
      const have = current?.admins ?? [];
      added = d.admins.filter((a, i) => !have.includes(a) && d.admins.indexOf(a) === i);
      return added.length === 0 ? null : { admins: [...have, ...added] };
    });
    say(added.length === 0 ? `admins as listed (${d.admins.length})` : `admins added: ${added.join(', ')}`);
    if (d.config) ok = (await bootstrapConfig(d.domain, d.config.text, opts, say)) && ok;
  }
  return ok;
}

async function bootstrapConfig(domain: string, text: string, opts: DomainsBootstrapOptions, say: (l: string) => void): Promise<boolean> {
  const token = await opts.mint(domain);
  try {
    const api = (method: string, path: string, body?: string) =>
      call(opts.base, method, path, token.token, body === undefined ? undefined : { body, type: 'application/yaml' });
    const head = await api('GET', `/v1/domains/${domain}/config`);
    if (head.status !== 200) return fail(say, 'cannot read the configuration', head);
    const latest = head.json.latest as number;
    let version = latest;
    let report = head.json.latestReport as string | null;
    const current = latest > 0 ? await api('GET', `/v1/domains/${domain}/config/versions/${latest}`) : null;
    if (current && current.status !== 200) return fail(say, `cannot read configuration version ${latest}`, current);
    if (current && current.json.text === text) {
      if (head.json.active === latest) {
        say(`configuration up to date (version ${latest}, active); nothing uploaded`);
        return true;
      }
      say(`configuration up to date (version ${latest}); nothing uploaded; waiting for its apply`);
    } else {
      const put = await api('PUT', `/v1/domains/${domain}/config?replaces=${latest}`, text);
      if (put.status !== 202) return fail(say, 'the configuration upload was refused', put);
      version = put.json.version as number;
      report = put.json.report as string;
      say(`configuration uploaded as version ${version} (replacing ${latest}); waiting for its apply`);
    }
    const deadline = Date.now() + (opts.waitMs ?? 300_000);
    for (;;) {
      const r = await api('GET', `/v1/scopes/${report}`);
      if (r.status !== 200) return fail(say, `cannot read the report ${report}`, r);
      const state = r.json.state as { status?: string; error?: unknown };
      if (state.status === 'done') {
        say(`configuration version ${version} applied`);
        return true;
      }
      if (state.status === 'failed') {
        const e = (state.error ?? {}) as { message?: string };
        say(`configuration version ${version} failed to apply: ${describeError('invalid_config', e.message ?? '', e)}`);
        return false;
      }
      if (Date.now() >= deadline) {
        say(
          `configuration version ${version} not applied after ${Math.round((opts.waitMs ?? 300_000) / 1000)} s (status ${state.status}); see report ${report}`,
        );
        return false;
      }
      await new Promise((res) => setTimeout(res, opts.pollMs ?? 1000));
    }
  } finally {
    await token.revoke().catch((e: unknown) => say(`the deploy's config token was not revoked (${(e as Error).message}); it expires by itself`));
  }
}

function fail(say: (l: string) => void, what: string, res: { status: number; json: Record<string, unknown>; text: string }): false {
  const e = (res.json as { error?: { code?: string; message?: string; issues?: unknown } }).error;
  say(`${what}: ${e?.code ? describeError(e.code, e.message ?? '', e) : `HTTP ${res.status} ${res.text.slice(0, 200)}`}`);
  return false;
}

async function call(
  base: string,
  method: string,
  path: string,
  token: string,
  body?: { body: string; type: string },
): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body) headers['content-type'] = body.type;
  const res = await fetch(base + path, { method, headers, body: body?.body, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {}
  return { status: res.status, json, text };
}
