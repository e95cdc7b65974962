/**
 * The client's named queries (client/src/queries.ts) against a real server with a mirror, on each
 * stack's own (test/mirror-http.test.ts: PGlite, in-process delivery; test/mirror.emulator.test.ts:
 * Postgres, push subscriptions). A domain admin applies a configuration through the real upload
 * route; then `client.query` answers `{columns, rows, truncated}` with `$REQUESTER` bound by the
 * server; refusals are PatchbayClientErrors with the server's code and status (`unknown_query`,
 * `invalid_params`, `query_failed` with `pgCode`, `query_timeout`), and a query changes nothing;
 * `client.watchQuery` sends the result at once, again after a write that changes it, again after
 * the server ends the stream (it reconnects), and ends with `onError` when the query is refused
 * or a later run fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type PatchbayClient, type PatchbayClientError, type QueryParams, type QueryResult } from '../../client/src/index.js';
import type { Config } from '../../shared/config.js';
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
      ({ srv, close } = await start({ domainCacheMs: 0, mirrorQueryTimeoutMs: 300, sseMaxMs: 2000, sseRetryMs: 0 }));
      [admin, bob] = await Promise.all([clientIn(srv.url, DOMAIN), clientIn(srv.url, DOMAIN)]);
      await srv.app.domains.addAdmin(DOMAIN, userId(admin));
      const res = await upload(admin, CONFIG, 0, DOMAIN);
      expect(res.status, res.text).toBe(202);
      const report = res.json.report as string;
      await until(async () => ['done', 'failed'].includes((await admin.request('GET', `/v1/scopes/${report}`)).json.state.status), 'the apply', SLOW);
      expect((await admin.request('GET', `/v1/scopes/${report}`)).json.state.status).toBe('done');
      client = createClient({ url: srv.url, token: bob.token, multiplex: false });
    }, SLOW);
    afterAll(async () => {
      client?.close();
      await close?.();
    });

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
        const results: QueryResult[] = [];
        const errors: PatchbayClientError[] = [];
        const stop = client.watchQuery(
          DOMAIN,
          'mine',
          undefined,
          (r) => results.push(r),
          (e) => errors.push(e),
        );
        await until(() => results.length > 0, 'the first result');
        expect(results[0]?.rows).toEqual([['b1']]);
        await item(bob, 'b2');
        await until(() => JSON.stringify(results.at(-1)?.rows) === '[["b1"],["b2"]]', 'the result after the write', SLOW);
        const seen = results.length;
        await until(() => results.length > seen, 'a result after the reconnect (sseMaxMs 2 s)', 15_000); // same rows, resent
        expect(results.at(-1)?.rows).toEqual([['b1'], ['b2']]);
        stop();
        const stopped = results.length;
        await item(bob, 'b3');
        await new Promise((r) => setTimeout(r, 1000));
        expect(results.length).toBe(stopped);
        expect(errors).toEqual([]);
      },
      SLOW,
    );

    it(
      'ends a watch with onError when the query is refused, or when a later run fails',
      async () => {
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
        const c = createClient({ url: srv.url, token: carol.token, multiplex: false });
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
      },
      SLOW,
    );
  });
}
