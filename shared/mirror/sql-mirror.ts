/**
 * The Mirror port (shared/ports/mirror.ts) over any Postgres connection, written once: both
 * adapters (Postgres via `pg`, PGlite) supply only a `SqlDriver` (how to get a transaction, how
 * queries take on the domain's role), so the statements, the catalog and the error mapping are
 * the same everywhere. No I/O of its own.
 *
 * Ownership is enforced here: `ensure` reads the domain schema's catalog (`_patchbay_tables`)
 * and touches only tables listed in it; a declared name held by any other table is refused.
 * Order is enforced by the upsert statement (shared/mirror/sql.ts, `upsertSql`).
 */
import { randomBytes } from 'node:crypto';
import { asPatchbayError, PatchbayError } from '../errors.js';
import type { EnsureReport, LagRecord, Mirror, MirroredScope, MirrorStatus, PreparedQuery, QueryLimits, QueryResult } from '../ports/mirror.js';
import type { MirrorTables, TableDefinition } from './definitions.js';
import {
  alterTypeSql,
  CATALOG,
  createIndexSql,
  createTableSql,
  deleteSql,
  feeds,
  ident,
  indexName,
  LAG,
  literal,
  ROW_POLICY,
  roleName,
  rowPolicySql,
  SETTINGS,
  schemaName,
  upsertSql,
  withBuiltins,
} from './sql.js';
import { columnText, oidType, resultValue } from './values.js';

export interface SqlResult {
  /** Rows as arrays, in field order. */
  rows: unknown[][];
  fields: Array<{ name: string; dataTypeID: number }>;
}

export interface SqlConn {
  query(text: string, values?: Array<string | null>): Promise<SqlResult>;
}

export interface SqlDriver {
  /** Whether the query role is a login role queries connect as (Postgres), or one they `SET LOCAL ROLE` to (PGlite). */
  readonly loginRoles: boolean;
  /** Whether `statement_timeout` interrupts a running query (false on PGlite: see its adapter). */
  readonly interruptsQueries: boolean;
  /** Runs `fn` in a transaction on one connection: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (c: SqlConn) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a read-only transaction (`BEGIN READ ONLY` or `SET TRANSACTION READ ONLY` first)
   * on a connection whose session is `role` (login roles), or on the shared one (the caller then
   * sets the role with SET LOCAL ROLE). Always rolled back afterwards.
   */
  readOnly<T>(role: { name: string; password: string }, fn: (c: SqlConn) => Promise<T>): Promise<T>;
  /**
   * Calls `onNotify` with the payload of each notification on `channel` (LISTEN), and with null
   * when some may have been missed (a listening connection lost and re-established). Resolves
   * once listening, with the unlisten.
   */
  listen(channel: string, onNotify: (payload: string | null) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const ROLE_PASSWORD_KEY = 'query_role_password';

/** A SQLSTATE of a database error, or undefined for anything else. */
function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && (err as { severity?: unknown }).severity !== undefined ? code : undefined;
}

/** A database error as the PatchbayError a caller may see (see the port's Errors). */
function queryError(err: unknown): PatchbayError {
  const code = sqlState(err);
  if (code === undefined) return asPatchbayError(err);
  if (code === '57014') return new PatchbayError('query_timeout', 'the query ran past its statement timeout');
  if (code.startsWith('08') || code.startsWith('53') || code === '57P01' || code === '57P03') {
    return new PatchbayError('unavailable', 'the mirror database is unavailable; retry');
  }
  return new PatchbayError('query_failed', `the query failed (SQLSTATE ${code})`, { pgCode: code });
}

/**
 * Tells the domain's watchers (Mirror.watch) which tables this transaction changed: a
 * notification on the schema's channel, delivered by Postgres when (and only if) it commits.
 */
async function notify(c: SqlConn, schema: string, tables: string[]): Promise<void> {
  if (tables.length > 0) await c.query('SELECT pg_notify($1, $2)', [schema, tables.join(',')]);
}

interface CatalogEntry {
  def: TableDefinition;
}

export class SqlMirror implements Mirror {
  private readonly passwords = new Map<string, string>();

  constructor(private readonly driver: SqlDriver) {}

