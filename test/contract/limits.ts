/**
 * Rate limits, quotas and stream caps over a real socket (shared/http/limits.ts), the same on
 * every stack: each limit answers its coded error (429 `rate_limited` with `Retry-After`, 403
 * `quota_exceeded`, 503 for a full instance), and guarantee 3 holds for each refusal: the stored
 * scopes, heads and logs read straight from the ledger are the same before and after.
 * Each test starts its own server with small limits, so they run apart from other tests' users.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import type { Usage } from '../../shared/ports/limits.js';
import { type Client, newClient, request, type TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

/** Everything the ledger holds of every scope: what a rejected request must leave as it was. */
async function stored(srv: TestServer) {
  const ledger = srv.app.adapters.ledger;
  const scopes = await ledger.listScopes('', 10_000);
  return Promise.all(
    scopes.map(async (s) => {
      const head = await ledger.getHead(s.id);
      return { id: s.id, ii: head?.ii, meta: head?.meta, initial: await ledger.getInitial(s.id), log: await ledger.readLog(s.id, 1, 10_000) };
    }),
  );
}

async function expectUnchanged(srv: TestServer, act: () => Promise<void>): Promise<void> {
  const before = await stored(srv);
  await act();
  await srv.app.limits.flush();
  expect(await stored(srv)).toEqual(before);
}

const patch = (c: Client, id: string, value: unknown = 1) =>
  c.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/v', value }] } });
/** A scope every signed-in user may read (other users stream it in these tests). */
const create = (c: Client, state: unknown = {}) => c.request('POST', '/v1/scopes', { body: { state, access: { visibility: 'authenticated' } } });

/** Opens an SSE stream and reads its status; `close` ends it. */
async function stream(srv: TestServer, c: Client, id: string) {
  const abort = new AbortController();
  const res = await fetch(`${srv.url}/v1/scopes/${id}/events`, { headers: { authorization: `Bearer ${c.token}` }, signal: abort.signal });
  if (res.status !== 200) await res.text();
  return { res, close: () => abort.abort() };
}

