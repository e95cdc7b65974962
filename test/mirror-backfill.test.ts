/**
 * Backfill after a crash (issue 14): a configuration's backfill records its position after every
 * page, and a backfill that stops midway (a failed write, a process that died) starts again from
 * the last recorded page, writes every scope of the domain, and skips nothing. Run on the real
 * embedded engine and ledger, with PGlite in memory.
 * - backfill(): stopped after its second page, resumed from the position it last handed out:
 *   the pages before are not walked again, and the mirror ends holding every scope of the domain
 *   (and none of another domain's).
 * - The apply: the mirror fails the backfill's first write once; the apply is delivered again,
 *   resumes at the `backfill` step (the schema's `ensure` is not run again), and its report ends
 *   `done` with every row counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PGliteMirror } from '../shared/adapters/embedded/pglite-mirror.js';
import type { DomainConfig } from '../shared/domains/config-schema.js';
import { FIXED_BACKFILL_KIND, prepareFixed } from '../shared/domains/mirror-step.js';
import type { Json } from '../shared/json.js';
import { BACKFILL_START, type BackfillPosition, backfill, backfillRate } from '../shared/mirror/backfill.js';
import type { Mirror } from '../shared/ports/mirror.js';
import { clientIn, upload, userId } from './contract/config.js';
import { startServer, type TestServer } from './helpers/server.js';

const DOMAIN = 'app.example.com';
const TABLES = { notes: { type: 'note', columns: { title: { type: 'text' as const } } } };
const CONFIG =
  'tables:\n  notes:\n    type: note\n    columns:\n      title: { type: text }\nqueries:\n  all:\n    sql: SELECT id, title FROM notes ORDER BY id\n';

let pglite: PGliteMirror;
beforeAll(() => {
  pglite = new PGliteMirror();
});
afterAll(() => pglite.close());

/** The mirror, counting upserts per scope, with `failFirst` upserts failing once (a crash in the middle). */
function counting(real: Mirror, failFirst = 0) {
  const upserts = new Map<string, number>();
  let failures = failFirst;
  const mirror: Mirror = {
    ensure: (d, t) => real.ensure(d, t),
    upsert: async (d, t, s) => {
      if (failures > 0) {
        failures -= 1;
        throw new Error('injected: the mirror write failed');
      }
      upserts.set(s.id, (upserts.get(s.id) ?? 0) + 1);
      return real.upsert(d, t, s);
    },
    remove: (d, id) => real.remove(d, id),
    query: (d, q, l) => real.query(d, q, l),
    watch: (d, l) => real.watch(d, l),
    recordLag: (d, r, w) => real.recordLag(d, r, w),
    status: (d, w) => real.status(d, w),
    close: async () => {},
  };
  return { mirror, upserts };
}

