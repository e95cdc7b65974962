/**
 * The mirror's benchmark (issue 14), each result next to its baseline measured in the same run:
 * - lag under write-hot, embedded: an embedded app in this process (SQLite ledger, in-process
 *   delivery, PGlite mirror) whose domain mirrors the hot scope's type; W writers patch one scope
 *   concurrently through the engine; the mirror consumer's own lag samples (commit → row visible,
 *   shared/mirror/lag.ts, read back with Mirror.status) give p50/p99. Baseline: the same write-hot
 *   on an app whose domain has no mirror (throughput, to see what mirroring costs the writers).
 * - a named query over an indexed table of N mirrored scopes, p50 and p99 of `Mirror.query`
 *   (read-only transaction, the domain's role, statement timeout, row cap) on PGlite and on a
 *   private local Postgres, each against the same SQL with the same values run directly on the
 *   same database (the baseline: what the named-query machinery costs on top). The rows are
 *   loaded in bulk (one INSERT ... SELECT), as the query does not care how they came.
 * - backfill rate: B scopes created in the app's ledger, then `backfill()` (the apply's step:
 *   listScopes pages, a head read and a state read per scope, one upsert transaction per scope)
 *   into PGlite and into Postgres, rows/s. Baseline: the ledger walk alone (the same pages,
 *   head and state reads, no mirror write).
 * - lag under write-hot on the emulator stack (bench/mirror-emulator.ts): the same domain and
 *   write-hot on a Google-mode app (Firestore and Pub/Sub emulators, the Upstash and GCS
 *   stand-ins) with a private Postgres as its mirror, fed by a Pub/Sub push subscription to the
 *   app's `mirror` consumer; p50/p99 from the consumer's samples. Baseline: write-hot throughput
 *   on the same stack with no mirror. Needs gcloud, redis-server and Postgres (else skipped).
 * Run: `npm run bench:mirror [-- --quick] [--scopes N] [--backfill B] [--queries Q] [--writers W]
 * [--per-writer P] [--emu-writers W] [--emu-per-writer P] [--only lag,emulator,query,backfill]`.
 * Prints the results; asserts nothing (the targets: lag p99 ≤ 100 ms embedded, ≤ 1 s on
 * the emulator stack, query p50 ≤ 5 ms).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { postgresBin, startPostgres } from '../infra/local/postgres.js';
import { PGliteMirror } from '../shared/adapters/embedded/pglite-mirror.js';
import { PostgresMirror } from '../shared/adapters/google/postgres-mirror.js';
import { type App, createApp } from '../shared/app.js';
import { loadConfig } from '../shared/config.js';
import { loadDomainConfig, StaticConfigs } from '../shared/domains/active.js';
import { BACKFILL_START, backfill, backfillRate } from '../shared/mirror/backfill.js';
import { mirrorTablesSchema, namedQueriesSchema } from '../shared/mirror/definitions.js';
import { FLUSH_MS, LAG_WINDOW_MS } from '../shared/mirror/lag.js';
import { prepareQuery } from '../shared/mirror/queries.js';
import { schemaName } from '../shared/mirror/sql.js';
import type { SqlMirror } from '../shared/mirror/sql-mirror.js';
import type { Mirror } from '../shared/ports/mirror.js';
import { emulatorLagUnavailable, lagOnEmulators, writeHot } from './mirror-emulator.js';

const QUICK = process.argv.includes('--quick');
const arg = (name: string, full: number, quick: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : QUICK ? quick : full;
};
const SCOPES = arg('scopes', 100_000, 2_000);
const BACKFILL = arg('backfill', 100_000, 500);
const QUERIES = arg('queries', 2_000, 200);
const WRITERS = arg('writers', 32, 8);
const PER_WRITER = arg('per-writer', 100, 10);
// The emulator stack's write-hot size, as `npm run bench` sizes it there (32 × 25; Firestore's emulator is slow).
const EMU_WRITERS = arg('emu-writers', 32, 4);
const EMU_PER_WRITER = arg('emu-per-writer', 25, 5);
const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i > 0 ? new Set((process.argv[i + 1] ?? '').split(',')) : null;
})();
const runs = (section: 'lag' | 'emulator' | 'query' | 'backfill') => ONLY === null || ONLY.has(section);
const OWNERS = 1_000;
const DOMAIN = 'bench.example.com';

const tables = mirrorTablesSchema.parse({
  notes: {
    type: 'note',
    columns: { title: { type: 'text' }, n: { type: 'integer' }, owner: { type: 'text', meta: 'owner' }, updated: { type: 'timestamptz', meta: 'updated' } },
    indexes: [{ columns: ['owner', 'updated'] }],
  },
});
const queries = namedQueriesSchema.parse({
  latest: { sql: 'SELECT id, title, n FROM notes WHERE owner = $owner ORDER BY updated DESC LIMIT 10', params: { owner: { type: 'text' } } },
});
const CONFIG_TEXT = `tables:\n  notes:\n    type: note\n    columns: {title: {type: text}, n: {type: integer}, owner: {type: text, meta: owner}}\n  hot:\n    type: hot\n    columns: {n: {type: integer}}\n`;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
const ms = (n: number | null) => (n === null ? 'n/a' : `${n.toFixed(2)} ms`);
const say = (line: string) => console.log(line);

/** An embedded app in this process; `mirrored`: its domain declares the mirror tables. */
async function embeddedApp(mirrored: boolean): Promise<{ app: App; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-mirror-app-'));
  const configs = new StaticConfigs();
  if (mirrored) configs.set(DOMAIN, loadDomainConfig(CONFIG_TEXT, { maxConfigBytes: 65_536 }));
  // sqliteSync normal: the bench measures the mirror, not fsync (it makes creating 100k scopes take seconds, not minutes).
  const config = loadConfig({}, { port: 0, host: '127.0.0.1', logLevel: 'error', dataDir: dir, limits: 'off', mode: 'embedded', sqliteSync: 'normal' });
  const app = await createApp(config, { configs, deliverLocally: true, sweeper: false });
  return { app, dir };
}

