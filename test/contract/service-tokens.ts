/**
 * Service identities and per-domain CORS (issue 12, parts 5 and 6) over real HTTP and a real
 * EventSource, on either stack:
 * - a domain's admin mints a service token (`domain:<d>`), lists tokens (never their values) and
 *   revokes them; nobody else may, and each refusal stores nothing (guarantee 3: the token
 *   records and the domain record are compared before and after);
 * - the service identity reads, streams and patches every scope of its domain, creates scopes it
 *   owns, cannot change the access of a scope it does not own, never acts in another domain, and
 *   on another domain's scopes is an ordinary user;
 * - a revoked, expired, tampered or forged token (one naming a `domain:` user without being a
 *   service token) is refused, and so is a stream ticket of a revoked token; with two instances,
 *   a revoke on one is refused by the other within PATCHBAY_SERVICE_TOKEN_CHECK_MS;
 * - the deploy's config-capable token (its record carries `config: true`, which only the deploy
 *   writes) uploads and reads its own domain's configuration, and nothing more: it is refused on
 *   another domain's configuration and on every other admin route, and an ordinary service token
 *   is refused on the configuration routes; each refusal stores nothing;
 * - CORS: an origin the domain's record allows is echoed with `Vary: Origin`, preflights too;
 *   other origins get no CORS headers; the operator's list still applies.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICE_TOKEN_KIND } from '../../shared/domains/service-tokens.js';
import { loadSecret } from '../../shared/http/auth.js';
import type { Client, Res, TestServer } from '../helpers/server.js';
import { request } from '../helpers/server.js';
import { openSse, type SseCollector } from '../helpers/sse.js';
import type { StartServer } from './http.js';

const DOMAIN = 'app.example.com';
const OTHER = 'other.example.com';
const APP = `https://${DOMAIN}`;
const DEV = 'http://localhost:5173';

const userId = (token: string): string => JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;
const corsHeaders = (h: Headers) => [...h.keys()].filter((k) => k.startsWith('access-control-'));

/** A client signed in anonymously for `domain` (a server client names it in the body). */
async function clientFor(srv: TestServer, domain: string): Promise<Client> {
  const res = await request(srv.url, 'POST', '/v1/auth/anonymous', { body: { domain } });
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${res.text}`);
  return withToken(srv.url, res.json.token as string);
}

function withToken(url: string, token: string): Client {
  return { token, request: (method, path, opts = {}) => request(url, method, path, { ...opts, token: opts.token === undefined ? token : opts.token }) };
}

function expectError(res: Res, status: number, code: string): void {
  expect(res.status, res.text).toBe(status);
  expect(res.json.error.code).toBe(code);
}

export function serviceTokensContract(stack: string, start: StartServer, startPeers?: () => Promise<[TestServer, TestServer]>): void {
  describe(`service identities and per-domain CORS (${stack})`, () => {
    let srv: TestServer;
    let admin: Client; // an admin of DOMAIN, signed in for another domain: admins manage from anywhere
    let user: Client; // a user of DOMAIN, not an admin
    let outsider: Client; // a user of another domain
    const streams: SseCollector[] = [];

    beforeAll(async () => {
      srv = await start({ sseRetryMs: 50, maxServiceTokens: 3, corsOrigins: [DEV] });
      [admin, user, outsider] = await Promise.all([srv.client(), clientFor(srv, DOMAIN), clientFor(srv, OTHER)]);
      await srv.app.domains.addAdmin(DOMAIN, userId(admin.token));
    });
    afterAll(async () => {
      for (const s of streams) s.close();
      await srv.close();
    });

    /** Everything stored about DOMAIN's tokens and settings. */
    async function stored() {
      const tokens = await srv.app.adapters.records.list(SERVICE_TOKEN_KIND, { prefix: `${DOMAIN}/`, limit: 1000 });
      const record = await srv.app.adapters.records.get('domain', DOMAIN);
      return { tokens, record };
    }

    async function mint(name = 'worker', ttlSeconds = 3600): Promise<{ id: string; client: Client }> {
      const res = await admin.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name, ttlSeconds } });
      expect(res.status, res.text).toBe(201);
      return { id: res.json.id, client: withToken(srv.url, res.json.token) };
    }

    it('lets an admin mint a token, shown once, and list the tokens without their values', async () => {
      const before = Date.now();
      const res = await admin.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name: 'indexer', ttlSeconds: 600 } });
      expect(res.status, res.text).toBe(201);
      expect(res.json).toMatchObject({ domain: DOMAIN, name: 'indexer', creator: userId(admin.token), user: `domain:${DOMAIN}` });
      expect(res.json.expires).toBeGreaterThanOrEqual(before + 600_000);
      expect(res.json.expires).toBeLessThanOrEqual(Date.now() + 600_000);
      const svc = withToken(srv.url, res.json.token);
      expect((await svc.request('GET', '/v1/me')).json).toEqual({ id: `domain:${DOMAIN}`, kind: 'service', domain: DOMAIN, anonymous: false });
      const list = await admin.request('GET', `/v1/domains/${DOMAIN}/tokens`);
      expect(list.status).toBe(200);
      expect(list.json.tokens.map((t: { id: string }) => t.id)).toContain(res.json.id);
      expect(list.text).not.toContain(res.json.token);
      expect(list.text).not.toContain(res.json.token.split('.')[2]);
      expect(JSON.stringify(await stored())).not.toContain(res.json.token.split('.')[2]);
      await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${res.json.id}`);
    });

    it("refuses everyone but the domain's admins (403), a service identity included, and stores nothing", async () => {
      const { id, client: svc } = await mint('keeper');
      const before = await stored();
      for (const c of [user, outsider, svc]) {
        expectError(await c.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name: 'x', ttlSeconds: 600 } }), 403, 'forbidden');
        expectError(await c.request('GET', `/v1/domains/${DOMAIN}/tokens`), 403, 'forbidden');
        expectError(await c.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${id}`), 403, 'forbidden');
        expectError(await c.request('GET', `/v1/domains/${DOMAIN}`), 403, 'forbidden');
        expectError(await c.request('PUT', `/v1/domains/${DOMAIN}/origins`, { body: { origins: [APP] } }), 403, 'forbidden');
      }
      // A domain nobody claimed answers the same: a stranger does not learn whether it was.
      expectError(await user.request('GET', '/v1/domains/unclaimed.example.com'), 403, 'forbidden');
      expectError(await admin.request('GET', '/v1/domains/unclaimed.example.com'), 403, 'forbidden');
      expectError(await admin.request('GET', '/v1/domains/Not%20A%20Domain'), 400, 'invalid_request');
      expectError(await admin.request('POST', `/v1/domains/${DOMAIN}/tokens`, { token: null, body: { name: 'x', ttlSeconds: 600 } }), 401, 'unauthorized');
      expect(await stored()).toEqual(before);
      expect((await svc.request('GET', '/v1/me')).status).toBe(200);
      await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${id}`);
    });

    it("lets only the deploy's config-capable token of the domain upload and read its configuration, and nothing else (403, nothing stored)", async () => {
      const CONFIG = 'types:\n  note:\n    schema: { type: object }\n';
      const yaml = { 'content-type': 'application/yaml' };
      // What only the deploy does: a record carrying `config: true`, written directly.
      const record = await srv.app.serviceTokens.create(DOMAIN, 'patchbay deploy', { name: 'deploy', ttlSeconds: 600 }, { config: true });
      const deploy = withToken(srv.url, await srv.app.auth.issueService(DOMAIN, record.id, record.expires));
      const { id: plainId, client: plain } = await mint('plain');
      const everything = async () => ({
        mine: await stored(),
        heads: [await srv.app.domainConfigs.head(DOMAIN), await srv.app.domainConfigs.head(OTHER)],
        other: await srv.app.adapters.records.get('domain', OTHER),
      });
      const before = await everything();
      // An ordinary service token of the domain: no configuration routes.
      expectError(await plain.request('PUT', `/v1/domains/${DOMAIN}/config?replaces=0`, { raw: CONFIG, headers: yaml }), 403, 'forbidden');
      expectError(await plain.request('GET', `/v1/domains/${DOMAIN}/config`), 403, 'forbidden');
      expectError(await plain.request('GET', `/v1/domains/${DOMAIN}/config/versions/1`), 403, 'forbidden');
      // The config-capable token: not on another domain's configuration...
      expectError(await deploy.request('PUT', `/v1/domains/${OTHER}/config?replaces=0`, { raw: CONFIG, headers: yaml }), 403, 'forbidden');
      expectError(await deploy.request('GET', `/v1/domains/${OTHER}/config`), 403, 'forbidden');
      expectError(await deploy.request('GET', `/v1/domains/${OTHER}/config/versions/1`), 403, 'forbidden');
      // ...and on no other admin route of its own domain.
      expectError(await deploy.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name: 'x', ttlSeconds: 600 } }), 403, 'forbidden');
      expectError(await deploy.request('GET', `/v1/domains/${DOMAIN}/tokens`), 403, 'forbidden');
      expectError(await deploy.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${plainId}`), 403, 'forbidden');
      expectError(await deploy.request('GET', `/v1/domains/${DOMAIN}`), 403, 'forbidden');
      expectError(await deploy.request('PUT', `/v1/domains/${DOMAIN}/origins`, { body: { origins: [APP] } }), 403, 'forbidden');
      expectError(await deploy.request('GET', `/v1/domains/${DOMAIN}/webhooks`), 403, 'forbidden');
      expectError(await deploy.request('GET', `/v1/domains/${DOMAIN}/webhooks/hook/dead`), 403, 'forbidden');
      // The API's mint never makes one: `config` is not part of its request.
      expectError(await admin.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name: 'x', ttlSeconds: 600, config: true } }), 400, 'invalid_request');
      expect(await everything()).toEqual(before);
      // Its admins see which token is the deploy's.
      const listed = (await admin.request('GET', `/v1/domains/${DOMAIN}/tokens`)).json.tokens as Array<{ id: string; config?: boolean }>;
      expect(listed.find((t) => t.id === record.id)?.config).toBe(true);
      expect(listed.find((t) => t.id === plainId)).not.toHaveProperty('config');

      // What it may do: upload its domain's configuration and read it back, with its report.
      const head = await deploy.request('GET', `/v1/domains/${DOMAIN}/config`);
      expect(head.status, head.text).toBe(200);
      const put = await deploy.request('PUT', `/v1/domains/${DOMAIN}/config?replaces=${head.json.latest}`, { raw: CONFIG, headers: yaml });
      expect(put.status, put.text).toBe(202);
      const version = await deploy.request('GET', `/v1/domains/${DOMAIN}/config/versions/${put.json.version}`);
      expect(version.status, version.text).toBe(200);
      expect(version.json).toMatchObject({ text: CONFIG, uploadedBy: `domain:${DOMAIN}` });
      expect((await deploy.request('GET', `/v1/scopes/${put.json.report}`)).status).toBe(200);
      await srv.app.serviceTokens.revoke(DOMAIN, record.id);
      await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${plainId}`);
      expectError(await deploy.request('GET', `/v1/domains/${DOMAIN}/config`), 401, 'unauthorized');
    });

    it('refuses a bad request, a lifetime past the maximum and a domain at its cap, storing nothing', async () => {
      const before = await stored();
      for (const body of [
        {},
        { name: '', ttlSeconds: 600 },
        { name: 'x'.repeat(101), ttlSeconds: 600 },
        { name: 'a\nb', ttlSeconds: 600 },
        { name: 'x', ttlSeconds: 59 },
        { name: 'x', ttlSeconds: 1.5 },
        { name: 'x', ttlSeconds: 90 * 24 * 3600 + 1 },
        { name: 'x', ttlSeconds: 600, extra: 1 },
      ]) {
        expectError(await admin.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body }), 400, 'invalid_request');
      }
      expectError(await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/not-an-id`), 400, 'invalid_request');
      expectError(await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/00000000-0000-4000-8000-000000000000`), 404, 'not_found');
      expect(await stored()).toEqual(before);
      const minted = [await mint('a'), await mint('b'), await mint('c')];
      const full = await stored();
      const over = await admin.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name: 'd', ttlSeconds: 600 } });
      expectError(over, 403, 'quota_exceeded');
      expect(over.json.error).toMatchObject({ quota: 'serviceTokens', max: 3, actual: 3 });
      expect(await stored()).toEqual(full);
      for (const m of minted) expect((await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${m.id}`)).status).toBe(204);
    });

    it('writes every scope of its domain, streams it, owns what it creates, and manages no one else’s access', async () => {
      const { id: tokenId, client: svc } = await mint();
      const id = (await user.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json.id as string; // private
      const got = await svc.request('GET', `/v1/scopes/${id}`);
      expect(got.status, got.text).toBe(200);
      const own = openSse(`${srv.url}/v1/scopes/${id}/events`, user.token);
      const its = openSse(`${srv.url}/v1/scopes/${id}/events`, svc.token);
      streams.push(own, its);
      await Promise.all([own.waitFor((e) => e.some((x) => x.type === 'state')), its.waitFor((e) => e.some((x) => x.type === 'state'))]);
      const patched = await svc.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 1 }] } });
      expect(patched.status, patched.text).toBe(200);
      await user.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 2 }] } });
      for (const s of [own, its]) await s.waitFor((e) => e.filter((x) => x.type === 'patch').length === 2);
      expect(own.events.find((e) => e.type === 'patch')?.data).toMatchObject({ ii: 1, by: `domain:${DOMAIN}` });
      const ticket = await svc.request('POST', `/v1/scopes/${id}/events/ticket`);
      expect(ticket.status).toBe(200);
      // Access is the owner's: the service identity is a writer here.
      const before = await user.request('GET', `/v1/scopes/${id}/access`);
      expectError(await svc.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'public' } }), 403, 'forbidden');
      expectError(await svc.request('GET', `/v1/scopes/${id}/access`), 403, 'forbidden');
      expect((await user.request('GET', `/v1/scopes/${id}/access`)).json).toEqual(before.json);
      // What it creates, it owns, in its domain.
      const created = await svc.request('POST', '/v1/scopes', { body: { state: {} } });
      expect(created.json.meta).toMatchObject({ owner: `domain:${DOMAIN}`, domain: DOMAIN });
      const shared = await svc.request('PUT', `/v1/scopes/${created.json.id}/access`, { body: { visibility: 'private', readers: [userId(user.token)] } });
      expect(shared.status, shared.text).toBe(200);
      expect((await user.request('GET', `/v1/scopes/${created.json.id}`)).status).toBe(200);
      await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${tokenId}`);
    });

    it('never acts in another domain, and is an ordinary user on its scopes; every refusal changes nothing', async () => {
      const { id: tokenId, client: svc } = await mint();
      const mine = (await user.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json.id as string;
      for (const headers of [{ 'x-patchbay-domain': OTHER }, { origin: `https://${OTHER}` }] as Array<Record<string, string>>) {
        expectError(await svc.request('GET', `/v1/scopes/${mine}`, { headers }), 403, 'forbidden');
        expectError(
          await svc.request('POST', `/v1/scopes/${mine}/patches`, { headers, body: { patch: [{ op: 'add', path: '/x', value: 1 }] } }),
          403,
          'forbidden',
        );
      }
      const hidden = (await outsider.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json.id as string;
      const open = (await outsider.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'authenticated' } } })).json.id as string;
      const granted = (
        await outsider.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'private', writers: [`domain:${DOMAIN}`] } } })
      ).json.id as string;
      const snapshot = async () =>
        Promise.all(
          [mine, hidden, open, granted].map(async (id) => {
            const owner = id === mine ? user : outsider;
            return [(await owner.request('GET', `/v1/scopes/${id}`)).json, (await owner.request('GET', `/v1/scopes/${id}/patches`)).text];
          }),
        );
      const before = await snapshot();
      const patch = { patch: [{ op: 'add', path: '/x', value: 1 }] };
      expectError(await svc.request('GET', `/v1/scopes/${hidden}`), 404, 'scope_not_found');
      expectError(await svc.request('POST', `/v1/scopes/${hidden}/patches`, { body: patch }), 404, 'scope_not_found');
      expect((await svc.request('GET', `/v1/scopes/${open}`)).status).toBe(200);
      expectError(await svc.request('POST', `/v1/scopes/${open}/patches`, { body: patch }), 403, 'forbidden');
      // An owner listing `domain:<d>` grants what it says, but writes still come only from the scope's domain.
      expect((await svc.request('GET', `/v1/scopes/${granted}`)).status).toBe(200);
      expectError(await svc.request('POST', `/v1/scopes/${granted}/patches`, { body: patch }), 403, 'forbidden');
      expect(await snapshot()).toEqual(before);
      await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${tokenId}`);
    });

    it('refuses a revoked, expired, tampered or forged token, and a revoked token’s stream ticket (401)', async () => {
      const { id: tokenId, client: svc } = await mint();
      const scope = (await user.request('POST', '/v1/scopes', { body: { state: {} } })).json.id as string;
      const ticket = (await svc.request('POST', `/v1/scopes/${scope}/events/ticket`)).json.ticket as string;
      expect((await svc.request('GET', '/v1/me')).status).toBe(200);
      expect((await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${tokenId}`)).status).toBe(204);
      expectError(await svc.request('GET', '/v1/me'), 401, 'unauthorized');
      expectError(await svc.request('GET', `/v1/scopes/${scope}`), 401, 'unauthorized');
      expectError(await request(srv.url, 'GET', `/v1/scopes/${scope}/events?ticket=${ticket}`), 401, 'unauthorized');
      expect((await admin.request('GET', `/v1/domains/${DOMAIN}/tokens`)).json.tokens.map((t: { id: string }) => t.id)).not.toContain(tokenId);
      expectError(await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${tokenId}`), 404, 'not_found');

      const { id: liveId, client: live } = await mint();
      // Expired: signed by the server for a live record, with an expiry in the past.
      const expired = await srv.app.auth.issueService(DOMAIN, liveId, Date.now() - 5000);
      expectError(await request(srv.url, 'GET', '/v1/me', { token: expired }), 401, 'unauthorized');
      // Tampered: the payload changed (another domain), the signature kept.
      const [h, p, sig] = live.token.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
      const moved = Buffer.from(JSON.stringify({ ...claims, dom: OTHER, sub: `domain:${OTHER}` })).toString('base64url');
      expectError(await request(srv.url, 'GET', '/v1/me', { token: `${h}.${moved}.${sig}` }), 401, 'unauthorized');
      // Forged with the real secret: a `domain:` user in a token that is not a service token, a
      // service token for no record, and one naming another domain's identity.
      const secret = loadSecret(srv.app.config);
      const sign = (payload: Record<string, unknown>, sub: string, jti?: string) => {
        const jwt = new SignJWT(payload)
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject(sub)
          .setIssuer('patchbay')
          .setAudience('patchbay')
          .setExpirationTime('1h');
        return (jti ? jwt.setJti(jti) : jwt).sign(secret);
      };
      for (const forged of [
        await sign({ anon: true, dom: DOMAIN }, `domain:${DOMAIN}`),
        await sign({ kind: 'firebase', dom: DOMAIN }, `domain:${DOMAIN}`),
        await sign({ kind: 'service', dom: DOMAIN }, `domain:${DOMAIN}`, '00000000-0000-4000-8000-000000000000'),
        await sign({ kind: 'service', dom: DOMAIN }, `domain:${DOMAIN}`),
        await sign({ kind: 'service', dom: OTHER }, `domain:${DOMAIN}`, liveId),
      ]) {
        expectError(await request(srv.url, 'GET', '/v1/me', { token: forged }), 401, 'unauthorized');
      }
      expect((await live.request('GET', '/v1/me')).status).toBe(200);
      await admin.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${liveId}`);
    });

    it('lets an admin read the domain and set its origins (only its own host’s), which CORS then allows', async () => {
      const corsFrom = (origin: string, method = 'GET', path = '/healthz') =>
        request(srv.url, method, path, { headers: { origin, 'access-control-request-method': 'DELETE' } });
      expect(corsHeaders((await corsFrom(APP)).headers)).toEqual([]);
      const before = await stored();
      // Only the domain's own origins: a page on any other acts in another domain (its host, port included).
      for (const origins of [
        [`https://${OTHER}`],
        [`${APP}/`],
        [`${APP}/path`],
        ['app.example.com'],
        [`${APP}:99999`],
        [APP, `${APP}:8443`],
        [`HTTPS://${DOMAIN}`],
      ]) {
        expectError(await admin.request('PUT', `/v1/domains/${DOMAIN}/origins`, { body: { origins } }), 400, 'invalid_request');
      }
      expect(await stored()).toEqual(before);

      const set = await admin.request('PUT', `/v1/domains/${DOMAIN}/origins`, { body: { origins: [APP, APP, `http://${DOMAIN}`] } });
      expect(set.status, set.text).toBe(200);
      expect(set.json).toMatchObject({ domain: DOMAIN, admins: [userId(admin.token)], origins: [APP, `http://${DOMAIN}`] });
      expect((await admin.request('GET', `/v1/domains/${DOMAIN}`)).json).toEqual(set.json);

      for (const origin of [APP, `http://${DOMAIN}`, DEV]) {
        const res = await corsFrom(origin);
        expect(res.headers.get('access-control-allow-origin'), origin).toBe(origin);
        expect(res.headers.get('vary')).toBe('Origin');
        const pre = await corsFrom(origin, 'OPTIONS', '/v1/domains/x/tokens/y');
        expect(pre.status).toBe(204);
        expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
        expect(pre.headers.get('access-control-allow-methods')).toBe('GET, POST, PUT, DELETE, OPTIONS');
        expect(pre.headers.get('vary')).toBe('Origin');
      }
      // A browser page on the allowed origin, end to end: its domain's user reads its scope.
      const id = (await user.request('POST', '/v1/scopes', { body: {} })).json.id as string;
      const page = await user.request('GET', `/v1/scopes/${id}`, { headers: { origin: APP } });
      expect(page.status).toBe(200);
      expect(page.headers.get('access-control-allow-origin')).toBe(APP);
      for (const origin of [`http://${DOMAIN}:8080`, `https://www.${DOMAIN}`, `https://${OTHER}`, 'null']) {
        const res = await corsFrom(origin);
        expect(corsHeaders(res.headers), origin).toEqual([]);
        expect(res.headers.get('vary')).toBe('Origin');
        const pre = await corsFrom(origin, 'OPTIONS', '/v1/scopes');
        expect(pre.status).toBe(204);
        expect(corsHeaders(pre.headers), origin).toEqual([]);
      }
      const cleared = await admin.request('PUT', `/v1/domains/${DOMAIN}/origins`, { body: { origins: [] } });
      expect(cleared.json.origins).toEqual([]);
      expect(corsHeaders((await corsFrom(APP)).headers)).toEqual([]);
    });

    it.runIf(startPeers !== undefined)('a revoke on one instance is refused by another within PATCHBAY_SERVICE_TOKEN_CHECK_MS', async () => {
      const [a, b] = await (startPeers as () => Promise<[TestServer, TestServer]>)();
      try {
        const boss = await a.client();
        await a.app.domains.addAdmin(DOMAIN, userId(boss.token));
        const minted = await boss.request('POST', `/v1/domains/${DOMAIN}/tokens`, { body: { name: 'peer', ttlSeconds: 600 } });
        const token = minted.json.token as string;
        expect((await request(b.url, 'GET', '/v1/me', { token })).status).toBe(200); // b has now looked at the record
        const revokedAt = Date.now();
        expect((await boss.request('DELETE', `/v1/domains/${DOMAIN}/tokens/${minted.json.id}`)).status).toBe(204);
        expectError(await request(a.url, 'GET', '/v1/me', { token }), 401, 'unauthorized'); // at once where it was revoked
        const bound = b.app.config.serviceTokenCheckMs;
        for (;;) {
          const res = await request(b.url, 'GET', '/v1/me', { token });
          if (res.status === 401) break;
          expect(res.status).toBe(200);
          expect(Date.now() - revokedAt, 'still accepted past the bound').toBeLessThan(bound + 1000);
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
