/**
 * The TypeScript client (client/, `@patchbay/client`) against a real server on a real socket, run
 * on both stacks (test/client.test.ts embedded, test/google.emulator.test.ts on the emulators).
 * What it must guarantee: two clients editing one scope at once converge to the server's state,
 * and the server's log holds every acknowledged patch exactly once, at the index it was
 * acknowledged with; patches made together go in one batch; a resend after a lost answer is
 * acknowledged once; a conflict is rebased (or reported when the patch no longer applies); a
 * dropped stream resumes from its last index without losing a patch; a token provider is asked
 * again after a 401; errors are typed with the server's code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Ack, applyPatch, type ConflictEvent, createClient, type Patch, PatchbayClientError } from '../../client/src/index.js';
import type { Json } from '../../shared/json.js';
import type { TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

/** Polls until `pred` holds (bounded). */
export async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A fetch that records the path of every POST it sends. */
function countingPosts(): { posts: string[]; counting: typeof fetch } {
  const posts: string[] = [];
  const counting: typeof fetch = (input, init) => {
    if (init?.method === 'POST') posts.push(new URL(String(input)).pathname);
    return fetch(input, init);
  };
  return { posts, counting };
}

export async function history(srv: TestServer, token: string, id: string): Promise<Array<{ ii: number; patch: Patch }>> {
  const res = await fetch(`${srv.url}/v1/scopes/${id}/patches`, { headers: { authorization: `Bearer ${token}` } });
  return (await res.text())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

export async function serverState(srv: TestServer, token: string, id: string): Promise<{ ii: number; state: Json }> {
  const res = await fetch(`${srv.url}/v1/scopes/${id}`, { headers: { authorization: `Bearer ${token}` } });
  return (await res.json()) as { ii: number; state: Json };
}

export async function anonymousToken(srv: TestServer): Promise<string> {
  const res = await fetch(`${srv.url}/v1/auth/anonymous`, { method: 'POST' });
  return ((await res.json()) as { token: string }).token;
}

/** Makes `scope` writable by anyone signed in (its owner's call). */
async function shareWithEveryone(srv: TestServer, token: string, id: string): Promise<void> {
  const res = await fetch(`${srv.url}/v1/scopes/${id}/access`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ visibility: 'authenticated' }),
  });
  expect(res.status).toBe(200);
}

