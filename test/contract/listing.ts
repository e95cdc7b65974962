/**
 * Listing a user's scopes (issue 12, part 4: `GET /v1/scopes`) over real HTTP: a user lists the
 * scopes it owns and those it is listed in as a reader or writer, of every domain, and nobody
 * else's (not even public ones); each shown as the caller may see it (the owner sees the whole
 * access, a listed user the visibility only); pages of `limit` followed by their opaque `next`
 * visit each scope once; the domain, type and name filters; a revoke removes the scope from the
 * revoked user's listing at once. Refusals: no token (401), a bad limit, cursor or filter (400),
 * past the list rate (429).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, newClient, type TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

/** The user id a client's token names (its `sub`). */
const userId = (c: Client): string => JSON.parse(Buffer.from(c.token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;

interface Item {
  id: string;
  ii: number;
  meta: { domain: string; type: string | null; name: string | null; ii: number; access: Record<string, unknown> };
}

export function listingContract(stack: string, start: StartServer): void {
  describe(`listing a user's scopes (${stack})`, () => {
    let srv: TestServer;

    beforeAll(async () => {
      srv = await start({ maxListPage: 3 });
    });
    afterAll(() => srv.close());

    /** A new anonymous user of `domain`. */
    const clientOf = (domain: string): Promise<Client> => newClient(srv.url, domain);

    async function create(c: Client, body: Record<string, unknown>): Promise<string> {
      const res = await c.request('POST', '/v1/scopes', { body });
      expect(res.status, res.text).toBe(201);
      return res.json.id as string;
    }

    /** Every page of `c`'s listing with `query`, following `next`; checks each page's size. */
    async function listAll(c: Client, query = '', limit = 2): Promise<Item[]> {
      const items: Item[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 20; i++) {
        const res = await c.request('GET', `/v1/scopes?limit=${limit}${query}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
        expect(res.status, res.text).toBe(200);
        expect(res.json.scopes.length).toBeLessThanOrEqual(limit);
        items.push(...res.json.scopes);
        cursor = res.json.next;
        if (cursor === null) return items;
      }
      throw new Error('the listing did not end');
    }

    const ids = (items: Item[]) => items.map((s) => s.id).sort();

    it('lists owned and shared scopes of every domain, each as the caller may see it, in pages that visit each once', async () => {
      const [alice, carol] = [await srv.client(), await srv.client()];
      const bob = await clientOf('app.test');
      const a1 = await create(alice, { type: 'doc', name: 'one', access: { visibility: 'private', readers: [userId(carol)] } });
      const a2 = await create(alice, { type: 'board', name: 'two', access: { visibility: 'public' } });
      const b1 = await create(bob, { type: 'doc', name: 'one', access: { visibility: 'private', readers: [userId(carol)], writers: [userId(alice)] } });
      await create(bob, { type: 'doc', access: { visibility: 'public' } }); // readable by alice, not hers: not listed
      expect((await alice.request('POST', `/v1/scopes/${a1}/patches`, { body: { patch: [{ op: 'add', path: '/n', value: 1 }] } })).status).toBe(200);

      for (const limit of [1, 2, 3]) {
        const items = await listAll(alice, '', limit);
        expect(ids(items), `limit ${limit}`).toEqual([a1, a2, b1].sort());
      }
      const byId = new Map((await listAll(alice)).map((s) => [s.id, s]));
      expect(byId.get(a1)).toMatchObject({ ii: 1, meta: { ii: 1, type: 'doc', name: 'one', domain: 'default' } });
      expect(byId.get(a1)?.meta.access).toEqual({ visibility: 'private', readers: [userId(carol)], writers: [], rev: 0 });
      // Shared with alice: she sees the visibility, not who else is listed.
      expect(byId.get(b1)?.meta).toMatchObject({ domain: 'app.test', type: 'doc', name: 'one', ii: 0 });
      expect(byId.get(b1)?.meta.access).toEqual({ visibility: 'private' });
      expect(ids(await listAll(carol))).toEqual([a1, b1].sort());
      expect(ids(await listAll(await srv.client()))).toEqual([]);
    });

    it('filters by domain, type and name, alone and together', async () => {
      const alice = await srv.client();
      const bob = await clientOf('app.test');
      const a1 = await create(alice, { type: 'doc', name: 'one' });
      const a2 = await create(alice, { type: 'board', name: 'two' });
      const b1 = await create(bob, { type: 'doc', name: 'one', access: { visibility: 'private', readers: [userId(alice)] } });
      expect(ids(await listAll(alice, '&domain=app.test'))).toEqual([b1]);
      expect(ids(await listAll(alice, '&domain=default'))).toEqual([a1, a2].sort());
      expect(ids(await listAll(alice, '&type=doc'))).toEqual([a1, b1].sort());
      expect(ids(await listAll(alice, '&name=two'))).toEqual([a2]);
      expect(ids(await listAll(alice, '&type=doc&name=one&domain=default'))).toEqual([a1]);
      expect(ids(await listAll(alice, `&name=${randomUUID()}`))).toEqual([]);
    });

    it("a revoke takes the scope out of the revoked user's listing at once; a share puts it in", async () => {
      const [alice, bob, carol] = [await srv.client(), await srv.client(), await srv.client()];
      const id = await create(alice, { access: { visibility: 'private', readers: [userId(bob)] } });
      expect(ids(await listAll(bob))).toEqual([id]);
      const put = await alice.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'private', writers: [userId(carol)] } });
      expect(put.status, put.text).toBe(200);
      expect(ids(await listAll(bob))).toEqual([]);
      expect(ids(await listAll(carol))).toEqual([id]);
    });

    it('401s without a token; 400s a limit past the maximum, a bad cursor or filter', async () => {
      const alice = await srv.client();
      await create(alice, {});
      expect((await alice.request('GET', '/v1/scopes', { token: null })).status).toBe(401);
      for (const query of ['limit=4', 'limit=0', 'limit=-1', 'cursor=!!', 'domain=NOT_A_DOMAIN', `type=${'t'.repeat(129)}`, 'sort=id']) {
        const res = await alice.request('GET', `/v1/scopes?${query}`);
        expect(res.status, query).toBe(400);
        expect(res.json.error.code).toBe('invalid_request');
      }
      const all = await alice.request('GET', '/v1/scopes');
      expect(all.json.scopes).toHaveLength(1); // the default limit is the maximum
    });

    it('429s past the list rate', async () => {
      const limited = await start({ limits: 'on', rateList: { tokens: 2, windowMs: 60_000 }, limitsPrefix: `pb:list:${randomUUID().slice(0, 8)}:` });
      try {
        const c = await limited.client();
        for (let i = 0; i < 2; i++) expect((await c.request('GET', '/v1/scopes')).status).toBe(200);
        const refused = await c.request('GET', '/v1/scopes');
        expect(refused.status).toBe(429);
        expect(refused.json.error).toMatchObject({ code: 'rate_limited', limit: 'list' });
      } finally {
        await limited.close();
      }
    });
  });
}