async function lagUnderWriteHot(): Promise<void> {
  const on = await embeddedApp(true);
  const off = await embeddedApp(false);
  try {
    const mirror = on.app.mirror as Mirror;
    await mirror.ensure(DOMAIN, mirrorTablesSchema.parse(loadDomainConfig(CONFIG_TEXT, { maxConfigBytes: 65_536 }).config.tables));
    for (const x of [on, off]) await x.app.engine.createScope('bench-user', { id: 'hot', type: 'hot', state: { n: 0 } }, { domain: DOMAIN });
    await on.app.delivery?.idle();
    // Warm-up, then a round each.
    await writeHot(on.app, 'hot', DOMAIN, WRITERS, PER_WRITER);
    await writeHot(off.app, 'hot', DOMAIN, WRITERS, PER_WRITER);
    await on.app.delivery?.idle();
    await new Promise((r) => setTimeout(r, FLUSH_MS * 2));
    const before = await mirror.status(DOMAIN, LAG_WINDOW_MS);
    const withMirror = await writeHot(on.app, 'hot', DOMAIN, WRITERS, PER_WRITER);
    const without = await writeHot(off.app, 'hot', DOMAIN, WRITERS, PER_WRITER);
    await on.app.delivery?.idle();
    await new Promise((r) => setTimeout(r, FLUSH_MS * 2));
    const after = await mirror.status(DOMAIN, LAG_WINDOW_MS);
    say(`lag under write-hot (embedded, ${WRITERS} writers × ${PER_WRITER} patches on one scope):`);
    say(
      `  mirror lag (commit → row visible), ${after.lag.count - before.lag.count} new samples of ${after.lag.count} in the window: p50 ${ms(after.lag.p50)}, p99 ${ms(after.lag.p99)}, max ${ms(after.lag.max)}`,
    );
    say(
      `  write-hot throughput with the mirror ${withMirror.toFixed(0)} patches/s vs without (baseline) ${without.toFixed(0)} patches/s = ${(withMirror / without).toFixed(2)}x`,
    );
  } finally {
    for (const x of [on, off]) {
      await x.app.close();
      rmSync(x.dir, { recursive: true, force: true });
    }
  }
}

