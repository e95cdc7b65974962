/**
 * Port: the queryable mirror. Every domain has its own schema in one Postgres database (real
 * Postgres on Google, PGlite embedded) holding a row per scope in `scopes`, a row per tag scope in
 * `tags`, and a row per scope of a table's type in each table the domain declares
 * (shared/mirror/definitions.ts). Named queries read them.
 *
 * Guarantees every adapter keeps (test/conformance/mirror.ts checks them):
 * - Ownership: patchbay creates, alters and drops only tables it created, recorded in a catalog
 *   inside the domain's schema; a declared table whose name is taken by a table patchbay did not
 *   create is refused, and such tables are never altered or dropped.
 * - Order: a row is replaced only by one built at the same or a later `ii` of its scope, in one
 *   statement, so upserts may arrive late, twice or out of order and the newest one stays.
 * - Isolation: a query runs in a read-only transaction as the domain's query role, which may read
 *   that domain's mirrored tables and nothing else patchbay created; its SQL text is fixed by the
 *   definition and every client value is a bound parameter.
 * - Rows: a query given `readableBy` sees, in every mirrored table, only the rows of scopes that
 *   user may read (row-level security on the query role, keyed by the `scopes` row's owner and
 *   access); aggregates and joins see the same subset.
 * - Errors: a failing query is a PatchbayError `query_failed` carrying the SQLSTATE (`pgCode`)
 *   and never the database's message, or `query_timeout`; a database that cannot be reached is
 *   `unavailable`.
 *
 * What differs between adapters is written in each adapter's opening comment (PGlite: no
 * statement timeout interrupts a query, and the query role is set with SET LOCAL ROLE).
 */
import type { Json } from '../json.js';
import type { MirrorTables } from '../mirror/definitions.js';
import type { MirroredScope } from '../mirror/values.js';

export type { MirroredScope } from '../mirror/values.js';

/** What `ensure` did to a domain's schema. */
export interface EnsureReport {
  /** Tables created (the built-in ones included, the first time). */
  created: string[];
  /** Tables whose columns, column types or indexes changed. */
  altered: string[];
  /** Tables dropped because the definitions no longer declare them (only ever tables patchbay created). */
  dropped: string[];
  /**
   * Tables whose rows no longer match their definition until every scope of their type is
   * upserted again (new tables, new columns, changed sources or types, a changed scope type):
   * what a backfill must walk.
   */
  backfill: string[];
}

/** A named query ready to run: positional SQL text and its values as text (shared/mirror/queries.ts prepares it). */
export interface PreparedQuery {
  text: string;
  values: Array<string | null>;
  /**
   * Per-row access (a query declared `rowsReadableOnly`): every table the query reads shows only
   * rows of scopes `user` may read (its owner, a listed reader or writer, or let in by the scope's
   * visibility: `domain` only when `sameDomain`, the caller acting in the scope's domain), as
   * shared/engine/access.ts decides from the `scopes` row's owner and access. Absent: every row.
   */
  readableBy?: { user: string; sameDomain: boolean };
}

export interface QueryLimits {
  /** The statement timeout, ms. */
  timeoutMs: number;
  /** At most this many rows come back; more sets `truncated`. */
  maxRows: number;
}

export interface QueryResult {
  columns: Array<{ name: string; type: string }>;
  /** One array per row, values in column order, as JSON (shared/mirror/values.ts, resultValue). */
  rows: Json[][];
  /** True when the query had more rows than `maxRows` (the rest were not read). */
  truncated: boolean;
}

/** Lag samples of one process, for one domain (shared/mirror/lag.ts collects them). */
export interface LagRecord {
  /** Commit → row visible, ms, one per mirrored patch event. */
  lags: number[];
  /** Per table, the newest row written: its scope, `ii`, and when (ms since epoch). */
  last: Record<string, { scope: string; ii: number; at: number }>;
}

/** What the admin reads about a domain's mirror (GET /v1/domains/{domain}/mirror). */
export interface MirrorStatus {
  /** Lag over the window: samples recorded by every process, percentiles in ms (null without samples). */
  lag: { windowMs: number; count: number; p50: number | null; p99: number | null; max: number | null };
  /** Per table, the newest row written within the window by the mirror consumer. */
  tables: Record<string, { scope: string; ii: number; at: number }>;
}

export interface Mirror {
  /**
   * Makes a domain's schema hold exactly the built-in tables and `tables`: creates the schema,
   * its query role and missing tables; alters changed ones (columns added and dropped, types
   * changed `USING` a cast, or NULL where the cast fails, indexes); drops tables patchbay created
   * that are no longer declared. One transaction, serialized per domain across processes.
   * Throws PatchbayError `invalid_request` (`table`) when a declared table's name is taken by a
   * table patchbay did not create; nothing changes then. Idempotent: the same definitions again
   * change nothing and report nothing.
   */
  ensure(domain: string, tables: MirrorTables): Promise<EnsureReport>;
  /**
   * Writes a scope's rows at `scope.ii`: its `scopes` row and its row in every table of its type
   * (of `tables`, which `ensure` must have been given), in one transaction. A row stored at a
   * later `ii` is kept (see Order above). Tables of other types are not touched.
   */
  upsert(domain: string, tables: MirrorTables, scope: MirroredScope): Promise<void>;
  /**
   * Deletes a scope's rows from every table patchbay created in the domain's schema, or with
   * `domain` null in every domain's schema (a deleted scope whose domain is no longer known).
   * Idempotent. Not ordered by `ii`: a later upsert of the same id writes its rows again, so only
   * call it for a scope that no longer exists.
   */
  remove(domain: string | null, id: string): Promise<void>;
  /**
   * Runs a prepared named query on a domain's schema: read-only transaction, the domain's query
   * role, `search_path` the domain's schema only, statement timeout and row cap from `limits`.
   * Throws `query_failed` (`pgCode`), `query_timeout`, or `unavailable`.
   */
  query(domain: string, q: PreparedQuery, limits: QueryLimits): Promise<QueryResult>;
  /**
   * Calls `listener` after each committed change to the domain's mirror (upsert, remove, ensure)
   * with the names of the tables it changed (`*`: any of them: a schema change, or changes that
   * may have been missed, e.g. while a lost connection was re-established). At least once per
   * change while the watch is open, after the change is visible to queries; a listener must not
   * assume one call per change (calls may be merged or repeated). Resolves with the unwatch once
   * listening. For live queries (shared/domains/live-queries.ts): Postgres LISTEN/NOTIFY on a
   * channel per domain schema, so a change made by any process reaches every process.
   */
  watch(domain: string, listener: (tables: string[]) => void): Promise<() => Promise<void>>;
  /**
   * Stores lag samples of the domain's mirror (kept in its schema, so every process's are read
   * together), dropping those older than `windowMs`. Nothing when the domain has no mirror.
   */
  recordLag(domain: string, rec: LagRecord, windowMs: number): Promise<void>;
  /** The lag percentiles and newest rows of the last `windowMs` (all samples of every process). */
  status(domain: string, windowMs: number): Promise<MirrorStatus>;
  /** Releases connections (PGlite: closes the database). Calls after close fail. */
  close(): Promise<void>;
}
