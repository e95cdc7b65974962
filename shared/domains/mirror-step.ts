/**
 * The mirror's two steps of a configuration's apply (shared/domains/apply.ts), progress in the
 * report's `/mirror` (`{created, altered, dropped, backfill: {tables, scanned, rows, pages, done}}`):
 * - `mirror`, before the version becomes active: makes the domain's mirror schema hold the
 *   version's tables (Mirror.ensure: creates, alters, drops only patchbay's tables).
 * - `backfill`, after it is active and every instance holds it (`settleMs`, the bound on their
 *   configuration caches): writes the current rows of the tables that need it from the scopes'
 *   states (shared/mirror/backfill.ts). Why after: until an instance holds the new version, its
 *   mirror consumer mirrors by the old one (or not at all, for a first version), so a write landing
 *   meanwhile would be missed by a backfill that had already passed its scope. Started after,
 *   the walk reads every head from then on, and writes from then on reach the consumer with the
 *   new version. Queries see partial rows while it runs (the report says how far it is).
 *
 * Resumable: what `ensure` reported is saved in the apply's checkpoint (a second `ensure` would
 * report nothing left to backfill), and so is the backfill's position after every page; after a
 * crash the step starts again from the saved page. Idempotent: every write is an upsert at the
 * scope's head `ii`, and each report patch has its own `si`.
 *
 * A domain "has a mirror" when its configuration has a `tables` or a `queries` section. A version
 * without either leaves the mirror alone, except that when the active version had one, its
 * declared tables are dropped (the built-in `scopes` and `tags` stay). A deployment without a
 * mirror (Google without PATCHBAY_MIRROR_URL) skips the step and says so in the report.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import { BACKFILL_START, type BackfillPosition, type BackfillSource, backfill, backfillRate } from '../mirror/backfill.js';
import { BUILTIN_TABLES, type MirrorTables } from '../mirror/definitions.js';
import type { Mirror } from '../ports/mirror.js';
import type { RecordStore } from '../ports/records.js';
import type { DomainConfig } from './config-schema.js';

/** The mirror's push consumer (shared/mirror/consumer.ts, registered in shared/app.ts). */
export const MIRROR_CONSUMER = 'mirror';
/** Its push subscription's filter: every scope but the platform's own (`sys:`, e.g. configuration reports). */
export const MIRROR_FILTER = 'NOT hasPrefix(attributes.scope, "sys:")';
/** Whether the mirror holds a scope: not the platform's own (the subscription's filter, checked again in the app). */
export const mirrored = (scope: string): boolean => !scope.startsWith('sys:');

/** What the step needs from the app. */
export interface MirrorStepDeps {
  /** The deployment's mirror, or null when it has none. */
  mirror: Mirror | null;
  source: BackfillSource;
  /** Which scope ids the mirror holds (the mirror consumer's `accepts`). */
  accepts: (id: string) => boolean;
  /** Scopes per backfill page (default 500). */
  pageSize?: number;
  /** How long an activated version takes to reach every instance (PATCHBAY_DOMAIN_CACHE_MS): the backfill waits this long first. */
  settleMs: number;
}

/** The step's checkpoint, kept in the apply's checkpoint record. */
export interface MirrorCheckpoint {
  created: string[];
  altered: string[];
  dropped: string[];
  /** The tables to backfill, as `ensure` reported them. */
  tables: string[];
  position: BackfillPosition;
}

/** A configuration's mirror tables: its `tables` (none: `{}` when it has queries), or null when it has no mirror. */
export function mirrorTablesOf(config: DomainConfig | undefined): MirrorTables | null {
  if (!config) return null;
  if (config.tables) return config.tables;
  return config.queries ? {} : null;
}

/** The report's `/mirror` value for a checkpoint. */
function reported(cp: MirrorCheckpoint): Json {
  const { created, altered, dropped, tables, position } = cp;
  const { scanned, rows, pages, done } = position;
  return { created, altered, dropped, backfill: { tables, scanned, rows, pages, done, rate: backfillRate(position) } };
}

/** Where a domain's mirror goes with a version: its tables, or null when the step has nothing to do. */
function target(config: DomainConfig, previous: DomainConfig | undefined): MirrorTables | null {
  const tables = mirrorTablesOf(config);
  if (tables !== null) return tables;
  return mirrorTablesOf(previous) === null ? null : {}; // the mirror goes: its declared tables are dropped
}

/**
 * The `mirror` step for `config`, `previous` being the active version's: ensures the schema
 * (unless `saved` says it was) and saves what is to backfill. `report(si, value)` writes the
 * report's `/mirror`, once per `si`.
 */
