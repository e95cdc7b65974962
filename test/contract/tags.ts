/**
 * Tags (issue 13, part 6; shared/domains/tags.ts) over real HTTP: a user tags a scope it may read
 * (`POST /v1/scopes/{target}/tags`), getting a tag scope of the reserved type `patchbay/tag`;
 * tagging again, and 12 identical tags at once, give one tag; tags are listed per target (each
 * shown only to those its own access lets read it: a tag takes the target's visibility) and per
 * tagger and type (`GET /v1/tags`), in pages that visit each once; a stranger can neither tag nor
 * list the tags of a scope it may not read (404, nothing stored: the tag index records, the
 * stranger's scopes and the listings compared before and after); deleting a tag removes it from
 * the listings and the index; an index entry whose scope is gone is skipped and removed; the
 * reserved type and name prefix are refused on the generic routes and a tag takes no patch and no
 * rename; bad input is 400 changing nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, type Res, request, type TestServer, userIdOf } from '../helpers/server.js';
import type { StartServer } from './http.js';

const TAG_KIND = 'tag';

export function tagsContract(stack: string, start: StartServer): void {
  describe(`tags (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;
    let carol: Client;

    beforeAll(async () => {
      srv = await start({ maxListPage: 50 });
      [alice, bob, carol] = await Promise.all([srv.client(), srv.client(), srv.client()]);
    });
    afterAll(() => srv.close());

    async function scope(c: Client, body: Record<string, unknown> = {}): Promise<string> {
      const res = await c.request('POST', '/v1/scopes', { body: { state: { n: 1 }, ...body } });
      expect(res.status, res.text).toBe(201);
      return res.json.id as string;
    }
    const tagsOn = (target: string, q = '') => `/v1/scopes/${target}/tags${q}`;
    const tag = (c: Client, target: string, body: unknown) => c.request('POST', tagsOn(target), { body });
    /** Every page of a tag listing, following `next`; checks no tag is seen twice. */
    async function listAll(c: Client | null, path: string, limit = 50): Promise<Array<Record<string, unknown>>> {
      const out: Array<Record<string, unknown>> = [];
      let cursor: string | null = null;
      do {
        const sep = path.includes('?') ? '&' : '?';
        const url: string = `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`;
        const res: Res = c ? await c.request('GET', url) : await request(srv.url, 'GET', url);
        expect(res.status, res.text).toBe(200);
        out.push(...res.json.tags);
        cursor = res.json.next;
      } while (cursor !== null);
      expect(new Set(out.map((t) => t.id)).size).toBe(out.length);
      return out;
    }
    const idsOf = (tags: Array<Record<string, unknown>>) => tags.map((t) => t.id as string).sort();
    /** What a refused request must leave as it was: the tag index, and each client's scopes and tags. */
    async function snapshot() {
      const index = await srv.app.adapters.records.list(TAG_KIND, { limit: 1000 });
      const mine = await Promise.all(
        [alice, bob, carol].map(async (c) => [(await c.request('GET', '/v1/scopes?limit=100')).json, await listAll(c, '/v1/tags')]),
      );
      return { index, mine };
    }

    it('tags a scope: 201 with a tag scope; again: 200 with the same tag; listed per target and per type', async () => {
      const target = await scope(alice, { access: { visibility: 'authenticated', readers: [], writers: [] } });
      const res = await tag(bob, target, { tagType: 'star', context: ['c1', 'c2'] });
      expect(res.status, res.text).toBe(201);
      expect(res.json).toMatchObject({
        ii: 0,
        state: { tagType: 'star', target, context: ['c1', 'c2'] },
        meta: { type: 'patchbay/tag', owner: userIdOf(bob), domain: 'default', name: `patchbay/tag/star/${target}`, access: { visibility: 'authenticated' } },
      });
      const id = res.json.id as string;
      expect(res.headers.get('location')).toBe(`/v1/scopes/${id}`);
      expect((await bob.request('GET', `/v1/scopes/${id}`)).json.state).toEqual({ tagType: 'star', target, context: ['c1', 'c2'] });

      const again = await tag(bob, target, { tagType: 'star', context: ['other'] });
      expect(again.status).toBe(200);
      expect(again.json).toMatchObject({ id, state: { context: ['c1', 'c2'] } });

      const other = await tag(bob, target, { tagType: 'read' });
      expect(other.status).toBe(201);
      expect(other.json.state).toEqual({ tagType: 'read', target, context: [] });

      const expected = { id, owner: userIdOf(bob), domain: 'default', tagType: 'star', target, context: ['c1', 'c2'] };
      expect(await listAll(bob, tagsOn(target, '?tagType=star'))).toEqual([{ ...expected, created: expect.any(Number) }]);
      expect(idsOf(await listAll(bob, tagsOn(target)))).toEqual([id, other.json.id].sort());
      expect(await listAll(bob, '/v1/tags?tagType=star')).toEqual([{ ...expected, created: expect.any(Number) }]);
      expect(idsOf(await listAll(bob, '/v1/tags'))).toEqual([id, other.json.id].sort());
      expect(await listAll(bob, '/v1/tags?tagType=nothing')).toEqual([]);
      expect(await listAll(bob, '/v1/tags?domain=app.test')).toEqual([]);
    });

    it("a tag has the target's visibility: a private tag is seen by its tagger only, a public one by anyone", async () => {
      const secret = await scope(alice, { access: { visibility: 'private', readers: [userIdOf(bob)], writers: [] } });
      const bobs = await tag(bob, secret, { tagType: 'star' });
      expect(bobs.status).toBe(201);
      expect(bobs.json.meta.access).toEqual({ visibility: 'private', readers: [], writers: [], rev: 0 });
      const alices = await tag(alice, secret, { tagType: 'star' });
      expect(alices.status).toBe(201);
      expect(idsOf(await listAll(alice, tagsOn(secret)))).toEqual([alices.json.id]);
      expect(idsOf(await listAll(bob, tagsOn(secret)))).toEqual([bobs.json.id]);

      const open = await scope(alice, { access: { visibility: 'public', readers: [], writers: [] } });
      const pub = await tag(bob, open, { tagType: 'star', context: ['x'] });
      expect(pub.json.meta.access.visibility).toBe('public');
      expect(idsOf(await listAll(carol, tagsOn(open)))).toEqual([pub.json.id]);
      expect(idsOf(await listAll(null, tagsOn(open)))).toEqual([pub.json.id]);
      // Without a token, a scope that is not public is not listed: 401, as reading it.
      expect((await request(srv.url, 'GET', tagsOn(secret))).status).toBe(401);
      expect((await request(srv.url, 'POST', tagsOn(open), { body: { tagType: 'star' } })).status).toBe(401);
    });

    it('a stranger may neither tag nor list the tags of a scope it may not read (404, nothing stored)', async () => {
      const secret = await scope(alice);
      await tag(alice, secret, { tagType: 'star' });
      const before = await snapshot();
      for (const target of [secret, 'no-such-scope']) {
        const res = await tag(carol, target, { tagType: 'star' });
        expect(res.status, res.text).toBe(404);
        expect(res.json.error.code).toBe('scope_not_found');
        expect((await carol.request('GET', tagsOn(target))).status).toBe(404);
      }
      expect(await snapshot()).toEqual(before);
    });

    it('12 identical tags at once give one tag and one index entry', async () => {
      const target = await scope(alice, { access: { visibility: 'authenticated', readers: [], writers: [] } });
      const all = await Promise.all(Array.from({ length: 12 }, () => tag(bob, target, { tagType: 'star', context: ['same'] })));
      expect(all.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
      const ids = new Set(all.map((r) => r.json.id));
      expect(ids.size).toBe(1);
      expect(idsOf(await listAll(carol, tagsOn(target)))).toEqual([...ids]);
      const entries = await srv.app.adapters.records.list(TAG_KIND, { prefix: `${target}/`, limit: 100 });
      expect(entries.map((e) => e.key)).toEqual([`${target}/star/${[...ids][0]}`]);
    });

    it('deleting a tag removes it from both listings and the index; the user may tag again', async () => {
      const target = await scope(alice, { access: { visibility: 'authenticated', readers: [], writers: [] } });
      const first = await tag(bob, target, { tagType: 'gone' });
      const id = first.json.id as string;
      // Readable by every signed-in user (the target's visibility), deletable by its tagger only.
      expect((await carol.request('DELETE', `/v1/scopes/${id}`)).status).toBe(403);
      expect((await alice.request('DELETE', `/v1/scopes/${id}`)).status).toBe(403);
      expect((await bob.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
      expect(await listAll(bob, tagsOn(target))).toEqual([]);
      expect(await listAll(bob, '/v1/tags?tagType=gone')).toEqual([]);
      expect(await srv.app.adapters.records.list(TAG_KIND, { prefix: `${target}/`, limit: 10 })).toEqual([]);
      const again = await tag(bob, target, { tagType: 'gone' });
      expect(again.status).toBe(201);
      expect(again.json.id).not.toBe(id);
      expect(idsOf(await listAll(bob, tagsOn(target)))).toEqual([again.json.id]);
    });

    it('an index entry whose tag scope does not exist (a crash between the two writes) is skipped and removed', async () => {
      const target = await scope(alice);
      const key = `${target}/star/never-created`;
      const entry = { id: 'never-created', owner: userIdOf(alice), domain: 'default', tagType: 'star', target, context: [], created: 0 };
      expect(await srv.app.adapters.records.put(TAG_KIND, key, entry, 0)).not.toBeNull();
      const real = await tag(alice, target, { tagType: 'star' });
      expect(idsOf(await listAll(alice, tagsOn(target)))).toEqual([real.json.id]);
      expect(await srv.app.adapters.records.get(TAG_KIND, key)).toBeNull();
    });

    it('pages of tags on a target visit each tag once', async () => {
      const target = await scope(alice, { access: { visibility: 'authenticated', readers: [], writers: [] } });
      const made: string[] = [];
      for (const [c, t] of [
        [alice, 'a'],
        [bob, 'a'],
        [carol, 'b'],
        [bob, 'c'],
        [alice, 'c'],
      ] as const) {
        made.push((await tag(c, target, { tagType: t })).json.id);
      }
      expect(idsOf(await listAll(carol, tagsOn(target), 2))).toEqual([...made].sort());
      expect(idsOf(await listAll(carol, tagsOn(target, '?tagType=c'), 1))).toEqual([made[3], made[4]].sort());
      expect((await listAll(bob, '/v1/tags', 1)).length).toBeGreaterThanOrEqual(2);
    });

    it('the reserved type and names are refused on the generic routes; a tag takes no patch and no rename', async () => {
      const target = await scope(alice);
      const t = await tag(alice, target, { tagType: 'star' });
      const id = t.json.id as string;
      const plain = await scope(alice);
      const before = await snapshot();
      const refused = [
        await alice.request('POST', '/v1/scopes', { body: { type: 'patchbay/tag', state: { tagType: 'star', target, context: [] } } }),
        await alice.request('POST', '/v1/scopes', { body: { name: `patchbay/tag/star/${target}` } }),
        await alice.request('PUT', `/v1/names/${encodeURIComponent('patchbay/x')}`, { body: {} }),
        await alice.request('PUT', `/v1/names/mine`, { body: { type: 'patchbay/report' } }),
        await alice.request('PUT', `/v1/scopes/${plain}/name`, { body: { name: 'patchbay/x' } }),
      ];
      for (const r of refused) {
        expect(r.status, r.text).toBe(400);
        expect(r.json.error.code).toBe('invalid_request');
      }
      const patch = await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/target', value: plain }] } });
      expect(patch.status, patch.text).toBe(403);
      expect((await alice.request('PUT', `/v1/scopes/${id}/name`, { body: { name: 'mine' } })).status).toBe(403);
      expect((await bob.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/x', value: 1 }] } })).status).toBe(404);
      expect(await snapshot()).toEqual(before);
    });

    it('bad input is 400 and changes nothing', async () => {
      const target = await scope(alice);
      const before = await snapshot();
      const bodies: unknown[] = [
        {},
        { tagType: '' },
        { tagType: 'has space' },
        { tagType: 'x'.repeat(65) },
        { tagType: 'a/b' },
        { tagType: 'star', context: 'not-a-list' },
        { tagType: 'star', context: Array.from({ length: 17 }, () => 'c') },
        { tagType: 'star', context: ['x'.repeat(257)] },
        { tagType: 'star', context: [1] },
        { tagType: 'star', extra: true },
      ];
      for (const body of bodies) {
        const res = await tag(alice, target, body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.json.error.code).toBe('invalid_request');
      }
      expect((await alice.request('POST', tagsOn(target), { raw: '{not json', headers: { 'content-type': 'application/json' } })).status).toBe(400);
      expect((await alice.request('POST', tagsOn('bad%20id'), { body: { tagType: 'star' } })).status).toBe(400);
      for (const q of ['?tagType=a/b', '?limit=0', '?limit=51', '?cursor=!!', '?other=1']) {
        expect((await alice.request('GET', tagsOn(target, q))).status, q).toBe(400);
        expect((await alice.request('GET', `/v1/tags${q}`)).status, q).toBe(400);
      }
      expect((await alice.request('GET', '/v1/tags?domain=Not_A_Domain')).status).toBe(400);
      // A cursor of another target's listing is not this listing's.
      const foreign = Buffer.from('other-target/star/x', 'utf8').toString('base64url');
      expect((await alice.request('GET', tagsOn(target, `?cursor=${foreign}`))).status).toBe(400);
      expect(await snapshot()).toEqual(before);
    });
  });
}
