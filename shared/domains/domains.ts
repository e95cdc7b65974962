/**
 * Domains (apps) as patchbay records them: who administers each, and the settings its admins
 * keep (allowed browser origins). One record per domain in the RecordStore, kind `domain`, key =
 * the domain name. A domain nobody has claimed has no record and no admin.
 *
 * Who becomes an admin: the user whose claim succeeded (shared/domains/claims.ts), who may add
 * others. Reads go through a per-instance cache of PATCHBAY_DOMAIN_CACHE_MS, so a change reaches
 * every instance within that bound (documented in docs/domains.md); the instance that made the
 * change sees it at once. Writes are compare-and-set on the record's revision, re-decided when
 * another writer moved it, so concurrent changes never lose one another.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { RecordStore, StoredRecord } from '../ports/records.js';

export const DOMAIN_KIND = 'domain';

export interface DomainRecord {
  domain: string;
  /** User ids of the domain's admins, in the order they were added. */
  admins: string[];
  /** Browser origins allowed to call the API acting in this domain (shared/http/cors.ts), besides the operator's. */
  origins: string[];
  /** ms since epoch. */
  created: number;
  updated: number;
}

/** What a change may set; the rest is kept. */
export type DomainChange = Partial<Pick<DomainRecord, 'admins' | 'origins'>>;

interface Cached {
  record: DomainRecord | null;
  rev: number;
  at: number;
}

export class Domains {
  private readonly cache = new Map<string, Cached>();

  constructor(
    private readonly records: RecordStore,
    private readonly opts: { cacheMs: number; now?: () => number; maxCached?: number },
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** The domain's record, or null when nobody has claimed it; at most PATCHBAY_DOMAIN_CACHE_MS old. */
  async get(domain: string): Promise<DomainRecord | null> {
    const hit = this.cache.get(domain);
    if (hit && this.now() - hit.at < this.opts.cacheMs) return hit.record;
    return (await this.load(domain)).record;
  }

  /** Whether `user` administers `domain` (as cached: see the top of this file). */
  async isAdmin(domain: string, user: string): Promise<boolean> {
    return (await this.get(domain))?.admins.includes(user) ?? false;
  }

  /** Throws `forbidden` unless `user` administers `domain`. */
  async checkAdmin(domain: string, user: string): Promise<void> {
    if (!(await this.isAdmin(domain, user))) throw new PatchbayError('forbidden', `only an admin of ${domain} may do this`, { domain });
  }

  /**
   * Applies `change(current)` to the domain's record (null: it has none) and stores the result,
   * creating the record if needed; re-reads and re-applies when another writer moved it meanwhile.
   * `change` returns null to store nothing. Returns the record as stored (or as it is, when
   * nothing was stored).
   */
  async update(domain: string, change: (current: DomainRecord | null) => DomainChange | null): Promise<DomainRecord | null> {
    for (let attempt = 0; attempt < 20; attempt++) {
      // Writers that lost a race retry after a short random wait, so they do not collide in lockstep again.
      if (attempt > 0) await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 2 ** attempt)));
      const { record, rev } = await this.load(domain);
      const asked = change(record);
      if (asked === null) return record;
      const now = this.now();
      const next: DomainRecord = {
        domain,
        admins: asked.admins ?? record?.admins ?? [],
        origins: asked.origins ?? record?.origins ?? [],
        created: record?.created ?? now,
        updated: now,
      };
      const stored = await this.records.put(DOMAIN_KIND, domain, next as unknown as Json, rev);
      if (stored) return this.remember(domain, stored);
    }
    throw new PatchbayError('unavailable', `the record of domain ${domain} keeps changing; retry`);
  }

  /** Makes `user` an admin of `domain` (creating its record); a no-op when it already is one. */
  addAdmin(domain: string, user: string): Promise<DomainRecord | null> {
    return this.update(domain, (current) => (current?.admins.includes(user) ? null : { admins: [...(current?.admins ?? []), user] }));
  }

  private async load(domain: string): Promise<Cached> {
    const stored = await this.records.get(DOMAIN_KIND, domain);
    if (!stored) return this.put(domain, { record: null, rev: 0, at: this.now() });
    this.remember(domain, stored);
    return this.cache.get(domain) as Cached;
  }

  private remember(domain: string, stored: StoredRecord): DomainRecord {
    const record = stored.value as unknown as DomainRecord;
    this.put(domain, { record, rev: stored.rev, at: this.now() });
    return record;
  }

  private put(domain: string, entry: Cached): Cached {
    // A plain bounded map: the oldest entry goes first (domains are few; this only caps a flood of unknown names).
    this.cache.delete(domain);
    this.cache.set(domain, entry);
    const max = this.opts.maxCached ?? 10_000;
    if (this.cache.size > max) this.cache.delete(this.cache.keys().next().value as string);
    return entry;
  }
}
