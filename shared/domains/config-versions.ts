/**
 * A domain's configuration versions: immutable, numbered 1, 2, 3... in upload order, each naming
 * the version it replaces (optimistic concurrency: an upload that names a stale version is
 * refused with 409 `version_conflict` and stores nothing). Which version is active is kept apart
 * and only moves forward (`activate`, run by the apply: shared/domains/apply.ts).
 *
 * Records (the RecordStore port): kind `config-version`, key `<domain>/<version, 8 digits>`
 * (the text as base64, so JSON escaping cannot grow it past a record); kind `config-head`, key
 * `<domain>`: {latest, active}. The guarantee kept here: a version number is taken by a
 * create-only put, so two uploads that both replace version n cannot both become n + 1; the
 * head is written after the version, and an upload that finds a version past the head (a crash
 * between the two writes) moves the head first, so a crash never loses a version nor reuses its
 * number.
 */
import type { DomainsConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { RecordStore } from '../ports/records.js';
import { loadDomainConfig } from './active.js';
import type { CompiledConfig } from './validation.js';

const VERSION_KIND = 'config-version';
const HEAD_KIND = 'config-head';

export interface ConfigVersion {
  version: number;
  text: string;
  /** The version it replaced when uploaded (0: the first). */
  replaces: number;
  uploadedBy: string;
  /** ms since epoch. */
  uploadedAt: number;
}

export interface ConfigHead {
  /** The newest version uploaded (0: none). */
  latest: number;
  /** The version every instance enforces (0: none: no per-domain rules). */
  active: number;
}

interface StoredVersion {
  version: number;
  text64: string;
  replaces: number;
  uploadedBy: string;
  uploadedAt: number;
}

const versionKey = (domain: string, n: number): string => `${domain}/${String(n).padStart(8, '0')}`;

export class ConfigVersions {
  constructor(
    private readonly records: RecordStore,
    private readonly config: Pick<DomainsConfig, 'maxConfigBytes'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** The domain's head: its latest and active versions (both 0 before the first upload). */
  async head(domain: string): Promise<ConfigHead> {
    return (await this.readHead(domain)).head;
  }

  /** A version, or null when there is no such version. */
  async get(domain: string, version: number): Promise<ConfigVersion | null> {
    if (!Number.isSafeInteger(version) || version < 1) return null;
    const r = await this.records.get(VERSION_KIND, versionKey(domain, version));
    if (!r) return null;
    const v = r.value as unknown as StoredVersion;
    return {
      version: v.version,
      text: Buffer.from(v.text64, 'base64').toString('utf8'),
      replaces: v.replaces,
      uploadedBy: v.uploadedBy,
      uploadedAt: v.uploadedAt,
    };
  }

  /**
   * Stores `text` as the version after `replaces`, if `replaces` is still the latest: parses and
   * compiles it first (400 `invalid_config` with lines, 413 `too_large`), and refuses a stale
   * `replaces` (409 `version_conflict`, with `latest`); each refusal stores nothing. Returns the
   * new version and its compiled form.
   */
  async upload(domain: string, text: string, by: string, replaces: number): Promise<{ version: number; compiled: CompiledConfig }> {
    const compiled = loadDomainConfig(text, this.config);
    const latest = await this.latest(domain);
    if (replaces !== latest) throw conflict(domain, replaces, latest);
    const version = latest + 1;
    const value: StoredVersion = { version, text64: Buffer.from(text, 'utf8').toString('base64'), replaces, uploadedBy: by, uploadedAt: this.now() };
    if (!(await this.records.put(VERSION_KIND, versionKey(domain, version), value as unknown as Json, 0))) {
      throw conflict(domain, replaces, version); // another upload took this number first
    }
    await this.moveHead(domain, (h) => (h.latest < version ? { ...h, latest: version } : null));
    return { version, compiled };
  }

  /** Makes `version` the active one, unless a later one already is (an apply that finishes late never rolls back). */
  async activate(domain: string, version: number): Promise<ConfigHead> {
    return this.moveHead(domain, (h) => (h.active < version ? { latest: Math.max(h.latest, version), active: version } : null));
  }

  /** The latest version, after moving the head past any version a crash left beyond it. */
  private async latest(domain: string): Promise<number> {
    let { latest } = await this.head(domain);
    while (await this.records.get(VERSION_KIND, versionKey(domain, latest + 1))) latest += 1;
    if (latest > (await this.head(domain)).latest) await this.moveHead(domain, (h) => (h.latest < latest ? { ...h, latest } : null));
    return latest;
  }

  private async readHead(domain: string): Promise<{ head: ConfigHead; rev: number }> {
    const r = await this.records.get(HEAD_KIND, domain);
    return r ? { head: r.value as unknown as ConfigHead, rev: r.rev } : { head: { latest: 0, active: 0 }, rev: 0 };
  }

  /** Compare-and-set on the head, re-decided when another writer moved it; `change` returns null to write nothing. */
  private async moveHead(domain: string, change: (h: ConfigHead) => ConfigHead | null): Promise<ConfigHead> {
    for (let attempt = 0; attempt < 20; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 2 ** attempt)));
      const { head, rev } = await this.readHead(domain);
      const next = change(head);
      if (next === null) return head;
      if (await this.records.put(HEAD_KIND, domain, next as unknown as Json, rev)) return next;
    }
    throw new PatchbayError('unavailable', `the configuration head of ${domain} keeps changing; retry`);
  }
}

function conflict(domain: string, replaces: number, latest: number): PatchbayError {
  return new PatchbayError('version_conflict', `the upload replaces version ${replaces} of ${domain}'s configuration, but the latest is ${latest}`, {
    domain,
    replaces,
    latest,
  });
}