/** Bulk-loads N rows into the domain's `notes` (as patchbay's own user), then times the named query against the same SQL run directly. */
async function queryBench(
  name: string,
  mirror: SqlMirror,
  direct: (text: string, values: Array<string | null>) => Promise<unknown>,
  domain: string,
): Promise<void> {
  await mirror.ensure(domain, tables);
  const s = `"${schemaName(domain)}"`;
  const t0 = performance.now();
  await mirror.adminQuery(
    `INSERT INTO ${s}.notes (id, _ii, title, n, owner, updated) SELECT 's' || lpad(g::text, 8, '0'), 1, 'note ' || g, g, 'u' || (g % ${OWNERS}), to_timestamp(1700000000 + g) FROM generate_series(0, ${SCOPES - 1}) g`,
  );
  await mirror.adminQuery(`INSERT INTO ${s}.scopes (id, _ii, owner, type) SELECT id, 1, owner, 'note' FROM ${s}.notes`);
  await mirror.adminQuery(`ANALYZE ${s}.notes`);
  const loadS = (performance.now() - t0) / 1000;
  const limits = { timeoutMs: 5_000, maxRows: 1_000 };
  const caller = { requester: 'u0', domain };
  const run = async (f: (i: number) => Promise<void>) => {
    const xs: number[] = [];
    for (let i = 0; i < QUERIES; i++) {
      const t = performance.now();
      await f(i);
      xs.push(performance.now() - t);
    }
    return xs;
  };
  const q = (i: number) => prepareQuery(queries, domain, 'latest', { owner: `u${i % OWNERS}` }, caller);
  await run(async (i) => void (await mirror.query(domain, q(i), limits))); // warm-up
  const named = await run(async (i) => {
    const r = await mirror.query(domain, q(i), limits);
    if (r.rows.length === 0) throw new Error('the query found nothing');
  });
  const base = await run(async (i) => {
    const p = q(i);
    await direct(p.text, p.values);
  });
  say(`named query on ${name}, indexed table of ${SCOPES.toLocaleString('en-US')} rows (loaded in ${loadS.toFixed(1)} s), ${QUERIES} runs:`);
  say(
    `  Mirror.query p50 ${ms(pct(named, 50))}, p99 ${ms(pct(named, 99))}; same SQL directly (baseline) p50 ${ms(pct(base, 50))}, p99 ${ms(pct(base, 99))}; ratio at p50 ${(pct(named, 50) / pct(base, 50)).toFixed(2)}x`,
  );
}

