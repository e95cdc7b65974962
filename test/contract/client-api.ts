/**
 * The client's scopes by name and its connection state (client/src/client.ts,
 * client/src/connection.ts) against a real server, run on both stacks (test/client.test.ts
 * embedded, test/google.emulator.test.ts on the emulators). What it must guarantee:
 * - `client.scope({ name })` opens the scope of that name (the caller's, or `owner`'s that the
 *   caller may read), rejects with `scope_not_found` for a name that names nothing readable and
 *   leaves nothing open, so a later call (once the name exists) opens it afresh; `{ name, create }`
 *   creates once; a bare string is an id, and one the server could not accept is refused at once.
 * - The client's connection state follows the server going away and coming back (a real proxy
 *   that cuts every connection and refuses new ones, then listens again): `reconnecting` when the
 *   stream drops, `offline` when a retry fails too, `online` when it answers again, each once
 *   (no flapping while retries fail, none on the server's clean stream ends); a gateway that
 *   answers 502 for the server counts as the server gone; a write whose answer is lost while the
 *   stream is up changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectionStatus, createClient, type PatchbayClient, PatchbayClientError } from '../../client/src/index.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import type { TestServer } from '../helpers/server.js';
import { anonymousToken, history, serverState, until } from './client.js';
import { switchable } from './client-offline.js';
import type { StartServer } from './http.js';

const subOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;

/** Every connection event of `client`, in order. */
function events(client: PatchbayClient): ConnectionStatus[] {
  const seen: ConnectionStatus[] = [];
  for (const e of ['online', 'reconnecting', 'offline'] as const)
    client.on(e, (c) => {
      expect(c.status).toBe(e);
      expect(client.status).toBe(e);
      seen.push(e);
    });
  return seen;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function clientApiContract(stack: string, start: StartServer): void {
  describe(`the client's scopes by name and connection state (${stack})`, () => {
    let srv: TestServer;
    let proxy: TestProxy;
    const clients: PatchbayClient[] = [];
    const track = (c: PatchbayClient) => {
      clients.push(c);
      return c;
    };
    beforeAll(async () => {
      srv = await start({ sseMaxMs: 1000, sseRetryMs: 0 });
      proxy = await startProxy(srv.url);
    });
    afterAll(async () => {
      for (const c of clients) c.close();
      await proxy.close();
      await srv.close();
    });

    it('opens a scope by name: an existing one, its owner’s when shared, and refuses a bad id at once', async () => {
      const token = await anonymousToken(srv);
      const a = track(createClient({ url: srv.url, token }));
      const name = 'notes / 2026 é'; // no id could be this: spaces, a slash, non-ASCII
      const made = await a.create({ name, state: { list: ['x'] } });
      const b = track(createClient({ url: srv.url, token }));
      const byName = await b.scope({ name });
      expect(byName.id).toBe(made.id);
      expect(byName.state).toEqual({ list: ['x'] });
      expect(b.scope(made.id)).toBe(byName); // one live scope per id, however it was opened
      expect(b.scope({ id: made.id })).toBe(byName);
      await byName.patch([{ op: 'add', path: '/list/-', value: 'y' }]);
      await until(() => JSON.stringify(made.state) === JSON.stringify({ list: ['x', 'y'] }), 'the owner’s client sees the patch');

      // Another user: its own name space (nothing of that name), the owner's scope once shared.
      const otherToken = await anonymousToken(srv);
      const other = track(createClient({ url: srv.url, token: otherToken }));
      const own = await other.scope({ name }).catch((e: unknown) => e);
      expect(own).toBeInstanceOf(PatchbayClientError);
      expect(own).toMatchObject({ code: 'scope_not_found', status: 404 });
      const before = await other.scope({ name, owner: subOf(token) }).catch((e: unknown) => e);
      expect(before).toMatchObject({ code: 'scope_not_found' }); // private: a stranger learns nothing
      const shared = await fetch(`${srv.url}/v1/scopes/${made.id}/access`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ visibility: 'authenticated' }),
      });
      expect(shared.status).toBe(200);
      const theirs = await other.scope({ name, owner: subOf(token) });
      expect(theirs.id).toBe(made.id);
      expect(theirs.state).toEqual({ list: ['x', 'y'] });

      // A bare string is an id: one no server accepts is refused before anything is sent.
      expect(() => b.scope('notes / 2026')).toThrow(expect.objectContaining({ code: 'invalid_request' }));
      expect(() => b.scope({ id: '..' })).toThrow(PatchbayClientError);
      expect((await serverState(srv, token, made.id)).ii).toBe(1); // nothing else reached the scope
    });

    it('a name that names nothing rejects with scope_not_found and leaves nothing open; once created, it opens', async () => {
      const token = await anonymousToken(srv);
      const sent: string[] = [];
      const client = track(
        createClient({
          url: srv.url,
          token,
          fetch: (input, init) => {
            sent.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`);
            return fetch(input, init);
          },
        }),
      );
      const missing = await client.scope({ name: 'later' }).catch((e: unknown) => e);
      expect(missing).toMatchObject({ code: 'scope_not_found', status: 404, details: { name: 'later' } });
      await sleep(200);
      expect(sent).toEqual(['GET /v1/names/later']); // no stream, no scope: nothing half-open
      expect(client.transportMode).toBe('idle');
      await client.synced();

      // Another client of the same user creates it; the same call now opens it, live.
      const creator = track(createClient({ url: srv.url, token }));
      const created = await creator.scope({ name: 'later', create: { state: { n: 0 } } });
      const again = await creator.scope({ name: 'later', create: { state: { n: 99 } } }); // created once
      expect(again).toBe(created);
      const s = await client.scope({ name: 'later' });
      expect(s.id).toBe(created.id);
      expect(s.state).toEqual({ n: 0 });
      await created.patch([{ op: 'replace', path: '/n', value: 1 }]);
      await until(() => JSON.stringify(s.state) === '{"n":1}', 'the patch through the stream');
      expect(await history(srv, token, s.id)).toHaveLength(1);

      // Closed while the name resolves: rejected with `closed`, and the scope is not opened.
      const late = createClient({ url: srv.url, token });
      const pending = late.scope({ name: 'later' });
      late.close();
      await expect(pending).rejects.toMatchObject({ code: 'closed' });
      await sleep(200);
      expect(late.transportMode).toBe('idle');
    });

    for (const multiplex of [true, false]) {
      it(`connection events follow the server going away and back, once each (${multiplex ? 'shared stream' : 'a stream per scope'})`, async () => {
        const token = await anonymousToken(srv);
        const client = track(createClient({ url: proxy.url, token, multiplex, compose: false })); // an index per call
        const seen = events(client);
        expect(client.status).toBe('connecting');
        const s = await client.create({ state: { log: [] } });
        expect(seen).toEqual(['online']);
        await until(() => s.status === 'online', 'the stream');
        await sleep(2500); // the server ends each stream after 1 s (sseMaxMs); the client reopens it
        expect(seen).toEqual(['online']);

        await proxy.stop();
        try {
          await until(() => client.status === 'offline', 'offline');
          expect(seen).toEqual(['online', 'reconnecting', 'offline']);
          const acks = [1, 2].map((v) => s.patch([{ op: 'add', path: '/log/-', value: v }]));
          expect(s.state).toEqual({ log: [1, 2] });
          await sleep(1500); // retries fail (stream and writes): no more events
          expect(seen).toEqual(['online', 'reconnecting', 'offline']);
          await proxy.resume();
          await until(() => client.status === 'online', 'online again');
          expect((await Promise.all(acks)).map((a) => a.ii)).toEqual([1, 2]);
        } finally {
          await proxy.resume();
        }
        await s.synced();
        expect(seen).toEqual(['online', 'reconnecting', 'offline', 'online']);
        expect((await serverState(srv, token, s.id)).state).toEqual({ log: [1, 2] });
        client.close();
      });
    }

    it('a gateway answering 502 for the server is the server gone; its JSON errors are answers', async () => {
      const token = await anonymousToken(srv);
      const client = track(createClient({ url: proxy.url, token }));
      const seen = events(client);
      const s = await client.create({ state: { n: 0 } });
      await until(() => client.transportMode === 'stream', 'the shared stream');
      proxy.gateway = 502;
      try {
        proxy.cut();
        await until(() => client.status === 'offline', 'offline behind the gateway');
        expect(seen).toEqual(['online', 'reconnecting', 'offline']);
      } finally {
        proxy.gateway = undefined;
      }
      await until(() => client.status === 'online', 'online again');
      // The server's own refusals (a JSON error) are answers: still online.
      expect(await client.scope({ name: 'nothing here' }).catch((e: unknown) => e)).toMatchObject({ code: 'scope_not_found' });
      await s.patch([{ op: 'replace', path: '/n', value: 1 }]);
      expect(seen).toEqual(['online', 'reconnecting', 'offline', 'online']);
      client.close();
    });

    it('a write whose answer is lost while the stream is up changes nothing', async () => {
      const token = await anonymousToken(srv);
      const net = switchable();
      const client = track(createClient({ url: srv.url, token, fetch: net.fetch }));
      const seen = events(client);
      const s = await client.create({ state: { log: [] } });
      await until(() => client.transportMode === 'stream', 'the shared stream');
      net.set('lose-answers');
      const ack = s.patch([{ op: 'add', path: '/log/-', value: 'a' }]);
      await until(() => net.writes > 0, 'a lost answer');
      net.set('online');
      expect((await ack).ii).toBe(1);
      await s.synced();
      expect(seen).toEqual(['online']);
      expect(await history(srv, token, s.id)).toHaveLength(1);
    });
  });
}