  async ensure(domain: string, tables: MirrorTables): Promise<EnsureReport> {
    const schema = schemaName(domain);
    const role = roleName(domain);
    const s = ident(schema);
    const report: EnsureReport = { created: [], altered: [], dropped: [], backfill: [] };
    const password = await this.driver.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [schema]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.${ident(CATALOG)} (name text PRIMARY KEY, definition jsonb NOT NULL)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.${ident(SETTINGS)} (key text PRIMARY KEY, value text NOT NULL)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${s}.${ident(LAG)} (at timestamptz NOT NULL, lags integer[] NOT NULL, last jsonb NOT NULL)`);
      const pw = await this.ensureRole(c, schema, role);
      await c.query(`GRANT USAGE ON SCHEMA ${s} TO ${ident(role)}`);

      const catalog = new Map<string, CatalogEntry>();
      for (const [name, def] of (await c.query(`SELECT name, definition FROM ${s}.${ident(CATALOG)}`)).rows) {
        catalog.set(name as string, { def: (typeof def === 'string' ? JSON.parse(def) : def) as TableDefinition });
      }
      const existing = new Set((await c.query('SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = $1', [schema])).rows.map((r) => r[0] as string));
      const wanted = withBuiltins(tables);
      for (const name of Object.keys(wanted)) {
        if (existing.has(name) && !catalog.has(name)) {
          throw new PatchbayError('invalid_request', `table ${name} exists in the domain's schema and was not created by patchbay`, { table: name });
        }
      }
      for (const [name, def] of Object.entries(wanted)) {
        const had = catalog.get(name);
        if (!had || !existing.has(name)) {
          await c.query(createTableSql(schema, name, def));
          for (const ix of def.indexes ?? []) await c.query(createIndexSql(schema, name, ix));
          await c.query(`GRANT SELECT ON ${s}.${ident(name)} TO ${ident(role)}`);
          report.created.push(name);
          report.backfill.push(name);
        } else {
          const { altered, backfill } = await this.alter(c, schema, name, had.def, def);
          if (altered) report.altered.push(name);
          if (backfill) report.backfill.push(name);
          if (!altered && JSON.stringify(had.def) === JSON.stringify(def)) continue;
        }
        await c.query(
          `INSERT INTO ${s}.${ident(CATALOG)} (name, definition) VALUES ($1, $2::jsonb) ON CONFLICT (name) DO UPDATE SET definition = excluded.definition`,
          [name, JSON.stringify(def)],
        );
      }
      // Per-row access: every table gets its policy once (tables made before policies existed too).
      const policed = new Set(
        (await c.query('SELECT tablename FROM pg_catalog.pg_policies WHERE schemaname = $1 AND policyname = $2', [schema, ROW_POLICY])).rows.map(
          (r) => r[0] as string,
        ),
      );
      for (const name of Object.keys(wanted)) {
        if (!policed.has(name)) for (const sql of rowPolicySql(schema, name, role)) await c.query(sql);
      }
      for (const name of catalog.keys()) {
        if (name in wanted) continue;
        await c.query(`DROP TABLE IF EXISTS ${s}.${ident(name)}`);
        await c.query(`DELETE FROM ${s}.${ident(CATALOG)} WHERE name = $1`, [name]);
        report.dropped.push(name);
      }
      if (report.created.length + report.altered.length + report.dropped.length > 0) await notify(c, schema, ['*']);
      return pw;
    });
    this.passwords.set(role, password);
    return report;
  }

  /** Creates the domain's query role when missing; returns its password (kept in the schema's settings, readable only by patchbay). */
  private async ensureRole(c: SqlConn, schema: string, role: string): Promise<string> {
    const s = ident(schema);
    const stored = (await c.query(`SELECT value FROM ${s}.${ident(SETTINGS)} WHERE key = $1`, [ROLE_PASSWORD_KEY])).rows[0]?.[0];
    const exists = (await c.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [role])).rows.length > 0;
    if (typeof stored === 'string' && exists) return stored;
    const password = randomBytes(24).toString('hex');
    const login = this.driver.loginRoles ? `LOGIN PASSWORD ${literal(password)} CONNECTION LIMIT 32` : 'NOLOGIN';
    const options = `NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION ${login}`;
    try {
      await c.query(exists ? `ALTER ROLE ${ident(role)} ${options}` : `CREATE ROLE ${ident(role)} ${options}`);
    } catch (err) {
      // Roles belong to the cluster, not the database: another database's patchbay may have
      // created it since we looked. Take it over (the password is ours from now on).
      if (sqlState(err) !== '42710') throw err;
      await c.query(`ALTER ROLE ${ident(role)} ${options}`);
    }
    await c.query(`INSERT INTO ${s}.${ident(SETTINGS)} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [
      ROLE_PASSWORD_KEY,
      password,
    ]);
    return password;
  }

  /** Brings one table patchbay created from `from` to `to`. */
  private async alter(c: SqlConn, schema: string, table: string, from: TableDefinition, to: TableDefinition): Promise<{ altered: boolean; backfill: boolean }> {
    const t = `${ident(schema)}.${ident(table)}`;
    let altered = false;
    let backfill = false;
    if (from.type !== to.type) {
      // Its rows came from scopes of another type: none of them belongs here any more.
      await c.query(`DELETE FROM ${t}`);
      altered = true;
      backfill = true;
    }
    for (const [col, d] of Object.entries(to.columns)) {
      const old = from.columns[col];
      if (!old) {
        await c.query(`ALTER TABLE ${t} ADD COLUMN ${ident(col)} ${d.type}`);
        altered = true;
        backfill = true;
        continue;
      }
      if (old.type !== d.type) {
        await c.query('SAVEPOINT pb_alter');
        try {
          await c.query(alterTypeSql(schema, table, col, d.type, 'cast'));
          await c.query('RELEASE SAVEPOINT pb_alter');
        } catch (err) {
          if (sqlState(err) === undefined) throw err;
          // A stored value does not convert (text 'abc' to integer): empty the column instead;
          // the backfill fills it from the states.
          await c.query('ROLLBACK TO SAVEPOINT pb_alter');
          await c.query(alterTypeSql(schema, table, col, d.type, 'null'));
        }
        altered = true;
        backfill = true;
      }
      if (old.source !== d.source || old.meta !== d.meta) backfill = true;
    }
    for (const col of Object.keys(from.columns)) {
      if (col in to.columns) continue;
      await c.query(`ALTER TABLE ${t} DROP COLUMN IF EXISTS ${ident(col)}`);
      altered = true;
    }
    const before = new Set((from.indexes ?? []).map((ix) => indexName(table, ix)));
    const after = new Set((to.indexes ?? []).map((ix) => indexName(table, ix)));
    for (const ix of to.indexes ?? []) {
      if (before.has(indexName(table, ix))) continue;
      await c.query(createIndexSql(schema, table, ix));
      altered = true;
    }
    for (const name of before) {
      if (after.has(name)) continue;
      await c.query(`DROP INDEX IF EXISTS ${ident(schema)}.${ident(name)}`);
      altered = true;
    }
    return { altered, backfill };
  }

  async upsert(domain: string, tables: MirrorTables, scope: MirroredScope): Promise<void> {
    const schema = schemaName(domain);
    const all = withBuiltins(tables);
    await this.driver.transaction(async (c) => {
      const changed: string[] = [];
      for (const [name, def] of Object.entries(all)) {
        if (!feeds(name, def, scope.meta.type)) continue;
        const values = [scope.id, String(scope.ii), ...Object.entries(def.columns).map(([col, d]) => columnText(col, d, scope))];
        await c.query(upsertSql(schema, name, def), values);
        changed.push(name);
      }
      await notify(c, schema, changed);
    });
  }

  async remove(domain: string | null, id: string): Promise<void> {
    await this.driver.transaction(async (c) => {
      const schemas =
        domain === null
          ? (await c.query("SELECT schemaname FROM pg_catalog.pg_tables WHERE tablename = $1 AND schemaname LIKE 'd\\_%'", [CATALOG])).rows.map(
              (r) => r[0] as string,
            )
          : (await c.query('SELECT schemaname FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2', [schemaName(domain), CATALOG])).rows.map(
              (r) => r[0] as string,
            );
      for (const schema of schemas) {
        const names = (await c.query(`SELECT name FROM ${ident(schema)}.${ident(CATALOG)}`)).rows.map((r) => r[0] as string);
        let changed = 0;
        for (const name of names)
          changed += (await c.query(`WITH gone AS (${deleteSql(schema, name)} RETURNING 1) SELECT count(*)::int FROM gone`, [id])).rows[0]?.[0] as number;
        if (changed > 0) await notify(c, schema, names);
      }
    });
  }

  async query(domain: string, q: PreparedQuery, limits: QueryLimits): Promise<QueryResult> {
    const schema = schemaName(domain);
    const role = roleName(domain);
    const started = Date.now();
    let result: SqlResult;
    try {
      result = await this.run(schema, role, q, limits);
    } catch (err) {
      // Another process re-created the role with a new password since we read it: read it again.
      if (sqlState(err) !== '28P01') throw queryError(err);
      this.passwords.delete(role);
      try {
        result = await this.run(schema, role, q, limits);
      } catch (again) {
        throw queryError(again);
      }
    }
    // Without interruption (PGlite), a query past its timeout is still refused once it ends, so
    // the answer is the same on both adapters (only later).
    if (!this.driver.interruptsQueries && Date.now() - started > limits.timeoutMs) {
      throw new PatchbayError('query_timeout', 'the query ran past its statement timeout');
    }
    const truncated = result.rows.length > limits.maxRows;
    const rows = truncated ? result.rows.slice(0, limits.maxRows) : result.rows;
    return {
      columns: result.fields.map((f) => ({ name: f.name, type: oidType(f.dataTypeID) })),
      rows: rows.map((r) => r.map((v, i) => resultValue(v, result.fields[i]?.dataTypeID ?? 0))),
      truncated,
    };
  }

  private async run(schema: string, role: string, q: PreparedQuery, limits: QueryLimits): Promise<SqlResult> {
    const password = await this.password(schema, role);
    return this.driver.readOnly({ name: role, password }, async (c) => {
      if (!this.driver.loginRoles) await c.query(`SET LOCAL ROLE ${ident(role)}`);
      // Whose rows the tables show (their row-level security: shared/mirror/sql.ts, rowPolicySql).
      const by = q.readableBy;
      await c.query(
        "SELECT set_config('statement_timeout', $1, true), set_config('search_path', $2, true), set_config('patchbay.rows', $3, true), " +
          "set_config('patchbay.user', $4, true), set_config('patchbay.same_domain', $5, true)",
        [String(Math.max(1, Math.floor(limits.timeoutMs))), ident(schema), by ? 'readable' : 'all', by?.user ?? '', by?.sameDomain ? 'on' : 'off'],
      );
      // A cursor reads only what is fetched (the row cap costs nothing past it), and accepts
      // only a query (SELECT, VALUES, WITH ...), never another kind of statement.
      await c.query(`DECLARE pb_query NO SCROLL CURSOR FOR ${q.text}`, q.values);
      return c.query(`FETCH FORWARD ${Math.max(0, Math.floor(limits.maxRows)) + 1} FROM pb_query`);
    });
  }

  /** The query role's password (Postgres logs in with it), read once per process from the schema's settings. */
  private async password(schema: string, role: string): Promise<string> {
    const known = this.passwords.get(role);
    if (known !== undefined || !this.driver.loginRoles) return known ?? '';
    const row = await this.driver
      .transaction(async (c) => {
        const has = (await c.query('SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2', [schema, SETTINGS])).rows.length > 0;
        return has ? (await c.query(`SELECT value FROM ${ident(schema)}.${ident(SETTINGS)} WHERE key = $1`, [ROLE_PASSWORD_KEY])).rows[0] : undefined;
      })
      .catch((err: unknown) => {
        throw queryError(err);
      });
    const pw = row?.[0];
    if (typeof pw !== 'string') throw new PatchbayError('query_failed', "the domain's mirror does not exist yet", { pgCode: '3F000' });
    this.passwords.set(role, pw);
    return pw;
  }

  async recordLag(domain: string, rec: LagRecord, windowMs: number): Promise<void> {
    const t = `${ident(schemaName(domain))}.${ident(LAG)}`;
    await this.driver.transaction(async (c) => {
      if (!(await this.hasLagTable(c, domain))) return;
      await c.query(`DELETE FROM ${t} WHERE at < now() - ($1::bigint * interval '1 millisecond')`, [String(Math.floor(windowMs))]);
      const lags = `{${rec.lags.map((l) => Math.max(0, Math.min(2 ** 31 - 1, Math.round(l)))).join(',')}}`;
      await c.query(`INSERT INTO ${t} (at, lags, last) VALUES (now(), $1::integer[], $2::jsonb)`, [lags, JSON.stringify(rec.last)]);
    });
  }

  async status(domain: string, windowMs: number): Promise<MirrorStatus> {
    const t = `${ident(schemaName(domain))}.${ident(LAG)}`;
    const rows = await this.driver.transaction(async (c) => {
      if (!(await this.hasLagTable(c, domain))) return [];
      return (await c.query(`SELECT lags, last FROM ${t} WHERE at >= now() - ($1::bigint * interval '1 millisecond')`, [String(Math.floor(windowMs))])).rows;
    });
    const lags: number[] = [];
    const tables: MirrorStatus['tables'] = {};
    for (const [l, last] of rows) {
      for (const x of l as number[]) lags.push(Number(x));
      const parsed = (typeof last === 'string' ? JSON.parse(last) : last) as LagRecord['last'];
      for (const [name, v] of Object.entries(parsed)) if (!tables[name] || tables[name].at < v.at) tables[name] = v;
    }
    lags.sort((a, b) => a - b);
    const pct = (p: number) => (lags.length === 0 ? null : (lags[Math.min(lags.length - 1, Math.ceil((p / 100) * lags.length) - 1)] as number));
    return { lag: { windowMs, count: lags.length, p50: pct(50), p99: pct(99), max: lags.length === 0 ? null : (lags[lags.length - 1] as number) }, tables };
  }

  private async hasLagTable(c: SqlConn, domain: string): Promise<boolean> {
    return (await c.query('SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2', [schemaName(domain), LAG])).rows.length > 0;
  }

  watch(domain: string, listener: (tables: string[]) => void): Promise<() => Promise<void>> {
    return this.driver.listen(schemaName(domain), (payload) => listener(payload === null || payload === '' ? ['*'] : payload.split(',')));
  }

  /**
   * Runs one statement as patchbay's own user, outside any domain's sandbox: for tests and
   * operators only, never with SQL from a request.
   */
  adminQuery(text: string, values: Array<string | null> = []): Promise<SqlResult> {
    return this.driver.transaction((c) => c.query(text, values));
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}