export function limitsContract(stack: string, start: StartServer): void {
  describe(`limits (${stack})`, () => {
    const servers: TestServer[] = [];
    const open = async (overrides: Partial<Config>): Promise<TestServer> => {
      const srv = await start({ limits: 'on', ...overrides });
      servers.push(srv);
      return srv;
    };
    afterEach(async () => {
      await Promise.all(servers.splice(0).map((s) => s.close()));
    });

    it('sign-in is rate limited per client address: 429 rate_limited with Retry-After, no token', async () => {
      // No trusted proxy (embedded's default; google mode trusts one Google front end by default).
      const srv = await open({ rateSignIn: { tokens: 2, windowMs: 60_000 }, trustProxy: '' });
      expect((await request(srv.url, 'POST', '/v1/auth/anonymous')).status).toBe(200);
      expect((await request(srv.url, 'POST', '/v1/auth/anonymous')).status).toBe(200);
      const res = await request(srv.url, 'POST', '/v1/auth/anonymous');
      expect(res.status).toBe(429);
      expect(res.json.error).toMatchObject({ code: 'rate_limited', limit: 'signIn' });
      expect(res.json.token).toBeUndefined();
      const retry = Number(res.headers.get('retry-after'));
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(30);
      expect(res.json.error.retryAfter).toBe(retry);
      // X-Forwarded-For is not trusted without a trusted proxy: a made-up address changes nothing
      const spoofed = await request(srv.url, 'POST', '/v1/auth/anonymous', { headers: { 'x-forwarded-for': '203.0.113.9' } });
      expect(spoofed.status).toBe(429);
    });

    it('behind a trusted proxy, the address it forwarded counts, not one the client made up', async () => {
      const srv = await open({ rateSignIn: { tokens: 1, windowMs: 60_000 }, trustProxy: '1' });
      const from = (xff: string) => request(srv.url, 'POST', '/v1/auth/anonymous', { headers: { 'x-forwarded-for': xff } });
      expect((await from('198.51.100.1')).status).toBe(200);
      expect((await from('198.51.100.1')).status).toBe(429);
      expect((await from('198.51.100.2')).status).toBe(200);
      // the client prepends its own entry; the proxy's (rightmost) still counts
      expect((await from('10.9.9.9, 198.51.100.1')).status).toBe(429);
      // one IPv6 /64 is one client
      expect((await from('2001:db8:1:2::1')).status).toBe(200);
      expect((await from('2001:db8:1:2:ffff::7')).status).toBe(429);
    });

    it('scope creation is rate limited per user; the refused create stores nothing', async () => {
      const srv = await open({ rateCreate: { tokens: 2, windowMs: 60_000 } });
      const [alice, bob] = [await srv.client(), await srv.client()];
      expect((await create(alice)).status).toBe(201);
      expect((await create(alice)).status).toBe(201);
      await expectUnchanged(srv, async () => {
        const res = await alice.request('POST', '/v1/scopes', { body: { id: 'refused-scope', state: { a: 1 } } });
        expect(res.status).toBe(429);
        expect(res.json.error).toMatchObject({ code: 'rate_limited', limit: 'create' });
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      });
      expect((await alice.request('GET', '/v1/scopes/refused-scope')).status).toBe(404);
      expect((await create(bob)).status).toBe(201); // another user has a bucket of their own
    });

    it('patches are rate limited per user; the refused patch is not in the log', async () => {
      const srv = await open({ rateWrite: { tokens: 3, windowMs: 60_000 } });
      const alice = await srv.client();
      const { id } = (await create(alice)).json;
      for (let i = 0; i < 3; i++) expect((await patch(alice, id, i)).status).toBe(200);
      await expectUnchanged(srv, async () => {
        const res = await patch(alice, id, 'refused');
        expect(res.status).toBe(429);
        expect(res.json.error).toMatchObject({ code: 'rate_limited', limit: 'write' });
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      });
      expect((await alice.request('GET', `/v1/scopes/${id}`)).json.ii).toBe(3);
    });

    it('patch bytes are rate limited per user in KiB (PATCHBAY_RATE_WRITE_KIB); the refused patch is not in the log', async () => {
      const srv = await open({ rateWriteKiB: { tokens: 4, windowMs: 60_000 } });
      const alice = await srv.client();
      const { id } = (await create(alice)).json;
      expect((await patch(alice, id, 'x'.repeat(2500))).status).toBe(200); // 3 KiB: 1 left
      await expectUnchanged(srv, async () => {
        const res = await patch(alice, id, 'y'.repeat(2500));
        expect(res.status).toBe(429);
        expect(res.json.error).toMatchObject({ code: 'rate_limited', limit: 'writeKiB' });
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      });
      expect((await patch(alice, id, 'small')).status).toBe(200); // the refusal took none of the KiB
      expect((await patch(alice, id, 'small')).status).toBe(429);
    });

    it('a patch refused by its own limits (413) takes no write token', async () => {
      const srv = await open({ rateWrite: { tokens: 1, windowMs: 60_000 }, rateWriteKiB: { tokens: 1, windowMs: 60_000 }, maxOps: 2 });
      const alice = await srv.client();
      const { id } = (await create(alice)).json;
      const ops = [1, 2, 3].map((v) => ({ op: 'add', path: `/v${v}`, value: v }));
      const big = await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: ops } });
      expect(big.status).toBe(413);
      expect(big.json.error).toMatchObject({ code: 'too_large', limit: 'maxOps' });
      expect((await patch(alice, id)).status).toBe(200);
    });

    it('a user may own at most PATCHBAY_QUOTA_SCOPES scopes: 403 quota_exceeded, nothing stored', async () => {
      const srv = await open({ quotaScopes: 2 });
      const [alice, bob] = [await srv.client(), await srv.client()];
      expect((await create(alice)).status).toBe(201);
      expect((await create(alice)).status).toBe(201);
      await expectUnchanged(srv, async () => {
        const res = await create(alice, { big: 'x' });
        expect(res.status).toBe(403);
        expect(res.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'scopes', max: 2, actual: 2 });
      });
      expect((await create(bob)).status).toBe(201);
    });

    it('a user storing PATCHBAY_QUOTA_BYTES or more can neither create nor grow a scope; the refusals store nothing', async () => {
      const srv = await open({ quotaBytes: 200 });
      const alice = await srv.client();
      const { id } = (await create(alice, { text: 'a' })).json; // 12 bytes
      expect((await patch(alice, id, 'x'.repeat(300))).status).toBe(200); // under the quota before it: allowed, and counted
      await expectUnchanged(srv, async () => {
        const p = await patch(alice, id, 'shorter');
        expect(p.status).toBe(403);
        expect(p.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'bytes', max: 200 });
        expect(p.json.error.message).toMatch(/remove and test/);
        expect(p.json.error.actual).toBeGreaterThanOrEqual(300);
        const c = await create(alice);
        expect(c.status).toBe(403);
        expect(c.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'bytes' });
      });
      // the counters are the stored sizes, as the store keeps them
      await srv.app.limits.flush();
      const head = await srv.app.adapters.ledger.getHead(id);
      expect(await usageOf(srv, alice)).toEqual({ scopes: 1, bytes: head?.meta.size });
    });

    it('a user over PATCHBAY_QUOTA_BYTES may still patch with only remove and test operations, back under it', async () => {
      const srv = await open({ quotaBytes: 200 });
      const alice = await srv.client();
      const { id } = (await create(alice, { text: 'a' })).json;
      expect((await patch(alice, id, 'x'.repeat(300))).status).toBe(200);
      await srv.app.limits.flush();
      expect((await patch(alice, id, 'grow')).status).toBe(403);
      const shrink = await alice.request('POST', `/v1/scopes/${id}/patches`, {
        body: {
          patch: [
            { op: 'test', path: '/text', value: 'a' },
            { op: 'remove', path: '/v' },
          ],
        },
      });
      expect(shrink.status).toBe(200);
      await srv.app.limits.flush();
      expect((await usageOf(srv, alice)).bytes).toBeLessThan(200);
      expect((await patch(alice, id, 'grow')).status).toBe(200); // under the quota again
    });

    it('a user holds at most PATCHBAY_SSE_MAX_PER_USER streams; a closed one gives its slot back', async () => {
      const srv = await open({ sseMaxPerUser: 2 });
      const [alice, bob] = [await srv.client(), await srv.client()];
      const { id } = (await create(alice)).json;
      const a = await stream(srv, alice, id);
      const b = await stream(srv, alice, id);
      expect([a.res.status, b.res.status]).toEqual([200, 200]);
      const c = await stream(srv, alice, id);
      expect(c.res.status).toBe(429);
      expect(Number(c.res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const d = await stream(srv, bob, id);
      expect(d.res.status).toBe(200);
      a.close();
      await waitFor(async () => (await stream(srv, alice, id)).res.status === 200);
      for (const s of [b, d]) s.close();
    });

    it('an instance serves at most PATCHBAY_SSE_MAX_PER_INSTANCE streams (503, whatever PATCHBAY_LIMITS says)', async () => {
      const srv = await open({ limits: 'off', sseMaxPerInstance: 1 });
      const [alice, bob] = [await srv.client(), await srv.client()];
      const { id } = (await create(alice)).json;
      const a = await stream(srv, alice, id);
      expect(a.res.status).toBe(200);
      const b = await stream(srv, bob, id);
      expect(b.res.status).toBe(503);
      expect(b.res.headers.get('retry-after')).toBe('1');
      a.close();
      await waitFor(async () => {
        const s = await stream(srv, bob, id);
        s.close();
        return s.res.status === 200;
      });
    });

    it('PATCHBAY_LIMITS=off lets everything through', async () => {
      const tiny = { tokens: 1, windowMs: 60_000 };
      const srv = await open({
        limits: 'off',
        rateSignIn: tiny,
        rateCreate: tiny,
        rateWrite: tiny,
        rateWriteKiB: tiny,
        quotaScopes: 1,
        quotaBytes: 1,
        sseMaxPerUser: 1,
      });
      const alice = await newClient(srv.url);
      await newClient(srv.url);
      const { id } = (await create(alice)).json;
      expect((await create(alice)).status).toBe(201);
      for (let i = 0; i < 5; i++) expect((await patch(alice, id, i)).status).toBe(200);
      await srv.app.limits.flush();
      expect(await usageOf(srv, alice)).toEqual({ scopes: 0, bytes: 0 }); // not even counted: no store calls
      const streams = [await stream(srv, alice, id), await stream(srv, alice, id)];
      expect(streams.map((s) => s.res.status)).toEqual([200, 200]);
      for (const s of streams) s.close();
    });
  });
}

/** A user's counters as the server's limit store holds them. */
async function usageOf(srv: TestServer, c: Client) {
  const sub = JSON.parse(Buffer.from(c.token.split('.')[1] as string, 'base64url').toString()).sub as string;
  return (srv.app.limits as unknown as { store: { usage(u: string): Promise<Usage> } }).store.usage(sub);
}

async function waitFor(pred: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
