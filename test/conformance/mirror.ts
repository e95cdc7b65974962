/**
 * Mirror conformance: what every Mirror adapter must do (shared/ports/mirror.ts is the contract),
 * run on PGlite (test/mirror.pglite.test.ts) and on a real private Postgres cluster
 * (test/mirror.postgres.test.ts). The guarantees it protects: patchbay creates, alters and drops
 * only the tables it created; an older `ii` never overwrites a newer row; a named query cannot
 * write, cannot read another domain's schema, cannot be changed by its parameters, and fails
 * with a coded error that carries no database internals.
 *
 * Usage: `mirrorConformance('PGliteMirror', async () => mirror, { interruptsQueries: false })`.
 * `make()` may return the same mirror each time: every test works in a fresh domain.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PatchbayError } from '../../shared/errors.js';
import { type MirrorTables, type NamedQueries, namedQueriesSchema } from '../../shared/mirror/definitions.js';
import { prepareQuery } from '../../shared/mirror/queries.js';
import { indexName, schemaName } from '../../shared/mirror/sql.js';
import type { SqlMirror } from '../../shared/mirror/sql-mirror.js';
import type { MirroredScope } from '../../shared/ports/mirror.js';
import { TAG_SCOPE_TYPE } from '../../shared/protocol.js';

const LIMITS = { timeoutMs: 2000, maxRows: 100 };
const T0 = Date.UTC(2026, 0, 1);

const fresh = (): string => `t${randomUUID().slice(0, 8)}.example.com`;

function scope(id: string, ii: number, state: MirroredScope['state'], type: string | null = 'note', owner = 'u1'): MirroredScope {
  return { id, ii, state, meta: { owner, name: null, type, created: T0, updated: T0 + ii, size: JSON.stringify(state).length } };
}

const NOTES: MirrorTables = {
  notes: {
    type: 'note',
    columns: { title: { type: 'text' }, score: { type: 'integer', source: '/stats/score' }, tags: { type: 'text[]' }, owner: { type: 'text', meta: 'owner' } },
    indexes: [{ columns: ['score'] }],
  },
};

async function expectCode(p: Promise<unknown>, code: string): Promise<PatchbayError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(PatchbayError);
  expect((err as PatchbayError).code).toBe(code);
  return err as PatchbayError;
}

export function mirrorConformance(name: string, make: () => Promise<SqlMirror>, caps: { interruptsQueries: boolean }): void {
  describe(`${name} (Mirror conformance)`, () => {
    /** Runs an ad-hoc named query `sql` in `domain` as `requester`. */
    async function run(
      m: SqlMirror,
      domain: string,
      sql: string,
      params: Record<string, unknown> = {},
      defs: Partial<NamedQueries[string]> = {},
      limits = LIMITS,
    ) {
      const queries = namedQueriesSchema.parse({ q: { sql, ...defs } });
      return m.query(domain, prepareQuery(queries, domain, 'q', params, { requester: 'u1', domain }), limits);
    }
    const rowsOf = async (m: SqlMirror, domain: string, table: string) => (await run(m, domain, `SELECT * FROM ${table} ORDER BY id`)).rows;

    it('ensure creates scopes, tags and the declared tables; the same definitions again change nothing', async () => {
      const m = await make();
      const d = fresh();
      const first = await m.ensure(d, NOTES);
      expect(first.created.sort()).toEqual(['notes', 'scopes', 'tags']);
      expect(first.backfill.sort()).toEqual(['notes', 'scopes', 'tags']);
      expect(await m.ensure(d, NOTES)).toEqual({ created: [], altered: [], dropped: [], backfill: [] });
      const cols = await run(m, d, 'SELECT * FROM notes');
      expect(cols.columns.map((c) => c.name)).toEqual(['id', '_ii', 'title', 'score', 'tags', 'owner']);
      expect(cols.columns.map((c) => c.type)).toEqual(['text', 'bigint', 'text', 'integer', 'text[]', 'text']);
      const scopes = await run(m, d, 'SELECT * FROM scopes');
      expect(scopes.columns.map((c) => c.name)).toEqual(['id', '_ii', 'owner', 'name', 'type', 'ii', 'created', 'updated', 'size', 'access']);
    });

    it('upsert writes the scopes row and the rows of tables of its type; values that do not fit are NULL', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, { ...NOTES, other: { type: 'other', columns: { x: { type: 'text' } } } });
      await m.upsert(d, NOTES, scope('n1', 3, { title: 'hello', stats: { score: 7 }, tags: ['a', 'b'] }));
      await m.upsert(d, NOTES, scope('n2', 1, { title: 42, stats: { score: 'high' }, tags: 'nope' }));
      await m.upsert(d, NOTES, scope('t1', 1, { tagType: 'star', target: 'n1', context: ['c1'] }, TAG_SCOPE_TYPE, 'u2'));
      expect(await rowsOf(m, d, 'notes')).toEqual([
        ['n1', 3, 'hello', 7, ['a', 'b'], 'u1'],
        ['n2', 1, '42', null, null, 'u1'],
      ]);
      expect(await rowsOf(m, d, 'tags')).toEqual([['t1', 1, 'star', 'n1', ['c1'], 'u2']]);
      expect(await rowsOf(m, d, 'other')).toEqual([]);
      const s = await run(m, d, 'SELECT id, owner, type, ii, created, updated, size FROM scopes ORDER BY id');
      expect(s.rows).toEqual([
        ['n1', 'u1', 'note', 3, new Date(T0).toISOString(), new Date(T0 + 3).toISOString(), expect.any(Number)],
        ['n2', 'u1', 'note', 1, new Date(T0).toISOString(), new Date(T0 + 1).toISOString(), expect.any(Number)],
        ['t1', 'u2', TAG_SCOPE_TYPE, 1, new Date(T0).toISOString(), new Date(T0 + 1).toISOString(), expect.any(Number)],
      ]);
    });

    it('an older ii never overwrites a newer row; the same ii again is harmless; a newer one replaces', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, NOTES);
      await m.upsert(d, NOTES, scope('n', 5, { title: 'five' }));
      await m.upsert(d, NOTES, scope('n', 3, { title: 'three' }));
      await m.upsert(d, NOTES, scope('n', 4, { title: 'four' }));
      expect((await run(m, d, 'SELECT title, _ii FROM notes')).rows).toEqual([['five', 5]]);
      expect((await run(m, d, 'SELECT ii FROM scopes')).rows).toEqual([[5]]);
      await m.upsert(d, NOTES, scope('n', 5, { title: 'five' }));
      expect((await run(m, d, 'SELECT title, _ii FROM notes')).rows).toEqual([['five', 5]]);
      await Promise.all([6, 9, 7, 8].map((ii) => m.upsert(d, NOTES, scope('n', ii, { title: `v${ii}` }))));
      expect((await run(m, d, 'SELECT title, _ii FROM notes')).rows).toEqual([['v9', 9]]);
      expect((await run(m, d, 'SELECT ii FROM scopes')).rows).toEqual([[9]]);
    });

    it("remove deletes a scope's rows from every table; again, or in a domain without a mirror, it does nothing", async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, NOTES);
      await m.upsert(d, NOTES, scope('a', 1, { title: 'a' }));
      await m.upsert(d, NOTES, scope('b', 1, { title: 'b' }));
      await m.remove(d, 'a');
      await m.remove(d, 'a');
      await m.remove(fresh(), 'a');
      expect((await run(m, d, 'SELECT id FROM notes')).rows).toEqual([['b']]);
      expect((await run(m, d, 'SELECT id FROM scopes')).rows).toEqual([['b']]);
    });

    it('alters a table: a column type changed USING a cast (NULL where it fails), columns added and dropped, indexes moved', async () => {
      const m = await make();
      const d = fresh();
      const v1: MirrorTables = { t: { type: 'note', columns: { a: { type: 'text' }, b: { type: 'text' }, gone: { type: 'text' } } } };
      await m.ensure(d, v1);
      await m.upsert(d, v1, scope('s', 1, { a: '12', b: 'abc', gone: 'x' }));
      const v2: MirrorTables = {
        t: { type: 'note', columns: { a: { type: 'integer' }, b: { type: 'integer' }, c: { type: 'boolean' } }, indexes: [{ columns: ['a'] }] },
      };
      const report = await m.ensure(d, v2);
      expect(report).toEqual({ created: [], altered: ['t'], dropped: [], backfill: ['t'] });
      const r = await run(m, d, 'SELECT * FROM t');
      expect(r.columns.map((c) => [c.name, c.type])).toEqual([
        ['id', 'text'],
        ['_ii', 'bigint'],
        ['a', 'integer'],
        ['b', 'integer'],
        ['c', 'boolean'],
      ]);
      expect(r.rows).toEqual([['s', 1, 12, null, null]]);
      const idx = await m.adminQuery('SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY 1', [schemaName(d), 't']);
      expect(idx.rows.map((x) => x[0])).toEqual([indexName('t', { columns: ['a'] }), 't_pkey']);
      // The backfill (an upsert at the same ii) fills the new columns.
      await m.upsert(d, v2, scope('s', 1, { a: 12, b: 3, c: true }));
      expect((await run(m, d, 'SELECT * FROM t')).rows).toEqual([['s', 1, 12, 3, true]]);
      expect(await m.ensure(d, v2)).toEqual({ created: [], altered: [], dropped: [], backfill: [] });
    });

    it('drops a table it created once undeclared, and refuses to touch a table it did not create', async () => {
      const m = await make();
      const d = fresh();
      const s = schemaName(d);
      await m.ensure(d, NOTES);
      await m.adminQuery(`CREATE TABLE "${s}".mine (id text PRIMARY KEY, secret text)`);
      await m.adminQuery(`INSERT INTO "${s}".mine VALUES ('k', 'keep me')`);
      // Undeclaring `notes` drops it; `mine` was never patchbay's, so it stays.
      expect(await m.ensure(d, {})).toEqual({ created: [], altered: [], dropped: ['notes'], backfill: [] });
      const tables = async () => (await m.adminQuery('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [s])).rows.map((r) => r[0]);
      expect(await tables()).toEqual(['_patchbay_lag', '_patchbay_settings', '_patchbay_tables', 'mine', 'scopes', 'tags']);
      // Declaring a table under its name is refused, and nothing changes (notes is not re-created either).
      const err = await expectCode(m.ensure(d, { ...NOTES, mine: { type: 'note', columns: { secret: { type: 'integer' } } } }), 'invalid_request');
      expect(err.details).toEqual({ table: 'mine' });
      expect(await tables()).toEqual(['_patchbay_lag', '_patchbay_settings', '_patchbay_tables', 'mine', 'scopes', 'tags']);
      expect((await m.adminQuery(`SELECT * FROM "${s}".mine`)).rows).toEqual([['k', 'keep me']]);
      // Upserts and removes never touch it either.
      await m.remove(d, 'k');
      expect((await m.adminQuery(`SELECT * FROM "${s}".mine`)).rows).toEqual([['k', 'keep me']]);
    });

    it('unknown_query: a name the domain does not have, or a calling domain the query does not list', async () => {
      const m = await make();
      const d = `app.${fresh()}`;
      await m.ensure(d, {});
      const queries = namedQueriesSchema.parse({ mine: { sql: 'SELECT 1' }, shared: { sql: 'SELECT $DOMAIN AS d', domains: ['*.partner.org'] } });
      const caller = (domain: string) => ({ requester: 'u', domain });
      expect(() => prepareQuery(queries, d, 'nope', {}, caller(d))).toThrow(expect.objectContaining({ code: 'unknown_query' }));
      expect(() => prepareQuery(queries, d, 'toString', {}, caller(d))).toThrow(expect.objectContaining({ code: 'unknown_query' }));
      expect(() => prepareQuery(queries, d, 'mine', {}, caller('other.org'))).toThrow(expect.objectContaining({ code: 'unknown_query' }));
      expect(() => prepareQuery(queries, d, 'shared', {}, caller('a.b.partner.org'))).toThrow(expect.objectContaining({ code: 'unknown_query' }));
      const r = await m.query(d, prepareQuery(queries, d, 'shared', {}, caller('x.partner.org')), LIMITS);
      expect(r.rows).toEqual([['x.partner.org']]);
    });

    it('invalid_params: missing, unknown, of the wrong type, or naming a server-bound parameter', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, {});
      const queries = namedQueriesSchema.parse({
        q: {
          sql: 'SELECT $n AS n, $when AS w, $tags AS t, $j AS j',
          params: {
            n: { type: 'integer' },
            when: { type: 'timestamptz', optional: true },
            tags: { type: 'text[]', optional: true },
            j: { type: 'jsonb', optional: true },
          },
        },
      });
      const caller = { requester: 'u1', domain: d };
      for (const params of [
        {},
        { n: 1.5 },
        { n: '1' },
        { n: 2 ** 31 },
        { n: 1, extra: 1 },
        { n: 1, REQUESTER: 'admin' },
        { n: 1, requester: 'admin' },
        { n: 1, Domain: 'x' },
        { n: 1, when: 'yesterday' },
        { n: 1, tags: ['a', 2] },
        [1],
        'n=1',
      ]) {
        expect(() => prepareQuery(queries, d, 'q', params, caller), JSON.stringify(params)).toThrow(expect.objectContaining({ code: 'invalid_params' }));
      }
      const ok = await m.query(d, prepareQuery(queries, d, 'q', { n: 1, when: T0, tags: ['a', 'b"c', 'd\\e'], j: { x: [1] } }, caller), LIMITS);
      expect(ok.rows).toEqual([[1, new Date(T0).toISOString(), ['a', 'b"c', 'd\\e'], { x: [1] }]]);
      // A query may not declare them either.
      expect(namedQueriesSchema.safeParse({ q: { sql: 'SELECT $REQUESTER', params: { requester: { type: 'text' } } } }).success).toBe(false);
      expect(namedQueriesSchema.safeParse({ q: { sql: 'SELECT $undeclared' } }).success).toBe(false);
      expect(namedQueriesSchema.safeParse({ q: { sql: 'SELECT 1; SELECT 2' } }).success).toBe(false);
      expect(namedQueriesSchema.safeParse({ q: { sql: 'SELECT $1' } }).success).toBe(false);
    });

    it('$REQUESTER and $DOMAIN come from the server; parameter values never change the SQL text', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, NOTES);
      await m.upsert(d, NOTES, scope('mine', 1, { title: 'mine' }, 'note', 'u1'));
      await m.upsert(d, NOTES, scope('theirs', 1, { title: 'theirs' }, 'note', 'u2'));
      const own = await run(m, d, "SELECT id, $REQUESTER AS me, $DOMAIN AS d, '$REQUESTER' AS literal FROM notes WHERE owner = $REQUESTER -- $REQUESTER", {});
      expect(own.rows).toEqual([['mine', 'u1', d, '$REQUESTER']]);
      const evil = "x' OR '1'='1'; DROP TABLE notes; --";
      const r = await run(m, d, 'SELECT id FROM notes WHERE title = $t', { t: evil }, { params: { t: { type: 'text' } } });
      expect(r.rows).toEqual([]);
      expect((await rowsOf(m, d, 'notes')).length).toBe(2);
    });

    it('query_failed carries the SQLSTATE and no database text; a query can neither write nor run DDL', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, NOTES);
      await m.upsert(d, NOTES, scope('n', 1, { title: 'kept' }));
      const failing: Array<[string, string]> = [
        ['SELECT 1/0', '22012'],
        ['SELECT nope FROM notes', '42703'],
        ['SELECT * FROM nowhere', '42P01'],
      ];
      for (const [sql, code] of failing) {
        const err = await expectCode(run(m, d, sql), 'query_failed');
        expect(err.details).toEqual({ pgCode: code });
        expect(err.message).not.toMatch(/notes|nowhere|nope|d_/);
      }
      const writes = [
        "INSERT INTO notes (id, _ii) VALUES ('x', 1)",
        "UPDATE notes SET title = 'changed'",
        'DELETE FROM notes',
        'CREATE TABLE x (a int)',
        'DROP TABLE notes',
        'WITH gone AS (DELETE FROM notes RETURNING id) SELECT * FROM gone',
      ];
      for (const sql of writes) await expectCode(run(m, d, sql), 'query_failed');
      expect((await rowsOf(m, d, 'notes')).map((r) => r[2])).toEqual(['kept']);
    });

    it("a query cannot read another domain's schema, nor patchbay's catalog in its own", async () => {
      const m = await make();
      const a = fresh();
      const b = fresh();
      await m.ensure(a, NOTES);
      await m.ensure(b, NOTES);
      await m.upsert(b, NOTES, scope('secret', 1, { title: 'b only' }));
      for (const sql of [
        `SELECT * FROM "${schemaName(b)}".notes`,
        `SELECT * FROM "${schemaName(b)}".scopes`,
        'SELECT * FROM _patchbay_settings',
        'SELECT * FROM _patchbay_tables',
      ]) {
        const err = await expectCode(run(m, a, sql), 'query_failed');
        expect(err.details).toEqual({ pgCode: '42501' });
      }
      // The domain's own tables are readable, unqualified (search_path is the domain's schema).
      expect((await run(m, b, 'SELECT title FROM notes')).rows).toEqual([['b only']]);
    });

    it('rowsReadableOnly: every table read shows only rows of scopes the caller may read (owner, listed, visibility), aggregates too', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, NOTES);
      const acc = (visibility: string, readers: string[] = [], writers: string[] = []) => ({ visibility, readers, writers, rev: 1 }) as never;
      const put = (id: string, owner: string, access: unknown) =>
        m.upsert(d, NOTES, { ...scope(id, 1, { title: id }, 'note', owner), meta: { ...scope(id, 1, {}, 'note', owner).meta, access: access as never } });
      await put('a-own1', 'u1', acc('private'));
      await put('b-own2', 'u2', acc('private'));
      await put('c-read2', 'u1', acc('private', ['u2']));
      await put('d-write2', 'u1', acc('private', [], ['u2']));
      await put('e-public', 'u3', acc('public'));
      await put('f-auth', 'u3', acc('authenticated'));
      await put('g-domain', 'u3', acc('domain'));
      await put('h-legacy', 'u3', undefined);
      const sql = 'SELECT n.id, s.owner FROM notes n JOIN scopes s USING (id) ORDER BY n.id';
      const as = async (requester: string, domain: string, text = sql) => {
        const queries = namedQueriesSchema.parse({ q: { sql: text, rowsReadableOnly: true } });
        return (await m.query(d, prepareQuery(queries, d, 'q', {}, { requester, domain }), LIMITS)).rows.map((r) => r[0]);
      };
      expect(await as('u1', d)).toEqual(['a-own1', 'c-read2', 'd-write2', 'e-public', 'f-auth', 'g-domain', 'h-legacy']);
      expect(await as('u2', d)).toEqual(['b-own2', 'c-read2', 'd-write2', 'e-public', 'f-auth', 'g-domain', 'h-legacy']);
      // From another domain (a query listing it), `domain` visibility does not let in.
      const other = fresh();
      const queries = namedQueriesSchema.parse({ q: { sql, rowsReadableOnly: true, domains: [other] } });
      expect((await m.query(d, prepareQuery(queries, d, 'q', {}, { requester: 'u9', domain: other }), LIMITS)).rows.map((r) => r[0])).toEqual([
        'e-public',
        'f-auth',
        'h-legacy',
      ]);
      // An aggregate sees the same subset; the domain's service identity reads every scope of it.
      expect(await as('u2', d, 'SELECT count(*)::text FROM notes')).toEqual(['7']);
      expect(await as(`domain:${d}`, d, 'SELECT count(*)::text FROM notes')).toEqual(['8']);
      // Without rowsReadableOnly, every row.
      expect((await run(m, d, 'SELECT count(*)::text FROM scopes')).rows).toEqual([['8']]);
      // A caller can neither name itself another user nor widen the filter through parameters.
      const withParam = namedQueriesSchema.parse({
        q: { sql: 'SELECT id FROM notes WHERE title <> $t ORDER BY id', params: { t: { type: 'text' } }, rowsReadableOnly: true },
      });
      const mine = await m.query(d, prepareQuery(withParam, d, 'q', { t: "' OR true --" }, { requester: 'u2', domain: d }), LIMITS);
      expect(mine.rows.map((x) => x[0])).not.toContain('a-own1');
    });

    it('watch: told after each committed change of the domain, with the tables it changed; not after unwatch', async () => {
      const m = await make();
      const d = fresh();
      const other = fresh();
      await m.ensure(d, NOTES);
      await m.ensure(other, NOTES);
      const seen: string[][] = [];
      const unwatch = await m.watch(d, (t) => seen.push(t));
      const until = async (pred: () => boolean) => {
        for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 20));
        expect(pred()).toBe(true);
      };
      await m.upsert(other, NOTES, scope('o', 1, { title: 'elsewhere' }));
      await m.upsert(d, NOTES, scope('w', 1, { title: 'x' }));
      await until(() => seen.length === 1);
      expect(seen).toEqual([['scopes', 'notes']]);
      // By the time it is told, a query sees the change.
      expect((await run(m, d, 'SELECT title FROM notes')).rows).toEqual([['x']]);
      await m.remove(d, 'w');
      await until(() => seen.length === 2);
      expect([...(seen[1] as string[])].sort()).toEqual(['notes', 'scopes', 'tags']);
      await m.remove(d, 'w'); // nothing to remove: nothing changed
      await m.ensure(d, { ...NOTES, more: { type: 'more', columns: { x: { type: 'text' } } } });
      await until(() => seen.length === 3);
      expect(seen[2]).toEqual(['*']);
      await unwatch();
      await m.upsert(d, NOTES, scope('w', 2, { title: 'y' }));
      await new Promise((r) => setTimeout(r, 200));
      expect(seen.length).toBe(3);
    });

    it('recordLag and status: percentiles over every record of the window, the newest row per table; the query role cannot read them', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, NOTES);
      await m.recordLag(d, { lags: [10, 20, 30], last: { notes: { scope: 'a', ii: 1, at: 1000 }, scopes: { scope: 'a', ii: 1, at: 1000 } } }, 60_000);
      await m.recordLag(d, { lags: [40], last: { notes: { scope: 'b', ii: 2, at: 2000 } } }, 60_000);
      expect(await m.status(d, 60_000)).toEqual({
        lag: { windowMs: 60_000, count: 4, p50: 20, p99: 40, max: 40 },
        tables: { notes: { scope: 'b', ii: 2, at: 2000 }, scopes: { scope: 'a', ii: 1, at: 1000 } },
      });
      expect((await m.status(fresh(), 60_000)).lag).toEqual({ windowMs: 60_000, count: 0, p50: null, p99: null, max: null });
      await m.recordLag(fresh(), { lags: [1], last: {} }, 60_000); // a domain without a mirror: nothing, no error
      const err = await expectCode(run(m, d, 'SELECT * FROM _patchbay_lag'), 'query_failed');
      expect(err.details).toEqual({ pgCode: '42501' });
    });

    it('the row cap: at most maxRows rows, with truncated set when there were more', async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, {});
      const sql = 'SELECT g FROM generate_series(1, 5) AS g';
      expect(await run(m, d, sql, {}, {}, { timeoutMs: 2000, maxRows: 3 })).toEqual({
        columns: [{ name: 'g', type: 'integer' }],
        rows: [[1], [2], [3]],
        truncated: true,
      });
      expect((await run(m, d, sql, {}, {}, { timeoutMs: 2000, maxRows: 5 })).truncated).toBe(false);
      expect((await run(m, d, sql, {}, {}, { timeoutMs: 2000, maxRows: 0 })).rows).toEqual([]);
    });

    it(`query_timeout past the statement timeout${caps.interruptsQueries ? '' : ' (reported once the query ends: PGlite cannot interrupt)'}`, async () => {
      const m = await make();
      const d = fresh();
      await m.ensure(d, {});
      const started = Date.now();
      await expectCode(run(m, d, 'SELECT pg_sleep(0.6)', {}, {}, { timeoutMs: 150, maxRows: 10 }), 'query_timeout');
      if (caps.interruptsQueries) expect(Date.now() - started).toBeLessThan(550);
      expect((await run(m, d, 'SELECT 1 AS one')).rows).toEqual([[1]]);
    });

    it('a query in a domain whose mirror does not exist yet fails with a code', async () => {
      const m = await make();
      await expectCode(run(m, fresh(), 'SELECT 1'), 'query_failed');
    });
  });
}
