/**
 * The embedded ledger's tables, and rows to values. One row per scope holds the head (with the
 * published watermark, the outbox clock `unpublished_since`, and the cold pointers `bundled` and
 * `trimmed`); the log is one row per patch, keyed (scope, ii). The guarantee kept here: a unique
 * index on (scope, session, si) makes a recorded retry impossible to record twice, so the log rows
 * double as the retry records. Listings (`listFor`) find a user's scopes by an index on the owner
 * and a `members` table, one row per (user, scope) a scope's access lists (a join table rather
 * than a scan of the access JSON, which would read every scope for every listing). A deleted
 * scope's row stays as its tombstone (`deleted` set: ./delete.ts), which every head read here
 * leaves out, so the rest of the ledger sees no such scope. Opening a file made by an older
 * version adds what it lacks.
 */
import Database from 'better-sqlite3';
import { PatchbayError } from '../../../errors.js';
import type { Head } from '../../../ports/index.js';
import type { PatchRecord, ScopeAccess, ScopeMeta } from '../../../protocol.js';
import { migrateNames } from './names.js';

/**
 * A head row: the head's fields, the lease in two columns, and the meta's fields as columns; the
 * access as JSON text of {visibility, readers, writers} (NULL: stored before access existed) and
 * its revision in `access_rev`, which every commit's compare-and-set checks.
 */
export interface ScopeRow extends Omit<ScopeMeta, 'access'> {
  access: string | null;
  access_rev: number;
  id: string;
  ii: number;
  epoch: number;
  lease_holder: string | null;
  lease_expires: number | null;
  published: number;
  bundled: number;
  trimmed: number;
}

/** A log row: a PatchRecord with its patch as JSON text. */
export type PatchRow = Omit<PatchRecord, 'patch'> & { patch: string };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS scopes (
  id TEXT PRIMARY KEY,
  ii INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  lease_holder TEXT,
  lease_expires INTEGER,
  published INTEGER NOT NULL,
  bundled INTEGER NOT NULL,
  trimmed INTEGER NOT NULL DEFAULT 0,
  unpublished_since INTEGER,
  owner TEXT NOT NULL,
  domain TEXT NOT NULL,
  name TEXT,
  type TEXT,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  size INTEGER NOT NULL,
  initial TEXT NOT NULL,
  access TEXT,
  access_rev INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER,
  purged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS patches (
  scope TEXT NOT NULL,
  ii INTEGER NOT NULL,
  patch TEXT NOT NULL,
  at INTEGER NOT NULL,
  by TEXT NOT NULL,
  session TEXT,
  si INTEGER,
  hash TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  PRIMARY KEY (scope, ii)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS patches_retry ON patches(scope, session, si) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS members (
  user TEXT NOT NULL,
  scope TEXT NOT NULL,
  PRIMARY KEY (user, scope)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
  consumer TEXT NOT NULL,
  scope TEXT NOT NULL,
  ii INTEGER NOT NULL,
  PRIMARY KEY (consumer, scope)
) WITHOUT ROWID;
`;

/** Every scope's listed users (its access's readers and writers) as rows of `members`: the migration's fill. */
const MEMBERS_FROM_ACCESS = `INSERT OR IGNORE INTO members (user, scope)
  SELECT j.value, s.id FROM scopes s, json_each(s.access, '$.readers') j WHERE s.access IS NOT NULL
  UNION SELECT j.value, s.id FROM scopes s, json_each(s.access, '$.writers') j WHERE s.access IS NOT NULL`;

export const HEAD_COLUMNS =
  'id, ii, epoch, lease_holder, lease_expires, published, bundled, trimmed, owner, domain, name, type, created, updated, size, access, access_rev';

/** Opens (or creates) the file in WAL mode with the tables above. `file` is a path, or ':memory:'. */
export function openDatabase(file: string, sync: 'full' | 'normal'): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync === 'normal' ? 'NORMAL' : 'FULL'}`);
  db.pragma('busy_timeout = 5000');
  db.exec(SCHEMA);
  // Files made before cold storage existed have no `trimmed` column yet.
  const columns = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('scopes')").all();
  if (!columns.some((c) => c.name === 'trimmed')) db.exec('ALTER TABLE scopes ADD COLUMN trimmed INTEGER NOT NULL DEFAULT 0');
  // ...nor an `unpublished_since` (the outbox used `updated`, which a busy scope kept moving).
  if (!columns.some((c) => c.name === 'unpublished_since')) {
    db.exec(
      'DROP INDEX IF EXISTS scopes_unpublished; ALTER TABLE scopes ADD COLUMN unpublished_since INTEGER; UPDATE scopes SET unpublished_since = updated WHERE published < ii',
    );
  }
  // ...nor access (such scopes read as LEGACY_ACCESS: shared/engine/access.ts).
  if (!columns.some((c) => c.name === 'access'))
    db.exec('ALTER TABLE scopes ADD COLUMN access TEXT; ALTER TABLE scopes ADD COLUMN access_rev INTEGER NOT NULL DEFAULT 0');
  // ...nor the owner index and the members table of listings (filled from the stored access).
  if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'scopes_owner'").get()) {
    // One transaction: a crash midway leaves no index, so the next open fills the table again.
    db.transaction(() => db.exec(`CREATE INDEX scopes_owner ON scopes(owner, id); DELETE FROM members; ${MEMBERS_FROM_ACCESS}`))();
  }
  // ...nor tombstones (shared/adapters/embedded/sqlite/delete.ts).
  if (!columns.some((c) => c.name === 'deleted'))
    db.exec('ALTER TABLE scopes ADD COLUMN deleted INTEGER; ALTER TABLE scopes ADD COLUMN purged INTEGER NOT NULL DEFAULT 0');
  db.exec('CREATE INDEX IF NOT EXISTS scopes_deleted ON scopes(purged, deleted) WHERE deleted IS NOT NULL');
  db.exec('CREATE INDEX IF NOT EXISTS scopes_outbox ON scopes(unpublished_since) WHERE unpublished_since IS NOT NULL');
  // ...nor the `names` table of unique names (filled from the scopes' names: ./names.ts).
  migrateNames(db);
  return db;
}

