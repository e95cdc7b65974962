/**
 * The v1 contract (BRIEF §3) over a real socket: create, get with ETag/304, every index outcome
 * of a patch, authorization, history as NDJSON, error bodies. Guarantee 3 is checked on each
 * rejection by comparing the stored scope and log before and after. Guarantees 1 and 2 and the
 * retry rule (a recognised retry gets the original ack) are checked under concurrent writers.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { type Client, type Res, request, type TestServer } from '../helpers/server.js';

/** Starts a server of the stack under test with these config overrides. */
export type StartServer = (overrides?: Partial<Config>) => Promise<TestServer>;

export function httpContract(stack: string, start: StartServer): void {
  describe(`v1 HTTP contract (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;

    beforeAll(async () => {
      srv = await start();
      alice = await srv.client();
      bob = await srv.client();
    });
    afterAll(() => srv.close());

    async function snapshot(c: Client, id: string) {
      const scope = await c.request('GET', `/v1/scopes/${id}`);
      const log = await c.request('GET', `/v1/scopes/${id}/patches`);
      return { scope: scope.json, log: log.text };
    }

    async function expectUnchanged(c: Client, id: string, act: () => Promise<unknown>) {
      const before = await snapshot(c, id);
      await act();
      expect(await snapshot(c, id)).toEqual(before);
    }

    describe('auth', () => {
      it('issues anonymous tokens', async () => {
        const res = await alice.request('POST', '/v1/auth/anonymous', { token: null });
        expect(res.status).toBe(200);
        expect(res.json.token.split('.')).toHaveLength(3);
        expect(res.json.user).toMatchObject({ anonymous: true });
        expect(res.json.user.id).toMatch(/^anon:/);
      });

      it('rejects missing and forged tokens with 401', async () => {
        const none = await alice.request('GET', '/v1/scopes/x', { token: null });
        expect(none.status).toBe(401);
        expect(none.json.error.code).toBe('unauthorized');
        const forged = await alice.request('GET', '/v1/scopes/x', { token: `${alice.token.slice(0, -4)}AAAA` });
        expect(forged.status).toBe(401);
      });
    });

    describe('domains', () => {
      /** A client whose token is issued for `domain`, sending `headers` with every request. */
      async function clientOf(domain: string, headers: Record<string, string> = {}): Promise<Client> {
        const res = await request(srv.url, 'POST', '/v1/auth/anonymous', { headers, body: headers.origin ? undefined : { domain } });
        expect(res.json.user.domain).toBe(domain);
        const token = res.json.token as string;
        return { token, request: (method, path, opts = {}) => request(srv.url, method, path, { ...opts, headers: { ...headers, ...opts.headers }, token }) };
      }

      it('a browser’s Origin sets the domain of its token and of the scopes it creates; curl’s is `default`', async () => {
        const page = await clientOf('app.example.com', { origin: 'https://app.example.com' });
        const created = await page.request('POST', '/v1/scopes', { body: { state: { n: 0 } } });
        expect(created.status).toBe(201);
        expect(created.json.meta).toMatchObject({ domain: 'app.example.com', owner: expect.stringMatching(/^anon:/) });
        expect(
          (await page.request('POST', `/v1/scopes/${created.json.id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: 1 }] } })).status,
        ).toBe(200);
        expect((await page.request('GET', '/v1/me')).json).toMatchObject({ kind: 'anonymous', domain: 'app.example.com' });
        const plain = await alice.request('POST', '/v1/scopes', { body: {} });
        expect(plain.json.meta.domain).toBe('default');
      });

      it('a token for domain A cannot write scopes of domain B, nor be used from a page of domain B (403); nothing changes', async () => {
        const a = await clientOf('a.example');
        const { json } = await a.request('POST', '/v1/scopes', { body: { state: { n: 0 } } });
        expect(json.meta.domain).toBe('a.example');
        const b = await clientOf('b.example');
        // b and alice are listed writers: what refuses them is the domain, not the access lists.
        const writers = [(await b.request('GET', '/v1/me')).json.id, (await alice.request('GET', '/v1/me')).json.id];
        expect((await a.request('PUT', `/v1/scopes/${json.id}/access`, { body: { visibility: 'private', writers } })).status).toBe(200);
        const patch = { patch: [{ op: 'replace', path: '/n', value: 9 }] };
        await expectUnchanged(a, json.id, async () => {
          const other = await b.request('POST', `/v1/scopes/${json.id}/patches`, { body: patch });
          expect(other.status).toBe(403);
          expect(other.json.error).toMatchObject({ code: 'forbidden', domain: 'a.example', requested: 'b.example' });
          // The owner's own token, from a page of another origin, or naming another domain.
          for (const headers of [{ origin: 'https://b.example' }, { 'x-patchbay-domain': 'b.example' }] as Array<Record<string, string>>) {
            const res = await a.request('POST', `/v1/scopes/${json.id}/patches`, { body: patch, headers });
            expect(res.status).toBe(403);
            expect(res.json.error.code).toBe('forbidden');
          }
          expect((await alice.request('POST', `/v1/scopes/${json.id}/patches`, { body: patch })).status).toBe(403); // `default`
          // A stranger of another domain learns nothing, not even the scope's domain.
          const c = await clientOf('c.example');
          const stranger = await c.request('POST', `/v1/scopes/${json.id}/patches`, { body: patch });
          expect(stranger.status).toBe(404);
          expect(stranger.json.error.domain).toBeUndefined();
        });
        expect((await a.request('POST', `/v1/scopes/${json.id}/patches`, { body: patch, headers: { origin: 'https://a.example' } })).status).toBe(200);
      });
    });

    describe('scopes', () => {
      it('creates with defaults and reads back with an ETag', async () => {
        const created = await alice.request('POST', '/v1/scopes', { body: {} });
        expect(created.status).toBe(201);
        expect(created.json).toMatchObject({ ii: 0, state: {} });
        expect(created.json.id).toMatch(/^[0-9a-f-]{36}$/);
        expect(created.headers.get('etag')).toBe('"0"');
        // private by default: only its owner reads it, and sees its access
        expect(created.json.meta.access).toEqual({ visibility: 'private', readers: [], writers: [], rev: 0 });
        expect((await bob.request('GET', `/v1/scopes/${created.json.id}`)).status).toBe(404);
        const got = await alice.request('GET', `/v1/scopes/${created.json.id}`);
        expect(got.status).toBe(200);
        expect(got.headers.get('etag')).toBe('"0"');
        expect(got.json.meta).toMatchObject({ ii: 0, size: 2, domain: 'default' });
      });

      it('answers 304 to a matching If-None-Match and 200 after a change', async () => {
        const { json } = await alice.request('POST', '/v1/scopes', { body: { state: { a: 1 } } });
        const same = await alice.request('GET', `/v1/scopes/${json.id}`, { headers: { 'if-none-match': '"0"' } });
        expect(same.status).toBe(304);
        expect(same.text).toBe('');
        await alice.request('POST', `/v1/scopes/${json.id}/patches`, { body: { patch: [{ op: 'replace', path: '/a', value: 2 }] } });
        const changed = await alice.request('GET', `/v1/scopes/${json.id}`, { headers: { 'if-none-match': '"0"' } });
        expect(changed.status).toBe(200);
        expect(changed.json.state).toEqual({ a: 2 });
      });

      it('accepts any JSON value as state and a chosen id; refuses a taken id', async () => {
        const arr = await alice.request('POST', '/v1/scopes', { body: { id: 'list.1:a-b_c', state: [1, 2] } });
        expect(arr.status).toBe(201);
        expect(arr.json.state).toEqual([1, 2]);
        const num = await alice.request('POST', '/v1/scopes', { body: { state: 42 } });
        expect(num.json.state).toBe(42);
        const taken = await bob.request('POST', '/v1/scopes', { body: { id: 'list.1:a-b_c' } });
        expect(taken.status).toBe(409);
        expect(taken.json.error.code).toBe('scope_exists');
      });

      it('404s an unknown scope and 400s a malformed id', async () => {
        expect((await alice.request('GET', '/v1/scopes/nope')).json.error.code).toBe('scope_not_found');
        const bad = await alice.request('GET', `/v1/scopes/${'x'.repeat(129)}`);
        expect(bad.status).toBe(400);
        expect(bad.json.error.code).toBe('invalid_request');
      });
    });

    describe('patches', () => {
      let id: string;
      beforeAll(async () => {
        id = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json.id;
      });
      const patch = (body: unknown, c = alice) => c.request('POST', `/v1/scopes/${id}/patches`, { body });

      it('accepts ii = head + 1 and appends without ii', async () => {
        expect((await patch({ ii: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] })).json).toEqual({ id, ii: 1 });
        expect((await patch({ patch: [{ op: 'replace', path: '/n', value: 2 }] })).json).toEqual({ id, ii: 2 });
      });

      it('accepts an empty patch and advances ii', async () => {
        expect((await patch({ patch: [] })).json).toEqual({ id, ii: 3 });
      });

      it('asks for a replay when ii is ahead, and says out_of_sync when behind', async () => {
        await expectUnchanged(alice, id, async () => {
          const ahead = await patch({ ii: 9, patch: [] });
          expect(ahead.status).toBe(409);
          expect(ahead.json.error).toMatchObject({ code: 'replay_required', expected: 4 });
          const behind = await patch({ ii: 2, patch: [] });
          expect(behind.status).toBe(409);
          expect(behind.json.error).toMatchObject({ code: 'out_of_sync', head: 3 });
        });
      });

      it('returns the original ack to a retry, and refuses a different patch under the same (session, si)', async () => {
        // `xyz` is a member no op defines: ignored (RFC 6902 §4) and dropped before the patch is
        // hashed or stored, so retries that differ only in ignored members, or in the order of
        // the members, are the same patch.
        const body = { ii: 4, session: 'tab-1', si: 7, patch: [{ op: 'add', path: '/t', value: true, xyz: 1 }] };
        expect((await patch(body)).json).toEqual({ id, ii: 4 });
        await expectUnchanged(alice, id, async () => {
          expect((await patch(body)).json).toEqual({ id, ii: 4, duplicate: true });
          expect((await patch({ ...body, patch: [{ op: 'add', path: '/t', value: true }] })).json).toEqual({ id, ii: 4, duplicate: true });
          expect((await patch({ ...body, patch: [{ value: true, from: '/n', path: '/t', op: 'add' }] })).json).toEqual({ id, ii: 4, duplicate: true });
          const other = await patch({ ...body, patch: [{ op: 'add', path: '/t', value: false }] });
          expect(other.status).toBe(409);
          expect(other.json.error).toMatchObject({ code: 'duplicate_mismatch', ii: 4 });
        });
      });

      it('changes nothing when an op fails, naming the op', async () => {
        await expectUnchanged(alice, id, async () => {
          const res = await patch({
            patch: [
              { op: 'add', path: '/x', value: 1 },
              { op: 'test', path: '/n', value: 99 },
            ],
          });
          expect(res.status).toBe(422);
          expect(res.json.error).toMatchObject({ code: 'patch_failed', op: 1 });
        });
      });

      it('lets only the owner patch: 404 to a user who may not read the scope, 403 to one who may, changing nothing', async () => {
        await expectUnchanged(alice, id, async () => {
          const res = await patch({ patch: [] }, bob);
          expect(res.status).toBe(404);
          expect(res.json.error.code).toBe('scope_not_found');
        });
        const readable = (await alice.request('POST', '/v1/scopes', { body: { access: { visibility: 'authenticated' } } })).json.id;
        await expectUnchanged(alice, readable, async () => {
          const res = await bob.request('POST', `/v1/scopes/${readable}/patches`, { body: { patch: [] } });
          expect(res.status).toBe(403);
          expect(res.json.error.code).toBe('forbidden');
        });
      });

      it('rejects bad shapes with zod issue paths', async () => {
        await expectUnchanged(alice, id, async () => {
          const res = await patch({ patch: [{ op: 'add', path: 'no-slash' }] });
          expect(res.status).toBe(400);
          expect(res.json.error.code).toBe('invalid_request');
          expect(res.json.error.issues.length).toBeGreaterThan(0);
          expect(res.json.error.issues[0].path[0]).toBe('patch');
          const notJson = await alice.request('POST', `/v1/scopes/${id}/patches`, { raw: '{', headers: { 'content-type': 'application/json' } });
          expect(notJson.json.error.code).toBe('invalid_request');
          const wrongType = await alice.request('POST', `/v1/scopes/${id}/patches`, { raw: '{}', headers: { 'content-type': 'text/plain' } });
          expect(wrongType.status).toBe(415);
        });
      });

      it('answers 413 to a hostile nesting depth (a 20 KB body 10,000 levels deep), changing nothing', async () => {
        await expectUnchanged(alice, id, async () => {
          const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
          for (const raw of [`{"patch":[{"op":"add","path":"/d","value":${deep}}]}`, `{"patch":${deep}}`]) {
            const res = await alice.request('POST', `/v1/scopes/${id}/patches`, { raw, headers: { 'content-type': 'application/json' } });
            expect(res.status).toBe(413);
            expect(res.json.error).toMatchObject({ code: 'too_large', limit: 'maxValueDepth' });
          }
        });
        const create = await alice.request('POST', '/v1/scopes', {
          raw: `{"state":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`,
          headers: { 'content-type': 'application/json' },
        });
        expect(create.status).toBe(413);
      });

      it('refuses a "__proto__" member anywhere in a body instead of silently dropping it', async () => {
        await expectUnchanged(alice, id, async () => {
          const raw = '{"patch":[{"op":"add","path":"/v","value":{"ok":1,"nested":[{"__proto__":{"x":1}}]}}]}';
          const res = await alice.request('POST', `/v1/scopes/${id}/patches`, { raw, headers: { 'content-type': 'application/json' } });
          expect(res.status).toBe(400);
          expect(res.json.error.issues[0].path).toEqual(['patch', 0, 'value', 'nested', 0, '__proto__']);
        });
        const create = await alice.request('POST', '/v1/scopes', { raw: '{"state":{"__proto__":{}}}', headers: { 'content-type': 'application/json' } });
        expect(create.status).toBe(400);
      });

      it('refuses JSON text that JSON.parse would silently alter, naming the problem, changing nothing', async () => {
        const send = (path: string, raw: string | Uint8Array) => alice.request('POST', path, { raw, headers: { 'content-type': 'application/json' } });
        const latin1 = (text: string) => Buffer.from(text, 'latin1'); // "é" as the single byte 0xE9: not UTF-8
        const cases: Array<[string | Uint8Array, RegExp, Array<string | number>]> = [
          // JSON.parse keeps the last "op": without the check this runs a remove that a proxy reading the first sees as a test
          ['{"patch":[{"op":"test","path":"/n","op":"remove"}]}', /"op" occurs more than once/, ['patch', 0, 'op']],
          ['{"patch":[{"op":"add","path":"/a","value":1,"\\u0076alue":2}]}', /"value" occurs more than once/, ['patch', 0, 'value']],
          ['{"patch":[],"patch":[{"op":"remove","path":"/n"}]}', /"patch" occurs more than once/, ['patch']],
          [latin1('{"patch":[{"op":"add","path":"/s","value":"caf\xe9"}]}'), /not valid UTF-8/, []],
          [Buffer.from('{"patch":[{"op":"add","path":"/s","value":"\xed\xa0\x80"}]}', 'latin1'), /not valid UTF-8/, []],
          ['{"patch":[{"op":"add","path":"/s","value":"a\\ud800"}]}', /lone surrogate/, ['patch', 0, 'value']],
          ['{"patch":[{"op":"add","path":"/\\udc00","value":1}]}', /lone surrogate/, ['patch', 0, 'path']],
        ];
        await expectUnchanged(alice, id, async () => {
          for (const [raw, message, path] of cases) {
            const res = await send(`/v1/scopes/${id}/patches`, raw);
            expect(res.status, String(raw)).toBe(400);
            expect(res.json.error.code).toBe('invalid_request');
            expect(res.json.error.message).toMatch(message);
            expect(res.json.error.issues[0].path).toEqual(path);
          }
        });
        // No scope is created from such a body either.
        for (const raw of ['{"id":"strict-1","state":{"a":1,"a":2}}', latin1('{"id":"strict-1","state":"caf\xe9"}'), '{"id":"strict-1","state":"\\udfff"}']) {
          const res = await send('/v1/scopes', raw);
          expect(res.status).toBe(400);
          expect(res.json.error.code).toBe('invalid_request');
        }
        expect((await alice.request('GET', '/v1/scopes/strict-1')).status).toBe(404);
        // Valid text the check must not refuse: an escaped surrogate pair, non-ASCII UTF-8, the same name in two objects.
        const created = await send('/v1/scopes', '{"state":{"e":"\\ud83c\\udf89 café","a":{"a":{"a":1}}}}');
        expect(created.status, created.text).toBe(201);
        expect(created.json.state).toEqual({ e: '🎉 café', a: { a: { a: 1 } } });
        const ok = await send(
          `/v1/scopes/${created.json.id}/patches`,
          '{"patch":[{"op":"add","path":"/\\u00e9","value":"\\uD83D\\uDE00"}],"session":"s\\u0031","si":0}',
        );
        expect(ok.status, ok.text).toBe(200);
        expect((await alice.request('GET', `/v1/scopes/${created.json.id}`)).json.state.é).toBe('😀');
      });

      it('404s a patch to a missing scope', async () => {
        const res = await alice.request('POST', '/v1/scopes/missing/patches', { body: { patch: [] } });
        expect(res.status).toBe(404);
        expect(res.json.error.code).toBe('scope_not_found');
      });

      it('serves history as NDJSON, with from and to', async () => {
        const all = await alice.request('GET', `/v1/scopes/${id}/patches`);
        expect(all.headers.get('content-type')).toMatch(/application\/x-ndjson/);
        const lines = all.text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        expect(lines.map((l) => l.ii)).toEqual([1, 2, 3, 4]);
        expect(Object.keys(lines[0]).sort()).toEqual(['at', 'by', 'ii', 'patch']);
        expect(lines[3].patch).toEqual([{ op: 'add', path: '/t', value: true }]); // sent with `xyz: 1`, which is dropped
        const part = await alice.request('GET', `/v1/scopes/${id}/patches?from=2&to=3`);
        expect(
          part.text
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l).ii),
        ).toEqual([2, 3]);
      });
    });

    describe('concurrent writers (guarantees 1 and 2, and the retry rule)', () => {
      // Writers that read head+1 (retrying conflicts), append without ii every fifth write, and
      // re-send some accepted bodies at once: the re-sends land in groups that also commit other
      // writers' new patches, and must still get the original ack.
      it('8 clients on 3 scopes: a re-sent accepted body gets its original ack; each log is 1..n holding every acked patch once', async () => {
        const CLIENTS = 8;
        const WRITES = 12;
        const scopes: string[] = [];
        for (let s = 0; s < 3; s++) scopes.push((await alice.request('POST', '/v1/scopes', { body: { state: { w: {} } } })).json.id);
        const post = (id: string, body: unknown) => alice.request('POST', `/v1/scopes/${id}/patches`, { body });
        const acked = new Map<string, { id: string; ii: number }>(); // by write key
        const failures: unknown[] = [];
        let resent = 0;
        await Promise.all(
          Array.from({ length: CLIENTS }, async (_, c) => {
            const session = `writer-${c}-${randomUUID()}`;
            for (let j = 0; j < WRITES; j++) {
              const id = scopes[(c + j) % scopes.length] as string;
              const key = `c${c}-${j}`;
              const patch = [{ op: 'add', path: `/w/${key}`, value: j }];
              let body: Record<string, unknown> = { patch, session, si: j + 1 };
              let res: Res | undefined;
              for (let attempt = 0; attempt < 100; attempt++) {
                if (j % 5 !== 4) body = { ...body, ii: (await alice.request('GET', `/v1/scopes/${id}`)).json.ii + 1 };
                res = await post(id, body);
                if (res.status !== 409 || !['out_of_sync', 'replay_required'].includes(res.json.error.code)) break;
              }
              if (res?.status !== 200) {
                failures.push({ key, body, status: res?.status, answer: res?.json });
                continue;
              }
              acked.set(key, { id, ii: res.json.ii });
              if (j % 3 === 2) continue;
              resent++;
              const again = await post(id, body);
              if (again.status !== 200 || !isDeepStrictEqual(again.json, { id, ii: res.json.ii, duplicate: true })) {
                failures.push({ key, resent: body, first: res.json, status: again.status, answer: again.json });
              }
            }
          }),
        );
        expect(failures).toEqual([]);
        expect(resent).toBe(CLIENTS * (WRITES - WRITES / 3));
        expect(acked.size).toBe(CLIENTS * WRITES);
        for (const id of scopes) {
          const mine = [...acked].filter(([, a]) => a.id === id);
          const log = (await alice.request('GET', `/v1/scopes/${id}/patches`)).text
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as { ii: number; patch: Array<{ path: string }> });
          expect(log.map((r) => r.ii)).toEqual(Array.from({ length: mine.length }, (_, i) => i + 1));
          // Every acked patch sits at the index it was acked with (so exactly once: the log has
          // no more entries than acks).
          for (const [key, a] of mine) expect(log[a.ii - 1]?.patch[0]?.path, key).toBe(`/w/${key}`);
          const scope = (await alice.request('GET', `/v1/scopes/${id}`)).json;
          expect(scope.ii).toBe(mine.length);
          expect(Object.keys(scope.state.w).sort()).toEqual(mine.map(([key]) => key).sort());
        }
      }, 180_000);
    });

    describe('routing', () => {
      it('treats a target starting with // as a path, never as a host', async () => {
        const { id } = (await alice.request('POST', '/v1/scopes', { body: {} })).json;
        for (const target of ['//', `//evil.example/v1/scopes/${id}`, '//h/v1/scopes']) {
          const res = await rawRequest(srv.url, `GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nConnection: close\r\n\r\n`);
          expect(res.status, target).toBe(404);
          expect(res.body).toContain('"not_found"');
        }
      });

      it('404s unknown routes and 405s wrong methods with the error envelope', async () => {
        const nf = await alice.request('GET', '/v2/nothing');
        expect(nf.status).toBe(404);
        expect(nf.json.error.code).toBe('not_found');
        const na = await alice.request('DELETE', '/v1/scopes');
        expect(na.status).toBe(405);
        expect(na.headers.get('allow')).toBe('GET, HEAD, POST');
      });
    });
  });
}

/** Sends raw bytes (fetch normalises `//` targets away) and reads the whole response. */
async function rawRequest(base: string, text: string): Promise<{ status: number; body: string }> {
  const { connect } = await import('node:net');
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => sock.end(text));
    let out = '';
    sock.on('data', (c) => {
      out += c.toString();
    });
    sock.on('end', () => resolve({ status: Number(out.split(' ')[1]), body: out.slice(out.indexOf('\r\n\r\n') + 4) }));
    sock.on('error', reject);
  });
}
