/**
 * The Mirror port on a real Postgres server (Cloud SQL or AlloyDB in a Google deployment; any
 * Postgres 15+ elsewhere), through the `pg` driver. The statements are shared with PGlite
 * (shared/mirror/sql-mirror.ts); what is particular here is how a query becomes the domain's role.
 *
 * Isolation: each domain's query role is a LOGIN role with a random password (kept in the
 * domain's schema, readable only by patchbay's own user), and queries run on connections that
 * log in as it (a small pool per domain, closed when idle). A query's session user is therefore
 * the domain's role itself, so no SQL it runs can take on another role: `SET ROLE` from a
 * privileged session would not be a boundary, since `set_config('role', ...)` inside a query
 * could switch back. The role has USAGE on its schema and SELECT on the tables patchbay created
 * there, nothing more (it can still see the system catalogs and what PUBLIC may read, as any
 * role: keep the mirror in a database of its own).
 *
 * The connecting user (PATCHBAY_MIRROR_URL) must be able to create schemas in the database and
 * create roles (CREATEROLE; Cloud SQL's `cloudsqlsuperuser` can), and the server must accept
 * password logins from where patchbay runs for the roles it creates.
 */
import pg from 'pg';
import { ident } from '../../mirror/sql.js';
import type { SqlConn, SqlDriver, SqlResult } from '../../mirror/sql-mirror.js';
import { SqlMirror } from '../../mirror/sql-mirror.js';

export interface PostgresMirrorOptions {
  /** `postgres://user:password@host:port/database` of patchbay's own user. */
  url: string;
  /** Connections for writes (ensure, upsert, remove). Default 4. */
  maxConnections?: number;
  /** Connections per domain for queries. Default 4. */
  maxQueryConnections?: number;
  /** Called with errors of idle connections (they are dropped and replaced). */
  onError?: (err: Error) => void;
}

const conn = (c: pg.PoolClient): SqlConn => ({
  query: async (text, values) => {
    const r = await c.query({ text, values: values ?? [], rowMode: 'array' });
    return { rows: r.rows as unknown[][], fields: r.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })) } satisfies SqlResult;
  },
});

class PgDriver implements SqlDriver {
  readonly loginRoles = true;
  readonly interruptsQueries = true;
  private readonly admin: pg.Pool;
  private readonly readers = new Map<string, pg.Pool>();

  constructor(private readonly opts: PostgresMirrorOptions) {
    this.admin = this.pool(opts.url, opts.maxConnections ?? 4);
  }

  private pool(url: string, max: number): pg.Pool {
    const p = new pg.Pool({ connectionString: url, max, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000 });
    p.on('error', (err) => this.opts.onError?.(err));
    return p;
  }

  private async run<T>(pool: pg.Pool, begin: string, end: 'COMMIT' | 'ROLLBACK', fn: (c: SqlConn) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query(begin);
      try {
        const out = await fn(conn(client));
        await client.query(end);
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch((e: Error) => {
          broken = e;
        });
        throw err;
      }
    } finally {
      client.release(broken);
    }
  }

  transaction<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.run(this.admin, 'BEGIN', 'COMMIT', fn);
  }

  readOnly<T>(role: { name: string; password: string }, fn: (c: SqlConn) => Promise<T>): Promise<T> {
    const key = `${role.name}\u0000${role.password}`;
    let pool = this.readers.get(key);
    if (!pool) {
      const u = new URL(this.opts.url);
      u.username = encodeURIComponent(role.name);
      u.password = encodeURIComponent(role.password);
      pool = this.pool(u.toString(), this.opts.maxQueryConnections ?? 4);
      this.readers.set(key, pool);
    }
    return this.run(pool, 'BEGIN READ ONLY', 'ROLLBACK', fn);
  }

  /** Listeners per channel, served by one connection of patchbay's user (`listening`). */
  private readonly channels = new Map<string, Set<(payload: string | null) => void>>();
  private listening: Promise<pg.Client> | null = null;
  private closed = false;

  async listen(channel: string, onNotify: (payload: string | null) => void): Promise<() => Promise<void>> {
    let set = this.channels.get(channel);
    const first = set === undefined;
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
    }
    set.add(onNotify);
    const listeners = set;
    try {
      const client = await this.listener();
      if (first) await client.query(`LISTEN ${ident(channel)}`);
    } catch (err) {
      listeners.delete(onNotify);
      if (listeners.size === 0) this.channels.delete(channel);
      throw err;
    }
    return async () => {
      listeners.delete(onNotify);
      if (listeners.size > 0 || this.channels.get(channel) !== listeners) return;
      this.channels.delete(channel);
      const client = await this.listening?.catch(() => null);
      await client?.query(`UNLISTEN ${ident(channel)}`).catch(() => {});
    };
  }

  /**
   * The listening connection, opened on first use. When it fails, it is replaced after a second,
   * listens again on every channel and tells every listener that it may have missed changes.
   */
  private listener(): Promise<pg.Client> {
    if (this.listening) return this.listening;
    const client = new pg.Client({ connectionString: this.opts.url, connectionTimeoutMillis: 10_000 });
    client.on('notification', (m) => {
      for (const l of this.channels.get(m.channel) ?? []) l(m.payload ?? '');
    });
    const connected = (async () => {
      await client.connect();
      return client;
    })();
    this.listening = connected;
    connected.catch(() => {
      if (this.listening === connected) this.listening = null;
    });
    client.on('error', (err) => {
      this.opts.onError?.(err);
      if (this.listening !== connected) return;
      this.listening = null;
      void client.end().catch(() => {});
      setTimeout(() => void this.relisten(), 1000).unref();
    });
    return connected;
  }

  private async relisten(): Promise<void> {
    if (this.closed || this.channels.size === 0) return;
    try {
      const client = await this.listener();
      for (const channel of this.channels.keys()) await client.query(`LISTEN ${ident(channel)}`);
    } catch (err) {
      this.opts.onError?.(err as Error);
      setTimeout(() => void this.relisten(), 1000).unref();
      return;
    }
    for (const set of this.channels.values()) for (const l of set) l(null);
  }

  async close(): Promise<void> {
    this.closed = true;
    const pools = [this.admin, ...this.readers.values()];
    this.readers.clear();
    const listening = this.listening;
    this.listening = null;
    this.channels.clear();
    await Promise.all([...pools.map((p) => p.end()), listening?.then((c) => c.end()).catch(() => {})]);
  }
}

export class PostgresMirror extends SqlMirror {
  constructor(opts: PostgresMirrorOptions) {
    super(new PgDriver(opts));
  }
}
