/**
 * Where the commit path finds a domain's active configuration: `ActiveConfigs.get(domain)`, a
 * synchronous lookup of a configuration compiled beforehand (shared/domains/validation.ts), so a
 * commit never waits for a read. Whoever owns the configurations refreshes what `get` answers.
 * Today that is `StaticConfigs`: set in-process (tests) or read once at start from
 * PATCHBAY_DOMAIN_CONFIG_DIR (`<domain>.yaml|.yml|.json`). Uploaded, versioned configurations
 * (issue 13, part 2's storage and apply) are not built yet; they will refresh the same interface.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DomainsConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import { parseDomainConfig } from './config-parse.js';
import { type CompiledConfig, compileDomainConfig } from './validation.js';

/** The active configuration of each domain, compiled. */
export interface ActiveConfigs {
  /**
   * The domain's active configuration, or `undefined` when it has none (no per-domain rules).
   * Synchronous and cheap: it runs for every patch, inside the ledger's commit.
   */
  get(domain: string): CompiledConfig | undefined;
  /** Awaited before `get` is used for `domain` (CommitRules.prepare): loads what `get` needs. Default: nothing to load. */
  prepare?(domain: string): Promise<void>;
}

/** Parses and compiles a configuration's text; throws `too_large` or `invalid_config` with line numbers. */
export function loadDomainConfig(text: string, limits: Pick<DomainsConfig, 'maxConfigBytes'>): CompiledConfig {
  const { config, locate } = parseDomainConfig(text, limits);
  return compileDomainConfig(config, locate);
}

/** Configurations held in memory, replaced whole per domain. */
export class StaticConfigs implements ActiveConfigs {
  private readonly byDomain = new Map<string, CompiledConfig>();

  get(domain: string): CompiledConfig | undefined {
    return this.byDomain.get(domain);
  }

  /** Makes `compiled` the domain's active configuration (`undefined`: none). */
  set(domain: string, compiled: CompiledConfig | undefined): void {
    if (compiled) this.byDomain.set(domain, compiled);
    else this.byDomain.delete(domain);
  }

  /** The domains that have one. */
  domains(): string[] {
    return [...this.byDomain.keys()];
  }
}

const FILE = /^(.+)\.(ya?ml|json)$/;

/**
 * The configurations in `config.domainConfigDir`, one per `<domain>.yaml|.yml|.json` file (other
 * files and directories are ignored); `undefined` when the setting is empty. A file that does not parse throws,
 * naming the file and the line, so a process with a broken configuration does not start.
 */
export function configsFromDir(config: Pick<DomainsConfig, 'maxConfigBytes' | 'domainConfigDir'>): StaticConfigs | undefined {
  if (config.domainConfigDir === '') return undefined;
  const configs = new StaticConfigs();
  const files = readdirSync(config.domainConfigDir, { withFileTypes: true }).filter((e) => e.isFile() || e.isSymbolicLink());
  for (const file of files.map((e) => e.name).sort()) {
    const m = FILE.exec(file);
    if (!m) continue;
    const domain = m[1] as string;
    if (configs.get(domain)) throw new Error(`${file}: domain ${domain} has more than one configuration file in ${config.domainConfigDir}`);
    try {
      configs.set(domain, loadDomainConfig(readFileSync(join(config.domainConfigDir, file), 'utf8'), config));
    } catch (err) {
      if (err instanceof PatchbayError) throw new Error(`${join(config.domainConfigDir, file)}: ${err.message}`);
      throw err;
    }
  }
  return configs;
}
