/**
 * What a domain declares for its mirror: tables fed by scopes of one type, and named queries over
 * them. Pure types and zod schemas, no I/O; the domain configuration (shared/domains/) embeds
 * `mirrorTablesSchema` and `namedQueriesSchema` as its `tables` and `queries` sections.
 *
 * Everything a definition names reaches SQL only as a quoted identifier (shared/mirror/sql.ts),
 * but names are also restricted here to lower-case `[a-z_][a-z0-9_]*`, at most 48 characters, so
 * they read the same quoted or not and leave room for the derived index names. A query's SQL is
 * the domain admin's text: it is parsed once here (shared/mirror/sql-text.ts) for its `$name`
 * parameters, which must all be declared (or be `$REQUESTER` / `$DOMAIN`, bound by the server).
 */
import { z } from 'zod';
import { parseQueryText } from './sql-text.js';

/** The SQL types a column or a parameter may have: a closed list, the same on every adapter. */
export const SQL_TYPES = ['text', 'integer', 'bigint', 'boolean', 'double precision', 'timestamptz', 'jsonb', 'text[]'] as const;
export type SqlType = (typeof SQL_TYPES)[number];

/** Scope metadata a column may take instead of a value from the state. */
export const META_FIELDS = ['id', 'owner', 'name', 'type', 'ii', 'created', 'updated', 'size', 'access'] as const;
export type MetaField = (typeof META_FIELDS)[number];

/** Names patchbay uses itself in every domain schema: no declared table may take them. */
export const BUILTIN_TABLES = ['scopes', 'tags'] as const;
/** Columns every mirrored table has: the scope's id (primary key) and the `ii` the row was built at. */
export const RESERVED_COLUMNS = ['id', '_ii'] as const;
/** The parameters the server binds: the caller's user id and the calling domain. */
export const SERVER_PARAMS = ['REQUESTER', 'DOMAIN'] as const;

const NAME = /^[a-z_][a-z0-9_]{0,47}$/;
const name = z.string().regex(NAME, 'must be lower-case [a-z_][a-z0-9_]*, at most 48 characters');

export const columnSchema = z
  .object({
    type: z.enum(SQL_TYPES),
    /**
     * Where the value comes from in the scope's state: a JSON Pointer (`/a/b/0`) or, without a
     * leading `/`, a top-level key. Default: the column's name as a top-level key.
     */
    source: z.string().max(1024).optional(),
    /** Take the value from the scope's metadata instead of its state (exclusive with `source`). */
    meta: z.enum(META_FIELDS).optional(),
  })
  .strict()
  .refine((c) => c.source === undefined || c.meta === undefined, 'give either source or meta, not both')
  .refine((c) => c.source === undefined || c.source === '' || !c.source.startsWith('/') || /^(\/([^~]|~[01])*)+$/.test(c.source), {
    message: 'a source starting with / must be a JSON Pointer (~ only as ~0 or ~1)',
  });
export type ColumnDefinition = z.infer<typeof columnSchema>;

export const indexSchema = z
  .object({
    columns: z.array(name).min(1).max(8),
    unique: z.boolean().optional(),
    /** `gin` for jsonb and text[] containment (`@>`); default btree. */
    method: z.enum(['btree', 'gin']).optional(),
  })
  .strict();
export type IndexDefinition = z.infer<typeof indexSchema>;

export const tableSchema = z
  .object({
    /** The scope type that feeds the table: every scope of this type has one row, keyed by its id. */
    type: z.string().min(1).max(128),
    columns: z.record(name, columnSchema).refine((c) => Object.keys(c).length <= 100, 'at most 100 columns'),
    indexes: z.array(indexSchema).max(16).optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    for (const c of Object.keys(t.columns)) {
      if ((RESERVED_COLUMNS as readonly string[]).includes(c)) ctx.addIssue({ code: 'custom', path: ['columns', c], message: `${c} is reserved` });
    }
    (t.indexes ?? []).forEach((ix, i) => {
      for (const c of ix.columns) {
        if (c !== 'id' && !(c in t.columns)) ctx.addIssue({ code: 'custom', path: ['indexes', i, 'columns'], message: `no column ${c}` });
      }
    });
  });
export type TableDefinition = z.infer<typeof tableSchema>;

/** A domain's `tables` section: table name → definition. */
export const mirrorTablesSchema = z
  .record(name, tableSchema)
  .refine((t) => Object.keys(t).length <= 64, 'at most 64 tables')
  .superRefine((t, ctx) => {
    for (const n of Object.keys(t)) {
      if ((BUILTIN_TABLES as readonly string[]).includes(n) || n.startsWith('_')) {
        ctx.addIssue({ code: 'custom', path: [n], message: `${n} is reserved (built-in tables, or starting with _)` });
      }
    }
  });
export type MirrorTables = z.infer<typeof mirrorTablesSchema>;

const paramName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be [A-Za-z_][A-Za-z0-9_]*');

export const querySchema = z
  .object({
    /** One SELECT (or WITH/VALUES/TABLE) statement; `$name` is a parameter, `$REQUESTER` and `$DOMAIN` are bound by the server. */
    sql: z.string().min(1).max(20_000),
    params: z.record(paramName, z.object({ type: z.enum(SQL_TYPES), optional: z.boolean().optional() }).strict()).optional(),
    /**
     * Domains that may call it besides the query's own (which always may): exact names, or
     * patterns where `*` stands for exactly one host label (`*.example.com`).
     */
    domains: z.array(z.string().min(1).max(253)).max(100).optional(),
    /** The caller sees, in every table the query reads, only rows of scopes it may read (row-level security: shared/mirror/sql.ts). */
    rowsReadableOnly: z.boolean().optional(),
  })
  .strict()
  .superRefine((q, ctx) => {
    const declared = Object.keys(q.params ?? {});
    for (const p of declared) {
      if ((SERVER_PARAMS as readonly string[]).includes(p.toUpperCase())) {
        ctx.addIssue({ code: 'custom', path: ['params', p], message: `${p} is bound by the server and cannot be declared` });
      }
    }
    try {
      const parsed = parseQueryText(q.sql);
      for (const used of parsed.names) {
        if (!(SERVER_PARAMS as readonly string[]).includes(used) && !declared.includes(used)) {
          ctx.addIssue({ code: 'custom', path: ['sql'], message: `$${used} is not a declared parameter` });
        }
      }
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: ['sql'], message: err instanceof Error ? err.message : String(err) });
    }
  });
export type QueryDefinition = z.infer<typeof querySchema>;

/** A domain's `queries` section: query name → definition. */
export const namedQueriesSchema = z.record(paramName, querySchema).refine((q) => Object.keys(q).length <= 256, 'at most 256 queries');
export type NamedQueries = z.infer<typeof namedQueriesSchema>;

/** Whether `caller` matches a `domains` entry: exact (case-insensitive), or `*` as exactly one host label. */
export function domainMatches(pattern: string, caller: string): boolean {
  const p = pattern.toLowerCase().split('.');
  const c = caller.toLowerCase().split('.');
  if (p.length !== c.length) return false;
  return p.every((label, i) => (label === '*' ? (c[i] as string).length > 0 : label === c[i]));
}

/** Whether a caller from `callerDomain` may run a query of `domain`: its own domain, or one its `domains` list matches. */
export function queryAllowed(q: QueryDefinition, domain: string, callerDomain: string): boolean {
  if (callerDomain.toLowerCase() === domain.toLowerCase()) return true;
  return (q.domains ?? []).some((p) => domainMatches(p, callerDomain));
}
