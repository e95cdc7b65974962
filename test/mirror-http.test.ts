/**
 * The queryable mirror over HTTP on the embedded stack (test/contract/mirror.ts, and the client's
 * queries in test/contract/client-queries.ts): PGlite under the
 * server's data directory, in-process delivery. Also: a server whose domains declare no mirror
 * never starts PGlite (it takes seconds), and its query route says `unknown_query`; a
 * configuration given in-process (no apply) has its tables made and backfilled at start.
 */
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadDomainConfig, StaticConfigs } from '../shared/domains/active.js';
import { MIRROR_CONSUMER } from '../shared/domains/mirror-step.js';
import { LazyMirror } from '../shared/mirror/lazy.js';
import { clientQueriesContract } from './contract/client-queries.js';
import { clientIn } from './contract/config.js';
import { mirrorContract } from './contract/mirror.js';
import { request, startServer, tempDir } from './helpers/server.js';

mirrorContract('embedded', async () => {
  const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true });
  return { srv, close: () => srv.close() };
});

clientQueriesContract('embedded', async (overrides) => {
  const srv = await startServer({ domainCacheMs: 0, ...overrides }, undefined, { deliverLocally: true });
  return { srv, close: () => srv.close() };
});

describe('the embedded mirror is opened on first use', () => {
  it('is not opened by writes to domains without a mirror, nor by a query of a domain that has none', async () => {
    const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true });
    try {
      expect(srv.app.mirror).toBeInstanceOf(LazyMirror);
      const c = await clientIn(srv.url, 'plain.example.com');
      const id = (await c.request('POST', '/v1/scopes', { body: { type: 'note', state: { n: 1 } } })).json.id as string;
      expect((await c.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 2 }] } })).status).toBe(200);
      await srv.app.delivery?.idle();
      // Skipped, not handled: no cursor written (each one a durable transaction) for a scope no mirror wants.
      expect(await srv.app.adapters.ledger.getCursor(MIRROR_CONSUMER, id)).toBe(0);
      expect((await c.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
      await srv.app.delivery?.idle();
      const q = await c.request('POST', '/v1/domains/plain.example.com/queries/anything', { body: {} });
      expect(q.json.error.code).toBe('unknown_query');
      expect((srv.app.mirror as LazyMirror).opened).toBe(false);
    } finally {
      await srv.close();
    }
  });
});

describe('a configuration no apply prepares (files, in-process)', () => {
  it('has its tables made and backfilled at start, from scopes written before it existed', async () => {
    const dataDir = tempDir();
    const domain = 'static.example.com';
    const before = await startServer({ dataDir }, undefined, { deliverLocally: true });
    const c = await clientIn(before.url, domain);
    for (const title of ['a', 'b']) await c.request('POST', '/v1/scopes', { body: { type: 'note', state: { title } } });
    await before.app.delivery?.idle(); // the mirror consumer has passed them (no mirror then)
    await before.close();
    const configs = new StaticConfigs();
    const text = 'tables:\n  notes: {type: note, columns: {title: {type: text}}}\nqueries:\n  titles: {sql: "SELECT title FROM notes ORDER BY title"}\n';
    configs.set(domain, loadDomainConfig(text, { maxConfigBytes: 65_536 }));
    const srv = await startServer({ dataDir }, undefined, { deliverLocally: true, configs });
    try {
      const deadline = Date.now() + 120_000;
      let rows: unknown = null;
      while (Date.now() < deadline) {
        const res = await request(srv.url, 'POST', `/v1/domains/${domain}/queries/titles`, { body: {}, token: c.token }).catch(() => null);
        rows = res?.json?.rows;
        if (JSON.stringify(rows) === JSON.stringify([['a'], ['b']])) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(rows).toEqual([['a'], ['b']]);
    } finally {
      await srv.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});
