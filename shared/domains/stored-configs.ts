/**
 * The active configurations as uploaded and applied (shared/domains/config-versions.ts), for the
 * commit path (ActiveConfigs). `get` stays synchronous; `prepare(domain)`, which the engine awaits
 * before each commit decision and create (CommitRules.prepare), makes sure what `get` answers for
 * the domain is at most PATCHBAY_DOMAIN_CACHE_MS old: the bounded delay after which every
 * instance enforces a newly activated version (docs/domains.md). A fresh entry costs nothing but
 * a map lookup; a stale one reads the domain's head (one record) and compiles a version only when
 * it changed. Concurrent prepares of one domain share one read. When the record store cannot be
 * read and the entry is stale, the commit fails (503 `unavailable`): writes are never checked
 * against rules older than the bound.
 */
import { PatchbayError } from '../errors.js';
import type { ActiveConfigs } from './active.js';
import { loadDomainConfig } from './active.js';
import type { ConfigVersions } from './config-versions.js';
import type { CompiledConfig } from './validation.js';

interface Entry {
  version: number;
  compiled: CompiledConfig | undefined;
  at: number;
}

export class StoredConfigs implements ActiveConfigs {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<void>>();

  constructor(
    private readonly versions: ConfigVersions,
    private readonly opts: { cacheMs: number; maxConfigBytes: number; now?: () => number; maxDomains?: number },
  ) {}

  get(domain: string): CompiledConfig | undefined {
    return this.entries.get(domain)?.compiled;
  }

  async prepare(domain: string): Promise<void> {
    const entry = this.entries.get(domain);
    if (entry && this.now() - entry.at < this.opts.cacheMs) return;
    let pending = this.loading.get(domain);
    if (!pending) {
      pending = this.load(domain, entry).finally(() => this.loading.delete(domain));
      this.loading.set(domain, pending);
    }
    await pending;
  }

  /** Forgets what is cached for the domain, so the next prepare reads it (the instance that activated a version). */
  forget(domain: string): void {
    this.entries.delete(domain);
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private async load(domain: string, entry: Entry | undefined): Promise<void> {
    const at = this.now();
    let active: number;
    try {
      ({ active } = await this.versions.head(domain));
    } catch (err) {
      throw new PatchbayError('unavailable', `the configuration of domain ${domain} cannot be read now; retry`, { cause: String(err) });
    }
    let compiled = entry?.version === active ? entry.compiled : undefined;
    if (active > 0 && entry?.version !== active) {
      const v = await this.versions.get(domain, active);
      // An active version was checked when it was uploaded and again when applied: it compiles.
      compiled = v ? loadDomainConfig(v.text, this.opts) : undefined;
    }
    this.entries.delete(domain);
    this.entries.set(domain, { version: active, compiled, at });
    if (this.entries.size > (this.opts.maxDomains ?? 10_000)) this.entries.delete(this.entries.keys().next().value as string);
  }
}