export async function ensureStep(
  deps: MirrorStepDeps,
  domain: string,
  config: DomainConfig,
  previous: DomainConfig | undefined,
  saved: MirrorCheckpoint | undefined,
  save: (cp: MirrorCheckpoint) => Promise<void>,
  report: (si: number, value: Json) => Promise<void>,
): Promise<void> {
  if (saved) return;
  const tables = target(config, previous);
  if (tables === null) return;
  const { mirror } = deps;
  if (mirror === null) {
    await report(1000, { skipped: 'this deployment has no mirror (PATCHBAY_MIRROR_URL is empty)' });
    return;
  }
  let ensured: Awaited<ReturnType<Mirror['ensure']>>;
  try {
    ensured = await mirror.ensure(domain, tables);
  } catch (err) {
    // A declared table's name is taken by a table patchbay did not create: the same every time.
    if (err instanceof PatchbayError && err.code === 'invalid_request') {
      throw new PatchbayError('invalid_config', err.message, { issues: [{ path: ['tables', String(err.details.table ?? '')], message: err.message }] });
    }
    throw err;
  }
  const cp: MirrorCheckpoint = {
    created: ensured.created,
    altered: ensured.altered,
    dropped: ensured.dropped,
    tables: mirrorTablesOf(config) === null ? [] : ensured.backfill,
    position: BACKFILL_START,
  };
  await save(cp);
  await report(1000, reported(cp));
}

/** The `backfill` step: resumes the backfill `saved` describes (nothing to do without one). */
export async function backfillStep(
  deps: MirrorStepDeps,
  domain: string,
  config: DomainConfig,
  saved: MirrorCheckpoint | undefined,
  save: (cp: MirrorCheckpoint) => Promise<void>,
  report: (si: number, value: Json) => Promise<void>,
): Promise<void> {
  if (!saved || saved.position.done || deps.mirror === null) return;
  if (saved.position.pages === 0 && deps.settleMs > 0) await new Promise((r) => setTimeout(r, deps.settleMs));
  await backfill(
    deps.mirror,
    deps.source,
    domain,
    mirrorTablesOf(config) ?? {},
    saved.tables,
    saved.position,
    async (position) => {
      const next = { ...saved, position };
      await report(1000 + 2 * position.pages + (position.done ? 1 : 0), reported(next));
      await save(next);
    },
    { accepts: deps.accepts, pageSize: deps.pageSize },
  );
}

/** Record kind of a fixed configuration's backfill progress (key: the domain). */
export const FIXED_BACKFILL_KIND = 'mirror-fixed-backfill';

/** What a fixed configuration's backfill saves: before `ensure` (tables null), then after every page. */
interface FixedBackfill {
  /** The tables being backfilled; null while `ensure` runs (what it reports would be lost with the process). */
  tables: string[] | null;
  position: BackfillPosition;
}

/**
 * For a configuration that no apply prepares (files, in-process: shared/domains/active.ts
 * StaticConfigs): at start, makes the domain's schema match its tables and backfills what that
 * changed. Resumable, with a record per domain (`FIXED_BACKFILL_KIND`): written before `ensure`
 * (tables unknown: a process that dies then has the next start walk every table, since a second
 * `ensure` reports nothing), then with the tables and the position after every page. At start:
 * - the last start died in `ensure`: every table (declared and built-in) from the start;
 * - `ensure` reports tables (new, altered, or all of them for a mirror database that was
 *   replaced): those and an unfinished walk's tables that still exist, from the start;
 * - it reports nothing and a walk is unfinished: that walk, from its saved page;
 * - otherwise nothing.
 * Without `records`, not resumable. Returns the rows written by this call.
 */
export async function prepareFixed(deps: MirrorStepDeps, domain: string, config: DomainConfig, records?: RecordStore): Promise<number> {
  const tables = mirrorTablesOf(config);
  if (tables === null || deps.mirror === null) return 0;
  const names = new Set([...Object.keys(tables), ...BUILTIN_TABLES]);
  let stored = records ? await records.get(FIXED_BACKFILL_KIND, domain) : null;
  const saved = stored ? (stored.value as unknown as FixedBackfill) : null;
  const save = async (next: FixedBackfill): Promise<void> => {
    if (!records) return;
    // One process prepares a domain per start; a racing instance's record is taken as is (both walks are idempotent upserts).
    const written = await records.put(FIXED_BACKFILL_KIND, domain, next as unknown as Json, stored?.rev ?? 0);
    stored = written ?? (await records.get(FIXED_BACKFILL_KIND, domain));
  };
  await save({ tables: null, position: BACKFILL_START });
  const ensured = await deps.mirror.ensure(domain, tables);
  const unfinished = saved && !saved.position.done ? (saved.tables ?? [...names]).filter((t) => names.has(t)) : [];
  let progress: FixedBackfill;
  if (saved && saved.tables === null) progress = { tables: [...names], position: BACKFILL_START };
  else if (ensured.backfill.length > 0) progress = { tables: [...new Set([...unfinished, ...ensured.backfill])], position: BACKFILL_START };
  else if (saved && !saved.position.done) progress = { tables: unfinished, position: saved.position };
  else {
    await save(saved ?? { tables: [], position: { ...BACKFILL_START, done: true } });
    return 0;
  }
  await save(progress);
  const walk = progress;
  const before = walk.position.rows;
  const end = await backfill(deps.mirror, deps.source, domain, tables, walk.tables ?? [], walk.position, (position) => save({ ...walk, position }), {
    accepts: deps.accepts,
    pageSize: deps.pageSize,
  });
  return end.rows - before;
}
