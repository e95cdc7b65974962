/**
 * Service tokens: credentials a domain's admins mint for the domain's workers (webhooks, scripts),
 * which act as the domain's service identity `domain:<d>` (shared/engine/access.ts says what it
 * may do). The token itself is a patchbay JWT signed by shared/http/auth.ts (`kind: service`,
 * `jti` = the token's id, an expiry); what is stored here is its record only, never its value:
 * one record per token in the RecordStore, kind `service-token`, key `<domain>/<id>`, holding
 * `{id, domain, name, creator, created, expires}`.
 *
 * A record may also carry `config: true`: the token may then upload and read its own domain's
 * configuration (shared/http/routes/config.ts), and nothing more than any other service token. Only
 * the deploy sets it (infra/deploy/bootstrap.ts writes the record itself, for its own short-lived
 * token); `POST /v1/domains/{domain}/tokens` never does.
 *
 * Revocation deletes the record. A service token is accepted only while its record exists and has
 * not expired (`isLive`, asked on every request that carries one). Each instance trusts its last
 * look at a record for PATCHBAY_SERVICE_TOKEN_CHECK_MS, so a revoked token stops working on every
 * instance within that bound, and at once on the instance that revoked it. A record found gone or
 * expired is remembered as such for good: an id is random and never reused.
 *
 * Bounds: at most PATCHBAY_MAX_SERVICE_TOKENS live tokens per domain, counted at each mint (two
 * mints racing for the last place may both pass: the cap can be passed by the mints in flight).
 * Expired records are deleted when the next token of their domain is minted, so a domain keeps at
 * most about that many records.
 */
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { RecordStore } from '../ports/records.js';

export const SERVICE_TOKEN_KIND = 'service-token';

/** What is stored of a service token (and what listing shows): never the token itself. */
export interface ServiceTokenRecord {
  id: string;
  domain: string;
  /** The admin's label for it (which worker holds it). */
  name: string;
  /** The admin who minted it. */
  creator: string;
  /** ms since epoch. */
  created: number;
  /** ms since epoch: the token is refused from then on. */
  expires: number;
  /** The deploy's own tokens only: may upload and read the domain's configuration (see the top of this file). */
  config?: true;
}

/** What a live token may do beyond any service identity (its record's flags). */
export interface LiveServiceToken {
  /** The record carries `config: true`. */
  config: boolean;
}

export interface ServiceTokensOptions {
  /** PATCHBAY_SERVICE_TOKEN_CHECK_MS. */
  checkMs: number;
  /** PATCHBAY_MAX_SERVICE_TOKENS: live tokens per domain. */
  maxLive: number;
  /** PATCHBAY_SERVICE_TOKEN_MAX_TTL_S. */
  maxTtlSeconds: number;
  now?: () => number;
}

/** Records read per page while walking a domain's tokens. */
const PAGE = 200;
/** Tokens whose state an instance remembers (least recently used out first). */
const CHECKED_MAX = 10_000;

const keyOf = (domain: string, id: string) => `${domain}/${id}`;

export class ServiceTokens {
  /** The last look at each token's record: live (until `at + checkMs`) or gone for good. */
  private readonly checked = new LRUCache<string, { live: LiveServiceToken | null; at: number }>({ max: CHECKED_MAX });

