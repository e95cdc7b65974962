/**
 * The client's `compose` option (client/src/scope.ts) against a real server on both stacks
 * (test/client.test.ts embedded, test/google.emulator.test.ts on the emulators). What it must
 * guarantee: the patches waiting to be sent go as one patch (one index, one ack shared by each of
 * them, one log entry holding their operations in order, successive edits of one path folded into
 * one operation); the state is the same as without it; a
 * composed patch the server refuses without committing (`patch_failed` after another writer got
 * there first, `too_large` over the server's limits) is split back, so only the patch that no
 * longer applies is reported as a conflict and the others are committed; a composed patch whose
 * answer was lost is stored and resent after a restart as the same patch under the same si.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileStorage } from '../../client/src/file-storage.js';
import { type Ack, type ConflictEvent, createClient, openClient, type Patch, PatchbayClientError } from '../../client/src/index.js';
import { type TestServer, tempDir } from '../helpers/server.js';
import { anonymousToken, history, serverState, until } from './client.js';
import { switchable } from './client-offline.js';
import type { StartServer } from './http.js';

export function clientComposeContract(stack: string, start: StartServer): void {
  describe(`the client's compose option (${stack})`, () => {
    let srv: TestServer;
    let small: TestServer;
    beforeAll(async () => {
      srv = await start({ sseMaxMs: 2000, sseRetryMs: 0 });
      small = await start({ maxOps: 10, sseMaxMs: 2000, sseRetryMs: 0 });
    });
    const dirs: string[] = [];
    afterAll(async () => {
      await srv?.close();
      await small?.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });

    it('sends the patches waiting to be sent as one patch: one index and ack for all, their operations in order in one log entry', async () => {
      const token = await anonymousToken(srv);
      const c = createClient({ url: srv.url, token, compose: true });
      const s = await c.create({ state: { list: [] } });
      const first = Array.from({ length: 40 }, (_, i) => s.patch([{ op: 'add', path: '/list/-', value: i }]));
      await Promise.resolve();
      // made while the first request is in flight: composed into the next one
      const second = Array.from({ length: 5 }, (_, i) => s.patch([{ op: 'add', path: '/list/-', value: 40 + i }]));
      const acks = await Promise.all([...first, ...second]);
      await s.synced();
      expect(new Set(acks.slice(0, 40).map((a) => a.ii))).toEqual(new Set([1]));
      expect(new Set(acks.slice(40).map((a) => a.ii))).toEqual(new Set([2]));
      const log = await history(srv, token, s.id);
      expect(log.map((e) => e.ii)).toEqual([1, 2]);
      expect(log[0]?.patch).toEqual(Array.from({ length: 40 }, (_, i) => ({ op: 'add', path: '/list/-', value: i })));
      expect(log[1]?.patch).toEqual(Array.from({ length: 5 }, (_, i) => ({ op: 'add', path: '/list/-', value: 40 + i })));
      const head = await serverState(srv, token, s.id);
      expect(head).toMatchObject({ ii: 2, state: { list: Array.from({ length: 45 }, (_, i) => i) } });
      expect(s.state).toEqual(head.state);
      // undo still takes back one patch() call, not the composed whole
      await s.undo();
      expect((s.state as { list: number[] }).list).toHaveLength(44);
      await s.synced();
      expect((await serverState(srv, token, s.id)).state).toEqual(s.state);
      c.close();
    });

    it('folds successive edits of one path into one operation (a slider’s values): the last value is sent and committed, every ack at its index', async () => {
      const token = await anonymousToken(srv);
      const c = createClient({ url: srv.url, token, compose: true });
      const s = await c.create({ state: { n: 0, list: [] } });
      const acks = await Promise.all([
        ...Array.from({ length: 30 }, (_, i) => s.patch([{ op: 'replace', path: '/n', value: i + 1 }])),
        s.patch([{ op: 'add', path: '/list/-', value: 'x' }]),
        s.patch([{ op: 'replace', path: '/n', value: 100 }]),
      ]);
      await s.synced();
      expect(new Set(acks.map((a) => a.ii))).toEqual(new Set([1]));
      const log = await history(srv, token, s.id);
      expect(log.map((e) => e.patch)).toEqual([
        [
          { op: 'replace', path: '/n', value: 30 },
          { op: 'add', path: '/list/-', value: 'x' },
          { op: 'replace', path: '/n', value: 100 },
        ],
      ]);
      expect(await serverState(srv, token, s.id)).toMatchObject({ ii: 1, state: { n: 100, list: ['x'] } });
      expect(s.state).toEqual({ n: 100, list: ['x'] });
      c.close();
    });

    it('counts the caps on the folded operations: a burst of edits of one path is one operation however long, until the folded value outgrows maxBytes', async () => {
      const token = await anonymousToken(srv);
      const c = createClient({ url: srv.url, token, compose: { maxOps: 2, maxBytes: 300 } });
      const s = await c.create({ state: { s: '' } });
      // 100 replaces, about 5,000 bytes as sent one by one; folded, one operation of about 140 bytes.
      const small = Array.from({ length: 100 }, (_, i) => s.patch([{ op: 'replace', path: '/s', value: 'x'.repeat(i + 1) }]));
      // Folded onto the run this one would pass 300 bytes: the run closes and it starts the next.
      const big = s.patch([{ op: 'replace', path: '/s', value: 'y'.repeat(400) }]);
      const acks = await Promise.all([...small, big]);
      await s.synced();
      expect(acks.map((a) => a.ii)).toEqual([...Array.from({ length: 100 }, () => 1), 2]);
      const log = await history(srv, token, s.id);
      expect(log.map((e) => e.patch)).toEqual([
        [{ op: 'replace', path: '/s', value: 'x'.repeat(100) }],
        [{ op: 'replace', path: '/s', value: 'y'.repeat(400) }],
      ]);
      expect(s.state).toEqual({ s: 'y'.repeat(400) });
      c.close();
    });

    it('a composed patch refused as patch_failed (another writer got there first) is split: only the part that no longer applies is a conflict', async () => {
      const token = await anonymousToken(srv);
      const other = createClient({ url: srv.url, token });
      const base = await other.create({ state: { a: 0, x: { y: 1 }, b: [] } });
      // The composing client's first write waits until the other writer's patch is committed.
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let held = false;
      const gated: typeof fetch = async (input, init) => {
        if (init?.method === 'POST' && !held && /\/(batch|patches)$/.test(new URL(String(input)).pathname)) {
          held = true;
          await gate;
        }
        return fetch(input, init);
      };
      const c = createClient({ url: srv.url, token, fetch: gated, compose: true });
      const s = c.scope(base.id);
      await s.ready;
      const conflicts: ConflictEvent[] = [];
      s.on('conflict', (e) => conflicts.push(e));
      const parts: Patch[] = [
        [{ op: 'replace', path: '/a', value: 1 }],
        [{ op: 'replace', path: '/x/y', value: 2 }],
        [{ op: 'add', path: '/b/-', value: 'kept' }],
      ];
      const acks = parts.map((p) => s.patch(p));
      await until(() => held, 'the composed write to be held');
      await base.patch([{ op: 'remove', path: '/x' }]);
      await base.synced();
      release();
      const settled = await Promise.allSettled(acks);
      await s.synced();
      expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      const refused = (settled[1] as PromiseRejectedResult).reason;
      expect(refused).toBeInstanceOf(PatchbayClientError);
      expect(refused.code).toBe('patch_failed');
      expect(conflicts.map((e) => e.patch)).toEqual([parts[1]]);
      const [a0, , a2] = settled.map((r) => (r.status === 'fulfilled' ? (r.value as Ack).ii : 0));
      // split back, each part was judged alone: the conflicting one dropped, the others sent one by one
      expect(a0).toBe(2);
      expect(a2).toBe(3);
      const log = await history(srv, token, base.id);
      expect(log.map((e) => e.patch)).toEqual([[{ op: 'remove', path: '/x' }], parts[0], parts[2]]);
      const head = await serverState(srv, token, base.id);
      expect(head.state).toEqual({ a: 1, b: ['kept'] });
      await until(() => s.ii === 3, 'the client at head');
      expect(s.state).toEqual(head.state);
      c.close();
      other.close();
    });

    it('with ordering head, a refused composed patch is split while a later one of the same request commits: that one is never sent again', async () => {
      const token = await anonymousToken(srv);
      const other = createClient({ url: srv.url, token });
      const base = await other.create({ state: { x: { y: 1 }, a: 0, b: [] } });
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let held = false;
      // Events are held back once the scope is ready, so nothing but answers and history tells the
      // client what was committed (else K's event could fold K before the parts are sent again).
      let frozen = false;
      const gated: typeof fetch = async (input, init) => {
        const path = new URL(String(input)).pathname;
        if (init?.method === 'POST' && !held && path === '/v1/batch') {
          held = true;
          await gate;
        }
        const res = await fetch(input, init);
        if (!path.endsWith('/events') || !res.body) return res;
        const reader = res.body.getReader();
        const body = new ReadableStream<Uint8Array>({
          async pull(ctrl) {
            const { done, value } = await reader.read();
            while (frozen) await new Promise((r) => setTimeout(r, 20));
            if (done) ctrl.close();
            else ctrl.enqueue(value);
          },
          cancel: (reason) => reader.cancel(reason),
        });
        return new Response(body, { status: res.status, headers: res.headers });
      };
      // Caps of two operations: the four patches become two composed ones, J then K, in one request.
      const c = createClient({ url: srv.url, token, fetch: gated, compose: { maxOps: 2 }, ordering: 'head' });
      const s = c.scope(base.id);
      await s.ready;
      frozen = true;
      const conflicts: ConflictEvent[] = [];
      s.on('conflict', (e) => conflicts.push(e));
      const j1: Patch = [{ op: 'replace', path: '/x/y', value: 2 }];
      const j2: Patch = [{ op: 'replace', path: '/a', value: 1 }];
      const k1: Patch = [{ op: 'add', path: '/b/-', value: 'k1' }];
      const k2: Patch = [{ op: 'add', path: '/b/-', value: 'k2' }];
      const acks = [j1, j2, k1, k2].map((p) => s.patch(p));
      await until(() => held, 'the request to be held');
      await base.patch([{ op: 'remove', path: '/x' }]);
      await base.synced();
      release();
      const settled = await Promise.allSettled(acks);
      await s.synced();
      expect(settled.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
      expect(conflicts.map((e) => e.patch)).toEqual([j1]);
      const log = await history(srv, token, base.id);
      // J refused whole, K committed at 2; J's parts judged alone: j1 a conflict, j2 committed at 3.
      expect(log.map((e) => e.patch)).toEqual([[{ op: 'remove', path: '/x' }], [...k1, ...k2], j2]);
      const head = await serverState(srv, token, base.id);
      expect(head.state).toEqual({ a: 1, b: ['k1', 'k2'] });
      await until(() => s.ii === 3, 'the client at head');
      expect(s.state).toEqual(head.state);
      frozen = false;
      c.close();
      other.close();
    });

    it('a composed patch over the server’s operation limit is split (its parts sent alone) and later ones are composed smaller, until they fit', async () => {
      const token = await anonymousToken(small);
      const c = createClient({ url: small.url, token, compose: true });
      const s = await c.create({ state: { list: [] } });
      const errors: unknown[] = [];
      c.on('error', (e) => errors.push(e));
      const add = (i: number) => ({ op: 'add' as const, path: '/list/-', value: i });
      const results: Ack[] = [];
      // Three bursts of 30 one-op patches against PATCHBAY_MAX_OPS=10: 30 ops refused (caps 500 -> 15),
      // then 15 refused (caps -> 7), then composed patches of 7 that fit.
      for (let burst = 0; burst < 3; burst++) {
        results.push(...(await Promise.all(Array.from({ length: 30 }, (_, i) => s.patch([add(burst * 30 + i)])))));
        await s.synced();
      }
      const log = await history(small, token, s.id);
      for (const e of log) expect(e.patch.length).toBeLessThanOrEqual(10);
      expect(log.flatMap((e) => e.patch)).toEqual(Array.from({ length: 90 }, (_, i) => add(i)));
      expect(log.filter((e) => e.patch.length === 7).length).toBe(4); // the third burst: 7+7+7+7+2
      // each patch's ack names the entry that holds it
      let at = 0;
      for (const e of log) for (const _ of e.patch) expect(results[at++]?.ii).toBe(e.ii);
      expect((await serverState(small, token, s.id)).state).toEqual({ list: Array.from({ length: 90 }, (_, i) => i) });
      expect(errors).toEqual([]);
      c.close();
    });

    it('a composed patch whose answer was lost is resent after a restart as the same patch and si: committed once', async () => {
      const token = await anonymousToken(srv);
      const dir = tempDir('patchbay-compose-store-');
      dirs.push(dir);
      const storage = fileStorage(dir);
      const add = (v: string): Patch => [{ op: 'add', path: '/log/-', value: v }];
      const net = switchable();
      const before = await openClient({ url: srv.url, token, storage, fetch: net.fetch, compose: true });
      const s = await before.create({ state: { log: [] } });
      expect((await s.patch(add('a'))).ii).toBe(1);
      net.set('lose-answers'); // the server commits b+c as one patch; its answer never arrives
      void s.patch(add('b'));
      void s.patch(add('c'));
      await until(() => net.writes > 0, 'the composed write to be sent');
      const deadline = Date.now() + 15_000;
      while ((await serverState(srv, token, s.id)).ii < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      net.set('offline');
      void s.patch(add('d'));
      await new Promise((r) => setTimeout(r, 100)); // let the store write it
      // The process "dies": a new client opens the same storage.
      const net2 = switchable();
      const after = await openClient({ url: srv.url, token, storage, fetch: net2.fetch, compose: true });
      const again = after.scope(s.id);
      await after.synced();
      expect((await history(srv, token, s.id)).map((r) => r.patch)).toEqual([add('a'), [...add('b'), ...add('c')], add('d')]);
      expect(net2.duplicates).toBe(1); // b+c recognised as a retry, not applied again
      await until(() => again.ii === 3, 'the restarted client at head');
      expect(again.state).toEqual({ log: ['a', 'b', 'c', 'd'] });
      before.close();
      after.close();
    });
  });
}
