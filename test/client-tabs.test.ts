/**
 * One connection for an origin's tabs (client/src/tabs.ts), in a real browser: headless Chromium
 * (test/helpers/browser.ts) loads two pages of one origin that use the client (bundled from
 * client/src with rolldown) against the real server, as one user. The server serves one stream for
 * both; both pages see every patch of their scopes; when the leading page closes, the other takes
 * over with a stream of its own and misses nothing; a page served by another hears the connection
 * state from it (client.status and its events), though it sends nothing itself; live queries watched
 * in both pages ride the leader's stream and go on when it closes. Skipped with a warning where Chromium is
 * missing (failing under CI).
 */
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { rolldown } from 'rolldown';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDomainConfig, StaticConfigs } from '../shared/domains/active.js';
import { CHROMIUM_PATH, launchBrowser } from './helpers/browser.js';
import { startProxy } from './helpers/proxy.js';
import { type Client, request, startServer, type TestServer } from './helpers/server.js';

const missing = !existsSync(CHROMIUM_PATH);
if (missing && process.env.CI) throw new Error(`Chromium is required under CI (${CHROMIUM_PATH}); install the chromium package`);
if (missing) console.warn(`skipping test/client-tabs.test.ts: no Chromium at ${CHROMIUM_PATH}`);