async function backfillBench(app: App, targets: Array<{ name: string; mirror: Mirror }>): Promise<void> {
  const domain = 'backfill.example.com';
  const t0 = performance.now();
  for (let i = 0; i < BACKFILL; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, BACKFILL - i) }, (_, k) =>
        app.engine.createScope(
          `u${(i + k) % OWNERS}`,
          { id: `b${String(i + k).padStart(8, '0')}`, type: 'note', state: { title: `t${i + k}`, n: i + k } },
          { domain },
        ),
      ),
    );
  }
  say(`backfill of ${BACKFILL.toLocaleString('en-US')} scopes (created in ${((performance.now() - t0) / 1000).toFixed(1)} s):`);
  const source = {
    listScopes: (after: string, limit: number) => app.adapters.ledger.listScopes(after, limit),
    head: (id: string) => app.engine.head(id),
    stateAt: (id: string, ii: number) => app.engine.stateAt(id, ii),
  };
  // Baseline: the same walk, reads only.
  const w0 = performance.now();
  let walked = 0;
  for (let after = ''; ; ) {
    const page = await source.listScopes(after, 500);
    for (const { id } of page) {
      const h = await source.head(id);
      if (h.meta.domain === domain) {
        await source.stateAt(id, h.ii);
        walked += 1;
      }
    }
    if (page.length < 500) break;
    after = (page[page.length - 1] as { id: string }).id;
  }
  const walkRate = walked / ((performance.now() - w0) / 1000);
  say(`  the ledger walk alone (baseline): ${Math.round(walkRate)} scopes/s`);
  for (const t of targets) {
    await t.mirror.ensure(domain, tables);
    const end = await backfill(t.mirror, source, domain, tables, ['notes', 'scopes'], BACKFILL_START, async () => {});
    say(`  into ${t.name}: ${end.rows} rows, ${backfillRate(end)} rows/s (${((end.ms ?? 0) / 1000).toFixed(1)} s)`);
  }
}

async function main(): Promise<void> {
  say(`mirror bench (${QUICK ? 'quick' : 'full'}): ${new Date().toISOString()}`);
  if (runs('lag')) await lagUnderWriteHot();

  const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-mirror-'));
  const pgAvailable = postgresBin('initdb') !== null;
  const local = pgAvailable ? await startPostgres() : null;
  const pgMirror = local ? new PostgresMirror({ url: local.url }) : null;
  try {
    if (runs('emulator')) {
      say(`lag under write-hot (emulator stack, ${EMU_WRITERS} writers × ${EMU_PER_WRITER} patches on one scope):`);
      const missing = emulatorLagUnavailable() ?? (local ? null : 'no initdb (Postgres)');
      if (missing || !local) say(`  skipped: ${missing}`);
      else await lagOnEmulators({ writers: EMU_WRITERS, perWriter: EMU_PER_WRITER, configText: CONFIG_TEXT, postgresUrl: local.url, say });
    }
    if (runs('query')) await namedQueries(dir, pgMirror, local);
    if (runs('backfill')) {
      const bf = await embeddedApp(false);
      const bfLite = new PGliteMirror(join(dir, 'backfill-pglite'));
      try {
        await backfillBench(bf.app, [{ name: 'PGlite', mirror: bfLite }, ...(pgMirror ? [{ name: 'local Postgres 15', mirror: pgMirror }] : [])]);
      } finally {
        await bfLite.close();
        await bf.app.close();
        rmSync(bf.dir, { recursive: true, force: true });
      }
    }
  } finally {
    await pgMirror?.close();
    await local?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The named-query section: PGlite, then the local Postgres when there is one. */
async function namedQueries(dir: string, pgMirror: PostgresMirror | null, local: { url: string } | null): Promise<void> {
  // PGlite: the baseline runs on the same directory, opened directly once the mirror has closed
  // it (one PGlite per directory), after the named runs.
  const lite2 = new PGliteMirror(join(dir, 'pglite'));
  const db = { current: null as PGlite | null };
  await queryBench(
    'PGlite',
    lite2,
    async (text, values) => {
      db.current ??= await (async () => {
        await lite2.close();
        const d = await PGlite.create({ dataDir: join(dir, 'pglite') });
        await d.query(`SET search_path TO "${schemaName('q.example.com')}"`);
        return d;
      })();
      await db.current.query(text, values);
    },
    'q.example.com',
  );
  await db.current?.close();
  if (pgMirror && local) {
    const client = new pg.Client({ connectionString: local.url });
    await client.connect();
    await client.query(`SET search_path TO "${schemaName(DOMAIN)}"`);
    await queryBench('local Postgres 15', pgMirror, (text, values) => client.query(text, values), DOMAIN);
    await client.end();
  } else say('named query on Postgres: skipped (no initdb on this machine)');
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