describe('backfill, stopped and resumed', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({}, undefined, { mirror: null });
  });
  afterAll(() => srv.close());

  it('starts again from the last recorded page and ends with every scope of the domain, walking no page twice', async () => {
    const mine = await clientIn(srv.url, 'crash.example.com');
    const other = await clientIn(srv.url, 'other.example.com');
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await mine.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: `t${i}` } } })).json.id);
    await other.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: 'elsewhere' } } });
    await mine.request('POST', '/v1/scopes', { body: { type: 'draft', state: { title: 'another type' } } });
    const domain = 'crash.example.com';
    await pglite.ensure(domain, TABLES);
    const { mirror, upserts } = counting(pglite);
    let largest = 0;
    const source = {
      listScopes: async (after: string, limit: number) => {
        const page = await srv.app.adapters.ledger.listScopes(after, limit);
        largest = Math.max(largest, page.length, limit);
        return page;
      },
      head: (id: string) => srv.app.engine.head(id),
      stateAt: (id: string, ii: number) => srv.app.engine.stateAt(id, ii),
    };
    let saved: BackfillPosition = BACKFILL_START;
    let firstPage = new Set<string>();
    const stopAt = 2;
    await expect(
      backfill(
        mirror,
        source,
        domain,
        TABLES,
        ['notes'],
        BACKFILL_START,
        async (pos) => {
          if (pos.pages === stopAt) throw new Error('injected: the process died');
          saved = pos;
          firstPage = new Set(upserts.keys());
        },
        { pageSize: 2 },
      ),
    ).rejects.toThrow(/process died/);
    expect(saved.pages).toBe(1);
    const end = await backfill(
      mirror,
      source,
      domain,
      TABLES,
      ['notes'],
      saved,
      async (pos) => {
        saved = pos;
      },
      { pageSize: 2 },
    );
    expect(end.done).toBe(true);
    expect(end.rows).toBe(7);
    // Every scope of the deployment was walked, one page (of 2) in memory at a time, with a rate to report.
    expect(end.scanned).toBe((await srv.app.adapters.ledger.listScopes('', 1000)).length);
    expect(largest).toBe(2);
    expect(end.ms).toBeGreaterThan(0);
    expect(backfillRate(end)).toBeGreaterThan(0);
    // Only the page the crash interrupted (2 scopes at most) is written again; the first page is not.
    expect([...upserts.values()].filter((n) => n > 1).length).toBeLessThanOrEqual(2);
    for (const id of firstPage) expect(upserts.get(id), id).toBe(1);
    const rows = await pglite.query(domain, { text: 'SELECT id FROM notes ORDER BY id', values: [] }, { timeoutMs: 5000, maxRows: 100 });
    expect(rows.rows.map((r) => r[0])).toEqual([...ids].sort());
  }, 180_000);
  it("a file configuration's backfill (no apply) resumes at its next start from the saved page, and is not walked again once done", async () => {
    const domain = 'fixed.example.com';
    const mine = await clientIn(srv.url, domain);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await mine.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: `f${i}` } } })).json.id);
    const records = srv.app.adapters.records;
    const source = {
      listScopes: (after: string, limit: number) => srv.app.adapters.ledger.listScopes(after, limit),
      head: (id: string) => srv.app.engine.head(id),
      stateAt: (id: string, ii: number) => srv.app.engine.stateAt(id, ii),
    };
    const config = { tables: TABLES } as unknown as DomainConfig;
    // The first start dies at the domain's third row: after the page holding its first rows was saved.
    const dying = counting(pglite);
    let rowsSeen = 0;
    const failing: Mirror = {
      ...dying.mirror,
      upsert: async (d, t, row) => {
        if (d === domain && ++rowsSeen === 3) throw new Error('injected: the process died');
        return dying.mirror.upsert(d, t, row);
      },
    };
    const deps = (mirror: Mirror) => ({ mirror, source, accepts: () => true, settleMs: 0, pageSize: 1 });
    await expect(prepareFixed(deps(failing), domain, config, records)).rejects.toThrow(/process died/);
    const saved = (await records.get(FIXED_BACKFILL_KIND, domain))?.value as unknown as { position: BackfillPosition; tables: string[] };
    expect(saved.tables).toContain('notes');
    expect(saved.position.rows).toBe(2);
    const firstRows = new Set([...dying.upserts.keys()].filter((id) => ids.includes(id)));
    expect(firstRows.size).toBe(2);
    // The next start: `ensure` finds nothing changed, the saved walk goes on from its page.
    const next = counting(pglite);
    expect(await prepareFixed(deps(next.mirror), domain, config, records)).toBe(3);
    for (const id of firstRows) expect(next.upserts.has(id), id).toBe(false);
    const rows = await pglite.query(domain, { text: 'SELECT id FROM notes ORDER BY id', values: [] }, { timeoutMs: 5000, maxRows: 100 });
    expect(rows.rows.map((r) => r[0])).toEqual([...ids].sort());
    // Done: a third start walks nothing.
    const third = counting(pglite);
    expect(await prepareFixed(deps(third.mirror), domain, config, records)).toBe(0);
    expect(third.upserts.size).toBe(0);
    // Other table definitions (a new column) start a new walk.
    const wider = { tables: { notes: { ...TABLES.notes, columns: { ...TABLES.notes.columns, n: { type: 'integer' as const } } } } } as unknown as DomainConfig;
    expect(await prepareFixed(deps(counting(pglite).mirror), domain, wider, records)).toBe(5);
    // A start that died inside `ensure` (its record says so; a second `ensure` reports nothing): every table again.
    const inEnsure = await records.get(FIXED_BACKFILL_KIND, domain);
    await records.put(FIXED_BACKFILL_KIND, domain, { tables: null, position: BACKFILL_START } as unknown as Json, inEnsure?.rev as number);
    const again = counting(pglite);
    expect(await prepareFixed(deps(again.mirror), domain, wider, records)).toBe(5);
    expect(new Set(again.upserts.keys())).toEqual(new Set(ids));
  }, 180_000);
});

describe('an apply whose backfill fails midway', () => {
  it('is delivered again, resumes at the backfill step, and reports every row', async () => {
    const { mirror, upserts } = counting(pglite, 1);
    let ensures = 0;
    const watched: Mirror = {
      ...mirror,
      ensure: (d, t) => {
        ensures += 1;
        return mirror.ensure(d, t);
      },
    };
    const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true, mirror: watched });
    try {
      const admin = await clientIn(srv.url, DOMAIN);
      await srv.app.domains.addAdmin(DOMAIN, userId(admin));
      for (let i = 0; i < 3; i++) await admin.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: `n${i}` } } });
      const res = await upload(admin, CONFIG, 0);
      expect(res.status).toBe(202);
      const report = res.json.report as string;
      const deadline = Date.now() + 120_000;
      let state: Record<string, unknown> = {};
      while (state.status !== 'done' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        state = (await admin.request('GET', `/v1/scopes/${report}`)).json.state;
      }
      expect(state).toMatchObject({
        status: 'done',
        steps: { mirror: 'done', activate: 'done', backfill: 'done' },
        mirror: { created: expect.arrayContaining(['notes']), backfill: { rows: 3, done: true, rate: expect.any(Number) } },
      });
      expect(ensures).toBe(1); // the retry did not ensure again: the checkpoint had it
      expect(upserts.size).toBe(3);
      const q = await admin.request('POST', `/v1/domains/${DOMAIN}/queries/all`, { body: {} });
      expect(q.json.rows.map((r: string[]) => r[1])).toEqual(expect.arrayContaining(['n0', 'n1', 'n2']));
    } finally {
      await srv.close();
    }
  }, 180_000);
});
