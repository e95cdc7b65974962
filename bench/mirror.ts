/**
 * The mirror's benchmark (issue 14), embedded (PGlite), next to its baseline in the same run:
 * - upsert rate: N scopes mirrored one upsert (one transaction) at a time, as a backfill writes
 *   them (rows/s);
 * - a named query over an indexed table of N mirrored scopes, p50 and p99 of `Mirror.query`
 *   (read-only transaction, the domain's role, statement timeout, row cap), against the same SQL
 *   with the same values run directly on the database (the baseline: what the named-query
 *   machinery costs on top).
 * Run: `npm run build && node dist/bench/mirror.js [--scopes 20000] [--queries 2000]`. Results are
 * printed, not asserted (the targets: p50 ≤ 5 ms at 100k scopes). Not part of `npm run bench`:
 * no Postgres variant, no lag measurement yet.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGliteMirror } from '../shared/adapters/embedded/pglite-mirror.js';
import { mirrorTablesSchema, namedQueriesSchema } from '../shared/mirror/definitions.js';
import { prepareQuery } from '../shared/mirror/queries.js';
import { schemaName } from '../shared/mirror/sql.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SCOPES = arg('scopes', 20_000);
const QUERIES = arg('queries', 2_000);
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

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
const ms = (n: number) => `${n.toFixed(3)} ms`;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-mirror-'));
  try {
    const mirror = new PGliteMirror(dir);
    await mirror.ensure(DOMAIN, tables);
    const t0 = performance.now();
    for (let i = 0; i < SCOPES; i++) {
      const at = 1_700_000_000_000 + i;
      await mirror.upsert(DOMAIN, tables, {
        id: `s${String(i).padStart(8, '0')}`,
        ii: 1,
        meta: { owner: `u${i % OWNERS}`, name: null, type: 'note', created: at, updated: at, size: 40 },
        state: { title: `note ${i}`, n: i },
      });
    }
    const upsertS = (performance.now() - t0) / 1000;
    console.log(`upsert: ${SCOPES} scopes in ${upsertS.toFixed(1)} s = ${Math.round(SCOPES / upsertS)} rows/s`);

    const limits = { timeoutMs: 5_000, maxRows: 1_000 };
    const caller = { requester: 'u0', domain: DOMAIN };
    const named: number[] = [];
    for (let i = 0; i < QUERIES; i++) {
      const q = prepareQuery(queries, DOMAIN, 'latest', { owner: `u${i % OWNERS}` }, caller);
      const s = performance.now();
      const r = await mirror.query(DOMAIN, q, limits);
      named.push(performance.now() - s);
      if (r.rows.length === 0) throw new Error('the query found nothing');
    }
    await mirror.close();

    // The baseline: the same text and values, straight on the same database.
    const db = await PGlite.create({ dataDir: dir });
    await db.query(`SET search_path TO "${schemaName(DOMAIN)}"`);
    const direct: number[] = [];
    for (let i = 0; i < QUERIES; i++) {
      const q = prepareQuery(queries, DOMAIN, 'latest', { owner: `u${i % OWNERS}` }, caller);
      const s = performance.now();
      await db.query(q.text, q.values);
      direct.push(performance.now() - s);
    }
    await db.close();
    console.log(`named query over ${SCOPES} scopes (indexed), ${QUERIES} runs: p50 ${ms(pct(named, 50))}, p99 ${ms(pct(named, 99))}`);
    console.log(`same SQL run directly (baseline):            p50 ${ms(pct(direct, 50))}, p99 ${ms(pct(direct, 99))}`);
    console.log(`ratio (named / direct) at p50: ${(pct(named, 50) / pct(direct, 50)).toFixed(2)}x`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