export function clientContract(stack: string, start: StartServer): void {
  describe(`the client (${stack})`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await start({ sseMaxMs: 1000, sseRetryMs: 0 });
    });
    afterAll(() => srv.close());

    it('two clients writing one scope at once converge, and the log holds each acknowledged patch once', async () => {
      const token = await anonymousToken(srv);
      // Not composing: each patch() call is its own log entry, so the log is checked call by call.
      const a = createClient({ url: srv.url, token, compose: false });
      const b = createClient({ url: srv.url, token, compose: false });
      const sa = await a.create({ state: { list: [], n: {} } });
      const sb = b.scope(sa.id);
      await sb.ready;
      const acks: Array<Promise<Ack>> = [];
      const sent = new Map<Promise<Ack>, Patch>();
      for (let i = 0; i < 15; i++) {
        for (const [who, s] of [
          ['a', sa],
          ['b', sb],
        ] as const) {
          const patch: Patch = [
            { op: 'add', path: '/list/-', value: `${who}${i}` },
            { op: 'add', path: `/n/${who}${i}`, value: i },
          ];
          const ack = s.patch(patch);
          acks.push(ack);
          sent.set(ack, patch);
        }
      }
      await Promise.all([a.synced(), b.synced()]);
      const results = await Promise.all(acks);
      const head = await serverState(srv, token, sa.id);
      expect(head.ii).toBe(30);
      await until(() => sa.ii === 30 && sb.ii === 30, 'both clients at head');
      expect(sa.state).toEqual(head.state);
      expect(sb.state).toEqual(head.state);
      // Every acknowledged patch is in the log once, at the index its ack named.
      const log = await history(srv, token, sa.id);
      expect(log.map((r) => r.ii)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      expect(new Set(results.map((r) => r.ii)).size).toBe(30);
      acks.forEach((p, i) => {
        expect(log[(results[i] as Ack).ii - 1]?.patch).toEqual(sent.get(p));
      });
      // Each client's own patches are in its order.
      const list = (head.state as { list: string[] }).list;
      for (const who of ['a', 'b']) expect(list.filter((x) => x.startsWith(who))).toEqual(Array.from({ length: 15 }, (_, i) => `${who}${i}`));
      a.close();
      b.close();
    });

    it('sends the patches made in one tick in one batch request, and those made meanwhile in the next', async () => {
      const token = await anonymousToken(srv);
      const { posts, counting } = countingPosts();
      const client = createClient({ url: srv.url, token, fetch: counting, compose: false });
      const s = await client.create({ state: { list: [] } });
      posts.length = 0;
      const acks = Array.from({ length: 50 }, (_, i) => s.patch([{ op: 'add', path: '/list/-', value: i }]));
      const more = Array.from({ length: 3 }, (_, i) => s.patch([{ op: 'add', path: '/list/-', value: 50 + i }]));
      await Promise.resolve();
      const late = s.patch([{ op: 'add', path: '/list/-', value: 53 }]); // while the batch is in flight
      const results = await Promise.all([...acks, ...more, late]);
      expect(results.map((r) => r.ii)).toEqual(Array.from({ length: 54 }, (_, i) => i + 1));
      expect(posts).toEqual(['/v1/batch', `/v1/scopes/${s.id}/patches`]);
      await s.synced();
      expect(await serverState(srv, token, s.id)).toEqual(expect.objectContaining({ ii: 54, state: { list: Array.from({ length: 54 }, (_, i) => i) } }));
      client.close();
    });

    it('by default joins the patches made in one tick into one (one index, one log entry), and those made meanwhile into the next', async () => {
      const token = await anonymousToken(srv);
      const { posts, counting } = countingPosts();
      const client = createClient({ url: srv.url, token, fetch: counting });
      const s = await client.create({ state: { list: [], n: 0 } });
      posts.length = 0;
      // 2,000 calls in one tick: the replaces of /n fold into one operation, so the caps (500 operations) hold them all.
      const acks = Array.from({ length: 2000 }, (_, i) => s.patch([{ op: 'replace', path: '/n', value: i + 1 }]));
      acks.push(s.patch([{ op: 'add', path: '/list/-', value: 'a' }]));
      await Promise.resolve();
      const late = [s.patch([{ op: 'add', path: '/list/-', value: 'b' }]), s.patch([{ op: 'add', path: '/list/-', value: 'c' }])]; // while the first is in flight
      await Promise.resolve();
      const later = s.patch([{ op: 'add', path: '/list/-', value: 'd' }]); // another tick: not joined with b and c
      const results = await Promise.all([...acks, ...late, later]);
      expect(new Set(results.slice(0, 2001).map((r) => r.ii))).toEqual(new Set([1]));
      expect(results.slice(2001).map((r) => r.ii)).toEqual([2, 2, 3]);
      expect(posts).toEqual([`/v1/scopes/${s.id}/patches`, '/v1/batch']);
      await s.synced();
      const log = await history(srv, token, s.id);
      expect(log.map((e) => e.patch)).toEqual([
        [
          { op: 'replace', path: '/n', value: 2000 },
          { op: 'add', path: '/list/-', value: 'a' },
        ],
        [
          { op: 'add', path: '/list/-', value: 'b' },
          { op: 'add', path: '/list/-', value: 'c' },
        ],
        [{ op: 'add', path: '/list/-', value: 'd' }],
      ]);
      expect(await serverState(srv, token, s.id)).toEqual(expect.objectContaining({ ii: 3, state: { list: ['a', 'b', 'c', 'd'], n: 2000 } }));
      client.close();
    });

    it('the batch endpoint never commits a patch after an earlier refused one of its scope (a client’s order holds)', async () => {
      // What the browser test caught: a client's batch predicted 1..3 while another writer took 1
      // and 2; items 1 and 2 were out of sync, and item 3 (ii 3 = head + 1) committed before them.
      const token = await anonymousToken(srv);
      const call = (method: string, path: string, body?: unknown) =>
        fetch(`${srv.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const { id } = (await (await call('POST', '/v1/scopes', { state: { list: [] } })).json()) as { id: string };
      for (const v of ['x1', 'x2'])
        expect((await call('POST', `/v1/scopes/${id}/patches`, { patch: [{ op: 'add', path: '/list/-', value: v }] })).status).toBe(200);
      const items = (k: number, from: number) =>
        Array.from({ length: k }, (_, i) => ({ scope: id, ii: from + i, patch: [{ op: 'add', path: '/list/-', value: `b${i}` }] }));
      const { id: elsewhere } = (await (await call('POST', '/v1/scopes', { state: { list: [] } })).json()) as { id: string };
      const res = await call('POST', '/v1/batch', {
        patches: [...items(3, 1), { scope: elsewhere, ii: 1, patch: [{ op: 'add', path: '/list/-', value: 'e' }] }],
      });
      expect(res.status).toBe(200);
      type Results = { results: Array<{ ii?: number; error?: { code: string } }> };
      const { results } = (await res.json()) as Results;
      // The sequence stops at its first refusal; another scope's item in the same batch is not affected.
      expect(results.map((r) => r.error?.code ?? r.ii)).toEqual(['out_of_sync', 'out_of_sync', 'out_of_sync', 1]);
      expect(await serverState(srv, token, id)).toEqual(expect.objectContaining({ ii: 2, state: { list: ['x1', 'x2'] } }));
      // Resent as the client does after catching up: all of them, in order.
      const again = (await (await call('POST', '/v1/batch', { patches: items(3, 3) })).json()) as Results;
      expect(again.results.map((r) => r.error?.code ?? r.ii)).toEqual([3, 4, 5]);
      expect(await serverState(srv, token, id)).toEqual(expect.objectContaining({ ii: 5, state: { list: ['x1', 'x2', 'b0', 'b1', 'b2'] } }));
    });

    it('resends after a lost answer with the same (session, si): the server acknowledges it once, applied once', async () => {
      const token = await anonymousToken(srv);
      let lose = 0;
      const lossy: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (init?.method === 'POST' && !String(input).endsWith('/v1/scopes') && lose > 0) {
          lose--;
          await res.body?.cancel();
          throw new TypeError('fetch failed'); // committed, but the answer never arrives
        }
        return res;
      };
      const client = createClient({ url: srv.url, token, fetch: lossy, compose: false }); // a log entry per call
      const s = await client.create({ state: { n: [] } });
      lose = 1;
      const one = await s.patch([{ op: 'add', path: '/n/-', value: 1 }]);
      expect(one).toEqual({ id: s.id, ii: 1, duplicate: true });
      lose = 1;
      const batch = await Promise.all([2, 3, 4].map((v) => s.patch([{ op: 'add', path: '/n/-', value: v }])));
      expect(batch).toEqual([2, 3, 4].map((ii) => ({ id: s.id, ii, duplicate: true })));
      await s.synced();
      expect(s.state).toEqual({ n: [1, 2, 3, 4] });
      expect(await serverState(srv, token, s.id)).toMatchObject({ ii: 4, state: { n: [1, 2, 3, 4] } });
      expect((await history(srv, token, s.id)).map((r) => r.ii)).toEqual([1, 2, 3, 4]);
      client.close();
    });

    it('turns a draft’s mutations into one RFC 6902 patch, and opens a named scope (created once)', async () => {
      const token = await anonymousToken(srv);
      const client = createClient({ url: srv.url, token });
      const statuses: string[] = [];
      client.on('status', (e) => statuses.push(e.status));
      const s = await client.named('todo', { state: { items: ['milk'], done: { milk: false }, note: 'x' } });
      expect(s.state).toEqual({ items: ['milk'], done: { milk: false }, note: 'x' });
      const ack = await s.draft<{ items: string[]; done: Record<string, boolean>; note?: string }>((d) => {
        d.items.push('eggs');
        d.done.milk = true;
        d.done.eggs = false;
        delete d.note;
      });
      expect(ack).toMatchObject({ ii: 1 });
      expect(await s.draft(() => {})).toBeNull(); // nothing changed, nothing sent
      const log = await history(srv, token, s.id);
      expect(log).toHaveLength(1);
      expect(log[0]?.patch.some((op) => op.path === '')).toBe(false); // member ops, not a replaced root
      expect(applyPatch({ items: ['milk'], done: { milk: false }, note: 'x' }, log[0]?.patch as Patch)).toEqual({
        items: ['milk', 'eggs'],
        done: { milk: true, eggs: false },
      });
      // A draft that returns a new root, and one of another kind, replace it.
      await s.draft(() => ['a']);
      expect((await serverState(srv, token, s.id)).state).toEqual(['a']);
      // The same name resolves to the same scope, at head.
      const again = createClient({ url: srv.url, token });
      const same = await again.named('todo', { state: { other: true } });
      expect(same.id).toBe(s.id);
      expect(same.state).toEqual(['a']);
      await until(() => statuses.includes('online'), 'an online status');
      client.close();
      again.close();
    });

    it('rebases a stale patch onto another writer’s, and drops (conflict) one that no longer applies', async () => {
      const token = await anonymousToken(srv);
      // A client whose stream is held back: it cannot learn of the other writer before it patches.
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => (release = r));
      const held: typeof fetch = async (input, init) => {
        if (/\/events(\?|$)/.test(String(input))) await gate;
        return fetch(input, init);
      };
      const a = createClient({ url: srv.url, token, fetch: held });
      const sa = await a.create({ state: { x: 1, items: [] } });
      const other = createClient({ url: srv.url, token });
      const so = other.scope(sa.id);
      await so.ready;
      await so.patch([{ op: 'add', path: '/items/-', value: 'theirs' }]);
      await so.patch([{ op: 'remove', path: '/x' }]);

      const conflicts: ConflictEvent[] = [];
      sa.on('conflict', (e) => conflicts.push(e));
      const seen: Json[] = [];
      sa.watch((s) => seen.push(s));
      // Applies locally on the stale state (x still exists there), so both are accepted at once.
      const rebased = sa.patch([{ op: 'add', path: '/items/-', value: 'mine' }]);
      const doomed = sa.patch([{ op: 'replace', path: '/x', value: 2 }]);
      expect(sa.state).toEqual({ x: 2, items: ['mine'] });
      await expect(rebased).resolves.toMatchObject({ ii: 3 });
      const err = await doomed.catch((e) => e);
      expect(err).toBeInstanceOf(PatchbayClientError);
      expect(err.code).toBe('patch_failed');
      expect(conflicts.map((c) => c.patch)).toEqual([[{ op: 'replace', path: '/x', value: 2 }]]);
      await sa.synced();
      expect(sa.state).toEqual({ items: ['theirs', 'mine'] });
      expect(sa.ii).toBe(3);
      expect(await serverState(srv, token, sa.id)).toMatchObject({ ii: 3, state: { items: ['theirs', 'mine'] } });
      // Watchers saw every step as a whole state, ending at the server's.
      expect(seen.at(-1)).toEqual({ items: ['theirs', 'mine'] });
      release();
      a.close();
      other.close();
    });

    it('resumes a dropped stream from its last index without losing a patch', async () => {
      const token = await anonymousToken(srv);
      let opens = 0;
      const counting: typeof fetch = (input, init) => {
        if (/\/events(\?|$)/.test(String(input))) opens++;
        return fetch(input, init);
      };
      const watcher = createClient({ url: srv.url, token, fetch: counting });
      const writer = createClient({ url: srv.url, token });
      const sw = await writer.create({ state: { n: [] } });
      const sr = watcher.scope(sw.id);
      await sr.ready;
      // The server ends every stream after 1 s (sseMaxMs); write across several of them.
      for (let i = 0; i < 12; i++) {
        await sw.patch([{ op: 'add', path: '/n/-', value: i }]);
        await new Promise((r) => setTimeout(r, 250));
      }
      await until(() => sr.ii === 12, 'the watcher at head');
      expect(opens).toBeGreaterThanOrEqual(2); // it did reconnect
      expect(sr.state).toEqual({ n: Array.from({ length: 12 }, (_, i) => i) });
      watcher.close();
      writer.close();
    });

    it('asks the token provider again after a 401', async () => {
      const good = await anonymousToken(srv);
      const tokens = ['not-a-token', good];
      let asked = 0;
      const client = createClient({
        url: srv.url,
        token: async () => tokens[Math.min(asked++, tokens.length - 1)] as string,
      });
      const s = await client.create({ state: { a: 1 } });
      expect(asked).toBe(2);
      await s.patch([{ op: 'replace', path: '/a', value: 2 }]);
      expect(asked).toBe(2); // the refreshed token is kept
      expect((await serverState(srv, good, s.id)).state).toEqual({ a: 2 });
      client.close();
    });

    it('signs in anonymously without a token, and reports errors typed with the server’s code', async () => {
      const ownerToken = await anonymousToken(srv);
      const client = createClient({ url: srv.url, token: ownerToken });
      const s = await client.create({ state: { a: [1] } });

      // A patch that does not apply locally is refused at once, and nothing changes.
      const local = await s.patch([{ op: 'remove', path: '/nope' }]).catch((e) => e);
      expect(local).toBeInstanceOf(PatchbayClientError);
      expect(local).toMatchObject({ code: 'patch_failed', status: 422, details: { op: 0 } });
      expect(s.state).toEqual({ a: [1] });

      // The server's refusals keep its code, status and details.
      const exists = await client.create({ id: s.id, state: {} }).catch((e) => e);
      expect(exists).toMatchObject({ name: 'PatchbayClientError', code: 'scope_exists', status: 409 });
      const missing = client.scope('no-such-scope');
      // Made before the scope is ready and never awaited: rejected with the scope, never an
      // unhandled rejection (vitest fails the run on one), as undo(), redo() and draft() alike.
      void missing.patch([{ op: 'add', path: '/x', value: 1 }]);
      void missing.draft((d: { x?: number }) => {
        d.x = 2;
      });
      void missing.undo();
      const notFound = await missing.ready.catch((e) => e);
      expect(notFound).toMatchObject({ code: 'scope_not_found', status: 404 });
      await new Promise((r) => setTimeout(r, 50)); // time for an unhandled rejection to be reported

      // A client without a token signs in as a new anonymous user, who may read but not patch.
      await shareWithEveryone(srv, ownerToken, s.id);
      const stranger = createClient({ url: srv.url });
      const me = await stranger.request<{ id: string; anonymous: boolean }>('GET', '/v1/me');
      expect(me.anonymous).toBe(true);
      const ss = stranger.scope(s.id);
      await ss.ready;
      const errors: PatchbayClientError[] = [];
      ss.on('error', (e) => errors.push(e));
      const refused = await ss.patch([{ op: 'add', path: '/a/-', value: 2 }]).catch((e) => e);
      expect(refused).toMatchObject({ code: 'forbidden', status: 403 });
      expect(ss.state).toEqual({ a: [1] }); // undone locally
      expect(errors.map((e) => e.code)).toEqual(['forbidden']);
      expect((await serverState(srv, ownerToken, s.id)).state).toEqual({ a: [1] });
      client.close();
      stranger.close();
    });
  });
}
