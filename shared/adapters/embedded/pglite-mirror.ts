/**
 * The Mirror port embedded: PGlite (`@electric-sql/pglite`, Postgres compiled to WebAssembly,
 * running in this process), stored under `<dataDir>/mirror`. The statements are the ones the
 * Postgres adapter runs (shared/mirror/sql-mirror.ts), so a domain's queries run unchanged.
 *
 * Starting PGlite costs seconds (3 to 35 s on a loaded 2-core machine), so one database per
 * directory is opened once per process and shared by every PGliteMirror on it (reference counted:
 * the last close closes it). PGlite has one connection; it runs one query or transaction at a time.
 *
 * Differences from real Postgres, all of them about queries (also in docs/mirror.md):
 * - Roles: PGlite has a single session, of its superuser. A query takes on the domain's role
 *   with `SET LOCAL ROLE` inside its read-only transaction, so a query that reads another
 *   domain's schema, or writes, fails as on Postgres. But this is not a boundary against a
 *   domain admin who writes hostile SQL: `set_config('role', ...)` inside a query can switch back
 *   to the superuser, since the session user is one. Embedded mode trusts its domain admins.
 * - Timeouts: WebAssembly runs to the end of a statement without interruption, so
 *   `statement_timeout` does not stop a query; the process is busy until it ends, and it is then
 *   answered with `query_timeout` all the same.
 */
import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { SqlConn, SqlDriver } from '../../mirror/sql-mirror.js';
import { SqlMirror } from '../../mirror/sql-mirror.js';

interface Shared {
  db: Promise<PGlite>;
  refs: number;
}

/** One database per directory and process (see the top of this file). */
const open = new Map<string, Shared>();

const conn = (tx: Transaction): SqlConn => ({
  query: async (text, values) => {
    const r = await tx.query<unknown[]>(text, values ?? [], { rowMode: 'array' });
    return { rows: r.rows, fields: r.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })) };
  },
});

class PgliteDriver implements SqlDriver {
  readonly loginRoles = false;
  readonly interruptsQueries = false;
  private closed = false;

  constructor(
    private readonly key: string,
    private readonly shared: Shared,
  ) {}

  private async db(): Promise<PGlite> {
    if (this.closed) throw new Error('the mirror is closed');
    return this.shared.db;
  }

  async transaction<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return (await this.db()).transaction((tx) => fn(conn(tx)));
  }

  async readOnly<T>(_role: { name: string; password: string }, fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return (await this.db()).transaction(async (tx) => {
      await tx.query('SET TRANSACTION READ ONLY');
      const out = await fn(conn(tx));
      await tx.rollback(); // resets the role and settings (all SET LOCAL)
      return out;
    });
  }

  async listen(channel: string, onNotify: (payload: string | null) => void): Promise<() => Promise<void>> {
    // One session: it receives the notifications of its own transactions, the only ones there are.
    const unlisten = await (await this.db()).listen(channel, (payload) => onNotify(payload));
    return async () => {
      if (!this.closed) await unlisten();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.shared.refs -= 1;
    if (this.shared.refs > 0) return;
    open.delete(this.key);
    await (await this.shared.db).close();
  }
}

export class PGliteMirror extends SqlMirror {
  /** A mirror stored under `dir` (created if missing), or in memory without one (tests). */
  constructor(dir?: string) {
    const key = dir ?? `memory:${Math.random()}`;
    let shared = open.get(key);
    if (!shared) {
      if (dir) mkdirSync(dir, { recursive: true });
      const db = PGlite.create(dir ? { dataDir: dir } : {});
      shared = { db, refs: 0 };
      open.set(key, shared);
      db.catch(() => open.delete(key));
    }
    shared.refs += 1;
    super(new PgliteDriver(key, shared));
  }
}
