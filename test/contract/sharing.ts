/**
 * Sharing and private scopes (issue 12, part 3) over real HTTP and a real EventSource: the owner
 * shares a scope and revokes it, and the revoked user is refused from then on and loses its open
 * stream; every visibility against every role (owner, writer, reader, a signed-in stranger of the
 * same domain, a caller without a token) for get, events, tickets, history and patch; public
 * scopes readable without a token but never writable. Guarantee 3: every refusal changes nothing
 * (the owner's view of the state, the log and the access is compared before and after).
 * With `startPeers` (the Google stack: two instances sharing Firestore and Pub/Sub), a revoke
 * made through one instance ends the stream held on the other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client, TestServer } from '../helpers/server.js';
import { openSse, patchIndices, type SseCollector } from '../helpers/sse.js';
import type { StartServer } from './http.js';

/** The user id a client's token names (its `sub`). */
const userId = (c: Client): string => JSON.parse(Buffer.from(c.token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub;

const CLOSED = 2; // EventSource.CLOSED: the client gave up (a reconnect was refused)

async function waitFor(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Opens a stream, answers its status and hangs up. */
async function streamStatus(url: string, headers: Record<string, string>): Promise<number> {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  abort.abort();
  return res.status;
}

type Visibility = 'private' | 'domain' | 'authenticated' | 'public';
type Role = 'owner' | 'writer' | 'reader' | 'stranger' | 'anonymous';

/** What each role gets, per visibility: read (get, events, history), ticket, patch. */
function expected(visibility: Visibility, role: Role): { read: number; ticket: number; patch: number } {
  if (role === 'owner' || role === 'writer') return { read: 200, ticket: 200, patch: 200 };
  if (role === 'reader') return { read: 200, ticket: 200, patch: 403 };
  if (role === 'anonymous') return { read: visibility === 'public' ? 200 : 401, ticket: 401, patch: 401 };
  // a signed-in stranger, in the scope's domain (every caller is in `default` for now)
  return visibility === 'private' ? { read: 404, ticket: 404, patch: 404 } : { read: 200, ticket: 200, patch: 403 };
}

export function sharingContract(stack: string, start: StartServer, startPeers?: () => Promise<[TestServer, TestServer]>): void {
  describe(`sharing and private scopes (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;
    let carol: Client;
    let dave: Client;
    const streams: SseCollector[] = [];

    beforeAll(async () => {
      srv = await start({ sseRetryMs: 50, maxAccessUsers: 3 });
      [alice, bob, carol, dave] = await Promise.all([srv.client(), srv.client(), srv.client(), srv.client()]);
    });
    afterAll(async () => {
      for (const s of streams) s.close();
      await srv.close();
    });

    const sse = (s: TestServer, id: string, c: Client | null): SseCollector => {
      const collector = openSse(`${s.url}/v1/scopes/${id}/events`, c?.token);
      streams.push(collector);
      return collector;
    };

    /** What the owner sees of the scope: state, meta (access included) and the whole log. */
    async function stored(id: string) {
      const scope = await alice.request('GET', `/v1/scopes/${id}`);
      const log = await alice.request('GET', `/v1/scopes/${id}/patches`);
      const access = await alice.request('GET', `/v1/scopes/${id}/access`);
      return { scope: scope.json, log: log.text, access: access.json };
    }

    /** Runs `act` (a refusal) and checks that it changed nothing (guarantee 3). */
    async function unchanged<T>(id: string, act: () => Promise<T>): Promise<T> {
      const before = await stored(id);
      const out = await act();
      expect(await stored(id)).toEqual(before);
      return out;
    }

    const put = (c: Client, id: string, body: unknown) => c.request('PUT', `/v1/scopes/${id}/access`, { body });
    const patch = (c: Client | null, id: string, n: number) =>
      (c ?? alice).request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: n }] }, token: c ? c.token : null });

    it('share and revoke: B is refused, granted write access, patches and streams, then revoked, refused and loses its stream', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
      // private by default: B is told there is no such scope, and nothing changes
      await unchanged(id, async () => {
        expect((await bob.request('GET', `/v1/scopes/${id}`)).json.error.code).toBe('scope_not_found');
        expect((await patch(bob, id, 1)).status).toBe(404);
        expect((await bob.request('GET', `/v1/scopes/${id}/events`)).status).toBe(404);
      });

      const granted = await put(alice, id, { visibility: 'private', writers: [userId(bob)] });
      expect(granted.status).toBe(200);
      expect(granted.json).toEqual({ visibility: 'private', readers: [], writers: [userId(bob)], rev: 1 });
      const got = await bob.request('GET', `/v1/scopes/${id}`);
      expect(got.status).toBe(200);
      expect(got.json.meta.access).toEqual({ visibility: 'private' }); // not who else is listed

      const bobs = sse(srv, id, bob);
      const alices = sse(srv, id, alice);
      await waitFor('both streams’ state', () => bobs.events.length > 0 && alices.events.length > 0);
      expect((await patch(bob, id, 1)).json).toEqual({ id, ii: 1 });
      await waitFor('the patch on both streams', () => patchIndices(bobs.events).includes(1) && patchIndices(alices.events).includes(1));
      expect(bobs.events.find((e) => e.type === 'patch')?.data.by).toBe(userId(bob));

      const revoked = await put(alice, id, { visibility: 'private' });
      expect(revoked.json).toEqual({ visibility: 'private', readers: [], writers: [], rev: 2 });
      await waitFor('B’s stream to end, its reconnect refused', () => bobs.source.readyState === CLOSED);
      await unchanged(id, async () => {
        expect((await patch(bob, id, 2)).status).toBe(404);
        expect((await bob.request('GET', `/v1/scopes/${id}`)).status).toBe(404);
        expect((await bob.request('GET', `/v1/scopes/${id}/patches`)).status).toBe(404);
        expect((await bob.request('POST', `/v1/scopes/${id}/events/ticket`)).status).toBe(404);
      });
      // the owner's stream goes on
      expect((await patch(alice, id, 3)).json.ii).toBe(2);
      await waitFor('the owner’s stream to go on', () => patchIndices(alices.events).includes(2));
      expect(alices.source.readyState).not.toBe(CLOSED);
    });

    it('a writer demoted to reader may still read and stream, but not patch (403)', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'private', writers: [userId(bob)] } } })).json;
      const bobs = sse(srv, id, bob);
      await waitFor('B’s state', () => bobs.events.length > 0);
      await put(alice, id, { visibility: 'private', readers: [userId(bob)] });
      await unchanged(id, async () => expect((await patch(bob, id, 1)).json.error.code).toBe('forbidden'));
      expect((await patch(alice, id, 2)).status).toBe(200);
      await waitFor('the owner’s patch on B’s stream', () => patchIndices(bobs.events).includes(1));
      expect(bobs.source.readyState).not.toBe(CLOSED);
    });

    it('a stream opened with a ticket is held to its user’s access: it ends on revoke, and the ticket opens no new one', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'private', readers: [userId(bob)] } } })).json;
      const { ticket } = (await bob.request('POST', `/v1/scopes/${id}/events/ticket`)).json;
      const byTicket = openSse(`${srv.url}/v1/scopes/${id}/events?ticket=${ticket}`);
      streams.push(byTicket);
      await waitFor('the state', () => byTicket.events.length > 0);
      await put(alice, id, { visibility: 'private' });
      await waitFor('the ticket’s stream to end', () => byTicket.source.readyState === CLOSED);
      expect(await streamStatus(`${srv.url}/v1/scopes/${id}/events?ticket=${ticket}`, {})).toBe(404);
    });

    it('only the owner manages access: 403 to a writer, 404 to a stranger, 413 past the limit, 400 a bad body, each changing nothing', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { access: { visibility: 'private', writers: [userId(bob)] } } })).json;
      await unchanged(id, async () => {
        expect((await put(bob, id, { visibility: 'public' })).json.error.code).toBe('forbidden');
        expect((await bob.request('GET', `/v1/scopes/${id}/access`)).json.error.code).toBe('forbidden');
        expect((await put(carol, id, { visibility: 'public' })).json.error.code).toBe('scope_not_found');
        const many = await put(alice, id, { visibility: 'private', readers: ['a', 'b'], writers: ['c', 'd'] });
        expect(many.status).toBe(413);
        expect(many.json.error).toMatchObject({ code: 'too_large', limit: 'maxAccessUsers', max: 3 });
        expect((await put(alice, id, { visibility: 'nobody' })).status).toBe(400);
      });
      // the same access again is accepted and changes nothing (idempotent)
      const same = await unchanged(id, () => put(alice, id, { visibility: 'private', writers: [userId(bob), userId(bob)] }));
      expect(same.json).toEqual({ visibility: 'private', readers: [], writers: [userId(bob)], rev: 0 });
      expect((await alice.request('POST', '/v1/scopes', { body: { access: { visibility: 'public', readers: ['a', 'b', 'c', 'd'] } } })).status).toBe(413);
    });

    describe('visibility × role', () => {
      const visibilities: Visibility[] = ['private', 'domain', 'authenticated', 'public'];
      const roles: Role[] = ['owner', 'writer', 'reader', 'stranger', 'anonymous'];
      for (const visibility of visibilities) {
        it(`${visibility}: get, events, ticket, history and patch for ${roles.join(', ')}`, async () => {
          const clients: Record<Role, Client | null> = { owner: alice, writer: bob, reader: carol, stranger: dave, anonymous: null };
          const access = { visibility, readers: [userId(carol)], writers: [userId(bob)] };
          const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access } })).json;
          let n = 0;
          for (const role of roles) {
            const c = clients[role];
            const want = expected(visibility, role);
            const as = { token: c ? c.token : null };
            const what = `${visibility} ${role}`;
            const check = async () => {
              const get = await alice.request('GET', `/v1/scopes/${id}`, as);
              expect(get.status, `${what} get`).toBe(want.read);
              if (get.status === 200) expect(get.json.meta.access.readers === undefined, `${what} sees the lists`).toBe(role !== 'owner');
              const history = await alice.request('GET', `/v1/scopes/${id}/patches`, as);
              expect(history.status, `${what} history`).toBe(want.read);
              const ticket = await alice.request('POST', `/v1/scopes/${id}/events/ticket`, as);
              expect(ticket.status, `${what} ticket`).toBe(want.ticket);
              const auth: Record<string, string> = c ? { authorization: `Bearer ${c.token}` } : {};
              expect(await streamStatus(`${srv.url}/v1/scopes/${id}/events`, auth), `${what} events`).toBe(want.read);
              if (ticket.status === 200) {
                expect(await streamStatus(`${srv.url}/v1/scopes/${id}/events?ticket=${ticket.json.ticket}`, {}), `${what} events by ticket`).toBe(200);
              }
            };
            // reads change nothing whatever their answer; a refused patch changes nothing either
            await unchanged(id, check);
            if (want.patch === 200) {
              expect((await patch(c, id, ++n)).status, `${what} patch`).toBe(200);
            } else {
              const res = await unchanged(id, () => patch(c, id, 999));
              expect(res.status, `${what} patch`).toBe(want.patch);
            }
          }
          expect((await alice.request('GET', `/v1/scopes/${id}`)).json.ii).toBe(2); // owner and writer
        });
      }
    });

    it('a public scope streams to a client without a token, which cannot write to it', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'public' } } })).json;
      const anon = sse(srv, id, null);
      await waitFor('the state', () => anon.events.length > 0);
      await patch(alice, id, 5);
      await waitFor('the patch', () => patchIndices(anon.events).includes(1));
      await unchanged(id, async () => {
        expect((await patch(null, id, 6)).status).toBe(401);
        expect((await patch(dave, id, 6)).status).toBe(403);
      });
      // made private: the anonymous stream ends, and its reconnect is refused (401)
      await put(alice, id, { visibility: 'private' });
      await waitFor('the anonymous stream to end', () => anon.source.readyState === CLOSED);
    });

    if (startPeers) {
      it('a revoke made through one instance ends the stream held on another, and refuses writes there', async () => {
        const [x, y] = await startPeers();
        try {
          const owner = await x.client();
          const guest = await y.client();
          const { id } = (await owner.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'private', writers: [userId(guest)] } } }))
            .json;
          const held = sse(y, id, guest);
          await waitFor('the stream on the other instance', () => held.events.length > 0);
          expect((await guest.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/g', value: 1 }] } })).status).toBe(200);
          await waitFor('the patch on the stream', () => patchIndices(held.events).includes(1));
          expect((await owner.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'private' } })).status).toBe(200);
          await waitFor('the stream on the other instance to end', () => held.source.readyState === CLOSED, 30_000);
          const refused = await guest.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/h', value: 1 }] } });
          expect(refused.status).toBe(404);
          expect((await owner.request('GET', `/v1/scopes/${id}`)).json).toMatchObject({ ii: 1, state: { n: 0, g: 1 } });
        } finally {
          await Promise.all([x.close(), y.close()]);
        }
      });
    }
  });
}
