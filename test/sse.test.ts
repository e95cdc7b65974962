/**
 * SSE (BRIEF §3, guarantee 4) with a real EventSource client, embedded stack. The same suite runs
 * against the Google stack on the emulators in google.emulator.test.ts.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Adapters } from '../shared/ports/index.js';
import { sseContract } from './contract/sse.js';
import { type Client, startServer, type TestServer } from './helpers/server.js';

sseContract('embedded', (overrides) => startServer(overrides));

describe('SSE resources and credentials (embedded)', () => {
  let srv: TestServer;
  let alice: Client;
  let live = 0;
  let opened = 0;
  beforeAll(async () => {
    srv = await startServer({ sseMaxMs: 60_000 }, undefined, {
      // Counts live bus subscriptions: each stream holds one until it ends.
      wrap: (a: Adapters) => ({
        ...a,
        bus: {
          publish: (e) => a.bus.publish(e),
          signal: (x) => a.bus.signal(x),
          subscribe: async (s, l, sig) => {
            const off = await a.bus.subscribe(s, l, sig);
            live++;
            opened++;
            return async () => {
              live--;
              await off();
            };
          },
          close: () => a.bus.close(),
        },
      }),
    });
    alice = await srv.client();
  });
  afterAll(() => srv.close());

  it('releases the subscription of a client that hangs up during catch-up', async () => {
    const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { list: [] } } })).json;
    const big = 'x'.repeat(2000);
    const owner = (await srv.app.adapters.ledger.getHead(id))?.meta.owner as string;
    for (let i = 0; i < 200; i++) await srv.app.engine.submit(id, owner, { patch: [{ op: 'add', path: '/list/-', value: big }] });
    const openedBefore = opened;
    for (let i = 0; i < 20; i++) {
      const ac = new AbortController();
      const res = await fetch(`${srv.url}/v1/scopes/${id}/events?since=0`, { headers: { authorization: `Bearer ${alice.token}` }, signal: ac.signal });
      // The stream really opened: a 4xx or a stream that never subscribed would pass the leak
      // check below without testing anything.
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const first = await (res.body as ReadableStream<Uint8Array>).getReader().read(); // catch-up has begun
      expect(new TextDecoder().decode(first.value)).toMatch(/^(retry|id|event|data):/m);
      expect(live).toBeGreaterThan(0);
      ac.abort();
    }
    expect(opened - openedBefore).toBe(20);
    const deadline = Date.now() + 10_000;
    while (live > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(live).toBe(0);
  });

  it('releases everything of a client that hangs up while its credential is still being checked', async () => {
    const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: {} } })).json;
    const { port } = new URL(srv.url);
    for (let i = 0; i < 20; i++) {
      // A token never seen before: its signature check is real asynchronous work, during which
      // the socket closes, before the stream's close listener exists.
      const { token } = await srv.client();
      await new Promise<void>((resolve) => {
        const socket = connect(Number(port), '127.0.0.1', () => {
          socket.write(`GET /v1/scopes/${id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
          setImmediate(() => socket.destroy());
        });
        socket.on('close', () => resolve());
        socket.on('error', () => {});
      });
    }
    // Streams that opened after their client left must not hold a subscription for the stream's
    // whole length (60 s here).
    const deadline = Date.now() + 5_000;
    while (live > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(live).toBe(0);
  });

  it('accepts a stream ticket that expired during the stream it resumes (Last-Event-ID), and only then', async () => {
    const { id } = (await alice.request('POST', '/v1/scopes', { body: { access: { visibility: 'authenticated' } } })).json;
    const secret = new TextEncoder().encode(readFileSync(join(srv.dataDir, 'jwt-secret'), 'utf8').trim());
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ scope: id })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('anon:x')
      .setIssuer('patchbay')
      .setAudience('patchbay:stream')
      .setIssuedAt(now - 120)
      .setExpirationTime(now - 30)
      .sign(secret);
    expect((await alice.request('GET', `/v1/scopes/${id}/events?ticket=${expired}`, { token: null })).status).toBe(401);
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/v1/scopes/${id}/events?ticket=${expired}`, { headers: { 'last-event-id': '0' }, signal: ac.signal });
    expect(res.status).toBe(200);
    ac.abort();
  });

  it('takes the bearer scheme in any case, and refuses the ids . and ..', async () => {
    const res = await fetch(`${srv.url}/v1/scopes`, {
      method: 'POST',
      headers: { authorization: `bearer ${alice.token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(201);
    for (const id of ['.', '..']) expect((await alice.request('POST', '/v1/scopes', { body: { id } })).status).toBe(400);
  });
});
