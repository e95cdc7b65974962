/**
 * The client's offline queue (client/src/offline.ts, client/src/storage.ts) against a real server,
 * run on both stacks (test/client.test.ts embedded, test/google.emulator.test.ts on the emulators).
 * What it must guarantee: writes made offline are applied locally at once and go out once on
 * reconnect; with a storage adapter, pending patches survive a restart (a new client object on the
 * same storage) and are resent with their original (session, si), so one the server had committed
 * before the restart (its answer lost) is acknowledged as a duplicate and applied once; a patch
 * made after the restart is never mistaken for an old one; a stored scope is ready without the network.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileStorage } from '../../client/src/file-storage.js';
import {
  type Ack,
  type ClientStorage,
  createClient,
  type LiveScope,
  memoryStorage,
  openClient,
  type Patch,
  type PatchbayClient,
} from '../../client/src/index.js';
import { type TestServer, tempDir } from '../helpers/server.js';
import { anonymousToken, history, serverState, until } from './client.js';
import type { StartServer } from './http.js';

type Mode = 'online' | 'offline' | 'lose-answers';

/** A fetch with a switch: offline fails every request and cuts the streams; lose-answers lets writes commit and loses their answers. */
export function switchable(): { fetch: typeof fetch; set(mode: Mode): void; duplicates: number; writes: number } {
  let mode: Mode = 'online';
  const streams = new Set<AbortController>();
  const sw = {
    duplicates: 0,
    /** Writes whose answer was lost (the server committed them). */
    writes: 0,
    set(m: Mode) {
      mode = m;
      if (m === 'offline') for (const a of streams) a.abort();
    },
    fetch: (async (input, init) => {
      if (mode === 'offline') throw new TypeError('fetch failed (offline)');
      const url = String(input);
      if (new URL(url).pathname.endsWith('/events')) {
        // a scope's stream, or the shared one (/v1/events?scopes=)
        const ac = new AbortController();
        streams.add(ac);
        return fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, ac.signal]) : ac.signal });
      }
      // The mode when the request left decides: an answer to a write sent while answers were being
      // lost is lost too when it arrives after a switch (the process it would reach is gone).
      const sentIn = mode;
      const res = await fetch(input, init);
      const write = init?.method === 'POST' && (url.endsWith('/patches') || url.endsWith('/v1/batch'));
      if (write && (sentIn === 'lose-answers' || mode !== 'online')) {
        sw.writes++;
        await res.body?.cancel();
        throw new TypeError('fetch failed (answer lost)');
      }
      if (write && res.ok) {
        const body = await res.clone().text();
        sw.duplicates += (body.match(/"duplicate":true/g) ?? []).length;
      }
      return res;
    }) as typeof fetch,
  };
  return sw;
}

const add = (value: unknown): Patch => [{ op: 'add', path: '/log/-', value: value as never }];

