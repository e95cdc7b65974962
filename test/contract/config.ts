/**
 * Domain configuration versions and their apply (issue 13, part 2) over real HTTP and a real
 * EventSource, on each stack's own delivery (embedded: in-process; Google: a Pub/Sub push
 * subscription filtered on report scopes): only a domain's admin uploads, reads or lists its
 * configuration; an invalid text is refused with its line and stores nothing; a stale `replaces`
 * is 409 and stores nothing; an upload's apply is streamed live into its report scope (which only
 * the admins read) and its version becomes the active one, whose schemas then refuse invalid
 * patches (422, nothing changes); an apply that fails midway (a record write refused once) is
 * delivered again and resumes, its report written once per step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Adapters } from '../../shared/ports/index.js';
import type { Client, TestServer } from '../helpers/server.js';
import { request } from '../helpers/server.js';
import { openSse, type SseCollector } from '../helpers/sse.js';
import { wrap } from '../helpers/wrap.js';

/** The adapters, with the first put of a record of `kind` failing (a crash of the step that writes it). */
export function failingPutOnce(kind: string | undefined): ((a: Adapters) => Adapters) | undefined {
  if (kind === undefined) return undefined;
  let failed = false;
  return (a) => ({
    ...a,
    records: wrap(a.records, {
      put: async (real, k, key, value, rev) => {
        if (k === kind && !failed) {
          failed = true;
          throw new Error(`injected: the ${kind} write failed`);
        }
        return real(k, key, value, rev);
      },
    }),
  });
}

/** Starts a server whose consumers are delivered to (embedded: in-process; Google: a push subscription). */
export type StartDelivering = (opts?: { failRecordPutsOnce?: string }) => Promise<{ srv: TestServer; close: () => Promise<void> }>;

