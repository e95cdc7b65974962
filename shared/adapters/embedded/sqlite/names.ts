/**
 * The embedded ledger's scope names: which scope (domain, owner, name) names (ScopeLog.resolveName,
 * rename, and createScope's claim of its name). The guarantee kept here: a name names at most one
 * scope. Table `names` has (domain, owner, name) as its primary key, and a row is inserted in the
 * same transaction as the scope's head row (createScope) or in the same savepoint as the rename's
 * update of `scopes.name`, so of concurrent creates and renames to one name (on one connection or
 * several on one file) exactly one inserts it; the others see the conflict and roll back.
 *
 * Why a table of its own and not a unique index on `scopes(domain, owner, name)`: files written
 * before names were unique may hold duplicates, and such an index could not be built on them. When
 * a file without the table is opened, it is filled from `scopes`, the newest scope of each
 * (domain, owner, name) first (`created`, then the greater id), so the newest holds the name, as
 * the seed's lookup resolved; older duplicates keep `scopes.name` (listings show it) but hold
 * nothing: they are not found by name, and renaming one away frees nothing. When the holder lets
 * the name go (renamed away), `resolveName` gives it to the newest of those left, as the Firestore
 * ledger does (`registerLegacy`, found by the index `scopes_name`).
 */
import type Database from 'better-sqlite3';
import { nameTaken } from '../../../ports/index.js';

const NAMES = `CREATE TABLE names (
  domain TEXT NOT NULL,
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  scope TEXT NOT NULL UNIQUE,
  PRIMARY KEY (domain, owner, name)
) WITHOUT ROWID`;

/** Every named scope's name as a `names` row, newest first so the newest of duplicates holds it. */
const NAMES_FROM_SCOPES = `INSERT OR IGNORE INTO names (domain, owner, name, scope)
  SELECT domain, owner, name, id FROM scopes WHERE name IS NOT NULL ORDER BY created DESC, id DESC`;

/** Creates and fills `names` if the file has none yet (one transaction: a crash leaves no table, and the next open fills it). */
export function migrateNames(db: Database.Database): void {
  db.exec('CREATE INDEX IF NOT EXISTS scopes_name ON scopes(owner, domain, name) WHERE name IS NOT NULL');
  if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'names'").get()) return;
  db.transaction(() => db.exec(`${NAMES}; ${NAMES_FROM_SCOPES}`))();
}

/** The newest scope stored with this name that holds none (a duplicate from before names were unique). */
const LEGACY = `SELECT id FROM scopes WHERE owner = @owner AND domain = @domain AND name = @name
  AND id NOT IN (SELECT scope FROM names) ORDER BY created DESC, id DESC LIMIT 1`;

/** The statements over `names`; every method runs inside the caller's transaction or savepoint. */
export class SqliteNames {
  private readonly stmt;

  constructor(db: Database.Database) {
    this.stmt = {
      claim: db.prepare('INSERT INTO names (domain, owner, name, scope) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING'),
      resolve: db.prepare<[string, string, string], { scope: string }>('SELECT scope FROM names WHERE domain = ? AND owner = ? AND name = ?'),
      held: db.prepare<[string], { name: string }>('SELECT name FROM names WHERE scope = ?'),
      release: db.prepare<[string]>('DELETE FROM names WHERE scope = ?'),
      head: db.prepare<[string], { domain: string; owner: string }>('SELECT domain, owner FROM scopes WHERE id = ?'),
      setName: db.prepare<[string | null, string]>('UPDATE scopes SET name = ? WHERE id = ?'),
      legacy: db.prepare<{ domain: string; owner: string; name: string }, { id: string }>(LEGACY),
      registerLegacy: db.prepare(`INSERT OR IGNORE INTO names (domain, owner, name, scope) SELECT @domain, @owner, @name, id FROM (${LEGACY})`),
    };
  }

  /** Whether a scope stored with this name holds none (a read: whether `registerLegacy` has anything to write). */
  hasLegacy(domain: string, owner: string, name: string): boolean {
    return this.stmt.legacy.get({ domain, owner, name }) !== undefined;
  }

  /** Gives the name, if nothing holds it, to the newest scope stored with it that holds none; returns its holder then. */
  registerLegacy(domain: string, owner: string, name: string): string | null {
    this.stmt.registerLegacy.run({ domain, owner, name });
    return this.resolve(domain, owner, name);
  }

  resolve(domain: string, owner: string, name: string): string | null {
    return this.stmt.resolve.get(domain, owner, name)?.scope ?? null;
  }

  /** Makes (domain, owner, name) name `scope`; throws `name_taken` if it names a scope already. */
  claim(domain: string, owner: string, name: string, scope: string): void {
    if (this.stmt.claim.run(domain, owner, name, scope).changes === 0) throw nameTaken(domain, name);
  }

  /**
   * The rename's writes (ScopeLog.rename): false when there is no such scope; throws `name_taken`
   * after having released the old name, so the caller must run it in a savepoint it rolls back.
   */
  rename(id: string, name: string | null): boolean {
    const head = this.stmt.head.get(id);
    if (!head) return false;
    if (name !== null && this.stmt.held.get(id)?.name === name) return true; // it has that name already
    this.stmt.release.run(id);
    if (name !== null) this.claim(head.domain, head.owner, name, id);
    this.stmt.setName.run(name, id);
    return true;
  }
}
