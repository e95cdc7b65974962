/**
 * The queryable mirror end to end over real HTTP (issue 14), on each stack's own delivery
 * (embedded: in-process; Google: push subscriptions): a domain admin uploads a configuration with
 * a table and named queries through the real upload route; its apply's `mirror` step creates the
 * tables and backfills them from the scopes written before (counts in the report); writes after
 * it reach the table through the mirror consumer; a second version changes a column's type and
 * adds a column, and its backfill fills the new column for every existing scope. Queries answer
 * `{columns, rows, truncated}` with `$REQUESTER` and `$DOMAIN` bound from the caller: a client
 * cannot supply either (in any case), another user sees only its own rows, a caller from another
 * domain runs only queries whose `domains` list matches it (`*` one label), anything else is
 * `unknown_query`. Then what no patch carries: a created scope, its access change, a tag and a
 * delete each reach the mirror, seen by two users through a `rowsReadableOnly` query; a live query
 * (SSE) sends its new result after a write; the admin reads the mirror lag.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client, TestServer } from '../helpers/server.js';
import { openSse } from '../helpers/sse.js';
import { clientIn, upload, userId } from './config.js';

export type StartMirrored = () => Promise<{ srv: TestServer; close: () => Promise<void> }>;

const DOMAIN = 'app.example.com';

const V1 = `tables:
  notes:
    type: note
    columns:
      title: { type: text }
      n: { type: text }
      owner: { type: text, meta: owner }
    indexes:
      - columns: [owner]
queries:
  mine:
    sql: SELECT id, title, n FROM notes WHERE owner = $REQUESTER ORDER BY id
  whoami:
    sql: SELECT $REQUESTER AS requester, $DOMAIN AS domain
    domains: ["*.example.com"]
  local_only:
    sql: SELECT count(*) AS notes FROM notes
`;

// n becomes an integer; a new column `words` comes from a JSON Pointer; `by_min` reads both.
const V2 = `tables:
  notes:
    type: note
    columns:
      title: { type: text }
      n: { type: integer }
      words: { type: integer, source: /body/words }
      owner: { type: text, meta: owner }
    indexes:
      - columns: [owner]
      - columns: [n]
queries:
  mine:
    sql: SELECT id, title, n FROM notes WHERE owner = $REQUESTER ORDER BY id
  by_min:
    sql: SELECT id, n, words FROM notes WHERE n >= $min ORDER BY n
    params:
      min: { type: integer }
  readable:
    sql: SELECT n.id, n.title FROM notes n JOIN scopes s USING (id) ORDER BY n.title
    rowsReadableOnly: true
  stars:
    sql: SELECT target FROM tags WHERE tag_type = 'star' AND owner = $REQUESTER ORDER BY target
`;

/** Generous: PGlite's first start blocks the process for up to half a minute on a loaded machine. */
const SLOW = 180_000;

/**
 * Polls `pred` every 100 ms until it holds. A failed request counts as not yet: while PGlite
 * starts, the event loop is blocked and a kept-alive connection may be reset under the client.
 */