const DOMAIN = 'app.example.com';
export const userId = (c: Client): string => JSON.parse(Buffer.from(c.token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;

const V1 = `# notes must have a title
types:
  note:
    schema:
      type: object
      required: [title]
      properties:
        title: { type: string, maxLength: 20 }
access:
  visibility: domain
  origins: [https://app.example.com]
`;

const V2 = `types:
  note:
    schema:
      type: object
      required: [title, body]
      properties:
        title: { type: string }
        body: { type: string }
`;

/** A client whose token is issued for `domain`. */
export async function clientIn(base: string, domain: string): Promise<Client> {
  const res = await request(base, 'POST', '/v1/auth/anonymous', { headers: { 'x-patchbay-domain': domain } });
  if (res.status !== 200) throw new Error(`sign-in for ${domain} failed: ${res.status} ${res.text}`);
  const token = res.json.token as string;
  return { token, request: (method, path, opts = {}) => request(base, method, path, { ...opts, token: opts.token === undefined ? token : opts.token }) };
}

export const upload = (c: Client, text: string, replaces: number | null, domain = DOMAIN) =>
  c.request('PUT', `/v1/domains/${domain}/config${replaces === null ? '' : `?replaces=${replaces}`}`, {
    raw: text,
    headers: { 'content-type': 'application/yaml' },
  });

export async function waitDone(srv: TestServer, c: Client, report: string): Promise<SseCollector> {
  const sse = openSse(`${srv.url}/v1/scopes/${report}/events`, c.token);
  await sse.waitFor((evs) => {
    const last = evs.filter((e) => e.type === 'state' || e.type === 'patch');
    return last.some((e) => JSON.stringify(e.data).includes('"done"') && JSON.stringify(e.data).includes('/status'));
  }, 30_000);
  return sse;
}

export function configContract(stack: string, start: StartDelivering): void {
  describe(`domain configuration versions (${stack})`, () => {
    let srv: TestServer;
    let close: () => Promise<void>;
    let admin: Client;
    let stranger: Client;
    const streams: SseCollector[] = [];

    beforeAll(async () => {
      ({ srv, close } = await start());
      [admin, stranger] = await Promise.all([clientIn(srv.url, DOMAIN), clientIn(srv.url, DOMAIN)]);
      await srv.app.domains.addAdmin(DOMAIN, userId(admin));
    });
    afterAll(async () => {
      for (const s of streams) s.close();
      await close();
    });

    const head = async () => (await admin.request('GET', `/v1/domains/${DOMAIN}/config`)).json;

    it('refuses a non-admin, an invalid text (naming its line) and a missing or stale replaces, storing nothing', async () => {
      expect((await upload(stranger, V1, 0)).status).toBe(403);
      expect((await stranger.request('GET', `/v1/domains/${DOMAIN}/config`)).json.error.code).toBe('forbidden');
      const bad = await upload(admin, 'types:\n  note:\n    schema:\n      type: object\n    extra: 1\n', 0);
      expect(bad.status).toBe(400);
      expect(bad.json.error.code).toBe('invalid_config');
      expect(bad.json.error.issues[0]).toMatchObject({ line: 5, path: ['types', 'note', 'extra'] });
      const noReplaces = await upload(admin, V1, null);
      expect(noReplaces.status).toBe(400);
      expect((await upload(admin, V1, 3)).json.error).toMatchObject({ code: 'version_conflict', latest: 0 });
      const notUtf8 = await admin.request('PUT', `/v1/domains/${DOMAIN}/config?replaces=0`, {
        raw: new Uint8Array([0x74, 0x79, 0xff, 0xfe]),
        headers: { 'content-type': 'application/yaml' },
      });
      expect(notUtf8.json.error.code).toBe('invalid_request');
      expect(await head()).toMatchObject({ latest: 0, active: 0, latestReport: null });
    });

    it('applies an upload with its report streamed live, then enforces its schemas (refusals change nothing)', async () => {
      const res = await upload(admin, V1, 0);
      expect(res.status).toBe(202);
      expect(res.json).toMatchObject({ domain: DOMAIN, version: 1, replaces: 0 });
      const report = res.json.report as string;
      streams.push(await waitDone(srv, admin, report));
      const state = (await admin.request('GET', `/v1/scopes/${report}`)).json.state;
      expect(state).toMatchObject({
        domain: DOMAIN,
        version: 1,
        status: 'done',
        steps: { compile: 'done', origins: 'done', webhooks: 'done', mirror: 'done', activate: 'done', backfill: 'done' },
        error: null,
      });
      expect(await head()).toMatchObject({ latest: 1, active: 1 });
      expect((await srv.app.domains.get(DOMAIN))?.origins).toEqual(['https://app.example.com']);
      // Only the domain's admins read the report.
      expect((await stranger.request('GET', `/v1/scopes/${report}`)).status).toBe(404);
      // The version's text, for the admin.
      const v = await admin.request('GET', `/v1/domains/${DOMAIN}/config/versions/1`);
      expect(v.json).toMatchObject({ version: 1, replaces: 0, text: V1, uploadedBy: userId(admin), report });
      expect((await admin.request('GET', `/v1/domains/${DOMAIN}/config/versions/2`)).status).toBe(404);

      // Enforced: a note must keep a title of at most 20 characters.
      const created = await admin.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: 'hello' } } });
      expect(created.status).toBe(201);
      const id = created.json.id as string;
      expect((await admin.request('POST', '/v1/scopes', { body: { type: 'note', state: {} } })).json.error.code).toBe('validation_failed');
      const before = (await admin.request('GET', `/v1/scopes/${id}`)).json;
      const refused = await admin.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/title', value: 'x'.repeat(21) }] } });
      expect(refused.status).toBe(422);
      expect(refused.json.error.code).toBe('validation_failed');
      expect((await admin.request('GET', `/v1/scopes/${id}`)).json).toEqual(before);
      expect((await admin.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/title', value: 'ok' }] } })).status).toBe(200);
      // New scopes that name no access get the domain's visibility: the stranger of the same domain reads this one.
      expect(created.json.meta.access).toEqual({ visibility: 'domain', readers: [], writers: [], rev: 0 });
      expect((await stranger.request('GET', `/v1/scopes/${id}`)).status).toBe(200);
      const named = await admin.request('POST', '/v1/scopes', { body: { access: { visibility: 'private', readers: [], writers: [] } } });
      expect(named.json.meta.access.visibility).toBe('private');
    });

    it('a stale replaces is a conflict; the next version replaces the active one', async () => {
      const stale = await upload(admin, V2, 0);
      expect(stale.status).toBe(409);
      expect(stale.json.error).toMatchObject({ code: 'version_conflict', latest: 1 });
      expect(await head()).toMatchObject({ latest: 1, active: 1 });
      const next = await upload(admin, V2, 1);
      expect(next.json.version).toBe(2);
      streams.push(await waitDone(srv, admin, next.json.report));
      expect(await head()).toMatchObject({ latest: 2, active: 2 });
      // v2 says nothing about origins: the record keeps what v1 set.
      expect((await srv.app.domains.get(DOMAIN))?.origins).toEqual(['https://app.example.com']);
      const refused = await admin.request('POST', '/v1/scopes', { body: { type: 'note', state: { title: 'no body' } } });
      expect(refused.json.error.code).toBe('validation_failed');
    });
  });

  describe(`a configuration apply that fails midway resumes (${stack})`, () => {
    it('is delivered again, skips nothing and writes each report step once', async () => {
      const { srv, close } = await start({ failRecordPutsOnce: 'config-apply' });
      try {
        const admin = await clientIn(srv.url, 'resume.example.com');
        await srv.app.domains.addAdmin('resume.example.com', userId(admin));
        const res = await upload(admin, V1, 0, 'resume.example.com');
        expect(res.status).toBe(202);
        const sse = await waitDone(srv, admin, res.json.report);
        sse.close();
        const log = (await admin.request('GET', `/v1/scopes/${res.json.report}/patches`)).text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        const writes = log.map((r) => JSON.stringify(r.patch));
        expect(new Set(writes).size).toBe(writes.length); // no step reported twice
        const state = (await admin.request('GET', `/v1/scopes/${res.json.report}`)).json.state;
        expect(state.steps).toEqual({ compile: 'done', origins: 'done', webhooks: 'done', mirror: 'done', activate: 'done', backfill: 'done' });
        expect((await admin.request('GET', '/v1/domains/resume.example.com/config')).json).toMatchObject({ active: 1 });
      } finally {
        await close();
      }
    });
  });
}
