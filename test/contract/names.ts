/**
 * Named scopes (issue 13, part 3) over real HTTP: a scope is addressed by (domain, owner, name) as
 * well as by id. Create-or-resolve (`PUT /v1/names/{name}`) twice gives one id, and so do 20 at
 * once; the owner renames (`PUT /v1/scopes/{id}/name`); a taken name is `409 name_taken` with
 * nothing changed (guarantee 3: the stored scopes and the listing compared before and after);
 * another user's private named scope is `404` (the same answer as a name that names nothing,
 * without the id), found once shared; a reader may not rename (403), a stranger is told nothing
 * (404); names are per domain; listing by name still works. Bad names and queries are 400.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, newClient, type Res, request, type TestServer, userIdOf } from '../helpers/server.js';
import type { StartServer } from './http.js';

const userId = userIdOf;

const named = (name: string, query = '') => `/v1/names/${encodeURIComponent(name)}${query}`;

export function namesContract(stack: string, start: StartServer): void {
  describe(`named scopes (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;
    let carol: Client;

    beforeAll(async () => {
      srv = await start({});
      [alice, bob, carol] = await Promise.all([srv.client(), srv.client(), srv.client()]);
    });
    afterAll(() => srv.close());

    async function ensure(c: Client, name: string, body: Record<string, unknown> = {}): Promise<{ status: number; id: string; json: Res['json'] }> {
      const res = await c.request('PUT', named(name), { body });
      expect([200, 201], res.text).toContain(res.status);
      return { status: res.status, id: res.json.id as string, json: res.json };
    }

    /** What `c` has stored: every scope it owns (state and meta), from its listing. */
    async function stored(c: Client) {
      const list = await c.request('GET', '/v1/scopes?limit=100');
      expect(list.status, list.text).toBe(200);
      const ids = (list.json.scopes as Array<{ id: string }>).map((s) => s.id).sort();
      return Promise.all(ids.map(async (id) => (await c.request('GET', `/v1/scopes/${id}`)).json));
    }

    it('create-or-resolve twice gives the same id: 201 with the new scope, then 200 with it as it is', async () => {
      const first = await ensure(alice, 'settings', { state: { theme: 'dark' }, type: 'prefs' });
      expect(first.status).toBe(201);
      expect(first.json).toMatchObject({ ii: 0, state: { theme: 'dark' }, meta: { name: 'settings', type: 'prefs', domain: 'default', owner: userId(alice) } });
      expect(
        (await alice.request('POST', `/v1/scopes/${first.id}/patches`, { body: { patch: [{ op: 'replace', path: '/theme', value: 'light' }] } })).status,
      ).toBe(200);
      const again = await alice.request('PUT', named('settings'), { body: { state: { ignored: true } } });
      expect(again.status).toBe(200);
      expect(again.json).toMatchObject({ id: first.id, ii: 1, state: { theme: 'light' }, meta: { name: 'settings', type: 'prefs' } });
      expect(again.headers.get('etag')).toBe('"1"');
      expect(again.headers.get('content-location')).toBe(`/v1/scopes/${first.id}`);
      expect((await alice.request('GET', named('settings'), { headers: { 'if-none-match': '"1"' } })).status).toBe(304);
      // GET by name reads it too; listing by name still finds exactly it.
      const got = await alice.request('GET', named('settings'));
      expect(got.status).toBe(200);
      expect(got.json).toMatchObject({ id: first.id, ii: 1, state: { theme: 'light' } });
      const list = await alice.request('GET', `/v1/scopes?name=${encodeURIComponent('settings')}`);
      expect(list.json.scopes.map((s: { id: string }) => s.id)).toEqual([first.id]);
      // Another user's name of the same text is another scope.
      const bobs = await ensure(bob, 'settings');
      expect(bobs.status).toBe(201);
      expect(bobs.id).not.toBe(first.id);
    });

    it('20 concurrent create-or-resolve under one name give one id, and one scope is created', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, () => alice.request('PUT', named('board: Q3 / plan'), { body: { state: { cards: [] } } })));
      for (const r of results) expect([200, 201], r.text).toContain(r.status);
      expect(results.filter((r) => r.status === 201)).toHaveLength(1);
      expect(new Set(results.map((r) => r.json.id)).size).toBe(1);
      const list = await alice.request('GET', `/v1/scopes?name=${encodeURIComponent('board: Q3 / plan')}`);
      expect(list.json.scopes).toHaveLength(1);
    });

    it('the owner renames: the new name finds the scope, the old one is free', async () => {
      const { id } = await ensure(alice, 'draft');
      const res = await alice.request('PUT', `/v1/scopes/${id}/name`, { body: { name: 'final' } });
      expect(res.status, res.text).toBe(200);
      expect(res.json).toEqual({ id, name: 'final' });
      expect((await alice.request('GET', named('final'))).json.id).toBe(id);
      expect((await alice.request('GET', named('draft'))).status).toBe(404);
      expect((await alice.request('GET', `/v1/scopes/${id}`)).json.meta.name).toBe('final');
      const fresh = await ensure(alice, 'draft');
      expect(fresh.status).toBe(201);
      expect(fresh.id).not.toBe(id);
      // null makes it unnamed.
      expect((await alice.request('PUT', `/v1/scopes/${id}/name`, { body: { name: null } })).json).toEqual({ id, name: null });
      expect((await alice.request('GET', named('final'))).status).toBe(404);
    });

    it('a taken name is 409 name_taken, for a rename and a create alike, and nothing changes', async () => {
      const a = await ensure(carol, 'one');
      await ensure(carol, 'two');
      const before = await stored(carol);
      const renamed = await carol.request('PUT', `/v1/scopes/${a.id}/name`, { body: { name: 'two' } });
      expect(renamed.status).toBe(409);
      expect(renamed.json.error).toMatchObject({ code: 'name_taken', name: 'two', domain: 'default' });
      const created = await carol.request('POST', '/v1/scopes', { body: { name: 'two', state: { x: 1 } } });
      expect(created.status).toBe(409);
      expect(created.json.error.code).toBe('name_taken');
      expect(await stored(carol)).toEqual(before);
    });

    it("another user's private named scope is 404 (as a missing name, without its id); shared, it is found", async () => {
      const { id } = await ensure(bob, 'diary', { state: { secret: 1 } });
      const path = named('diary', `?owner=${encodeURIComponent(userId(bob))}`);
      const hidden = await alice.request('GET', path);
      const missing = await alice.request('GET', named('no such name', `?owner=${encodeURIComponent(userId(bob))}`));
      expect(hidden.status).toBe(404);
      expect(missing.status).toBe(404);
      expect(Object.keys(hidden.json.error).sort()).toEqual(Object.keys(missing.json.error).sort());
      expect(hidden.json.error.code).toBe('scope_not_found');
      expect(hidden.text).not.toContain(id);
      // Without a token: 401 either way; with a domain of no such scope: 404.
      expect((await request(srv.url, 'GET', path)).status).toBe(401);
      expect((await request(srv.url, 'GET', named('diary'))).status).toBe(401);
      // A stranger may not rename it either, and learns nothing; nothing changes.
      const rename = await alice.request('PUT', `/v1/scopes/${id}/name`, { body: { name: 'mine' } });
      expect(rename.status).toBe(404);
      expect((await bob.request('GET', `/v1/scopes/${id}`)).json.meta.name).toBe('diary');

      expect((await bob.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'private', readers: [userId(alice)] } })).status).toBe(200);
      const found = await alice.request('GET', path);
      expect(found.status, found.text).toBe(200);
      expect(found.json).toMatchObject({ id, state: { secret: 1 }, meta: { name: 'diary', access: { visibility: 'private' } } });
      expect(found.json.meta.access.readers).toBeUndefined(); // a reader sees the visibility only
      // A reader may not rename: 403, and nothing changes.
      const byReader = await alice.request('PUT', `/v1/scopes/${id}/name`, { body: { name: 'mine' } });
      expect(byReader.status).toBe(403);
      expect(byReader.json.error.code).toBe('forbidden');
      expect((await bob.request('GET', `/v1/scopes/${id}`)).json.meta.name).toBe('diary');
      // Public: readable without a token, given the owner.
      expect((await bob.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'public' } })).status).toBe(200);
      const anon = await request(srv.url, 'GET', path);
      expect(anon.status).toBe(200);
      expect(anon.json.id).toBe(id);
      expect((await request(srv.url, 'GET', `${path}&domain=other.test`)).status).toBe(401);
    });

    it("names are per domain: each domain's caller gets its own scope; a domain is read with ?domain=", async () => {
      const app = await newClient(srv.url, 'app.test');
      const inApp = await ensure(app, 'home', { access: { visibility: 'authenticated' } });
      expect(inApp.json.meta.domain).toBe('app.test');
      const inDefault = await ensure(bob, 'home');
      expect(inDefault.id).not.toBe(inApp.id);
      const owner = encodeURIComponent(userId(app));
      expect((await bob.request('GET', named('home', `?owner=${owner}`))).status).toBe(404); // bob's domain is default
      const read = await bob.request('GET', named('home', `?owner=${owner}&domain=app.test`));
      expect(read.status, read.text).toBe(200);
      expect(read.json.id).toBe(inApp.id);
    });

    it('bad names, bodies and queries are 400 and create nothing', async () => {
      const dave = await srv.client();
      const bad = [
        await dave.request('PUT', named('tab\there'), { body: {} }),
        await dave.request('PUT', named('n'.repeat(257)), { body: {} }),
        await dave.request('PUT', '/v1/names/%E0%A4%A', { body: {} }),
        await dave.request('PUT', named('x'), { body: { id: 'chosen' } }),
        await dave.request('PUT', named('x'), { body: { name: 'other' } }),
        await dave.request('GET', named('x', '?owner=')),
        await dave.request('GET', named('x', '?domain=Not_A_Domain')),
        await dave.request('GET', named('x', '?extra=1')),
        await dave.request('POST', '/v1/scopes', { body: { name: 'bell\u0007' } }),
        await dave.request('POST', '/v1/scopes', { body: { name: '' } }),
      ];
      for (const r of bad) {
        expect(r.status, r.text).toBe(400);
        expect(r.json.error.code).toBe('invalid_request');
      }
      const { id } = await ensure(dave, 'kept');
      for (const name of ['', 'a\u0000b', 'x'.repeat(257)]) {
        const r = await dave.request('PUT', `/v1/scopes/${id}/name`, { body: { name } });
        expect(r.status, r.text).toBe(400);
      }
      expect((await dave.request('PUT', named('x'), {})).status).toBe(415); // no body: not JSON
      expect(await stored(dave)).toHaveLength(1);
      expect((await dave.request('GET', `/v1/scopes/${id}`)).json.meta.name).toBe('kept');
    });
  });
}