export function clientOfflineContract(stack: string, start: StartServer): void {
  describe(`the client's offline queue (${stack})`, () => {
    let srv: TestServer;
    const clients: PatchbayClient[] = [];
    beforeAll(async () => {
      srv = await start({ sseMaxMs: 2000, sseRetryMs: 0 });
    });
    afterAll(async () => {
      for (const c of clients) c.close();
      // Only this suite's own directories: the stack's (its signing key...) outlive it.
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      await srv.close();
    });
    const dirs: string[] = [];
    const dir = () => {
      const d = tempDir('patchbay-client-store-');
      dirs.push(d);
      return d;
    };

    it('writes made offline are applied locally at once, and go out once when the network is back', async () => {
      const token = await anonymousToken(srv);
      const net = switchable();
      const client = createClient({ url: srv.url, token, fetch: net.fetch, compose: false }); // a log entry per call
      clients.push(client);
      const s = await client.create({ state: { log: [] } });
      await s.ready;
      net.set('offline');
      const acks = [1, 2, 3].map((v) => s.patch(add(v)));
      expect(s.state).toEqual({ log: [1, 2, 3] });
      await new Promise((r) => setTimeout(r, 400));
      expect((await serverState(srv, token, s.id)).ii).toBe(0); // nothing reached the server
      net.set('online');
      expect((await Promise.all(acks)).map((a) => a.ii)).toEqual([1, 2, 3]);
      await s.synced();
      expect((await history(srv, token, s.id)).map((r) => r.patch)).toEqual([add(1), add(2), add(3)]);
      expect(s.state).toEqual((await serverState(srv, token, s.id)).state);
    });

    it('a restart on the same file storage resends what was pending with its (session, si): nothing lost, nothing doubled', async () => {
      const token = await anonymousToken(srv);
      const storage = fileStorage(dir());
      const net = switchable();
      const before = await openClient({ url: srv.url, token, storage, fetch: net.fetch, compose: false }); // a log entry per call
      clients.push(before);
      const s = await before.create({ state: { log: [] } });
      const first = s.patch(add('a'));
      expect((await first).ii).toBe(1);
      // Two patches the server commits but whose answers are lost, then one made offline.
      net.set('lose-answers');
      void s.patch(add('b'));
      void s.patch(add('c'));
      const deadline = Date.now() + 15_000;
      while ((await serverState(srv, token, s.id)).ii < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect((await serverState(srv, token, s.id)).ii).toBe(3);
      net.set('offline');
      void s.patch(add('d'));
      await new Promise((r) => setTimeout(r, 100)); // let the store write it
      // The process "dies" here: the old client object is abandoned offline; a new one opens the same storage.
      const net2 = switchable();
      const after = await openClient({ url: srv.url, token, storage, fetch: net2.fetch });
      clients.push(after);
      expect(after.session).toBe(before.session);
      const again = after.scope(s.id);
      // Its stored state at once, before the network answered: the confirmed state with the pending
      // patches on top (b and c counted twice until the server says it had them: their events
      // reached the old client, their answers did not, and an event does not say whose patch it is).
      expect((again.state as { log: string[] }).log.slice(-1)).toEqual(['d']);
      await after.synced();
      const log = await history(srv, token, s.id);
      expect(log.map((r) => r.patch)).toEqual([add('a'), add('b'), add('c'), add('d')]);
      expect(net2.duplicates).toBeGreaterThanOrEqual(2); // b and c were recognised as retries, not applied again
      await until(() => again.ii === 4, 'the restarted client at head');
      expect(again.state).toEqual((await serverState(srv, token, s.id)).state);

      // A patch made after the restart gets an si past the stored ones: the same content is a new patch.
      const fresh: Ack = await again.patch(add('a'));
      expect(fresh).toEqual(expect.objectContaining({ ii: 5 }));
      expect(fresh.duplicate).toBeUndefined();
      expect((await history(srv, token, s.id)).map((r) => r.patch)).toEqual([add('a'), add('b'), add('c'), add('d'), add('a')]);
    });

    it('a stored scope is ready and writable without the network, and its writes go out on reconnect', async () => {
      const token = await anonymousToken(srv);
      const storage = fileStorage(dir());
      const first = await openClient({ url: srv.url, token, storage });
      clients.push(first);
      const s = await first.create({ state: { log: [] } });
      await s.patch(add(1));
      await s.synced();
      first.close();
      const net = switchable();
      net.set('offline');
      const offline = await openClient({ url: srv.url, token, storage, fetch: net.fetch });
      clients.push(offline);
      const again: LiveScope = offline.scope(s.id);
      expect(await again.ready).toEqual({ log: [1] });
      const ack = again.patch(add(2));
      expect(again.state).toEqual({ log: [1, 2] });
      net.set('online');
      expect((await ack).ii).toBe(2);
      await offline.synced();
      expect((await serverState(srv, token, s.id)).state).toEqual({ log: [1, 2] });
    });

    it("a new patch after a restart takes an si past every stored patch's, even when the client record lagged behind", async () => {
      const token = await anonymousToken(srv);
      const inner = memoryStorage();
      // A crash between the two writes of one pass: the scope record (with the patch and its si) is stored, the client record is not.
      let frozen = false;
      const storage: ClientStorage = { ...inner, set: async (key, value) => (frozen && key.endsWith('client') ? undefined : inner.set(key, value)) };
      const net = switchable();
      const before = await openClient({ url: srv.url, token, storage, fetch: net.fetch, compose: false }); // a log entry per call
      clients.push(before);
      const s = await before.create({ state: { log: [] } });
      await s.patch(add(1));
      frozen = true;
      net.set('lose-answers');
      void s.patch(add(2)); // committed, its answer lost; si 2 stored only in the scope's record
      await until(() => net.writes > 0, 'the write reached the server');
      net.set('offline');
      const after = await openClient({ url: srv.url, token, storage });
      clients.push(after);
      await after.synced();
      const again = after.scope(s.id);
      const fresh = await again.patch(add(3));
      expect(fresh.duplicate).toBeUndefined();
      expect((await history(srv, token, s.id)).map((r) => r.patch)).toEqual([add(1), add(2), add(3)]);
    });

    it('without a token, the anonymous user is stored too: a restart resends as the same user', async () => {
      const storage = memoryStorage();
      const net = switchable();
      const before = await openClient({ url: srv.url, storage, fetch: net.fetch });
      clients.push(before);
      const s = await before.create({ state: { log: [] } }); // private: only its owner may write
      net.set('offline');
      void s.patch(add('x'));
      await new Promise((r) => setTimeout(r, 100));
      const after = await openClient({ url: srv.url, storage });
      clients.push(after);
      const errors: unknown[] = [];
      after.on('error', (e) => errors.push(e));
      await after.synced();
      expect(errors).toEqual([]);
      const token = after.anonymousToken as string;
      expect(token).toBe(before.anonymousToken);
      expect((await serverState(srv, token, s.id)).state).toEqual({ log: ['x'] });
    });
  });
}
