/**
 * The client's named queries (client/src/queries.ts) against a real server with a mirror, on each
 * stack's own (test/mirror-http.test.ts: PGlite, in-process delivery; test/mirror.emulator.test.ts:
 * Postgres, push subscriptions). A domain admin applies a configuration through the real upload
 * route; then `client.query` answers `{columns, rows, truncated}` with `$REQUESTER` bound by the
 * server; refusals are PatchbayClientErrors with the server's code and status (`unknown_query`,
 * `invalid_params`, `query_failed` with `pgCode`, `query_timeout`), and a query changes nothing;
 * `client.watchQuery` sends the result at once, again after a write that changes it, again after
 * the server ends the stream (it reconnects), and ends with `onError` when the query is refused
 * or a later run fails. The watch tests run twice: on a stream of the watch's own, and on the
 * multiplexed client's shared connection (`POST /v1/events/{stream}` `watch`), where a client
 * watching three queries and two scopes holds one stream (counted by a real proxy), and behind a
 * proxy that buffers SSE it polls the queries instead and still sees each new result.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type PatchbayClient, type PatchbayClientError, type QueryParams, type QueryResult } from '../../client/src/index.js';
import type { Config } from '../../shared/config.js';
import { openMux } from '../helpers/mux-sse.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import type { Client, TestServer } from '../helpers/server.js';
import { refusal } from './client-sessions.js';
import { clientIn, upload, userId } from './config.js';

export type StartMirroredWith = (overrides?: Partial<Config>) => Promise<{ srv: TestServer; close: () => Promise<void> }>;

const DOMAIN = 'client.example.com';

const CONFIG = `tables:
  items:
    type: item
    columns:
      title: { type: text }
      owner: { type: text, meta: owner }
queries:
  mine:
    sql: SELECT title FROM items WHERE owner = $REQUESTER ORDER BY title
  titled:
    sql: SELECT count(*)::text AS n FROM items WHERE title = $t
    params:
      t: { type: text }
  fragile:
    sql: SELECT (1 / (count(*) - 1))::text AS x FROM items WHERE owner = $REQUESTER
  slow:
    sql: SELECT pg_sleep(0.6) IS NULL AS slept
`;

/** Generous: PGlite's first start blocks the process for up to half a minute on a loaded machine. */
const SLOW = 180_000;

