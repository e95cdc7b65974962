/**
 * The client in a real browser (issue 16): headless Chromium (Debian's `chromium`, driven by
 * playwright-core) loads a page that imports the built package (`npm run build:client`, its ESM
 * files served as they are, with an import map for `@patchbay/client` and its two dependencies)
 * from a static server on another origin than the API, so every call is a real cross-origin request
 * (CORS), against the server as `npm start` runs it.
 * - a page without a token signs in anonymously from its origin and creates a scope;
 * - two pages editing one scope at once converge to the server's state, and the server's log holds
 *   every acknowledged patch once, at the index its ack named;
 * - the server stops (SIGTERM to npm, as a supervisor does) and starts again on the same data
 *   directory and port: the pages' clients reconnect (streams resumed, writes made while it was
 *   down resent) and keep editing; nothing is lost or applied twice;
 * - the browser goes offline (emulated) and back: the client says `offline` at once, and the writes
 *   queued meanwhile go out as soon as it is back, not after the backoff's wait.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as ClientModule from '../client/src/index.js';
import type { Json } from '../shared/json.js';
import type { Patch } from '../shared/wire.js';
import { launchBrowser } from './helpers/browser.js';
import { type NpmRun, npmStart, until } from './helpers/npm.js';
import { freePort, listening, skipWithout } from './helpers/proc.js';
import { tempDir } from './helpers/server.js';

/** What the page's module script leaves on `window` for the test to drive. */
interface PageGlobals {
  pb: typeof ClientModule;
  clients: Record<string, ClientModule.PatchbayClient>;
  scopes: Record<string, ClientModule.LiveScope>;
  acks: Record<string, Array<Promise<ClientModule.Ack>>>;
  statuses: Record<string, string[]>;
}

const skip = skipWithout('chromium');

