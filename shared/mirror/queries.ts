/**
 * Named queries, from a call to a statement ready to run (pure; the Mirror port runs it):
 * which query (`unknown_query` when the domain has none of that name, or the calling domain may
 * not run it: a stranger learns nothing about which queries exist), its parameters checked
 * against their declared types (`invalid_params`), and `$REQUESTER` / `$DOMAIN` bound from the
 * server's own knowledge of the caller. A client cannot supply those two: a parameter of either
 * name (in any case) is refused, and since every value is a bound parameter, no value can change
 * the SQL text. A query declared `rowsReadableOnly` carries the caller as `readableBy`: the
 * mirror then shows it only the rows of scopes it may read (shared/ports/mirror.ts, Rows).
 */
import { serviceUser } from '../engine/access.js';
import { PatchbayError } from '../errors.js';
import type { PreparedQuery } from '../ports/mirror.js';
import { type NamedQueries, queryAllowed, SERVER_PARAMS, type SqlType } from './definitions.js';
import { parseQueryText, positionalText } from './sql-text.js';
import { paramText } from './values.js';

/** Who runs a query, as the server knows it (never from the request body). */
export interface QueryCaller {
  /** The caller's user id: `$REQUESTER`. */
  requester: string;
  /** The domain the caller acts in: `$DOMAIN`, and what the query's `domains` list is checked against. */
  domain: string;
}

/**
 * The statement for `name` of `domain`'s `queries` with `params` (a JSON object from the client).
 * Throws `unknown_query` or `invalid_params`; nothing has run then.
 */
export function prepareQuery(queries: NamedQueries, domain: string, name: string, params: unknown, caller: QueryCaller): PreparedQuery {
  const q = Object.hasOwn(queries, name) ? queries[name] : undefined;
  if (!q || !queryAllowed(q, domain, caller.domain)) throw new PatchbayError('unknown_query', `no query ${name}`, { query: name });
  if (params === undefined) params = {};
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new PatchbayError('invalid_params', 'params must be an object of parameter values');
  }
  const given = params as Record<string, unknown>;
  const declared = q.params ?? {};
  for (const key of Object.keys(given)) {
    if ((SERVER_PARAMS as readonly string[]).includes(key.toUpperCase())) {
      throw new PatchbayError('invalid_params', `${key} is bound by the server and cannot be supplied`, { param: key });
    }
    if (!Object.hasOwn(declared, key)) throw new PatchbayError('invalid_params', `unknown parameter ${key}`, { param: key });
  }
  const parsed = parseQueryText(q.sql);
  const types: Record<string, SqlType> = { REQUESTER: 'text', DOMAIN: 'text' };
  const values: Array<string | null> = [];
  for (const p of parsed.names) {
    if (p === 'REQUESTER') values.push(caller.requester);
    else if (p === 'DOMAIN') values.push(caller.domain);
    else {
      const d = declared[p];
      if (!d) throw new PatchbayError('internal', `query ${name} uses an undeclared parameter`); // definitions.ts refuses such a query
      types[p] = d.type;
      const v = given[p];
      if (v === undefined && !d.optional) throw new PatchbayError('invalid_params', `missing parameter ${p}`, { param: p, type: d.type });
      values.push(v === undefined ? null : paramText(p, d.type, v));
    }
  }
  const text = positionalText(parsed, parsed.names, types);
  // Per-row access: the rows of scopes the caller may read (shared/engine/access.ts); the
  // domain's service identity reads every scope of its domain, so it sees every row.
  if (q.rowsReadableOnly && caller.requester !== serviceUser(domain)) {
    return { text, values, readableBy: { user: caller.requester, sameDomain: caller.domain === domain } };
  }
  return { text, values };
}
