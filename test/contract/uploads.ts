/**
 * Uploads and downloads by signed URL (issue 15, items 1-6) over real HTTP, on both stacks: the
 * client PUTs to the signed URL with fetch, the upload becomes ready (embedded: when the PUT
 * completes; Google: when Cloud Storage's finalize notification reaches `POST /push/uploads`,
 * which the harness's `land` posts, built from the stored object), and downloads through a signed
 * GET URL under the scope's access rules. Refused, each changing nothing (the owner's view of the
 * scope compared before and after): client patches of an upload scope, a stranger's download
 * (404) and an anonymous one (401), a wrong method, a wrong content type, a tampered or expired
 * URL, a size over the limit, a type not allowed, the file-bytes quota. An upload never finished
 * expires at the sweep; deleting the scope deletes the file. A public file gets one long-lived
 * URL for every caller (cacheable, `Cache-Control: public` on the file, bounded by the URL's life);
 * a private one short URLs whose file is `private, max-age=0`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import type { Client, TestServer } from '../helpers/server.js';

export interface UploadsHarness {
  start(overrides?: Partial<Config>): Promise<TestServer>;
  /**
   * What makes a PUT land, after it succeeded: nothing embedded (the PUT itself); on Google, the
   * bucket's finalize notification of the upload's object, posted to the server's push endpoint.
   */
  land(srv: TestServer, id: string): Promise<void>;
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

async function put(upload: { url: string; headers: Record<string, string> }, body: Uint8Array, headers?: Record<string, string>) {
  return fetch(upload.url, { method: 'PUT', headers: headers ?? upload.headers, body });
}

