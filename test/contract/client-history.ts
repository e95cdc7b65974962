/**
 * The client's history and undo (client/src/history.ts, `scope.history`, `scope.stateAt`,
 * `scope.undo`/`redo`) against a real server, on both stacks (test/client.test.ts embedded,
 * test/google.emulator.test.ts on the emulators). What it must guarantee: history and stateAt
 * answer what the server committed; an undo is a new patch, ordered and checked like any other,
 * that brings back exactly the state before the undone patch when nobody changed the same places;
 * redo does it again; an undo after someone else changed the same place fails as a conflict
 * (`patch_failed`) and changes nothing, and changes elsewhere do not stop it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type PatchbayClient, type PatchbayClientError } from '../../client/src/index.js';
import type { TestServer } from '../helpers/server.js';
import { anonymousToken, history, serverState, until } from './client.js';
import type { StartServer } from './http.js';

export function clientHistoryContract(stack: string, start: StartServer): void {
  describe(`the client's history and undo (${stack})`, () => {
    let srv: TestServer;
    const clients: PatchbayClient[] = [];
    beforeAll(async () => {
      srv = await start({ sseRetryMs: 0 });
    });
    afterAll(async () => {
      for (const c of clients) c.close();
      await srv.close();
    });
    const client = (token: string, f?: typeof fetch) => {
      const c = createClient({ url: srv.url, token, fetch: f });
      clients.push(c);
      return c;
    };

    it('history and stateAt answer what the server committed', async () => {
      const token = await anonymousToken(srv);
      const s = await client(token).create({ state: { n: 0 } });
      for (let i = 1; i <= 4; i++) await s.patch([{ op: 'replace', path: '/n', value: i }]);
      const all = await s.history();
      expect(all.map((e) => e.ii)).toEqual([1, 2, 3, 4]);
      expect(all.map((e) => e.patch)).toEqual((await history(srv, token, s.id)).map((e) => e.patch));
      expect((await s.history({ from: 2, to: 3 })).map((e) => e.ii)).toEqual([2, 3]);
      for (let i = 0; i <= 4; i++) expect(await s.stateAt(i)).toEqual({ n: i });
      await expect(s.stateAt(9)).rejects.toMatchObject({ code: 'invalid_request', details: { head: 4 } });
    });

    it('undo sends the inverse as a new patch and restores the state before; redo does it again', async () => {
      const token = await anonymousToken(srv);
      const s = await client(token).create({ state: { title: 'a', items: ['x'], meta: { k: 1 } } });
      await s.patch([
        { op: 'replace', path: '/title', value: 'b' },
        { op: 'add', path: '/items/-', value: 'y' },
        { op: 'remove', path: '/meta/k' },
        { op: 'add', path: '/meta/j', value: 2 },
      ]);
      await s.patch([{ op: 'move', from: '/items/0', path: '/items/1' }]);
      expect(s.canUndo).toBe(true);
      const u1 = await s.undo();
      expect(u1?.ii).toBe(3);
      expect(s.state).toEqual({ title: 'b', items: ['x', 'y'], meta: { j: 2 } });
      await s.undo();
      expect(s.state).toEqual({ title: 'a', items: ['x'], meta: { k: 1 } });
      expect(s.canUndo).toBe(false);
      expect(await s.undo()).toBeNull();
      await s.redo();
      expect(s.state).toEqual({ title: 'b', items: ['x', 'y'], meta: { j: 2 } });
      await s.synced();
      const head = await serverState(srv, token, s.id);
      expect(head).toMatchObject({ ii: 5, state: s.state });
      expect(await s.stateAt(1)).toEqual(await s.stateAt(3)); // the undo restored exactly the state before
      // A new patch forgets what could be redone.
      await s.undo();
      expect(s.canRedo).toBe(true);
      await s.patch([{ op: 'replace', path: '/title', value: 'c' }]);
      expect(s.canRedo).toBe(false);
    });

    it("fails as a conflict, changing nothing, when someone else changed the same place since; another place's change does not stop it", async () => {
      const token = await anonymousToken(srv);
      // `first` runs just before a's next write leaves: another writer's patch that a cannot have seen.
      let first: (() => Promise<unknown>) | undefined;
      const a = client(token, async (input, init) => {
        const run = init?.method === 'POST' && /\/(patches|batch)$/.test(String(input)) ? first : undefined;
        first = undefined;
        await run?.();
        return fetch(input, init);
      });
      const b = client(token);
      const sa = await a.create({ state: { title: 'a', other: 0 } });
      const sb = b.scope(sa.id);
      await sb.ready;
      await sa.patch([{ op: 'replace', path: '/title', value: 'mine' }]);
      await sb.patch([{ op: 'replace', path: '/other', value: 1 }]); // elsewhere
      await until(() => sa.ii === 2, 'a sees b');
      await sa.undo();
      expect(sa.state).toEqual({ title: 'a', other: 1 });
      await sa.redo();
      await sa.synced();
      await until(() => sb.ii === 4, 'b sees the redo');
      await sb.patch([{ op: 'replace', path: '/title', value: 'theirs' }]); // the same place
      await until(() => sa.ii === 5, 'a sees it');
      const before = await serverState(srv, token, sa.id);
      const err = (await sa.undo().catch((e) => e)) as PatchbayClientError;
      expect(err.code).toBe('patch_failed');
      expect(sa.state).toEqual({ title: 'theirs', other: 1 });
      expect(await serverState(srv, token, sa.id)).toEqual(before);

      // The same race when this client has not seen their change yet: the server refuses the undo, a `conflict` event says so.
      await sa.patch([{ op: 'replace', path: '/other', value: 2 }]);
      await until(() => sb.ii === 6, 'b sees it');
      const conflicts: unknown[] = [];
      sa.on('conflict', (e) => conflicts.push(e));
      first = async () => {
        const theirs = await b.request<{ ii: number }>('POST', `/v1/scopes/${sa.id}/patches`, { patch: [{ op: 'replace', path: '/other', value: 9 }] });
        expect(theirs.ii).toBe(7);
      };
      const late = (await sa.undo().catch((e) => e)) as PatchbayClientError;
      expect(late.code).toBe('patch_failed');
      expect(conflicts).toHaveLength(1);
      await sa.synced();
      expect(await serverState(srv, token, sa.id)).toMatchObject({ ii: 7, state: { title: 'theirs', other: 9 } });
      expect(sa.state).toEqual({ title: 'theirs', other: 9 });
    });
  });
}
