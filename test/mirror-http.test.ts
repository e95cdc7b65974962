/**
 * The queryable mirror over HTTP on the embedded stack (test/contract/mirror.ts): PGlite under the
 * server's data directory, in-process delivery. Also: a server whose domains declare no mirror
 * never starts PGlite (it takes seconds), and its query route says `unknown_query`.
 */
import { describe, expect, it } from 'vitest';
import { LazyMirror } from '../shared/mirror/lazy.js';
import { clientIn } from './contract/config.js';
import { mirrorContract } from './contract/mirror.js';
import { startServer } from './helpers/server.js';

mirrorContract('embedded', async () => {
  const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true });
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
