/**
 * Validation before commit (issue 13, part 4) over real HTTP, on each stack: a domain's
 * configuration gives a scope type a JSON Schema, and every state of such a scope must satisfy it.
 * Guarantee 3 (a rejected request changes nothing): a refused write is `422 validation_failed`
 * naming the schema path, and the stored scope, its ii and its log are unchanged (compared before
 * and after); a create with an invalid initial state stores nothing. Exact under group commit: in
 * one group (checked: one ledger commit decided all its requests), exactly the invalid patches
 * are refused, and each later patch applies to the state without them; concurrent HTTP writers
 * racing for a `maxItems` get exactly that many acks. A replaced configuration applies from the
 * next commit; scopes of other types and other domains are not held to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDomainConfig, StaticConfigs } from '../../shared/domains/active.js';
import type { Decision } from '../../shared/engine/decide.js';
import type { Json } from '../../shared/json.js';
import type { Adapters } from '../../shared/ports/index.js';
import type { PatchRequest } from '../../shared/protocol.js';
import { type Client, newClient, type StartOptions, type TestServer } from '../helpers/server.js';
import { wrap } from '../helpers/wrap.js';

/** Starts a server of the stack under test with these options (configurations, a wrapped ledger). */
export type StartWith = (opts: StartOptions) => Promise<TestServer>;

const DOMAIN = 'valid.test';
const LIMITS = { maxConfigBytes: 64 * 1024 };

const CONFIG = `
types:
  note:
    schema:
      type: object
      additionalProperties: false
      required: [title]
      properties:
        title: { type: string, minLength: 1, maxLength: 20 }
        n: { type: integer, minimum: 0 }
  tally:
    schema:
      type: object
      required: [items]
      properties:
        items: { type: array, maxItems: 3, items: { type: integer } }
names:
  note:
    pattern: "[a-z]+"
`;