async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await Promise.resolve(pred()).catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function clientQueriesContract(stack: string, start: StartMirroredWith): void {
  describe(`the client's named and live queries (${stack})`, () => {
    let srv: TestServer;
    let close: () => Promise<void>;
    let admin: Client;
    let bob: Client;
    let client: PatchbayClient;
    const item = async (c: Client, title: string) => {
      const res = await c.request('POST', '/v1/scopes', { body: { type: 'item', state: { title } } });
      expect(res.status).toBe(201);
      return res.json.id as string;
    };

    beforeAll(async () => {
      ({ srv, close } = await start({ domainCacheMs: 0, mirrorQueryTimeoutMs: 300, sseMaxMs: 2000, sseRetryMs: 0, sseMaxScopes: 25 }));
      [admin, bob] = await Promise.all([clientIn(srv.url, DOMAIN), clientIn(srv.url, DOMAIN)]);
      await srv.app.domains.addAdmin(DOMAIN, userId(admin));
      const res = await upload(admin, CONFIG, 0, DOMAIN);
      expect(res.status, res.text).toBe(202);
      const report = res.json.report as string;
      await until(async () => ['done', 'failed'].includes((await admin.request('GET', `/v1/scopes/${report}`)).json.state.status), 'the apply', SLOW);
      expect((await admin.request('GET', `/v1/scopes/${report}`)).json.state.status).toBe('done');
      client = createClient({ url: srv.url, token: bob.token, multiplex: false });
      shared = createClient({ url: srv.url, token: bob.token });
    }, SLOW);
    afterAll(async () => {
      client?.close();
      shared?.close();
      await close?.();
    });
    /** The same user's multiplexed client: live queries on its shared connection. */
    let shared: PatchbayClient;
    const clients = () => [
      { how: 'own stream', c: client },
      { how: 'shared connection', c: shared },
    ];

    it(
      'runs a query with the caller as $REQUESTER and its declared parameters',
      async () => {
        await item(bob, 'b1');
        await item(admin, 'a1');
        await until(async () => (await client.query(DOMAIN, 'mine')).rows.length === 1, 'bob’s item in the mirror', SLOW);
        expect(await client.query(DOMAIN, 'mine')).toEqual({ columns: [{ name: 'title', type: 'text' }], rows: [['b1']], truncated: false });
        await until(async () => (await client.query(DOMAIN, 'titled', { t: 'a1' })).rows[0]?.[0] === '1', 'admin’s item in the mirror');
      },
      SLOW,
    );

    it('refuses with typed codes, changing nothing: unknown_query, invalid_params, query_failed, query_timeout', async () => {
      const before = await client.query(DOMAIN, 'mine');
      const unknown = await refusal(client.query(DOMAIN, 'no_such_query'));
      expect([unknown.code, unknown.status]).toEqual(['unknown_query', 404]);
      expect((await refusal(client.query('elsewhere.example.com', 'mine'))).code).toBe('unknown_query');
      for (const params of [{ REQUESTER: userId(admin) }, { t: 'x', other: 1 }, {}] as QueryParams[]) {
        const e = await refusal(client.query(DOMAIN, 'titled', params));
        expect([e.code, e.status]).toEqual(['invalid_params', 400]);
      }
      // bob has one item: 1 / (1 - 1)
      const failed = await refusal(client.query(DOMAIN, 'fragile'));
      expect([failed.code, failed.status, failed.details.pgCode]).toEqual(['query_failed', 422, '22012']);
      const slow = await refusal(client.query(DOMAIN, 'slow'));
      expect([slow.code, slow.status]).toEqual(['query_timeout', 504]);
      expect(await client.query(DOMAIN, 'mine')).toEqual(before);
    });

    it(
      'watches a query: the result at once, again after a write, again after the server ends the stream',
      async () => {
        for (const { how, c: client } of clients()) await watchOnce(how, client);
      },
      SLOW,
    );

    /** One client's run of the watch test; bob's items are b1 (and b2, b3 of an earlier run). */
    const watchOnce = async (how: string, client: PatchbayClient) => {
      {
        const results: QueryResult[] = [];
        const errors: PatchbayClientError[] = [];
        const start = (await client.query(DOMAIN, 'mine')).rows;
        const stop = client.watchQuery(
          DOMAIN,
          'mine',
          undefined,
          (r) => results.push(r),
          (e) => errors.push(e),
        );
        await until(() => results.length > 0, `the first result (${how})`);
        expect(results[0]?.rows).toEqual(start);
        const title = `b${how.split(' ')[0]}`; // bown, bshared: no punctuation, so every collation sorts them alike
        await item(bob, title);
        const after = [...start, [title]].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
        await until(() => JSON.stringify(results.at(-1)?.rows) === JSON.stringify(after), `the result after the write (${how})`, SLOW);
        const seen = results.length;
        await until(() => results.length > seen, `a result after the reconnect (sseMaxMs 2 s; ${how})`, 15_000); // same rows, resent
        expect(results.at(-1)?.rows).toEqual(after);
        stop();
        const stopped = results.length;
        await item(bob, `${title}late`);
        await new Promise((r) => setTimeout(r, 1000));
        expect(results.length).toBe(stopped);
        expect(errors).toEqual([]);
      }
    };

    it(
      'ends a watch with onError when the query is refused, or when a later run fails',
      async () => {
        for (const multiplex of [false, true]) await failOnce(multiplex);
      },
      SLOW,
    );

    const failOnce = async (multiplex: boolean) => {
      const client = multiplex ? shared : (clients()[0]?.c as PatchbayClient);
      {
        const refused: PatchbayClientError[] = [];
        client.watchQuery(
          DOMAIN,
          'titled',
          { nope: 1 },
          () => {},
          (e) => refused.push(e),
        );
        await until(() => refused.length === 1, 'the refusal');
        expect([refused[0]?.code, refused[0]?.status]).toEqual(['invalid_params', 400]);

        const carol = await clientIn(srv.url, DOMAIN);
        const c = createClient({ url: srv.url, token: carol.token, multiplex });
        const results: QueryResult[] = [];
        const errors: PatchbayClientError[] = [];
        c.watchQuery(
          DOMAIN,
          'fragile',
          undefined,
          (r) => results.push(r),
          (e) => errors.push(e),
        );
        await until(() => results.length === 1, 'the first result'); // no items: 1 / (0 - 1)
        expect(results[0]?.rows).toEqual([['-1']]);
        await item(carol, 'c1'); // 1 / (1 - 1) fails
        await until(() => errors.length === 1, 'the failed run', SLOW);
        expect(errors[0]?.code).toBe('query_failed');
        expect(errors[0]?.details.pgCode).toBe('22012');
        c.close();
      }
    };

    it(
      'scopes and live queries share one stream cap (PATCHBAY_SSE_MAX_SCOPES): past it, an added scope or watch is refused on the stream',
      async () => {
        const max = srv.app.config.sseMaxScopes;
        const ids = await Promise.all(Array.from({ length: max }, (_, i) => item(bob, `cap${i}`)));
        const m = openMux(`${srv.url}/v1/events?scopes=${ids.slice(0, max - 1).join(',')}`, bob.token, { 'x-patchbay-domain': DOMAIN });
        try {
          const stream = await m.stream();
          const control = (body: unknown) => bob.request('POST', `/v1/events/${stream}`, { body });
          expect((await control({ watch: [{ query: 'a', domain: DOMAIN, name: 'mine' }] })).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'result'));
          // max - 1 scopes and one query: full. One more scope, or one more query, is refused.
          expect((await control({ add: [{ scope: ids[max - 1] as string }] })).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'removed'));
          expect(m.events.find((e) => e.type === 'removed')?.data).toMatchObject({ scope: ids[max - 1], error: { code: 'too_large' } });
          expect((await control({ watch: [{ query: 'b', domain: DOMAIN, name: 'mine' }] })).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'unwatched'));
          expect(m.events.find((e) => e.type === 'unwatched')?.data).toMatchObject({ query: 'b', error: { code: 'too_large' } });
          // The query unwatched, the scope fits.
          expect((await control({ unwatch: ['a'] })).status).toBe(202);
          expect((await control({ add: [{ scope: ids[max - 1] as string }] })).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'added' && (e.data as { scope: string }).scope === ids[max - 1]));
        } finally {
          m.close();
        }
      },
      SLOW,
    );

    it(
      'a change that watches a query is checked where it arrives: coded errors naming the watch, nothing reaches the stream or changes',
      async () => {
        const m = openMux(`${srv.url}/v1/events`, bob.token, { 'x-patchbay-domain': DOMAIN });
        try {
          const stream = await m.stream();
          const control = (body: unknown, who: Client = bob) => who.request('POST', `/v1/events/${stream}`, { body });
          const before = await client.query(DOMAIN, 'mine');
          const w = (over: Record<string, unknown>) => ({ watch: [{ query: 'a', domain: DOMAIN, name: 'mine', ...over }] });
          const cases: Array<[unknown, number, string, string | undefined]> = [
            [w({ query: 'bad key!' }), 400, 'invalid_request', undefined],
            [w({ domain: 'Not A Domain' }), 400, 'invalid_request', undefined],
            [{ watch: [w({}).watch[0], w({}).watch[0]] }, 400, 'invalid_request', undefined],
            [w({ name: 'no_such_query' }), 404, 'unknown_query', 'a'],
            [w({ domain: 'elsewhere.example.com' }), 404, 'unknown_query', 'a'],
            [w({ name: 'titled', params: { nope: 1 } }), 400, 'invalid_params', 'a'],
            [w({ name: 'titled', params: { t: 'x', REQUESTER: 'someone' } }), 400, 'invalid_params', 'a'],
            [
              { watch: Array.from({ length: srv.app.config.sseMaxScopes + 1 }, (_, i) => ({ query: `k${i}`, domain: DOMAIN, name: 'mine' })) },
              413,
              'too_large',
              undefined,
            ],
          ];
          for (const [body, status, code, query] of cases) {
            const res = await control(body);
            expect([JSON.stringify(body).slice(0, 80), res.status, res.json.error.code]).toEqual([JSON.stringify(body).slice(0, 80), status, code]);
            expect(res.json.error.query).toBe(query);
            expect(JSON.stringify(res.json)).not.toMatch(/select|items|pg_/i); // nothing of the SQL or the database
          }
          // Without a token: 401, whatever the stream. Another user's valid change is accepted and ignored by bob's stream.
          const anon = await fetch(`${srv.url}/v1/events/${stream}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(w({})),
          });
          expect([anon.status, ((await anon.json()) as { error: { code: string } }).error.code]).toEqual([401, 'unauthorized']);
          expect((await control(w({}), admin)).status).toBe(202);
          await new Promise((r) => setTimeout(r, 500));
          expect(m.events.map((e) => e.type)).toEqual(['stream']);
          expect(await client.query(DOMAIN, 'mine')).toEqual(before);

          // A valid watch: its result on the stream, under its key; watched again under the same key, it is replaced; unwatched, it ends.
          expect((await control(w({}))).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'result'));
          const first = m.events.find((e) => e.type === 'result')?.data;
          expect(first).toEqual({ query: 'a', ...before });
          expect((await control(w({ name: 'titled', params: { t: 'b1' } }))).status).toBe(202);
          await m.waitFor((ev) => ev.filter((e) => e.type === 'result').length === 2);
          expect(m.events.filter((e) => e.type === 'result')[1]?.data).toMatchObject({ query: 'a', rows: [['1']] });
          expect((await control({ unwatch: ['a'] })).status).toBe(202);
          await m.waitFor((ev) => ev.some((e) => e.type === 'unwatched'));
          expect(m.events.at(-1)?.data).toEqual({ query: 'a' });
          const count = m.events.length;
          await item(bob, 'b1'); // titled b1 would change: nothing more arrives
          await new Promise((r) => setTimeout(r, 1000));
          expect(m.events.length).toBe(count);
        } finally {
          m.close();
        }
      },
      SLOW,
    );

    it(
      'carries three live queries and two scopes on one stream; behind a buffering proxy it polls the queries instead',
      async () => {
        const proxy: TestProxy = await startProxy(srv.url);
        const dave = await clientIn(srv.url, DOMAIN);
        const c = createClient({
          url: proxy.url,
          token: dave.token,
          multiplex: { heartbeatTimeoutMs: 1500, streamRetryMs: 0, queryPollMs: 200, pollWaitMs: 1000 },
        });
        try {
          // The earlier tests' streams end asynchronously on the server: count from none open.
          await until(() => srv.app.limits.openStreams === 0, 'the earlier tests’ streams released', 15_000);
          const openBefore = 0;
          const mine: QueryResult[] = [];
          const counts = new Map<string, QueryResult[]>([
            ['d1', []],
            ['d2', []],
          ]);
          const errors: PatchbayClientError[] = [];
          c.watchQuery(
            DOMAIN,
            'mine',
            undefined,
            (r) => mine.push(r),
            (e) => errors.push(e),
          );
          for (const [t, list] of counts)
            c.watchQuery(
              DOMAIN,
              'titled',
              { t },
              (r) => list.push(r),
              (e) => errors.push(e),
            );
          const [s1, s2] = [await item(dave, 's1'), await item(dave, 's2')];
          const scopes = [c.scope(s1), c.scope(s2)];
          await Promise.all(scopes.map((s) => s.ready));
          await until(() => mine.length > 0 && [...counts.values()].every((l) => l.length > 0), 'a first result of every query');
          expect(proxy.streamsTotal).toBe(1);
          expect(proxy.streamsOpen).toBe(1);
          expect(srv.app.limits.openStreams - openBefore).toBe(1);
          await item(dave, 'd1');
          await until(() => counts.get('d1')?.at(-1)?.rows[0]?.[0] === '1', 'titled d1 after the write', SLOW);
          await until(() => JSON.stringify(mine.at(-1)?.rows) === '[["d1"],["s1"],["s2"]]', 'mine after the write', SLOW);
          await scopes[0]?.patch([{ op: 'replace', path: '/title', value: 's1b' }]);
          await until(() => JSON.stringify(mine.at(-1)?.rows) === '[["d1"],["s1b"],["s2"]]', 'mine after a patch through the client', SLOW);
          expect(proxy.streamsTotal).toBe(1);

          // The buffering proxy: nothing arrives on the stream, so the client polls history and runs the queries.
          proxy.buffer = true;
          proxy.cut();
          await until(() => c.transportMode === 'polling', 'the fall-back to polling');
          await item(dave, 'd2');
          await until(() => counts.get('d2')?.at(-1)?.rows[0]?.[0] === '1', 'titled d2 while polling', SLOW);
          await until(() => JSON.stringify(mine.at(-1)?.rows) === '[["d1"],["d2"],["s1b"],["s2"]]', 'mine while polling', SLOW);
          expect(errors).toEqual([]);
        } finally {
          c.close();
          await proxy.close();
        }
      },
      SLOW,
    );
  });
}
