/**
 * The mirror's one SQL dialect: names and statements both adapters run (Postgres through `pg`,
 * PGlite in-process). Pure: no I/O.
 *
 * Safety: every identifier reaches SQL through `ident` (the quoting of `pg`'s escapeIdentifier:
 * double quotes, inner quotes doubled), and every value as a bound parameter. Schema and role
 * names are derived from the domain, never taken from it: `d_<readable part>_<hash>` where the
 * readable part keeps only `[a-z0-9_]` of the domain and the hash (SHA-256 of the whole domain)
 * tells apart domains that read alike (`a.b` and `a_b`).
 */
import { createHash } from 'node:crypto';
import { TAG_SCOPE_TYPE } from '../protocol.js';
import type { BUILTIN_TABLES, IndexDefinition, MirrorTables, SqlType, TableDefinition } from './definitions.js';

/** A quoted identifier (as pg's escapeIdentifier). Refuses U+0000, which Postgres cannot store. */
export function ident(name: string): string {
  if (name.includes('\u0000')) throw new Error('an identifier cannot contain U+0000');
  return `"${name.replace(/"/g, '""')}"`;
}

/** A quoted string constant (as pg's escapeLiteral), for the few statements that take no parameters (CREATE ROLE ... PASSWORD). */
export function literal(text: string): string {
  if (text.includes('\u0000')) throw new Error('a literal cannot contain U+0000');
  const body = text.replace(/'/g, "''");
  return text.includes('\\') ? `E'${body.replace(/\\/g, '\\\\')}'` : `'${body}'`;
}

function suffix(domain: string): string {
  const readable = domain
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 32);
  const hash = createHash('sha256').update(domain).digest('hex').slice(0, 12);
  return readable ? `${readable}_${hash}` : hash;
}

/** The Postgres schema that holds a domain's tables. */
export function schemaName(domain: string): string {
  return `d_${suffix(domain)}`;
}

/** The role a domain's queries run as: it may read that schema's mirrored tables and nothing else of patchbay's. */
export function roleName(domain: string): string {
  return `pb_q_${suffix(domain)}`;
}

/** patchbay's catalog in each domain schema: the tables it created there, with the definition each was last made to. */
export const CATALOG = '_patchbay_tables';
/** Lag samples of the domain's mirror consumer (shared/mirror/lag.ts), one row per flush per process. Not readable by the query role. */
export const LAG = '_patchbay_lag';
/** Settings of the domain schema kept by patchbay (the query role's password on Postgres). Not readable by the query role. */
export const SETTINGS = '_patchbay_settings';

/** The tables every domain has, as definitions (see docs: `scopes` is fed by every scope, `tags` by tag scopes). */
export const BUILTIN: Record<(typeof BUILTIN_TABLES)[number], TableDefinition> = {
  scopes: {
    type: '*',
    columns: {
      owner: { type: 'text', meta: 'owner' },
      name: { type: 'text', meta: 'name' },
      type: { type: 'text', meta: 'type' },
      ii: { type: 'bigint', meta: 'ii' },
      created: { type: 'timestamptz', meta: 'created' },
      updated: { type: 'timestamptz', meta: 'updated' },
      size: { type: 'bigint', meta: 'size' },
      access: { type: 'jsonb', meta: 'access' },
    },
    indexes: [{ columns: ['owner'] }, { columns: ['type', 'updated'] }, { columns: ['name'] }],
  },
  // Tag scopes (shared/domains/tags.ts): state {tagType, target, context}.
  tags: {
    type: TAG_SCOPE_TYPE,
    columns: {
      tag_type: { type: 'text', source: 'tagType' },
      target: { type: 'text' },
      context: { type: 'text[]' },
      owner: { type: 'text', meta: 'owner' },
    },
    indexes: [{ columns: ['target'] }, { columns: ['tag_type', 'target'] }, { columns: ['context'], method: 'gin' }],
  },
};

/** The declared tables plus the built-in ones: everything a domain schema should hold. */
export function withBuiltins(tables: MirrorTables): Record<string, TableDefinition> {
  return { ...BUILTIN, ...tables };
}

/** Whether a scope of `scopeType` has a row in `table`. */
export function feeds(table: string, def: TableDefinition, scopeType: string | null): boolean {
  return table === 'scopes' || (scopeType !== null && def.type === scopeType);
}

