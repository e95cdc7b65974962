/**
 * The `mirror` step of a configuration's apply (shared/domains/apply.ts), run before the version
 * becomes active: makes the domain's mirror schema hold the version's tables (Mirror.ensure:
 * creates, alters, drops only patchbay's tables), then backfills the tables that need it from the
 * scopes' current states (shared/mirror/backfill.ts), writing its progress into the report's
 * `/mirror` (`{created, altered, dropped, backfill: {tables, scanned, rows, pages, done}}`).
 *
 * Resumable: what `ensure` reported is saved in the apply's checkpoint before the backfill starts
 * (a second `ensure` would report nothing left to backfill), and so is the backfill's position
 * after every page; after a crash the step starts again from the saved page. Idempotent: every
 * write is an upsert at the scope's head `ii`, and each report patch has its own `si`.
 *
 * A domain "has a mirror" when its configuration has a `tables` or a `queries` section. A version
 * without either leaves the mirror alone, except that when the active version had one, its
 * declared tables are dropped (the built-in `scopes` and `tags` stay). A deployment without a
 * mirror (Google without PATCHBAY_MIRROR_URL) skips the step and says so in the report.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import { BACKFILL_START, type BackfillPosition, type BackfillSource, backfill } from '../mirror/backfill.js';
import type { MirrorTables } from '../mirror/definitions.js';
import type { Mirror } from '../ports/mirror.js';
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
  return { created, altered, dropped, backfill: { tables, scanned, rows, pages, done } };
}

/**
 * Runs (or resumes from `saved`) the step for `config`, `previous` being the active version's.
 * `save` records the checkpoint; `report(si, value)` writes the report's `/mirror`, once per `si`.
 */
export async function runMirrorStep(
  deps: MirrorStepDeps,
  domain: string,
  config: DomainConfig,
  previous: DomainConfig | undefined,
  saved: MirrorCheckpoint | undefined,
  save: (cp: MirrorCheckpoint) => Promise<void>,
  report: (si: number, value: Json) => Promise<void>,
): Promise<void> {
  let tables = mirrorTablesOf(config);
  if (tables === null) {
    if (mirrorTablesOf(previous) === null) return;
    tables = {}; // the mirror goes: its declared tables are dropped, nothing is backfilled
  }
  const { mirror } = deps;
  if (mirror === null) {
    await report(1000, { skipped: 'this deployment has no mirror (PATCHBAY_MIRROR_URL is empty)' });
    return;
  }
  let cp = saved;
  if (!cp) {
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
    const empty = Object.keys(tables).length === 0 && mirrorTablesOf(config) === null;
    cp = {
      created: ensured.created,
      altered: ensured.altered,
      dropped: ensured.dropped,
      tables: empty ? [] : ensured.backfill,
      position: BACKFILL_START,
    };
    await save(cp);
    await report(1000, reported(cp));
  }
  const at = cp;
  await backfill(
    mirror,
    deps.source,
    domain,
    tables,
    at.tables,
    at.position,
    async (position) => {
      const next = { ...at, position };
      await report(1000 + 2 * position.pages + (position.done ? 1 : 0), reported(next));
      await save(next);
    },
    { accepts: deps.accepts, pageSize: deps.pageSize },
  );
}