export function uploadsContract(stack: string, h: UploadsHarness): void {
  describe(`uploads and downloads (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;

    beforeAll(async () => {
      srv = await h.start({ maxUploadBytes: 1000, uploadTypes: ['image/*', 'text/plain'] });
      [alice, bob] = await Promise.all([srv.client(), srv.client()]);
    });
    afterAll(() => srv?.close());

    const create = async (body: Record<string, unknown>, c = alice) => {
      const res = await c.request('POST', '/v1/uploads', { body });
      expect(res.status, res.text).toBe(201);
      return res.json as { id: string; url: string; method: string; headers: Record<string, string>; expires: number; state: Record<string, unknown> };
    };
    /** `GET /v1/uploads/{id}/file` without following its redirect. */
    const fileOf = (id: string, c: Client | null) =>
      fetch(`${srv.url}/v1/uploads/${id}/file`, { redirect: 'manual', headers: c ? { authorization: `Bearer ${c.token}` } : {} });
    const stored = async (id: string) => {
      const res = await alice.request('GET', `/v1/scopes/${id}`);
      return { status: res.status, state: res.json?.state, ii: res.json?.ii };
    };

    it('uploads through the signed URL, becomes ready, and downloads through a signed GET URL', async () => {
      const up = await create({ name: 'cat.png', type: 'image/png', size: 5 });
      expect(up.id).toMatch(/^upload:/);
      expect(up.method).toBe('PUT');
      expect(up.headers['content-type']).toBe('image/png');
      expect(up.expires).toBeGreaterThan(Date.now());
      const before = await stored(up.id);
      expect(before.state).toMatchObject({ status: 'pending', name: 'cat.png', type: 'image/png', size: 5 });
      const meta = await alice.request('GET', `/v1/scopes/${up.id}`);
      expect(meta.json.meta.type).toBe('image/png');
      expect(meta.json.meta.owner).toBe(JSON.parse(Buffer.from(alice.token.split('.')[1] ?? '', 'base64url').toString()).sub);

      const res = await put(up, bytes('hello'));
      expect(res.status, await res.text()).toBe(200);
      await h.land(srv, up.id);
      const after = await stored(up.id);
      expect(after.state).toMatchObject({ status: 'ready', size: 5, md5: 'XUFAKrxLKna5cZ2REBfFkg==', type: 'image/png', error: null });

      const dl = await alice.request('GET', `/v1/uploads/${up.id}/download`);
      expect(dl.status, dl.text).toBe(200);
      expect(dl.json.method).toBe('GET');
      const file = await fetch(dl.json.url);
      expect(file.status).toBe(200);
      expect(file.headers.get('content-type')).toBe('image/png');
      expect(await file.text()).toBe('hello');
    });

    it('refuses client patches of an upload scope, and refuses ids with its prefix', async () => {
      const up = await create({ type: 'text/plain' });
      const before = await stored(up.id);
      const patch = await alice.request('POST', `/v1/scopes/${up.id}/patches`, { body: { patch: [{ op: 'replace', path: '/status', value: 'ready' }] } });
      expect(patch.status).toBe(403);
      expect(patch.json.error.code).toBe('forbidden');
      const stranger = await bob.request('POST', `/v1/scopes/${up.id}/patches`, { body: { patch: [{ op: 'replace', path: '/status', value: 'ready' }] } });
      expect(stranger.status).toBe(404);
      expect(await stored(up.id)).toEqual(before);
      const squat = await alice.request('POST', '/v1/scopes', { body: { id: 'upload:mine', state: {} } });
      expect(squat.status).toBe(400);
      expect((await alice.request('GET', '/v1/scopes/upload:mine')).status).toBe(404);
    });

    it('answers downloads only to those who may read the scope: 404 to a stranger, 401 without a token, 409 before ready', async () => {
      const up = await create({ type: 'text/plain' });
      const early = await alice.request('GET', `/v1/uploads/${up.id}/download`);
      expect(early.status).toBe(409);
      expect(early.json.error.code).toBe('upload_incomplete');
      expect((await put(up, bytes('secret'))).status).toBe(200);
      await h.land(srv, up.id);
      const stranger = await bob.request('GET', `/v1/uploads/${up.id}/download`);
      expect(stranger.status).toBe(404);
      expect(stranger.json.error.code).toBe('scope_not_found');
      expect(stranger.text).not.toContain('http');
      const anonymous = await alice.request('GET', `/v1/uploads/${up.id}/download`, { token: null });
      expect(anonymous.status).toBe(401);
      // Made public by its owner: anyone may download it, with or without a token.
      const access = await alice.request('PUT', `/v1/scopes/${up.id}/access`, { body: { visibility: 'public', readers: [], writers: [] } });
      expect(access.status, access.text).toBe(200);
      const open = await bob.request('GET', `/v1/uploads/${up.id}/download`, { token: null });
      expect(open.status).toBe(200);
      expect(await (await fetch(open.json.url)).text()).toBe('secret');
    });

    it('gives a public file one long-lived cacheable URL for everyone, and private files short private ones', async () => {
      const up = await create({ type: 'image/png' });
      expect((await put(up, bytes('pixels'))).status).toBe(200);
      await h.land(srv, up.id);
      // Private: a short URL of its own, neither it nor the file cacheable, and `/file` redirects readers only.
      const mine = await alice.request('GET', `/v1/uploads/${up.id}/download`);
      expect(mine.json).toMatchObject({ cache: 'private' });
      expect(mine.headers.get('cache-control')).toBe('private, no-store');
      expect(mine.json.expires).toBeLessThanOrEqual(Date.now() + 900_000 + 1000);
      expect((await fetch(mine.json.url)).headers.get('cache-control')).toBe('private, max-age=0');
      expect((await fileOf(up.id, bob)).status).toBe(404);
      const redirect = await fileOf(up.id, alice);
      expect(redirect.status).toBe(302);
      expect(redirect.headers.get('cache-control')).toBe('private, no-store');
      expect(await (await fetch(redirect.headers.get('location') as string)).text()).toBe('pixels');

      // Public: the same URL for every caller, token or none, valid at least half of PATCHBAY_PUBLIC_DOWNLOAD_URL_TTL_S (7 days).
      expect((await alice.request('PUT', `/v1/scopes/${up.id}/access`, { body: { visibility: 'public', readers: [], writers: [] } })).status).toBe(200);
      const path = `/v1/uploads/${up.id}/download`;
      const [a, b, anon] = [await alice.request('GET', path), await bob.request('GET', path), await alice.request('GET', path, { token: null })];
      for (const r of [a, b, anon]) {
        expect(r.status, r.text).toBe(200);
        expect(r.json).toMatchObject({ cache: 'public', url: a.json.url, expires: a.json.expires });
        expect(r.headers.get('cache-control')).toMatch(/^public, max-age=\d+$/);
      }
      const halfWeek = 302_400;
      expect(a.json.expires - Date.now()).toBeGreaterThan(halfWeek * 1000 - 5000);
      expect(a.json.url).not.toBe(mine.json.url);
      const file = await fetch(a.json.url);
      expect(await file.text()).toBe('pixels');
      const maxAge = Number(/^public, max-age=(\d+)$/.exec(file.headers.get('cache-control') ?? '')?.[1]);
      expect(maxAge).toBeGreaterThan(0);
      expect(maxAge).toBeLessThanOrEqual(halfWeek); // no cache outlives the URL it was filled through
      const open = await fileOf(up.id, null);
      expect(open.status).toBe(302);
      expect(open.headers.get('location')).toBe(a.json.url);
      expect(open.headers.get('cache-control')).toMatch(/^public, max-age=\d+$/);

      // Private again: no token no file, and readers get short private URLs whose file is not cacheable.
      expect((await alice.request('PUT', `/v1/scopes/${up.id}/access`, { body: { visibility: 'private', readers: [], writers: [] } })).status).toBe(200);
      expect((await fileOf(up.id, null)).status).toBe(401);
      const again = await alice.request('GET', `/v1/uploads/${up.id}/download`);
      expect(again.json.cache).toBe('private');
      expect((await fetch(again.json.url)).headers.get('cache-control')).toBe('private, max-age=0');
    });

    it('refuses a wrong method, a wrong content type and a tampered URL, storing nothing', async () => {
      const up = await create({ type: 'image/jpeg' });
      const before = await stored(up.id);
      const wrongMethod = await fetch(up.url, { method: 'GET' });
      expect([400, 403]).toContain(wrongMethod.status);
      const wrongType = await put(up, bytes('x'), { 'content-type': 'text/html' });
      expect(wrongType.status).toBe(403);
      const u = new URL(up.url);
      const sig = u.searchParams.get('X-Goog-Signature');
      let tampered: string;
      if (sig) {
        u.searchParams.set('X-Goog-Signature', (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
        tampered = u.href;
      } else {
        const token = u.pathname.split('/').pop() as string;
        const [claims, mac] = token.split('.') as [string, string];
        const changed = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(claims, 'base64url').toString()), t: 'text/html' })).toString('base64url');
        tampered = up.url.replace(token, `${changed}.${mac}`);
      }
      const bad = await fetch(tampered, { method: 'PUT', headers: up.headers, body: bytes('x') });
      expect(bad.status).toBe(403);
      // A signed URL for another object: the same signature, another path.
      const other = await create({ type: 'image/jpeg' });
      const otherToken = new URL(other.url).pathname.split('/').pop() as string;
      const upToken = new URL(up.url).pathname.split('/').pop() as string;
      const swapped = sig
        ? up.url.replace(new URL(up.url).pathname, new URL(other.url).pathname)
        : up.url.replace(upToken, `${otherToken.split('.')[0]}.${upToken.split('.')[1]}`);
      expect((await fetch(swapped, { method: 'PUT', headers: up.headers, body: bytes('x') })).status).toBe(403);
      expect(await stored(up.id)).toEqual(before);
      const complete = await alice.request('POST', `/v1/uploads/${up.id}/complete`);
      expect(complete.status).toBe(409);
      expect(complete.json.error.code).toBe('upload_incomplete');
    });

    it('refuses sizes over the limit, types not allowed, and bad requests', async () => {
      const big = await alice.request('POST', '/v1/uploads', { body: { type: 'image/png', size: 1001 } });
      expect(big.status).toBe(413);
      expect(big.json.error.code).toBe('too_large');
      const type = await alice.request('POST', '/v1/uploads', { body: { type: 'application/x-msdownload' } });
      expect(type.status).toBe(415);
      expect(type.json.error.code).toBe('unsupported_media_type');
      const list = await alice.request('GET', '/v1/scopes');
      const count = list.json.scopes.length;
      for (const body of [{}, { type: 'not a type' }, { type: 'image/png', size: -1 }, { type: 'image/png', md5: 'x' }, { type: 'image/png', extra: 1 }]) {
        const res = await alice.request('POST', '/v1/uploads', { body });
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.json.error.code).toBe('invalid_request');
      }
      expect((await alice.request('GET', '/v1/scopes')).json.scopes.length).toBe(count);
    });

    it('refuses a file larger than declared at the PUT', async () => {
      const up = await create({ type: 'text/plain', size: 3 });
      const res = await put(up, bytes('more than three'));
      // Refused at the PUT: Cloud Storage by the signed size range (400 EntityTooLarge), embedded 413 too_large.
      expect([400, 413]).toContain(res.status);
      const after = await stored(up.id);
      expect(after.state.status).not.toBe('ready');
      expect((await alice.request('GET', `/v1/uploads/${up.id}/download`)).status).toBe(409);
    });

    it('fails an upload whose file is smaller than declared, and deletes the file', async () => {
      const up = await create({ type: 'text/plain', size: 10 });
      expect((await put(up, bytes('short'))).status).toBe(200);
      await h.land(srv, up.id);
      expect((await stored(up.id)).state).toMatchObject({ status: 'failed', error: 'size_mismatch' });
      expect((await alice.request('GET', `/v1/uploads/${up.id}/download`)).status).toBe(409);
    });

    it('checks a declared MD5', async () => {
      const up = await create({ type: 'text/plain', md5: 'XUFAKrxLKna5cZ2REBfFkg==' });
      expect(up.headers['content-md5']).toBe('XUFAKrxLKna5cZ2REBfFkg==');
      expect((await put(up, bytes('jello'))).status).toBe(400);
      expect((await stored(up.id)).state.status).toBe('pending');
      expect((await put(up, bytes('hello'))).status).toBe(200);
      await h.land(srv, up.id);
      expect((await stored(up.id)).state.status).toBe('ready');
    });

    it('completes on request when the object is there', async () => {
      const up = await create({ type: 'text/plain' });
      expect((await put(up, bytes('abc'))).status).toBe(200);
      const done = await alice.request('POST', `/v1/uploads/${up.id}/complete`);
      expect(done.status, done.text).toBe(200);
      expect(done.json.state).toMatchObject({ status: 'ready', size: 3 });
      const stranger = await bob.request('POST', `/v1/uploads/${up.id}/complete`);
      expect(stranger.status).toBe(404);
    });

    it('deletes the file with the scope', async () => {
      const up = await create({ type: 'text/plain' });
      expect((await put(up, bytes('gone soon'))).status).toBe(200);
      await h.land(srv, up.id);
      const dl = await alice.request('GET', `/v1/uploads/${up.id}/download`);
      expect((await fetch(dl.json.url)).status).toBe(200);
      expect((await alice.request('DELETE', `/v1/scopes/${up.id}`)).status).toBe(204);
      expect((await fetch(dl.json.url)).status).toBe(404);
      expect((await alice.request('GET', `/v1/uploads/${up.id}/download`)).status).toBe(404);
    });

    it('expires an upload never finished, and refuses its expired URL', async () => {
      const s = await h.start({ uploadUrlTtlSeconds: 1, uploadGraceSeconds: 0 });
      try {
        const c = await s.client();
        const res = await c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size: 2 } });
        expect(res.status).toBe(201);
        await new Promise((r) => setTimeout(r, 2100));
        const late = await fetch(res.json.url, { method: 'PUT', headers: res.json.headers, body: bytes('hi') });
        expect([400, 403]).toContain(late.status);
        expect((await c.request('GET', `/v1/scopes/${res.json.id}`)).json.state.status).toBe('pending');
        expect(await s.app.uploads.sweep()).toBe(1);
        expect((await c.request('GET', `/v1/scopes/${res.json.id}`)).json.state.status).toBe('expired');
        expect(await s.app.uploads.sweep()).toBe(0);
      } finally {
        await s.close();
      }
    });

    it('gives file bytes back when an upload is deleted, expires or fails, once', async () => {
      const s = await h.start({ limits: 'on', quotaFileBytes: 100, uploadUrlTtlSeconds: 1, uploadGraceSeconds: 0 });
      try {
        const c = await s.client();
        const start = async (size: number) => c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size } });
        const a = await start(60);
        expect(a.status).toBe(201);
        expect((await start(60)).status).toBe(403);
        expect((await c.request('DELETE', `/v1/scopes/${a.json.id}`)).status).toBe(204); // pending: its 60 back
        const b = await start(60);
        expect(b.status).toBe(201);
        await new Promise((r) => setTimeout(r, 2100));
        expect(await s.app.uploads.sweep()).toBe(2); // b expired (its 60 back), and a's note dropped (a was deleted)
        expect((await c.request('GET', `/v1/scopes/${b.json.id}`)).json.state.status).toBe('expired');
        expect((await c.request('DELETE', `/v1/scopes/${b.json.id}`)).status).toBe(204); // not twice
        expect((await start(100)).status).toBe(201);
        expect((await start(1)).json.error?.code).toBe('quota_exceeded'); // 100 of 100 held: nothing was given back twice
      } finally {
        await s.close();
      }
    });

    it('holds users to the file-bytes quota and the upload rate', async () => {
      const s = await h.start({ limits: 'on', quotaFileBytes: 100, rateUpload: { tokens: 3, windowMs: 60_000 } });
      try {
        const c = await s.client();
        expect((await c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size: 60 } })).status).toBe(201);
        const over = await c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size: 60 } });
        expect(over.status).toBe(403);
        expect(over.json.error.code).toBe('quota_exceeded');
        expect((await c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size: 10 } })).status).toBe(201);
        const fast = await c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size: 1 } });
        expect(fast.status).toBe(429);
        expect(fast.json.error.limit).toBe('upload');
        expect(fast.json.error.code).toBe('rate_limited');
      } finally {
        await s.close();
      }
    });
  });
}
