/**
 * The client's `ordering: 'head'` option (client/src/scope.ts) against a real server on both
 * stacks (test/client.test.ts embedded, test/google.emulator.test.ts on the emulators). What it
 * must guarantee: patches go without a predicted index and the server places each at its head, so
 * many writers appending to one scope at once are never refused for each other (one request per
 * patch, none resent), and the log still holds every acknowledged patch once at its acked index,
 * each writer's in the order it made them; a patch that does not apply at the head is a conflict
 * (its promise rejects with `patch_failed`, a `conflict` event) and changes nothing; every client
 * ends in the server's state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Ack, type ConflictEvent, createClient, type Patch, PatchbayClientError } from '../../client/src/index.js';
import type { TestServer } from '../helpers/server.js';
import { anonymousToken, history, serverState, until } from './client.js';
import type { StartServer } from './http.js';

export function clientOrderingContract(stack: string, start: StartServer): void {
  describe(`the client's ordering option (${stack})`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await start({ sseMaxMs: 2000, sseRetryMs: 0 });
    });
    afterAll(() => srv?.close());

    it("8 writers appending to one scope at once: one request per patch, none refused, every ack once at its index, each writer's in order", async () => {
      const token = await anonymousToken(srv);
      let writes = 0;
      const counting: typeof fetch = (input, init) => {
        const path = new URL(String(input)).pathname;
        if (init?.method === 'POST' && (path.endsWith('/patches') || path === '/v1/batch')) writes++;
        return fetch(input, init);
      };
      const W = 8;
      const PER = 12;
      const clients = Array.from({ length: W }, () => createClient({ url: srv.url, token, fetch: counting, ordering: 'head' }));
      const first = await (clients[0] as (typeof clients)[0]).create({ state: { list: [] } });
      const scopes = [first, ...clients.slice(1).map((c) => c.scope(first.id))];
      await Promise.all(scopes.map((s) => s.ready));
      writes = 0;
      const made = new Map<number, Patch>();
      const acks = await Promise.all(
        scopes.map(async (s, w) => {
          const mine: Ack[] = [];
          for (let i = 0; i < PER; i++) {
            const patch: Patch = [{ op: 'add', path: '/list/-', value: `w${w}-${i}` }];
            const ack = await s.patch(patch);
            made.set(ack.ii, patch);
            mine.push(ack);
          }
          return mine;
        }),
      );
      expect(writes).toBe(W * PER); // each patch sent once: no one was refused for another's
      const log = await history(srv, token, first.id);
      expect(log.map((e) => e.ii)).toEqual(Array.from({ length: W * PER }, (_, i) => i + 1));
      for (const e of log) expect(e.patch).toEqual(made.get(e.ii));
      const head = await serverState(srv, token, first.id);
      const list = (head.state as { list: string[] }).list;
      for (let w = 0; w < W; w++) {
        expect(list.filter((x) => x.startsWith(`w${w}-`))).toEqual(Array.from({ length: PER }, (_, i) => `w${w}-${i}`));
        expect((acks[w] as Ack[]).map((a) => a.ii)).toEqual([...(acks[w] as Ack[]).map((a) => a.ii)].sort((a, b) => a - b));
      }
      await until(() => scopes.every((s) => s.ii === W * PER), 'every client at head');
      for (const s of scopes) expect(s.state).toEqual(head.state);
      for (const c of clients) c.close();
    });

    it('a patch that does not apply at the head is a conflict and changes nothing; the writer converges', async () => {
      const token = await anonymousToken(srv);
      const other = createClient({ url: srv.url, token });
      const base = await other.create({ state: { x: { y: 1 }, n: 0 } });
      // The head-ordered writer's request waits until the other writer removed /x.
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let held = false;
      const gated: typeof fetch = async (input, init) => {
        if (init?.method === 'POST' && !held && new URL(String(input)).pathname.endsWith('/patches')) {
          held = true;
          await gate;
        }
        return fetch(input, init);
      };
      const c = createClient({ url: srv.url, token, fetch: gated, ordering: 'head' });
      const s = c.scope(base.id);
      await s.ready;
      const conflicts: ConflictEvent[] = [];
      s.on('conflict', (e) => conflicts.push(e));
      const stale = s.patch([{ op: 'replace', path: '/x/y', value: 2 }]);
      await until(() => held, 'the write to be held');
      await base.patch([{ op: 'remove', path: '/x' }]);
      await base.synced();
      const before = await serverState(srv, token, base.id);
      release();
      const refused = await stale.then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(PatchbayClientError);
      expect((refused as PatchbayClientError).code).toBe('patch_failed');
      expect(conflicts.map((e) => e.patch)).toEqual([[{ op: 'replace', path: '/x/y', value: 2 }]]);
      expect(await serverState(srv, token, base.id)).toEqual(before);
      expect((await history(srv, token, base.id)).length).toBe(1);
      // a later patch that applies at the head is committed after it
      expect((await s.patch([{ op: 'replace', path: '/n', value: 1 }])).ii).toBe(2);
      await s.synced();
      await until(() => s.ii === 2, 'the writer at head');
      expect(s.state).toEqual({ n: 1 });
      c.close();
      other.close();
    });

    it('refuses an unknown ordering when the client is made', () => {
      expect(() => createClient({ url: srv.url, ordering: 'server' as never })).toThrow(PatchbayClientError);
    });
  });
}