export function toHead(r: ScopeRow): Head {
  const meta: ScopeMeta = { owner: r.owner, domain: r.domain, name: r.name, type: r.type, created: r.created, updated: r.updated, size: r.size };
  if (r.access !== null) meta.access = { ...JSON.parse(r.access), rev: r.access_rev };
  return {
    id: r.id,
    ii: r.ii,
    epoch: r.epoch,
    lease: r.lease_holder === null ? null : { holder: r.lease_holder, expires: r.lease_expires as number },
    published: r.published,
    bundled: r.bundled,
    trimmed: r.trimmed,
    meta,
  };
}

/** The access column's text: everything of the access but its revision (a column of its own). */
export function accessText(access: Omit<ScopeAccess, 'rev'>): string {
  return JSON.stringify({ visibility: access.visibility, readers: access.readers, writers: access.writers });
}

export function toRecord(r: PatchRow): PatchRecord {
  return { scope: r.scope, ii: r.ii, patch: JSON.parse(r.patch), at: r.at, by: r.by, session: r.session, si: r.si, hash: r.hash, epoch: r.epoch };
}

/**
 * Reads a scope's head row: what the scope log and the cold pointers both start from. A tombstone
 * (a deleted scope's row) is no head: it reads as missing.
 */
export class HeadReader {
  private readonly stmt;

  constructor(db: Database.Database) {
    this.stmt = db.prepare<[string], ScopeRow>(`SELECT ${HEAD_COLUMNS} FROM scopes WHERE id = ? AND deleted IS NULL`);
  }

  get(id: string): Head | null {
    const row = this.stmt.get(id);
    return row ? toHead(row) : null;
  }

  orThrow(id: string): Head {
    const head = this.get(id);
    if (!head) throw new PatchbayError('scope_not_found', `scope ${id} does not exist`, { id });
    return head;
  }
}