/** The deterministic name of an index: the table, then a hash of what it indexes. */
export function indexName(table: string, ix: IndexDefinition): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([ix.columns, ix.unique ?? false, ix.method ?? 'btree']))
    .digest('hex')
    .slice(0, 10);
  return `${table}_ix_${hash}`;
}

export function createTableSql(schema: string, table: string, def: TableDefinition): string {
  const cols = Object.entries(def.columns).map(([c, d]) => `${ident(c)} ${d.type}`);
  return `CREATE TABLE ${ident(schema)}.${ident(table)} (id text PRIMARY KEY, _ii bigint NOT NULL${cols.map((c) => `, ${c}`).join('')})`;
}

export function createIndexSql(schema: string, table: string, ix: IndexDefinition): string {
  const method = ix.method === 'gin' ? ' USING gin' : '';
  return `CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX IF NOT EXISTS ${ident(indexName(table, ix))} ON ${ident(schema)}.${ident(table)}${method} (${ix.columns.map(ident).join(', ')})`;
}

export function alterTypeSql(schema: string, table: string, column: string, type: SqlType, using: 'cast' | 'null'): string {
  const expr = using === 'cast' ? `${ident(column)}::${type}` : `NULL::${type}`;
  return `ALTER TABLE ${ident(schema)}.${ident(table)} ALTER COLUMN ${ident(column)} TYPE ${type} USING ${expr}`;
}

/**
 * The upsert of one row: `$1` id, `$2` ii, then one parameter per column (as text, cast here).
 * A stored row is replaced only by one built at the same or a later `ii`: an older event, however
 * late it comes, never overwrites a newer row, and the same `ii` again writes the same values.
 */
export function upsertSql(schema: string, table: string, def: TableDefinition): string {
  const cols = Object.entries(def.columns);
  const names = ['id', '_ii', ...cols.map(([c]) => ident(c))];
  const values = ['$1', '$2::bigint', ...cols.map(([, d], i) => `$${i + 3}::${d.type}`)];
  const sets = ['_ii = excluded._ii', ...cols.map(([c]) => `${ident(c)} = excluded.${ident(c)}`)];
  return (
    `INSERT INTO ${ident(schema)}.${ident(table)} AS t (${names.join(', ')}) VALUES (${values.join(', ')}) ` +
    `ON CONFLICT (id) DO UPDATE SET ${sets.join(', ')} WHERE t._ii <= excluded._ii`
  );
}

export function deleteSql(schema: string, table: string): string {
  return `DELETE FROM ${ident(schema)}.${ident(table)} WHERE id = $1`;
}

/**
 * Per-row access (a query's `rowsReadableOnly`): the row-level security policy every mirrored
 * table has for the domain's query role. A query transaction says whose rows it may see in
 * settings (`patchbay.rows` = `all`, or the caller in `patchbay.user` and `patchbay.same_domain`,
 * shared/mirror/sql-mirror.ts); unset means no row. `scopes` decides from its own owner and
 * access, as canRead in shared/engine/access.ts does (an access of NULL is a scope stored before
 * access existed: any signed-in user reads); every other table keeps a row when its scope's
 * `scopes` row is visible, which that table's policy decides in turn. The owner of the tables
 * (patchbay's own user: upserts, backfills) is not subject to it.
 */
export const ROW_POLICY = 'pb_rows_v1';

export function rowPolicySql(schema: string, table: string, role: string): string[] {
  const t = `${ident(schema)}.${ident(table)}`;
  const all = "current_setting('patchbay.rows', true) = 'all'";
  const user = "current_setting('patchbay.user', true)";
  const cond =
    table === 'scopes'
      ? `${all} OR owner = ${user} OR access IS NULL OR access->>'visibility' IN ('public', 'authenticated') ` +
        `OR (access->>'visibility' = 'domain' AND current_setting('patchbay.same_domain', true) = 'on') ` +
        `OR (access->'readers') ? ${user} OR (access->'writers') ? ${user}`
      : `${all} OR EXISTS (SELECT 1 FROM ${ident(schema)}.scopes pb_s WHERE pb_s.id = ${ident(table)}.id)`;
  return [
    `ALTER TABLE ${t} ENABLE ROW LEVEL SECURITY`,
    `DROP POLICY IF EXISTS ${ident(ROW_POLICY)} ON ${t}`,
    `CREATE POLICY ${ident(ROW_POLICY)} ON ${t} FOR SELECT TO ${ident(role)} USING (${cond})`,
  ];
}