  constructor(
    private readonly records: RecordStore,
    private readonly opts: ServiceTokensOptions,
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /**
   * Stores the record of a new token of `domain`, minted by `creator`, valid for `ttlSeconds`;
   * the caller signs the token (Auth.issueService). Refuses, storing nothing: a lifetime past
   * PATCHBAY_SERVICE_TOKEN_MAX_TTL_S (`invalid_request`), a domain at its cap (`quota_exceeded`).
   * `opts.config` marks the record config-capable: the deploy's alone, never from a request.
   */
  async create(domain: string, creator: string, req: { name: string; ttlSeconds: number }, opts: { config?: boolean } = {}): Promise<ServiceTokenRecord> {
    if (req.ttlSeconds > this.opts.maxTtlSeconds) {
      throw new PatchbayError('invalid_request', `a service token lives at most ${this.opts.maxTtlSeconds} seconds`, {
        issues: [{ path: ['ttlSeconds'], message: `at most ${this.opts.maxTtlSeconds}` }],
      });
    }
    const now = this.now();
    const all = await this.all(domain);
    const live = all.filter((r) => r.value.expires > now);
    if (live.length >= this.opts.maxLive) {
      throw new PatchbayError('quota_exceeded', `a domain may hold at most ${this.opts.maxLive} live service tokens; revoke one first`, {
        quota: 'serviceTokens',
        max: this.opts.maxLive,
        actual: live.length,
      });
    }
    const record: ServiceTokenRecord = {
      id: randomUUID(),
      domain,
      name: req.name,
      creator,
      created: now,
      expires: now + req.ttlSeconds * 1000,
      ...(opts.config ? { config: true as const } : {}),
    };
    const stored = await this.records.put(SERVICE_TOKEN_KIND, keyOf(domain, record.id), record as unknown as Json, 0);
    if (!stored) throw new PatchbayError('internal', 'a new service token id was taken'); // 122 random bits
    this.checked.set(keyOf(domain, record.id), { live: { config: record.config === true }, at: now });
    // Housekeeping, after the token exists: the expired records of the domain go.
    for (const r of all) if (r.value.expires <= now) await this.records.delete(SERVICE_TOKEN_KIND, r.key, r.rev).catch(() => false);
    return record;
  }

  /** The domain's tokens (expired ones until the next mint deletes them), oldest first. */
  async list(domain: string): Promise<ServiceTokenRecord[]> {
    return (await this.all(domain)).map((r) => r.value).sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));
  }

  /**
   * Revokes a token of `domain`: deletes its record, so it is refused from now on (on other
   * instances within PATCHBAY_SERVICE_TOKEN_CHECK_MS). `not_found` when the domain has no such token.
   */
  async revoke(domain: string, id: string): Promise<ServiceTokenRecord> {
    const key = keyOf(domain, id);
    for (let attempt = 0; attempt < 5; attempt++) {
      const stored = await this.records.get(SERVICE_TOKEN_KIND, key);
      if (!stored) break;
      if (await this.records.delete(SERVICE_TOKEN_KIND, key, stored.rev)) {
        this.checked.set(key, { live: null, at: this.now() });
        return stored.value as unknown as ServiceTokenRecord;
      }
    }
    throw new PatchbayError('not_found', `domain ${domain} has no service token ${id}`, { domain, id });
  }

  /** Whether the token `id` of `domain` may still be used: its record exists and has not expired (see the top of this file). */
  async isLive(domain: string, id: string): Promise<boolean> {
    return (await this.live(domain, id)) !== null;
  }

  /**
   * The token `id` of `domain` with its record's flags while it may still be used; null once it
   * may not (no record, or expired). The same cached look as `isLive`: no extra read.
   */
  async live(domain: string, id: string): Promise<LiveServiceToken | null> {
    const key = keyOf(domain, id);
    const now = this.now();
    const hit = this.checked.get(key);
    if (hit && (hit.live === null || now - hit.at < this.opts.checkMs)) return hit.live;
    const stored = await this.records.get(SERVICE_TOKEN_KIND, key);
    const record = stored === null ? null : (stored.value as unknown as ServiceTokenRecord);
    const live = record !== null && record.expires > now ? { config: record.config === true } : null;
    this.checked.set(key, { live, at: now });
    return live;
  }

  private async all(domain: string): Promise<Array<{ key: string; rev: number; value: ServiceTokenRecord }>> {
    const out: Array<{ key: string; rev: number; value: ServiceTokenRecord }> = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.records.list(SERVICE_TOKEN_KIND, { prefix: `${domain}/`, after, limit: PAGE });
      for (const r of page) out.push({ key: r.key, rev: r.rev, value: r.value as unknown as ServiceTokenRecord });
      if (page.length < PAGE) return out;
      after = page[page.length - 1]?.key;
    }
  }
}