async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(missing)('client: one connection for an origin’s tabs (Chromium)', () => {
  let srv: TestServer;
  let browser: Browser;
  let site: Server;
  let origin: string;
  let writer: Client;

  beforeAll(async () => {
    srv = await startServer({ sseHeartbeatMs: 200 });
    writer = await srv.client();
    const bundle = await rolldown({ input: 'client/src/index.ts', platform: 'browser', logLevel: 'silent' });
    const { output } = await bundle.generate({ format: 'esm' });
    const code = output[0].code;
    site = createServer((req, res) => {
      if (req.url === '/client.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(code);
      } else {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<!doctype html><title>tab</title><script type="module">import * as pb from "/client.js"; window.pb = pb;</script>');
      }
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    site?.close();
    await srv?.close();
  });

  /** Opens a page of the origin whose client follows `ids` as the user of `token` (through `url`, default the server's). */
  async function tab(context: Awaited<ReturnType<Browser['newContext']>>, token: string, ids: string[], url = srv.url): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => 'pb' in globalThis);
    await page.evaluate(
      async ({ url, token, ids }) => {
        const { createClient } = (globalThis as unknown as { pb: typeof import('../client/src/index.js') }).pb;
        const client = createClient({ url, token });
        const scopes = ids.map((id: string) => client.scope(id));
        const seen: string[] = [];
        for (const e of ['online', 'reconnecting', 'offline'] as const) client.on(e, () => seen.push(e));
        (globalThis as unknown as { tab: unknown }).tab = { client, scopes, seen };
        await Promise.all(scopes.map((s: { ready: Promise<unknown> }) => s.ready));
      },
      { url, token, ids },
    );
    return page;
  }
  /** The `ii` of each of a page's scopes, and how its client gets events. */
  const look = (page: Page) =>
    page.evaluate(() => {
      const t = (globalThis as unknown as { tab: { client: { transportMode: string }; scopes: Array<{ id: string; ii: number }> } }).tab;
      return { mode: t.client.transportMode, ii: Object.fromEntries(t.scopes.map((s) => [s.id, s.ii])) };
    });

  it('two pages of one origin share one stream, and the survivor takes over when the leader closes', async () => {
    // One user in both pages (sharing is per user), signed in for the pages' origin.
    const signIn = await request(srv.url, 'POST', '/v1/auth/anonymous', { headers: { origin } });
    expect(signIn.status).toBe(200);
    const token = signIn.json.token as string;
    const make = async () => (await writer.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'public' } } })).json.id as string;
    const [a, b, c] = [await make(), await make(), await make()] as [string, string, string];
    const bump = (id: string, n: number) => writer.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: n }] } });

    const before = srv.app.limits.openStreams;
    const context = await browser.newContext();
    try {
      const first = await tab(context, token, [a, b]);
      const second = await tab(context, token, [b, c]);
      await until(async () => (await look(first)).mode === 'stream', 'the first page leading, on a stream');
      expect((await look(second)).mode).toBe('shared');
      expect(srv.app.limits.openStreams - before).toBe(1);
      for (const id of [a, b, c]) await bump(id, 1);
      await until(async () => Object.values((await look(first)).ii).every((ii) => ii === 1), 'the first page live');
      await until(async () => Object.values((await look(second)).ii).every((ii) => ii === 1), 'the second page live, by relay');
      expect(srv.app.limits.openStreams - before).toBe(1);

      await first.close(); // the leader goes: its lock is released, the second page leads
      await until(async () => (await look(second)).mode === 'stream', 'the second page leading');
      for (const id of [b, c]) await bump(id, 2);
      await until(async () => Object.values((await look(second)).ii).every((ii) => ii === 2), 'the second page on its own stream');
      await until(() => srv.app.limits.openStreams - before === 1, 'one stream left');
    } finally {
      await context.close();
    }
    await until(() => srv.app.limits.openStreams === before, 'every stream closed');
  });

  it('presence watched in two pages rides the one shared stream: relayed to the follower, kept when the leader goes', async () => {
    const signIn = await request(srv.url, 'POST', '/v1/auth/anonymous', { headers: { origin } });
    const token = signIn.json.token as string;
    const make = async () => (await writer.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'public' } } })).json.id as string;
    const [a, b, c] = [await make(), await make(), await make()] as [string, string, string];
    const session = (await writer.request('POST', '/v1/sessions')).json.id as string;
    const join = async (id: string, status: string) =>
      expect((await writer.request('PUT', `/v1/scopes/${id}/presence`, { body: { session, status } })).status).toBe(200);
    await join(a, 'before');
    const watch = (page: Page, ids: string[]) =>
      page.evaluate((ids) => {
        const t = (
          globalThis as unknown as {
            tab: { client: { watchPresence: (id: string, cb: (list: Array<{ status: unknown }>) => void) => unknown }; present?: Record<string, unknown> };
          }
        ).tab;
        t.present ??= {};
        const present = t.present;
        for (const id of ids) t.client.watchPresence(id, (list: Array<{ status: unknown }>) => (present[id] = list.map((p) => p.status)));
      }, ids);
    const presentIn = (page: Page) => page.evaluate(() => (globalThis as unknown as { tab: { present: Record<string, unknown> } }).tab.present);
    /** Whether the page's lists are `want` (whatever order its scopes were first told in). */
    const shows = async (page: Page, want: Record<string, unknown>) => {
      const sorted = (o: Record<string, unknown>) => JSON.stringify(Object.entries(o).sort(([x], [y]) => (x < y ? -1 : 1)));
      return sorted(await presentIn(page)) === sorted(want);
    };
    const before = srv.app.limits.openStreams;
    const context = await browser.newContext();
    try {
      const first = await tab(context, token, []);
      await watch(first, [a, b]);
      await until(async () => shows(first, { [a]: ['before'], [b]: [] }), 'the leader’s first lists');
      const second = await tab(context, token, []);
      await watch(second, [a, c]); // a is watched already: the leader tells it the list it holds
      await until(async () => shows(second, { [a]: ['before'], [c]: [] }), 'the follower’s first lists, by relay');
      expect(srv.app.limits.openStreams - before).toBe(1);
      await join(c, 'in c');
      await join(a, 'moved');
      await until(async () => shows(second, { [a]: ['moved'], [c]: ['in c'] }), 'the follower hears the changes');
      await until(async () => shows(first, { [a]: ['moved'], [b]: [] }), 'the leader too');
      expect(srv.app.limits.openStreams - before).toBe(1);
      await first.close();
      await until(async () => (await look(second)).mode === 'stream', 'the second page leading');
      expect((await writer.request('DELETE', `/v1/sessions/${session}`, { body: {} })).status).toBe(200);
      await until(async () => shows(second, { [a]: [], [c]: [] }), 'the leaves, on the new leader’s stream');
      await until(() => srv.app.limits.openStreams - before === 1, 'one stream left');
    } finally {
      await context.close();
    }
    await until(() => srv.app.limits.openStreams === before, 'every stream closed');
  });

  it('live queries watched in two pages ride the one shared stream: results relayed to the follower, going on when the leader goes', async () => {
    // A server with a mirror for the pages' domain (their origin's host): items mirrored, one query over them.
    const domain = new URL(origin).host;
    const configs = new StaticConfigs();
    configs.set(
      domain,
      loadDomainConfig(
        'tables:\n  items: {type: item, columns: {title: {type: text}}}\nqueries:\n  titles: {sql: "SELECT title FROM items ORDER BY title"}\n',
        {
          maxConfigBytes: 4096,
        },
      ),
    );
    const mirrored = await startServer({ sseHeartbeatMs: 200 }, undefined, { configs, deliverLocally: true });
    const context = await browser.newContext();
    try {
      const token = (await request(mirrored.url, 'POST', '/v1/auth/anonymous', { headers: { origin } })).json.token as string;
      const item = async (title: string) =>
        expect((await request(mirrored.url, 'POST', '/v1/scopes', { token, headers: { origin }, body: { type: 'item', state: { title } } })).status).toBe(201);
      const watch = (page: Page) =>
        page.evaluate((domain) => {
          const t = (globalThis as unknown as { tab: { client: { watchQuery: (...a: unknown[]) => unknown }; rows?: unknown[]; errors?: string[] } }).tab;
          t.rows = [];
          t.errors = [];
          t.client.watchQuery(
            domain,
            'titles',
            undefined,
            (r: { rows: unknown[] }) => t.rows?.push(r.rows),
            (e: { code: string }) => t.errors?.push(e.code),
          );
        }, domain);
      const last = (page: Page) =>
        page.evaluate(() => {
          const t = (globalThis as unknown as { tab: { rows: unknown[]; errors: string[] } }).tab;
          return { rows: JSON.stringify(t.rows.at(-1)), errors: t.errors };
        });
      const before = mirrored.app.limits.openStreams;
      const first = await tab(context, token, [], mirrored.url);
      const second = await tab(context, token, [], mirrored.url);
      await watch(first);
      await watch(second);
      await until(async () => (await last(first)).rows === '[]' && (await last(second)).rows === '[]', 'a first (empty) result in both pages', 60_000);
      expect((await look(second)).mode).toBe('shared');
      expect(mirrored.app.limits.openStreams - before).toBe(1);
      await item('one');
      await until(async () => (await last(second)).rows === '[["one"]]', 'the new result relayed to the follower', 30_000);
      await until(async () => (await last(first)).rows === '[["one"]]', 'and at the leader');
      expect(mirrored.app.limits.openStreams - before).toBe(1);
      await first.close(); // the follower leads and watches its query on its own stream
      await until(async () => (await look(second)).mode === 'stream', 'the second page leading');
      await item('two');
      await until(async () => (await last(second)).rows === '[["one"],["two"]]', 'a result on the new leader’s stream', 30_000);
      expect((await last(second)).errors).toEqual([]);
      await until(() => mirrored.app.limits.openStreams - before === 1, 'one stream left');
    } finally {
      await context.close();
      await mirrored.close();
    }
  }, 180_000);

  it('a page served by another hears the connection state from it: reconnecting, offline, online', async () => {
    const proxy = await startProxy(srv.url);
    const signIn = await request(srv.url, 'POST', '/v1/auth/anonymous', { headers: { origin } });
    const token = signIn.json.token as string;
    const id = (await writer.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'public' } } })).json.id as string;
    const context = await browser.newContext();
    const status = (page: Page) =>
      page.evaluate(() => {
        const t = (globalThis as unknown as { tab: { client: { status: string; transportMode: string }; seen: string[] } }).tab;
        return { status: t.client.status, mode: t.client.transportMode, seen: [...t.seen] };
      });
    try {
      const leader = await tab(context, token, [id], proxy.url);
      const follower = await tab(context, token, [id], proxy.url);
      await until(async () => (await status(leader)).mode === 'stream', 'the first page leading');
      await until(async () => (await status(follower)).status === 'online', 'the second page online');
      expect((await status(follower)).mode).toBe('shared');
      await proxy.stop(); // the follower sends nothing: only the leader's stream sees the server go
      try {
        await until(async () => (await status(follower)).status === 'offline', 'the follower offline, by relay');
        expect((await status(follower)).seen).toEqual(['online', 'reconnecting', 'offline']);
      } finally {
        await proxy.resume();
      }
      await until(async () => (await status(follower)).status === 'online', 'the follower online again');
      expect((await status(follower)).seen).toEqual(['online', 'reconnecting', 'offline', 'online']);
      expect((await status(leader)).seen).toEqual(['online', 'reconnecting', 'offline', 'online']);
    } finally {
      await context.close();
      await proxy.close();
    }
  });
});