/** The user id a client's token names (its `sub`). */
const userId = (c: Client): string => JSON.parse(Buffer.from(c.token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;

export function validationContract(stack: string, start: StartWith): void {
  describe(`validation before commit (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    const configs = new StaticConfigs();
    /** Per scope, each commit's group: how many requests it decided and how many records it wrote. */
    const commits = new Map<string, Array<{ decided: number; written: number }>>();

    beforeAll(async () => {
      configs.set(DOMAIN, loadDomainConfig(CONFIG, LIMITS));
      srv = await start({
        configs,
        wrap: (a: Adapters) => ({
          ...a,
          ledger: wrap(a.ledger, {
            commit: async (real, id, plan) => {
              const result = await real(id, plan);
              const d = result as unknown as Decision;
              if (Array.isArray(d?.outcomes)) commits.set(id, [...(commits.get(id) ?? []), { decided: d.outcomes.length, written: d.records.length }]);
              return result;
            },
          }),
        }),
      });
      alice = await clientOf(DOMAIN);
    });
    afterAll(() => srv.close());

    const clientOf = (domain: string): Promise<Client> => newClient(srv.url, domain);

    /** Creates a scope, expecting 201; its id. */
    const create = async (c: Client, body: Record<string, unknown>): Promise<string> => {
      const res = await c.request('POST', '/v1/scopes', { body });
      expect(res.status, res.text).toBe(201);
      return res.json.id as string;
    };

    const patch = (c: Client, id: string, ops: unknown[]) => c.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: ops } });

    /** The scope as stored (state, ii, meta) and its whole log. */
    async function snapshot(c: Client, id: string) {
      const scope = await c.request('GET', `/v1/scopes/${id}`);
      const log = await c.request('GET', `/v1/scopes/${id}/patches`);
      expect(scope.status).toBe(200);
      return { scope: scope.json, etag: scope.headers.get('etag'), log: log.text };
    }

    it('refuses a write whose result breaks the schema with 422 validation_failed naming the schema path; nothing changes', async () => {
      const id = await create(alice, { type: 'note', state: { title: 'hello' } });
      expect((await patch(alice, id, [{ op: 'replace', path: '/title', value: 'hi' }])).json).toEqual({ id, ii: 1 });
      const before = await snapshot(alice, id);
      const long = await patch(alice, id, [
        { op: 'add', path: '/n', value: 1 },
        { op: 'replace', path: '/title', value: 'x'.repeat(21) },
      ]);
      expect(long.status, long.text).toBe(422);
      expect(long.json.error).toMatchObject({
        code: 'validation_failed',
        type: 'note',
        instancePath: '/title',
        schemaPath: '#/properties/title/maxLength',
        keyword: 'maxLength',
      });
      const extra = await patch(alice, id, [{ op: 'add', path: '/color', value: 'red' }]);
      expect(extra.json.error).toMatchObject({ code: 'validation_failed', schemaPath: '#/additionalProperties' });
      const removed = await patch(alice, id, [{ op: 'remove', path: '/title' }]);
      expect(removed.json.error).toMatchObject({ code: 'validation_failed', keyword: 'required' });
      expect(await snapshot(alice, id)).toEqual(before);
      // Valid writes are still accepted, at the next index.
      expect((await patch(alice, id, [{ op: 'add', path: '/n', value: 2 }])).json).toEqual({ id, ii: 2 });
      expect((await alice.request('GET', `/v1/scopes/${id}`)).json.state).toEqual({ title: 'hi', n: 2 });
    });

    it('refuses a create whose initial state breaks the schema (422) or whose name breaks the rule (400), storing nothing', async () => {
      const bad = await alice.request('POST', '/v1/scopes', { body: { id: 'v-bad-initial', type: 'note', state: { title: '' } } });
      expect(bad.status, bad.text).toBe(422);
      expect(bad.json.error).toMatchObject({ code: 'validation_failed', instancePath: '/title', keyword: 'minLength' });
      const empty = await alice.request('POST', '/v1/scopes', { body: { id: 'v-no-state', type: 'note' } }); // {} lacks the title
      expect(empty.json.error).toMatchObject({ code: 'validation_failed', keyword: 'required' });
      const named = await alice.request('POST', '/v1/scopes', { body: { id: 'v-bad-name', type: 'note', name: 'Not Lower', state: { title: 'a' } } });
      expect(named.status, named.text).toBe(400);
      expect(named.json.error).toMatchObject({ code: 'invalid_request', issues: [{ path: ['name'] }] });
      for (const id of ['v-bad-initial', 'v-no-state', 'v-bad-name']) expect((await alice.request('GET', `/v1/scopes/${id}`)).status).toBe(404);
      const listed = await alice.request('GET', '/v1/scopes?type=note');
      expect(listed.json.scopes.map((s: { id: string }) => s.id)).not.toContain('v-bad-initial');
      // The same id with a valid state is then created.
      expect((await alice.request('POST', '/v1/scopes', { body: { id: 'v-bad-initial', type: 'note', name: 'fine', state: { title: 'a' } } })).status).toBe(
        201,
      );
    });

    it('inside one group commit, refuses exactly the invalid patches; each later patch applies to the state without them', async () => {
      const id = await create(alice, { type: 'tally', state: { items: [] } });
      const add = (value: Json): PatchRequest => ({ patch: [{ op: 'add', path: '/items/-', value }] });
      const user = userId(alice);
      // Queued in one turn of the event loop: one group, decided in this order (shared/engine/queue.ts).
      const sent: PatchRequest[] = [add(1), add('two'), add(3), add(4), add(5), { patch: [{ op: 'remove', path: '/items/0' }] }, add(7)];
      const outcomes = await Promise.allSettled(sent.map((req) => srv.app.engine.submit(id, user, req, { domain: DOMAIN })));
      const codes = outcomes.map((o) => (o.status === 'fulfilled' ? o.value.ii : (o.reason as { code: string }).code));
      // 'two' is not an integer; 5 would be a fourth item. Had 'two' been applied, 4 would have been refused too.
      expect(codes).toEqual([1, 'validation_failed', 2, 3, 'validation_failed', 4, 5]);
      expect(commits.get(id)).toEqual([{ decided: 7, written: 5 }]);
      const after = await snapshot(alice, id);
      expect(after.scope.state).toEqual({ items: [3, 4, 7] });
      expect(after.etag).toBe('"5"');
      const log = after.log
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(log.map((r: { ii: number; patch: Array<{ value?: unknown }> }) => [r.ii, r.patch[0]?.value ?? 'remove'])).toEqual([
        [1, 1],
        [2, 3],
        [3, 4],
        [4, 'remove'],
        [5, 7],
      ]);
    });

    it('acks exactly maxItems of many concurrent HTTP writers to one scope, the rest 422, and stores exactly the acked ones', async () => {
      const id = await create(alice, { type: 'tally', state: { items: [] } });
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => patch(alice, id, [{ op: 'add', path: '/items/-', value: i }])));
      const acked = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status !== 200);
      expect(acked.map((r) => r.json.ii).sort()).toEqual([1, 2, 3]);
      expect(refused.map((r) => r.json.error.code)).toEqual(Array(9).fill('validation_failed'));
      expect(refused.every((r) => r.json.error.keyword === 'maxItems')).toBe(true);
      const byIi = new Map(acked.map((r) => [r.json.ii as number, results.indexOf(r)]));
      expect((await alice.request('GET', `/v1/scopes/${id}`)).json.state).toEqual({ items: [1, 2, 3].map((ii) => byIi.get(ii)) });
    });

    it('applies a replaced configuration from the next commit on, and holds no other type or domain to it', async () => {
      const id = await create(alice, { type: 'note', state: { title: 'a' } });
      const untyped = await create(alice, { state: { title: 42 } });
      expect((await patch(alice, untyped, [{ op: 'add', path: '/anything', value: [] }])).status).toBe(200);
      const bob = await clientOf('other.test'); // no configuration for bob's domain
      const elsewhere = await create(bob, { type: 'note', state: {} });
      expect((await patch(bob, elsewhere, [{ op: 'add', path: '/title', value: 'x'.repeat(50) }])).status).toBe(200);

      const title = 'y'.repeat(30);
      expect((await patch(alice, id, [{ op: 'replace', path: '/title', value: title }])).status).toBe(422);
      configs.set(DOMAIN, loadDomainConfig(CONFIG.replace('maxLength: 20', 'maxLength: 40'), LIMITS));
      try {
        expect((await patch(alice, id, [{ op: 'replace', path: '/title', value: title }])).json).toEqual({ id, ii: 1 });
      } finally {
        configs.set(DOMAIN, loadDomainConfig(CONFIG, LIMITS));
      }
      // An existing state that the configuration now refuses does not block writes that fix it.
      expect((await patch(alice, id, [{ op: 'add', path: '/n', value: 1 }])).status).toBe(422);
      expect((await patch(alice, id, [{ op: 'replace', path: '/title', value: 'short' }])).json).toEqual({ id, ii: 2 });
    });
  });
}
