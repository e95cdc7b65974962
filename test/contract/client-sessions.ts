/**
 * The client's uploads, sessions and presence (client/src/uploads.ts, sessions.ts, presence.ts)
 * against a real server on both stacks (test/client.test.ts embedded; test/google.emulator.test.ts
 * on the emulators, uploads through the GCS stand-in's V4 signed URLs, made ready by the client's
 * `complete` since no finalize notification is posted there). What it must do: an upload of bytes
 * or a Blob ends `ready` with its size and type, and its download URL gives the bytes back; a
 * session stays open past several timeouts on the client's own heartbeats (a session nobody keeps
 * alive leaves presence meanwhile), a guarantee runs when it closes, and `client.close()` closes
 * it; a watcher sees join, update and leave; a session the server closed ends on the client at the
 * next heartbeat. Refusals carry the server's code and change nothing (the user's scopes, the
 * scope's presence, the session compared before and after).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type PatchbayClient, PatchbayClientError, type PresenceEntry } from '../../client/src/index.js';
import type { Config } from '../../shared/config.js';
import type { Client, TestServer } from '../helpers/server.js';
import { until } from './client.js';

export type StartServer = (overrides?: Partial<Config>) => Promise<TestServer>;

const TIMEOUT_MS = 1500;

/** The typed error a promise rejects with (fails the test if it resolves). */
export async function refusal(p: Promise<unknown>): Promise<PatchbayClientError> {
  const err = await p.then(
    () => new Error('resolved, expected a refusal'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PatchbayClientError);
  return err as PatchbayClientError;
}

export function clientSessionsContract(stack: string, start: StartServer): void {
  describe(`the client's uploads, sessions and presence (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;
    let a: PatchbayClient;
    let b: PatchbayClient;
    beforeAll(async () => {
      srv = await start({ maxUploadBytes: 1000, uploadTypes: ['image/*', 'text/plain'], sessionTimeoutMs: TIMEOUT_MS, sseMaxMs: 2000, sseRetryMs: 0 });
      [alice, bob] = await Promise.all([srv.client(), srv.client()]);
      a = createClient({ url: srv.url, token: alice.token, multiplex: false });
      b = createClient({ url: srv.url, token: bob.token, multiplex: false });
    });
    afterAll(async () => {
      a?.close();
      b?.close();
      await srv?.close();
    });
    const scopes = async (c: Client) => (await c.request('GET', '/v1/scopes')).json.scopes.map((s: { id: string }) => s.id).sort();

    it('uploads bytes and a Blob through the signed URL until ready, and downloads them back', async () => {
      const up = await a.upload(new TextEncoder().encode('hello'), { name: 'hi.txt', type: 'text/plain' });
      expect(up.id).toMatch(/^upload:/);
      expect(up.state).toMatchObject({ status: 'ready', name: 'hi.txt', type: 'text/plain', size: 5 });
      expect((await alice.request('GET', `/v1/scopes/${up.id}`)).json.state.status).toBe('ready');
      const res = await fetch(await a.downloadUrl(up.id));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('hello');

      const blob = await a.upload(new Blob([new Uint8Array([137, 80, 78, 71])], { type: 'image/png' }));
      expect(blob.state).toMatchObject({ status: 'ready', type: 'image/png', size: 4, name: null });
      expect(new Uint8Array(await (await fetch(await a.downloadUrl(blob.id))).arrayBuffer())).toEqual(new Uint8Array([137, 80, 78, 71]));
    });

    it('refuses a type not allowed, a file over the limit, bytes without a type and a stranger’s download, creating nothing', async () => {
      const before = await scopes(alice);
      expect((await refusal(a.upload(new Blob(['x'], { type: 'application/zip' })))).code).toBe('unsupported_media_type');
      const big = await refusal(a.upload(new Uint8Array(1001), { type: 'text/plain' }));
      expect([big.code, big.status]).toEqual(['too_large', 413]);
      expect((await refusal(a.upload(new Uint8Array(3)))).code).toBe('invalid_request');
      expect(await scopes(alice)).toEqual(before);
      const up = await a.upload(new Uint8Array(2), { type: 'text/plain' });
      const stranger = await refusal(b.downloadUrl(up.id));
      expect([stranger.code, stranger.status]).toEqual(['scope_not_found', 404]);
      expect((await refusal(a.downloadUrl('upload:00000000-0000-4000-8000-000000000000'))).code).toBe('scope_not_found');
    });

    it('says upload_failed when the file that landed is not the one declared (a fetch that loses the last byte of the PUT)', async () => {
      const lossy: typeof fetch = async (input, init) => {
        if (init?.method === 'PUT' && init.body instanceof Uint8Array) return fetch(input, { ...init, body: init.body.slice(0, -1) });
        return fetch(input, init);
      };
      const c = createClient({ url: srv.url, token: alice.token, multiplex: false, fetch: lossy });
      const err = await refusal(c.upload(new TextEncoder().encode('hello'), { type: 'text/plain' }));
      expect(err.code).toBe('upload_failed');
      const id = err.details.id as string;
      expect(err.details.state).toMatchObject({ status: 'failed', error: 'size_mismatch' });
      expect((await alice.request('GET', `/v1/scopes/${id}`)).json.state).toMatchObject({ status: 'failed', error: 'size_mismatch' });
      expect((await refusal(a.downloadUrl(id))).code).toBe('upload_incomplete');
      c.close();
    });

    it('keeps a session open on heartbeats past several timeouts; a session nobody keeps alive leaves presence meanwhile', async () => {
      const scope = await a.create({ state: {}, access: { visibility: 'authenticated' } });
      const s = await a.openSession();
      expect(s.id).toMatch(/^sess_[0-9a-f]{32}$/);
      expect(s.timeoutMs).toBe(TIMEOUT_MS);
      const idle = (await bob.request('POST', '/v1/sessions')).json.id as string;
      expect((await bob.request('PUT', `/v1/scopes/${scope.id}/presence`, { body: { session: idle } })).status).toBe(200);
      expect((await s.join(scope.id, { cursor: 1 })).joined).toBe(true);
      const opened = s.expires;
      await new Promise((r) => setTimeout(r, TIMEOUT_MS * 2.5));
      expect(s.open).toBe(true);
      expect(s.expires).toBeGreaterThan(opened);
      expect((await s.get()).state).toBe('open');
      // Bob's session had no heartbeat: it is listed no more; alice's is, with its status.
      expect((await b.presence(scope.id)).map((p) => [p.session, p.status])).toEqual([[s.id, { cursor: 1 }]]);
      await s.close();
      expect(s.open).toBe(false);
    });

    it('shows join, update and leave to a watcher, runs a guarantee at the close, and closes it with reason and info', async () => {
      const scope = await a.create({ state: { here: {} }, access: { visibility: 'authenticated', writers: [] } });
      const seen: PresenceEntry[][] = [];
      const stop = b.watchPresence(scope.id, (present) => seen.push(present));
      await until(() => seen.length > 0, 'the first presence sync'); // live, and empty
      expect(seen[0]).toEqual([]);
      const s = await a.openSession();
      await scope.patch([{ op: 'add', path: `/here/${s.id}`, value: true }]);
      const g = await s.guarantee(scope.id, [{ op: 'remove', path: `/here/${s.id}` }]);
      expect(g).toMatch(/^g_/);
      await s.join(scope.id, 'reading');
      await until(() => seen.at(-1)?.[0]?.status === 'reading', 'the join');
      await s.join(scope.id, 'typing');
      await until(() => seen.at(-1)?.[0]?.status === 'typing', 'the update');
      expect(seen.at(-1)?.map((p) => p.session)).toEqual([s.id]);
      const closed = await s.close({ reason: 'bye', info: { left: true } });
      expect(closed).toMatchObject({ id: s.id, reason: 'bye' });
      expect(['closed', 'closing']).toContain(closed.state);
      await until(() => seen.at(-1)?.length === 0, 'the leave');
      expect((await alice.request('GET', `/v1/scopes/${scope.id}`)).json.state).toEqual({ here: {} }); // the guarantee ran
      stop();
      expect((await refusal(s.heartbeat())).code).toBe('session_closed');
    });

    it('closes open sessions on client.close(), and ends a session the server closed at its next heartbeat', async () => {
      const c = createClient({ url: srv.url, token: alice.token, multiplex: false });
      const s = await c.openSession();
      c.close();
      expect(s.open).toBe(false);
      let state = '';
      const deadline = Date.now() + 10_000;
      while (state !== 'closed' && Date.now() < deadline) {
        state = (await alice.request('GET', `/v1/sessions/${s.id}`)).json.state;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(state).toBe('closed');

      const t = await a.openSession();
      const ended: Array<PatchbayClientError | undefined> = [];
      t.on('closed', (e) => ended.push(e.error));
      expect((await alice.request('DELETE', `/v1/sessions/${t.id}`)).status).toBe(200); // closed by another hand
      await until(() => ended.length === 1, 'the heartbeat to find it closed', TIMEOUT_MS * 2);
      expect(ended[0]?.code).toBe('session_closed');
      expect(t.open).toBe(false);
    });

    it('refuses presence in a scope the user may not read, a bad guarantee and a watch of an unreadable scope, changing nothing', async () => {
      const secret = await a.create({ state: { x: 1 } });
      const s = await b.openSession();
      const view = async () => {
        const { expires: _e, ...rest } = await s.get();
        return rest;
      };
      const before = { session: await view(), present: await a.presence(secret.id) };
      const join = await refusal(s.join(secret.id, 'hi'));
      expect([join.code, join.status]).toEqual(['scope_not_found', 404]);
      expect((await refusal(s.guarantee(secret.id, [{ op: 'remove', path: '/x' }]))).code).toBe('scope_not_found');
      expect((await refusal(s.guarantee(secret.id, [{ op: 'nope', path: '/x' } as never]))).code).toBe('invalid_request');
      expect((await refusal(s.join(secret.id, 'x'.repeat(5000)))).code).toBe('too_large');
      expect((await refusal(b.presence(secret.id))).code).toBe('scope_not_found');
      expect({ session: await view(), present: await a.presence(secret.id) }).toEqual(before);
      const errors: PatchbayClientError[] = [];
      b.watchPresence(
        secret.id,
        () => {},
        (e) => errors.push(e),
      );
      await until(() => errors.length === 1, 'the refused watch');
      expect(errors[0]?.code).toBe('scope_not_found');
      await s.close();
    });
  });
}
