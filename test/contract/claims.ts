/**
 * Domain claims (issue 13, part 1) over real HTTP, a real EventSource and a stand-in internet (a
 * local HTTP server answering the well-known file per host name, and injected DNS TXT answers;
 * test/helpers/claims.ts): a claim succeeds by the well-known file and by a TXT record, a wrong
 * token makes nobody an admin, a claim times out; the report scope is streamed live to its
 * claimant, is unreadable to anyone else and unwritable by the claimant; the sweep checks pending
 * claims (the serverless path). Every refusal changes nothing: the claim and domain records and
 * the claimant's scopes are compared before and after.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { CLAIM_KIND, SYSTEM_OWNER } from '../../shared/domains/claims.js';
import { DOMAIN_KIND } from '../../shared/domains/domains.js';
import { type FakeInternet, startFakeInternet } from '../helpers/claims.js';
import type { Client, StartOptions, TestServer } from '../helpers/server.js';
import { openSse, type SseCollector } from '../helpers/sse.js';

export type StartClaimServer = (overrides: Partial<Config>, opts: StartOptions) => Promise<TestServer>;

/** The user id a client's token names (its `sub`). */
const userId = (c: Client): string => JSON.parse(Buffer.from(c.token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;

/** A domain no other test (or earlier run on a shared emulator) uses. */
const fresh = (label: string): string => `${label}-${randomUUID().slice(0, 8)}.example.com`;

export function claimsContract(stack: string, start: StartClaimServer, localhostByDefault: boolean): void {
  describe(`domain claims (${stack})`, () => {
    let net: FakeInternet;
    let srv: TestServer;
    const streams: SseCollector[] = [];
    const servers: TestServer[] = [];

    beforeAll(async () => {
      net = await startFakeInternet({ timeoutMs: 2000 });
      srv = await start({ claimAnonymous: true, sseRetryMs: 50 }, { claimProbe: net.probe });
    });
    afterEach(async () => {
      for (const s of streams.splice(0)) s.close();
      for (const s of servers.splice(0)) await s.close();
    });
    afterAll(async () => {
      await srv?.close();
      await net?.close();
    });

    const claim = (c: Client, domain: string) => c.request('POST', `/v1/domains/${domain}/claim`);
    const status = (c: Client, domain: string) => c.request('GET', `/v1/domains/${domain}/claim`);
    const isAdmin = (s: TestServer, domain: string, c: Client) =>
      s.app.adapters.records.get(DOMAIN_KIND, domain).then((r) => {
        const admins = (r?.value as { admins?: string[] } | undefined)?.admins ?? [];
        return admins.includes(userId(c));
      });

    /** Everything a claim can change: the claim and domain records, and the claimant's scopes. */
    async function stored(s: TestServer, c: Client) {
      const { records } = s.app.adapters;
      return {
        claims: await records.list(CLAIM_KIND, { limit: 1000 }),
        domains: await records.list(DOMAIN_KIND, { limit: 1000 }),
        scopes: (await c.request('GET', '/v1/scopes')).json,
      };
    }

    it('several users claim one domain at once: each gets a claim and a report of their own', async () => {
      const [a, b] = await Promise.all([srv.client(), srv.client()]);
      const domain = fresh('both');
      const [ca, cb] = await Promise.all([claim(a, domain), claim(b, domain)]);
      expect([ca.status, cb.status]).toEqual([201, 201]);
      expect(ca.json.report).not.toBe(cb.json.report);
      expect(ca.json.token).not.toBe(cb.json.token);
    });

    it('succeeds by the well-known file: a token, a report streamed live, the same token again, then an admin', async () => {
      const alice = await srv.client();
      const domain = fresh('well');
      const started = await claim(alice, domain);
      expect(started.status, started.text).toBe(201);
      const body = started.json;
      expect(body).toMatchObject({
        domain,
        status: 'pending',
        attempts: 1,
        method: null,
        wellKnown: `https://${domain}/.well-known/patchbay-challenge`,
        txt: `_patchbay-challenge.${domain}`,
      });
      expect(body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(body.expires - body.started).toBe(900_000);
      // The first check ran when the claim started: nothing was served yet.
      expect(body.last.errors).toEqual({ 'well-known': 'HTTP 404', txt: 'no TXT record' });
      expect(await isAdmin(srv, domain, alice)).toBe(false);

      const report = openSse(`${srv.url}/v1/scopes/${body.report}/events`, alice.token);
      streams.push(report);
      await report.waitFor((es) => es.some((e) => e.type === 'state' && e.data.state.attempts === 1));
      expect(report.events.find((e) => e.type === 'state')?.data.state).toMatchObject({ domain, attempts: 1, success: false, timeout: false });
      const scope = (await alice.request('GET', `/v1/scopes/${body.report}`)).json;
      expect(scope.meta).toMatchObject({ owner: SYSTEM_OWNER, domain, access: { visibility: 'private' } });

      net.files.set(domain, `  ${body.token}\n`); // surrounding white space is trimmed
      const again = await claim(alice, domain);
      expect(again.status, again.text).toBe(200);
      expect(again.json).toMatchObject({ token: body.token, report: body.report, status: 'success', method: 'well-known', attempts: 2, last: { errors: {} } });
      expect(await isAdmin(srv, domain, alice)).toBe(true);
      expect(await srv.app.domains.isAdmin(domain, userId(alice))).toBe(true);

      // The report's patch arrives live, on the stream opened before the success.
      await report.waitFor((es) => es.some((e) => e.type === 'patch' && e.data.patch[0].value.success === true));
      const patch = report.events.find((e) => e.type === 'patch' && e.data.patch[0].value.success === true)?.data;
      expect(patch.patch[0].value).toMatchObject({ domain, attempts: 2, success: true, timeout: false, method: 'well-known' });
      expect((await status(alice, domain)).json).toMatchObject({ status: 'success', method: 'well-known', token: body.token });
      // Started again once it succeeded: answered as it is, nothing new.
      const after = await claim(alice, domain);
      expect(after.status).toBe(200);
      expect(after.json).toMatchObject({ token: body.token, status: 'success', attempts: 2 });
      // Its record gone (a day after it finished), a new claim by an admin succeeds at once, without a check.
      const record = await srv.app.adapters.records.get(CLAIM_KIND, `${userId(alice)}/${domain}`);
      expect(await srv.app.adapters.records.delete(CLAIM_KIND, `${userId(alice)}/${domain}`, record?.rev ?? 0)).toBe(true);
      const admin = await claim(alice, domain);
      expect(admin.status).toBe(201);
      expect(admin.json).toMatchObject({ status: 'success', method: 'admin', attempts: 0 });
      expect(admin.json.token).not.toBe(body.token);
    });

    it('concurrent checks (the sweep and the claimant) lose no attempt, and the report ends at the latest', async () => {
      const ivan = await srv.client();
      const domain = fresh('busy');
      const started = (await claim(ivan, domain)).json;
      await Promise.all([claim(ivan, domain), claim(ivan, domain), srv.app.sweep(), srv.app.sweep()]);
      const now = (await status(ivan, domain)).json;
      expect(now).toMatchObject({ status: 'pending', attempts: 5, token: started.token });
      const report = (await ivan.request('GET', `/v1/scopes/${started.report}`)).json;
      expect(report.state).toMatchObject({ attempts: 5, success: false });
    });

    it('succeeds by a TXT record, found by the sweep (no request of the claimant needed)', async () => {
      const bob = await srv.client();
      const domain = fresh('txt');
      const started = (await claim(bob, domain)).json;
      expect(started.status).toBe('pending');
      net.txt.set(`_patchbay-challenge.${domain}`, [['unrelated'], [started.token.slice(0, 20), started.token.slice(20)]]);
      const swept = await srv.app.sweep();
      expect(swept.claims.succeeded).toBeGreaterThanOrEqual(1);
      const now = (await status(bob, domain)).json;
      expect(now).toMatchObject({ status: 'success', method: 'txt', attempts: 2 });
      expect(await isAdmin(srv, domain, bob)).toBe(true);
      const report = (await bob.request('GET', `/v1/scopes/${started.report}`)).json;
      expect(report.state).toMatchObject({ success: true, method: 'txt', attempts: 2 });
    });

    it('a wrong token, a redirect or a TXT record of another token makes nobody an admin', async () => {
      const carol = await srv.client();
      const domain = fresh('wrong');
      const other = fresh('other');
      net.files.set(domain, 'not-the-token');
      net.txt.set(`_patchbay-challenge.${domain}`, [['also-not-the-token']]);
      const first = (await claim(carol, domain)).json;
      expect(first).toMatchObject({ status: 'pending', attempts: 1 });
      expect(first.last.errors).toEqual({ 'well-known': 'the file does not hold the token', txt: 'no TXT record holds the token' });
      // The token redirected to: still not followed.
      net.files.set(domain, { status: 302, location: `http://${other}/.well-known/patchbay-challenge` });
      net.files.set(other, first.token);
      const second = (await claim(carol, domain)).json;
      expect(second.last.errors['well-known']).toMatch(/^HTTP 302: redirects are not followed/);
      expect(net.hits.get(other) ?? 0).toBe(0);
      expect(second).toMatchObject({ status: 'pending', attempts: 2, token: first.token });
      expect(await isAdmin(srv, domain, carol)).toBe(false);
    });

    it('times out: the sweep marks it, the report says timeout, nobody is an admin; a new claim gets a new token', async () => {
      const quick = await start({ claimAnonymous: true, claimTimeoutMs: 1000 }, { claimProbe: net.probe });
      servers.push(quick);
      const dave = await quick.client();
      const domain = fresh('late');
      const started = (await claim(dave, domain)).json;
      await new Promise((r) => setTimeout(r, 1100));
      expect((await status(dave, domain)).json.status).toBe('timeout'); // as seen, before the sweep
      const swept = await quick.app.sweep();
      expect(swept.claims.timedOut).toBeGreaterThanOrEqual(1);
      const after = (await status(dave, domain)).json;
      expect(after).toMatchObject({ status: 'timeout', attempts: 1, token: started.token });
      const report = (await dave.request('GET', `/v1/scopes/${started.report}`)).json;
      expect(report.state).toMatchObject({ timeout: true, success: false, attempts: 1 });
      // Served too late: nothing.
      net.files.set(domain, started.token);
      await quick.app.sweep();
      expect(await isAdmin(quick, domain, dave)).toBe(false);
      // Claimed again: a new claim with a new token, in the same report.
      const again = await claim(dave, domain);
      expect(again.status).toBe(201);
      expect(again.json.token).not.toBe(started.token);
      expect(again.json).toMatchObject({ report: started.report, status: 'pending', attempts: 1 });
      expect(again.json.last.errors['well-known']).toBe('the file does not hold the token');
    });

    it('the report is the claimant’s to read only: a stranger gets 404, the claimant cannot patch it', async () => {
      const [erin, frank] = [await srv.client(), await srv.client()];
      const domain = fresh('mine');
      const { report } = (await claim(erin, domain)).json;
      expect((await frank.request('GET', `/v1/scopes/${report}`)).status).toBe(404);
      expect((await frank.request('POST', `/v1/scopes/${report}/events/ticket`)).status).toBe(404);
      expect((await frank.request('GET', `/v1/domains/${domain}/claim`)).json.error.code).toBe('claim_not_found');
      const before = (await erin.request('GET', `/v1/scopes/${report}`)).json;
      const tamper = await erin.request('POST', `/v1/scopes/${report}/patches`, { body: { patch: [{ op: 'replace', path: '/success', value: true }] } });
      expect(tamper.status).toBe(403);
      expect((await erin.request('PUT', `/v1/scopes/${report}/access`, { body: { visibility: 'public' } })).status).toBe(403);
      expect((await erin.request('GET', `/v1/scopes/${report}`)).json).toEqual(before);
      // The claimant's scope listing shows the report (listed as its reader).
      expect((await erin.request('GET', '/v1/scopes')).json.scopes.map((s: { id: string }) => s.id)).toEqual([report]);
    });

    it(`${localhostByDefault ? 'lets' : 'refuses'} localhost claims by default on this stack, and lets them through when turned on`, async () => {
      const dev = await start({}, { claimProbe: net.probe });
      servers.push(dev);
      const u = await dev.client(); // anonymous, and claimAnonymous is off here: localhost is allowed anyway
      const res = await claim(u, 'localhost:5173');
      if (localhostByDefault) {
        expect(res.status, res.text).toBe(201);
        expect(res.json).toMatchObject({ status: 'success', method: 'localhost' });
        expect(await isAdmin(dev, 'localhost:5173', u)).toBe(true);
      } else {
        expect(res.status).toBe(403);
        expect(res.json.error.code).toBe('forbidden');
      }
      const on = await start({ claimLocalhost: 'on' }, { claimProbe: net.probe });
      servers.push(on);
      const v = await on.client();
      expect((await claim(v, 'app.localhost')).json).toMatchObject({ status: 'success', method: 'localhost' });
      expect(await isAdmin(on, 'app.localhost', v)).toBe(true);
    });

    it('refusals change nothing: bad domains (400), anonymous claimants (403), past the pending quota (403) and the rate (429), no token (401)', async () => {
      const strict = await start(
        { claimMaxPending: 2, limits: 'on', rateClaim: { tokens: 4, windowMs: 60_000 }, limitsPrefix: `pb:claim:${randomUUID().slice(0, 8)}:` },
        { claimProbe: net.probe },
      );
      servers.push(strict);
      const gina = await strict.client();
      const before = await stored(strict, gina);
      const bad = [
        '127.0.0.1',
        '127.1',
        'sub.0x7f',
        'example.com:8443',
        'localhost.example.com:1',
        'com',
        'default',
        'Example.com',
        '%ZZ',
        'a..b',
        'x'.repeat(300),
      ];
      for (const domain of bad) {
        const res = await claim(gina, domain);
        expect(res.status, `${domain}: ${res.text}`).toBe(400);
        expect(res.json.error.code).toBe('invalid_request');
        // Reading a claim needs only a well-formed name: 404 for one nobody can have claimed.
        expect([400, 404], domain).toContain((await status(gina, domain)).status);
      }
      const anon = await claim(gina, fresh('anon'));
      expect(anon.status).toBe(403);
      expect(anon.json.error.code).toBe('forbidden');
      expect((await gina.request('POST', `/v1/domains/${fresh('x')}/claim`, { token: null })).status).toBe(401);
      expect(await stored(strict, gina)).toEqual(before);

      // The quota and the rate, for a claimant allowed to claim.
      const open = await start(
        {
          claimAnonymous: true,
          claimMaxPending: 2,
          limits: 'on',
          rateClaim: { tokens: 3, windowMs: 60_000 },
          limitsPrefix: `pb:claim:${randomUUID().slice(0, 8)}:`,
        },
        { claimProbe: net.probe },
      );
      servers.push(open);
      const hank = await open.client();
      expect((await claim(hank, fresh('one'))).status).toBe(201);
      expect((await claim(hank, fresh('two'))).status).toBe(201);
      const full = await stored(open, hank);
      const third = await claim(hank, fresh('three'));
      expect(third.status).toBe(403);
      expect(third.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'claims', max: 2, actual: 2 });
      expect(await stored(open, hank)).toEqual(full);
      const limited = await claim(hank, fresh('four'));
      expect(limited.status).toBe(429);
      expect(limited.json.error).toMatchObject({ code: 'rate_limited', limit: 'claim' });
      expect(await stored(open, hank)).toEqual(full);
    });
  });
}