async function until(pred: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function mirrorContract(stack: string, start: StartMirrored): void {
  describe(`the queryable mirror over HTTP (${stack})`, () => {
    let srv: TestServer;
    let close: () => Promise<void>;
    let admin: Client;
    let bob: Client;
    const query = (c: Client, name: string, params?: unknown, domain = DOMAIN) =>
      c.request('POST', `/v1/domains/${domain}/queries/${name}`, { body: params === undefined ? {} : { params } });
    const note = async (c: Client, title: string, n: number, words: number) => {
      const res = await c.request('POST', '/v1/scopes', { body: { type: 'note', state: { title, n, body: { words } } } });
      expect(res.status).toBe(201);
      return res.json.id as string;
    };
    /** Applies a version and returns its finished report. */
    const apply = async (text: string, replaces: number) => {
      const res = await upload(admin, text, replaces);
      expect(res.status).toBe(202);
      const report = res.json.report as string;
      let state: Record<string, unknown> = {};
      await until(
        async () => {
          state = (await admin.request('GET', `/v1/scopes/${report}`)).json.state;
          return state.status === 'done' || state.status === 'failed';
        },
        `the apply of version ${replaces + 1}`,
      );
      return state;
    };
    let early: string[] = [];

    beforeAll(async () => {
      ({ srv, close } = await start());
      [admin, bob] = await Promise.all([clientIn(srv.url, DOMAIN), clientIn(srv.url, DOMAIN)]);
      await srv.app.domains.addAdmin(DOMAIN, userId(admin));
      // Written before the domain has a mirror: only a backfill can bring them in.
      early = [await note(admin, 'first', 3, 30), await note(admin, 'second', 12, 120), await note(bob, 'bobs', 7, 70)];
    });
    afterAll(() => close());

    it(
      'backfills the tables of the first version from the states written before it, with counts in the report',
      async () => {
        const report = await apply(V1, 0);
        expect(report).toMatchObject({ status: 'done', steps: { mirror: 'done', activate: 'done' } });
        const m = report.mirror as { created: string[]; backfill: { tables: string[]; rows: number; done: boolean } };
        expect([...m.created].sort()).toEqual(['notes', 'scopes', 'tags']);
        expect([...m.backfill.tables].sort()).toEqual(['notes', 'scopes', 'tags']);
        expect(m.backfill).toMatchObject({ rows: 3, done: true });
        const mine = await query(admin, 'mine');
        expect(mine.status).toBe(200);
        expect(mine.json).toEqual({
          columns: [
            { name: 'id', type: 'text' },
            { name: 'title', type: 'text' },
            { name: 'n', type: 'text' },
          ],
          rows: [early[0] as string, early[1] as string].sort().map((id) => [id, id === early[0] ? 'first' : 'second', id === early[0] ? '3' : '12']),
          truncated: false,
        });
      },
      SLOW,
    );

    it(
      'mirrors later writes through the consumer: a new scope and a patch show up in the query',
      async () => {
        const id = await note(bob, 'later', 1, 10);
        expect((await bob.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/title', value: 'patched' }] } })).status).toBe(
          200,
        );
        await until(async () => JSON.stringify((await query(bob, 'mine')).json.rows).includes('patched'), 'the patch in the mirror');
        const rows = (await query(bob, 'mine')).json.rows as string[][];
        expect(rows.map((r) => r[1]).sort()).toEqual(['bobs', 'patched']); // bob's rows only: $REQUESTER is bob
      },
      SLOW,
    );

    it('refuses $REQUESTER and $DOMAIN from the client in any case, and unknown or missing parameters (invalid_params)', async () => {
      for (const params of [{ REQUESTER: userId(admin) }, { requester: userId(admin) }, { Domain: 'app.example.com' }, { other: 1 }, 'x']) {
        const res = await query(bob, 'mine', params);
        expect(res.status).toBe(400);
        expect(res.json.error.code).toBe('invalid_params');
      }
    });

    it('lets another domain run only queries whose domains list matches it (`*` is one label); anything else is unknown_query', async () => {
      const other = await clientIn(srv.url, 'other.example.com');
      const who = await query(other, 'whoami');
      expect(who.status).toBe(200);
      expect(who.json.rows).toEqual([[userId(other), 'other.example.com']]); // $DOMAIN is the caller's domain
      for (const [c, name] of [
        [other, 'local_only'],
        [other, 'mine'],
        [await clientIn(srv.url, 'a.b.example.com'), 'whoami'],
        [await clientIn(srv.url, 'example.org'), 'whoami'],
        [admin, 'no_such_query'],
      ] as const) {
        const res = await query(c, name);
        expect(res.status).toBe(404);
        expect(res.json.error).toMatchObject({ code: 'unknown_query' });
      }
      expect((await query(admin, 'whoami')).json.rows).toEqual([[userId(admin), DOMAIN]]);
    });

    it(
      'applies a second version that changes a column type and adds one: altered in place, backfilled, then queried',
      async () => {
        const report = await apply(V2, 1);
        expect(report).toMatchObject({ status: 'done', steps: { mirror: 'done', activate: 'done' } });
        const m = report.mirror as { created: string[]; altered: string[]; backfill: { tables: string[]; rows: number; done: boolean } };
        expect(m.created).toEqual([]);
        expect(m.altered).toEqual(['notes']);
        expect(m.backfill).toMatchObject({ tables: ['notes'], rows: 4, done: true });
        const res = await query(bob, 'by_min', { min: 5 });
        expect(res.status).toBe(200);
        expect(res.json.columns).toEqual([
          { name: 'id', type: 'text' },
          { name: 'n', type: 'integer' },
          { name: 'words', type: 'integer' },
        ]);
        expect(res.json.rows).toEqual([
          [early[2], 7, 70],
          [early[1], 12, 120],
        ]);
        // The first version's queries that the second dropped are gone.
        expect((await query(admin, 'whoami')).json.error.code).toBe('unknown_query');
        expect((await query(bob, 'by_min', { min: 'five' })).json.error.code).toBe('invalid_params');
      },
      SLOW,
    );

    it(
      'creates, access changes, tags and deletes reach the mirror without a patch; rowsReadableOnly shows each user only what it may read',
      async () => {
        const titles = async (c: Client) => ((await query(c, 'readable')).json.rows as string[][]).map((r) => r[1]);
        const id = await note(admin, 'fresh', 1, 1); // private: the domain names no default visibility
        await until(async () => (await titles(admin)).includes('fresh'), 'the created scope in the mirror');
        expect(await titles(admin)).toEqual(['first', 'fresh', 'second']);
        expect(await titles(bob)).toEqual(['bobs', 'patched']); // none of the admin's private notes
        const shared = await admin.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'private', readers: [userId(bob)] } });
        expect(shared.status).toBe(200);
        await until(async () => (await titles(bob)).includes('fresh'), 'the access change in the mirror');
        expect(await titles(bob)).toEqual(['bobs', 'fresh', 'patched']);
        const tag = await bob.request('POST', `/v1/scopes/${id}/tags`, { body: { tagType: 'star' } });
        expect(tag.status).toBe(201);
        await until(async () => JSON.stringify((await query(bob, 'stars')).json.rows) === JSON.stringify([[id]]), 'the tag in the mirror');
        expect((await admin.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
        await until(async () => !(await titles(admin)).includes('fresh'), 'the deleted scope gone from the mirror');
        expect(await titles(bob)).toEqual(['bobs', 'patched']);
      },
      SLOW,
    );

    it(
      'a live query sends its result, then the new result after a write changes a table it reads; refused ones are answered before any stream',
      async () => {
        const url = (name: string, params?: unknown) =>
          `${srv.url}/v1/domains/${DOMAIN}/queries/${name}/events${params === undefined ? '' : `?params=${encodeURIComponent(JSON.stringify(params))}`}`;
        const live = openSse(url('by_min', { min: 100 }), bob.token);
        try {
          await live.waitFor((es) => es.some((e) => e.type === 'result'));
          expect(live.events[0]).toMatchObject({ type: 'result', id: '1', data: { rows: [], truncated: false } });
          expect(live.events[0]?.data.columns.map((c: { name: string }) => c.name)).toEqual(['id', 'n', 'words']);
          const id = await note(admin, 'big', 500, 5);
          await live.waitFor((es) => es.filter((e) => e.type === 'result').length >= 2, 60_000);
          expect(live.events[1]).toMatchObject({ type: 'result', id: '2', data: { rows: [[id, 500, 5]] } });
          // A write to a row it does not select re-runs it, but an unchanged result is not sent again.
          await note(admin, 'small', 1, 1);
          const other = await bob.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: 'x', n: 600, body: { words: 6 } } } });
          await live.waitFor((es) => es.filter((e) => e.type === 'result').length >= 3, 60_000);
          expect((live.events[2] as { data: { rows: unknown[][] } }).data.rows.map((r) => r[0])).toEqual([id, other.json.id]);
          expect(live.events.filter((e) => e.type === 'result').length).toBe(3);
        } finally {
          live.close();
        }
        // Refusals come as plain JSON, before any stream: the same codes as the POST.
        const get = (name: string, params: unknown, c: Client | null) =>
          fetch(url(name, params), { headers: c ? { authorization: `Bearer ${c.token}` } : {} }).then(async (r) => ({
            status: r.status,
            type: r.headers.get('content-type'),
            body: (await r.json()) as { error: { code: string } },
          }));
        for (const [name, params, c, status, code] of [
          ['by_min', { min: 1 }, null, 401, 'unauthorized'],
          ['nope', {}, bob, 404, 'unknown_query'],
          ['by_min', { min: 'x' }, bob, 400, 'invalid_params'],
          ['by_min', { REQUESTER: 'x', min: 1 }, bob, 400, 'invalid_params'],
        ] as const) {
          const r = await get(name, params, c);
          expect([r.status, r.body.error.code], name).toEqual([status, code]);
          expect(r.type).toMatch(/application\/json/);
        }
        const bad = await fetch(`${srv.url}/v1/domains/${DOMAIN}/queries/by_min/events?params=%7Bnot-json`, {
          headers: { authorization: `Bearer ${bob.token}` },
        });
        expect([bad.status, ((await bad.json()) as { error: { code: string } }).error.code]).toEqual([400, 'invalid_params']);
      },
      SLOW,
    );

    it('reports the mirror lag and the newest row per table to the domain admin only', async () => {
      await srv.app.delivery?.idle();
      let status: Record<string, unknown> = {};
      await until(async () => {
        const res = await admin.request('GET', `/v1/domains/${DOMAIN}/mirror`);
        status = res.json;
        return res.status === 200 && (status.lag as { count: number }).count > 0;
      }, 'lag samples');
      const lag = status.lag as { windowMs: number; count: number; p50: number; p99: number; max: number };
      expect(status.mirror).toBe(true);
      expect(lag.windowMs).toBe(300_000);
      expect(lag.p50).toBeGreaterThanOrEqual(0);
      expect(lag.p99).toBeGreaterThanOrEqual(lag.p50);
      expect(lag.max).toBeGreaterThanOrEqual(lag.p99);
      expect((status.tables as Record<string, { ii: number; scope: string; at: number }>).notes).toMatchObject({
        ii: expect.any(Number),
        scope: expect.any(String),
      });
      const refused = await bob.request('GET', `/v1/domains/${DOMAIN}/mirror`);
      expect([refused.status, refused.json.error.code]).toEqual([403, 'forbidden']);
      const none = await clientIn(srv.url, 'nomirror.example.com');
      await srv.app.domains.addAdmin('nomirror.example.com', userId(none));
      expect((await none.request('GET', '/v1/domains/nomirror.example.com/mirror')).json).toMatchObject({ mirror: false, lag: { count: 0 } });
    });
  });
}
