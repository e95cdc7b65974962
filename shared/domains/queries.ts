/**
 * Running a domain's named queries (`POST /v1/domains/{domain}/queries/{name}`): the query comes
 * from the domain's active configuration (`queries`), is prepared with the caller's identity as
 * the server knows it (`$REQUESTER`, `$DOMAIN`: shared/mirror/queries.ts) and runs on the mirror
 * with the deployment's timeout and row cap (PATCHBAY_MIRROR_QUERY_TIMEOUT_MS,
 * PATCHBAY_MIRROR_MAX_ROWS).
 *
 * What a caller learns: a domain without that query, or whose query does not list the caller's
 * domain, answers the same `unknown_query` (no telling which queries exist). A query marked
 * `rowsReadableOnly` shows the caller only rows of scopes it may read (the mirror's row-level
 * security, shared/mirror/sql.ts rowPolicySql).
 */
import type { MirrorConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import { prepareQuery, type QueryCaller } from '../mirror/queries.js';
import { withBuiltins } from '../mirror/sql.js';
import { parseQueryText } from '../mirror/sql-text.js';
import type { Mirror, QueryResult } from '../ports/mirror.js';
import type { ActiveConfigs } from './active.js';
import { mirrorTablesOf } from './mirror-step.js';

export class NamedQueries {
  /** Definitions ensured by this process, per domain (only when `ensureOnUse`). */
  private readonly ensured = new Map<string, string>();

  constructor(
    private readonly configs: ActiveConfigs,
    private readonly mirror: Mirror | null,
    private readonly limits: Pick<MirrorConfig, 'mirrorQueryTimeoutMs' | 'mirrorMaxRows'>,
    /**
     * Make the domain's schema match its tables before the first query (configurations given as
     * files or in-process, which no apply prepares; uploaded ones are prepared by their apply).
     */
    private readonly ensureOnUse = false,
  ) {}

  /**
   * The mirror tables a query may read (its identifiers that name one of the domain's tables),
   * after checking that `caller` may run it with `params` (`unknown_query`, `invalid_params`).
   */
  async tablesRead(domain: string, name: string, params: unknown, caller: QueryCaller): Promise<string[]> {
    await this.configs.prepare?.(domain);
    const config = this.configs.get(domain)?.config;
    prepareQuery(config?.queries ?? {}, domain, name, params, caller);
    const q = config?.queries?.[name];
    if (!q) return [];
    const words = new Set(parseQueryText(q.sql).words);
    return Object.keys(withBuiltins(mirrorTablesOf(config) ?? {})).filter((t) => words.has(t));
  }

  async run(domain: string, name: string, params: unknown, caller: QueryCaller): Promise<QueryResult> {
    await this.configs.prepare?.(domain);
    const config = this.configs.get(domain)?.config;
    const prepared = prepareQuery(config?.queries ?? {}, domain, name, params, caller);
    if (this.mirror === null) throw new PatchbayError('unavailable', 'this deployment has no mirror to query');
    const tables = mirrorTablesOf(config);
    if (this.ensureOnUse && tables !== null) {
      const key = JSON.stringify(tables);
      if (this.ensured.get(domain) !== key) {
        await this.mirror.ensure(domain, tables);
        this.ensured.set(domain, key);
      }
    }
    return this.mirror.query(domain, prepared, { timeoutMs: this.limits.mirrorQueryTimeoutMs, maxRows: this.limits.mirrorMaxRows });
  }
}