/** The package built into a temporary directory with its own npm script (`tsc -p client/tsconfig.json`). */
function buildClient(): string {
  const root = tempDir('patchbay-client-build-');
  const r = spawnSync('npm', ['run', 'build:client', '--silent', '--', '--outDir', join(root, 'dist')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build:client failed: ${r.stdout}${r.stderr}`);
  return root;
}

/**
 * A static server for the page: `/` the page, `/pkg/` the built package, `/deps/<name>/` a
 * dependency's installed files. Its import map resolves `@patchbay/client` by the package's own
 * `exports` and the dependencies by their ESM entries.
 */
async function servePage(pkgRoot: string): Promise<{ origin: string; server: Server }> {
  const pkg = JSON.parse(readFileSync('client/package.json', 'utf8')) as { exports: { '.': { import: string } } };
  const roots: Record<string, string> = {
    '/pkg/': pkgRoot,
    '/deps/fast-json-patch/': resolve('node_modules/fast-json-patch'),
    '/deps/eventsource-parser/': resolve('node_modules/eventsource-parser'),
  };
  const imports = {
    '@patchbay/client': `/pkg/${pkg.exports['.'].import.replace(/^\.\//, '')}`,
    'fast-json-patch': '/deps/fast-json-patch/index.mjs',
    'eventsource-parser': '/deps/eventsource-parser/dist/index.js',
  };
  const html = `<!doctype html><meta charset="utf-8"><title>patchbay client</title>
<script type="importmap">${JSON.stringify({ imports })}</script>
<script type="module">
import * as pb from '@patchbay/client';
Object.assign(window, { pb, clients: {}, scopes: {}, acks: {}, statuses: {} });
</script>`;
  const types: Record<string, string> = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.map': 'application/json' };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
      return;
    }
    for (const [prefix, dir] of Object.entries(roots)) {
      if (!path.startsWith(prefix)) continue;
      const file = resolve(dir, path.slice(prefix.length));
      if (file.startsWith(dir + sep) && statSync(file, { throwIfNoEntry: false })?.isFile()) {
        res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
        return;
      }
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** SIGTERM to npm alone (what a supervisor sends); resolves when it exited and the port is closed. */
async function stopServer(run: NpmRun, port: number): Promise<void> {
  try {
    process.kill(run.child.pid as number, 'SIGTERM');
    const code = await Promise.race([run.exited, new Promise((r) => setTimeout(() => r('npm still running'), 10_000))]);
    expect(code, run.output()).toBe(0);
    await until(async () => !(await listening(port)), `port ${port} to close`, 5000);
  } finally {
    run.kill();
  }
}

async function api(base: string, token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

async function serverState(base: string, token: string, id: string): Promise<{ ii: number; state: Json }> {
  const r = await api(base, token, 'GET', `/v1/scopes/${id}`);
  expect(r.status).toBe(200);
  return JSON.parse(r.text) as { ii: number; state: Json };
}

async function serverLog(base: string, token: string, id: string): Promise<Array<{ ii: number; patch: Patch }>> {
  const r = await api(base, token, 'GET', `/v1/scopes/${id}/patches`);
  expect(r.status).toBe(200);
  return r.text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { ii: number; patch: Patch });
}

/** Opens the page and waits for its module (the built package) to load. */
async function openPage(browser: Browser, origin: string): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${origin}/`);
  await page
    .waitForFunction(() => 'pb' in globalThis, null, { timeout: 15_000 })
    .catch((err: unknown) => {
      throw new Error(`the page did not load the package: ${errors.join('; ')} ${String(err)}`);
    });
  return page;
}

/** In page `page`: a client `name` (with `token`, else anonymous) and its scope `id` opened and ready. */
async function openScope(page: Page, url: string, token: string | null, name: string, id: string): Promise<void> {
  await page.evaluate(
    async ({ url, token, name, id }) => {
      const g = globalThis as unknown as PageGlobals;
      // compose: false, so each patch() is its own log entry and the log is checked call by call
      // (joining a tick's patches, the default, is tested in test/contract/client.ts and client-compose.ts).
      const client = g.pb.createClient(token === null ? { url, compose: false } : { url, token, compose: false });
      g.clients[name] = client;
      g.statuses[name] = [];
      client.on('status', ({ status }) => g.statuses[name]?.push(status));
      const scope = client.scope(id);
      g.scopes[name] = scope;
      g.acks[name] = [];
      await scope.ready;
    },
    { url, token, name, id },
  );
}

/** In page `page`: `count` appends to `/list` (values `${tag}${i}`) through client `name`, none awaited. */
async function appendMany(page: Page, name: string, tag: string, count: number): Promise<void> {
  await page.evaluate(
    ({ name, tag, count }) => {
      const g = globalThis as unknown as PageGlobals;
      const scope = g.scopes[name] as ClientModule.LiveScope;
      for (let i = 0; i < count; i++) {
        const ack = scope.patch([
          { op: 'add', path: '/list/-', value: `${tag}${i}` },
          { op: 'add', path: `/n/${tag}${i}`, value: i },
        ]);
        ack.catch(() => {}); // collected below; never an unhandled rejection
        g.acks[name]?.push(ack);
      }
    },
    { name, tag, count },
  );
}

/** In page `page`: waits for client `name` to be synced; its acks' indices, its scope's ii and state. */
async function settle(page: Page, name: string): Promise<{ acks: number[]; ii: number; state: Json }> {
  return page.evaluate(async (name) => {
    const g = globalThis as unknown as PageGlobals;
    const scope = g.scopes[name] as ClientModule.LiveScope;
    await scope.synced();
    const acks = await Promise.all(g.acks[name] ?? []);
    return { acks: acks.map((a) => a.ii), ii: scope.ii, state: scope.state as Json };
  }, name);
}

/** In page `page`: client `name`'s scope, once it holds index `ii` (its stream delivered everything up to there). */
async function stateAt(page: Page, name: string, ii: number): Promise<Json> {
  await page.waitForFunction(({ name, ii }) => ((globalThis as unknown as PageGlobals).scopes[name]?.ii ?? -1) >= ii, { name, ii }, { timeout: 20_000 });
  return page.evaluate((name) => (globalThis as unknown as PageGlobals).scopes[name]?.state as Json, name);
}

const expectedList = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}${i}`);

describe.skipIf(skip)('the client in headless Chromium against npm start', () => {
  let browser: Browser;
  let page: { origin: string; server: Server };
  let port: number;
  let dataDir: string;
  let server: NpmRun | undefined;
  let base: string;

  beforeAll(async () => {
    const pkgRoot = buildClient();
    page = await servePage(pkgRoot);
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    dataDir = tempDir('patchbay-browser-');
    server = await npmStart(port, dataDir);
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    if (server) await stopServer(server, port).catch(() => server?.kill());
    page?.server.close();
  });

  /**
   * A token for the test and both pages: one user, so both may write without an access change.
   * Tokens are bound to a domain and a page acts in its origin's host, so it is asked for there.
   */
  async function signIn(): Promise<string> {
    const r = await api(base, null, 'POST', '/v1/auth/anonymous', { domain: new URL(page.origin).host });
    expect(r.status).toBe(200);
    return (JSON.parse(r.text) as { token: string }).token;
  }

  it('a page without a token signs in anonymously from its own origin and creates a scope', async () => {
    const p = await openPage(browser, page.origin);
    try {
      const made = await p.evaluate(async (url) => {
        const g = globalThis as unknown as PageGlobals;
        const client = g.pb.createClient({ url });
        const scope = await client.create({ state: { hello: 'browser' }, access: { visibility: 'public' } });
        const ack = await scope.patch([{ op: 'add', path: '/from', value: (globalThis as unknown as { location: { origin: string } }).location.origin }]);
        await client.synced();
        client.close();
        return { id: scope.id, ii: ack.ii };
      }, base);
      expect(made.ii).toBe(1);
      // Read by a stranger (the scope is public): the page's patch is on the server.
      const r = await api(base, null, 'GET', `/v1/scopes/${made.id}`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.text)).toMatchObject({ ii: 1, state: { hello: 'browser', from: page.origin } });
    } finally {
      await p.close();
    }
  });

  it('two pages editing one scope at once converge to the server state, each acknowledged patch in the log once', async () => {
    const token = await signIn();
    const created = await api(base, token, 'POST', '/v1/scopes', { state: { list: [], n: {} } });
    expect(created.status).toBe(201);
    const id = (JSON.parse(created.text) as { id: string }).id;
    const [a, b] = await Promise.all([openPage(browser, page.origin), openPage(browser, page.origin)]);
    try {
      await Promise.all([openScope(a, base, token, 'a', id), openScope(b, base, token, 'b', id)]);
      // Interleaved bursts from both pages, none awaited: each page batches, they conflict and rebase.
      for (let round = 0; round < 4; round++) {
        await Promise.all([appendMany(a, 'a', `a${round}-`, 5), appendMany(b, 'b', `b${round}-`, 5)]);
      }
      const [ra, rb] = await Promise.all([settle(a, 'a'), settle(b, 'b')]);
      const head = await serverState(base, token, id);
      expect(head.ii).toBe(40);
      expect(await stateAt(a, 'a', 40)).toEqual(head.state);
      expect(await stateAt(b, 'b', 40)).toEqual(head.state);
      // Every ack names a distinct index, and the log holds exactly those 40 patches, once each.
      const acked = [...ra.acks, ...rb.acks];
      expect(new Set(acked).size).toBe(40);
      const log = await serverLog(base, token, id);
      expect(log.map((e) => e.ii)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      const list = (head.state as { list: string[] }).list;
      for (const who of ['a', 'b']) {
        const mine = Array.from({ length: 4 }, (_, r) => expectedList(`${who}${r}-`, 5)).flat();
        expect(list.filter((x) => x.startsWith(who))).toEqual(mine); // each page's patches, in its order
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('the pages survive the server restarting: they reconnect and keep editing, nothing lost or applied twice', async () => {
    const token = await signIn();
    const created = await api(base, token, 'POST', '/v1/scopes', { state: { list: [], n: {} } });
    const id = (JSON.parse(created.text) as { id: string }).id;
    const [a, b] = await Promise.all([openPage(browser, page.origin), openPage(browser, page.origin)]);
    try {
      await Promise.all([openScope(a, base, token, 'a', id), openScope(b, base, token, 'b', id)]);
      await appendMany(a, 'a', 'before-', 5);
      expect((await settle(a, 'a')).ii).toBe(5);
      expect(await stateAt(b, 'b', 5)).toEqual((await serverState(base, token, id)).state);

      // Down: the pages' streams drop; writes made now stay pending, visible locally at once.
      await stopServer(server as NpmRun, port);
      server = undefined;
      await a.waitForFunction(() => (globalThis as unknown as PageGlobals).statuses.a?.includes('reconnecting'), null, { timeout: 15_000 });
      await appendMany(a, 'a', 'down-', 5);
      const local = await a.evaluate(() => ((globalThis as unknown as PageGlobals).scopes.a as ClientModule.LiveScope).state as { list: string[] });
      expect(local.list.length).toBe(10);

      // Up again on the same data directory and port.
      server = await npmStart(port, dataDir);
      await appendMany(b, 'b', 'after-', 5);
      const [ra, rb] = await Promise.all([settle(a, 'a'), settle(b, 'b')]);
      await appendMany(a, 'a', 'later-', 3);
      const ra2 = await settle(a, 'a');

      const head = await serverState(base, token, id);
      expect(head.ii).toBe(18);
      expect(await stateAt(a, 'a', 18)).toEqual(head.state);
      expect(await stateAt(b, 'b', 18)).toEqual(head.state);
      expect(new Set([...ra.acks, ...rb.acks, ...ra2.acks]).size).toBe(18);
      const log = await serverLog(base, token, id);
      expect(log.map((e) => e.ii)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
      const list = (head.state as { list: string[] }).list;
      expect(list.filter((x) => !x.startsWith('after-'))).toEqual([...expectedList('before-', 5), ...expectedList('down-', 5), ...expectedList('later-', 3)]);
      expect(list.filter((x) => x.startsWith('after-'))).toEqual(expectedList('after-', 5));
      // Both pages' streams came back (after their randomised backoff) and carry new patches again:
      // one written by someone else reaches both pages without them writing.
      for (const [p, name] of [
        [a, 'a'],
        [b, 'b'],
      ] as const) {
        await p.waitForFunction((name) => (globalThis as unknown as PageGlobals).statuses[name]?.at(-1) === 'online', name, { timeout: 20_000 });
        expect(await p.evaluate((name) => (globalThis as unknown as PageGlobals).statuses[name], name)).toContain('reconnecting');
      }
      const other = await api(base, token, 'POST', `/v1/scopes/${id}/patches`, { ii: 19, patch: [{ op: 'add', path: '/list/-', value: 'other' }] });
      expect(other.status).toBe(200);
      const end = await serverState(base, token, id);
      expect(await stateAt(a, 'a', 19)).toEqual(end.state);
      expect(await stateAt(b, 'b', 19)).toEqual(end.state);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('the browser going offline is offline at once; back online, the queued writes go out without waiting out the backoff', async () => {
    const token = await signIn();
    const created = await api(base, token, 'POST', '/v1/scopes', { state: { list: [], n: {} } });
    const id = (JSON.parse(created.text) as { id: string }).id;
    const p = await openPage(browser, page.origin);
    try {
      await openScope(p, base, token, 'c', id);
      await p.evaluate(() => {
        const g = globalThis as unknown as PageGlobals & { conn: string[] };
        g.conn = [];
        const c = g.clients.c as ClientModule.PatchbayClient;
        for (const e of ['online', 'offline', 'reconnecting'] as const) c.on(e, () => g.conn.push(e));
      });
      await p.context().setOffline(true);
      // The stream is still open (emulated offline stops new requests): only the browser's event says so.
      await p.waitForFunction(() => (globalThis as unknown as { conn: string[] }).conn.includes('offline'), null, { timeout: 10_000 });
      await appendMany(p, 'c', 'off-', 3);
      // Long enough offline for the retries to back off to several seconds (250 ms doubling to 10 s).
      await new Promise((r) => setTimeout(r, 7000));
      expect((await serverState(base, token, id)).ii).toBe(0);
      await p.context().setOffline(false);
      const back = Date.now();
      const r = await settle(p, 'c');
      // Without the online event the next retry would come after a random wait of up to 8-10 s.
      expect(Date.now() - back).toBeLessThan(4000);
      expect(r.acks).toEqual([1, 2, 3]);
      expect((await serverLog(base, token, id)).map((e) => e.patch[0])).toEqual(
        expectedList('off-', 3).map((value) => ({ op: 'add', path: '/list/-', value })),
      );
    } finally {
      await p.close();
    }
  });
});
