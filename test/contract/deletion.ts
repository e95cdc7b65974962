/**
 * Deleting a scope (issue 12, part 4b) over real HTTP and a real EventSource: the owner deletes
 * and from then on the scope is gone for everyone (get, history, patch, access, ticket: 404; the
 * listings leave it out), its open streams end and their reconnect is refused, its id cannot be
 * taken again (409, for its former owner too), its ledger records and cold-storage objects are
 * purged and the owner's quota gets the scope back. Guarantee 3: a refused delete (a reader or
 * writer: 403; a stranger: 404; no token: 401; over the write rate: 429) changes nothing (the
 * owner's view of the state, the log and the access is compared before and after).
 *
 * Crash safety: the purge is cut by an injected failure at each of its steps (between two ledger
 * chunks, amid the cold-storage deletes, before the tombstone is marked purged); the test checks
 * that the failure really left part of the scope behind, then that the next sweep
 * (`Engine.sweepDeleted`, what the sweep timer and the Google `sweep` function run) finishes it.
 * With `startPeers` (the Google stack: two instances on one Firestore and Pub/Sub), a delete made
 * through one instance ends the stream held on the other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundlePrefix, snapshotPrefix } from '../../shared/cold/names.js';
import type { Config } from '../../shared/config.js';
import type { Adapters, Ledger } from '../../shared/ports/index.js';
import type { Client, StartOptions, TestServer } from '../helpers/server.js';
import { openSse, patchIndices, type SseCollector } from '../helpers/sse.js';
import { wrap } from '../helpers/wrap.js';

export type StartWith = (overrides?: Partial<Config>, opts?: StartOptions) => Promise<TestServer>;

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

/** What is stored of a scope, read through the ports (the HTTP API says 404 once it is deleted). */
async function leftOf(ports: Adapters, id: string) {
  const records = (await ports.ledger.readLog(id, 1, 10_000)).length;
  const objects = (await ports.blobs.list(bundlePrefix(id))).length + (await ports.blobs.list(snapshotPrefix(id))).length;
  const tombstone = (await ports.ledger.listDeleted(Number.MAX_SAFE_INTEGER, 10_000)).find((t) => t.id === id);
  return { records, objects, tombstone };
}

type CrashPoint = 'between ledger chunks' | 'amid the cold deletes' | 'before the tombstone is marked purged';

/**
 * Adapters whose deletion purge fails once at `point` (and removes 5 ledger records per chunk,
 * so a small scope takes several chunks). Every later call goes through: the sweep's.
 */
function crashOnce(point: CrashPoint): { wrap: (a: Adapters) => Adapters; fired: () => boolean } {
  let fired = false;
  let chunks = 0;
  let deletes = 0;
  const crash = (): never => {
    fired = true;
    throw new Error(`injected crash ${point}`);
  };
  return {
    fired: () => fired,
    wrap: (a) => ({
      ...a,
      ledger: wrap<Ledger>(a.ledger, {
        purgeScope: async (real, id) => {
          if (!fired && point === 'between ledger chunks' && ++chunks > 1) crash();
          return real(id, 5);
        },
        markPurged: async (real, id) => {
          if (!fired && point === 'before the tombstone is marked purged') crash();
          return real(id);
        },
      }),
      blobs: wrap(a.blobs, {
        delete: async (real, key) => {
          if (!fired && point === 'amid the cold deletes' && ++deletes > 1) crash();
          return real(key);
        },
      }),
    }),
  };
}

export function deletionContract(stack: string, start: StartWith, startPeers?: () => Promise<[TestServer, TestServer]>): void {
  describe(`deleting a scope (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let bob: Client;
    let carol: Client;
    const streams: SseCollector[] = [];

    beforeAll(async () => {
      srv = await start({ sseRetryMs: 50 });
      [alice, bob, carol] = await Promise.all([srv.client(), srv.client(), srv.client()]);
    });
    afterAll(async () => {
      for (const s of streams) s.close();
      await srv?.close();
    });

    const sse = (s: TestServer, id: string, c: Client): SseCollector => {
      const collector = openSse(`${s.url}/v1/scopes/${id}/events`, c.token);
      streams.push(collector);
      return collector;
    };
    const patch = (c: Client, id: string, n: number) =>
      c.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'replace', path: '/n', value: n }] } });
    const del = (c: Client | null, id: string) => (c ?? alice).request('DELETE', `/v1/scopes/${id}`, c ? {} : { token: null });

    /** What the owner sees of the scope: state, meta (access included) and the whole log. */
    async function stored(id: string) {
      const scope = await alice.request('GET', `/v1/scopes/${id}`);
      const log = await alice.request('GET', `/v1/scopes/${id}/patches`);
      const access = await alice.request('GET', `/v1/scopes/${id}/access`);
      return { status: scope.status, scope: scope.json, log: log.text, access: access.json };
    }

    it('only the owner deletes: a writer or reader gets 403, a stranger 404, no token 401, each changing nothing', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'private', writers: [userId(bob)] } } })).json;
      expect((await patch(alice, id, 1)).status).toBe(200);
      const before = await stored(id);
      expect(before.status).toBe(200);
      expect((await del(bob, id)).json.error.code).toBe('forbidden');
      expect((await del(carol, id)).json.error.code).toBe('scope_not_found');
      expect((await del(null, id)).json.error.code).toBe('unauthorized');
      expect((await alice.request('DELETE', '/v1/scopes/has%20space')).status).toBe(400);
      expect(await stored(id)).toEqual(before);
      expect((await patch(bob, id, 2)).status).toBe(200); // the writer still writes
    });

    it('the owner deletes: everything answers 404, open streams end, listings leave it out, the id stays taken', async () => {
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 }, access: { visibility: 'private', readers: [userId(bob)] } } })).json;
      for (let n = 1; n <= 3; n++) expect((await patch(alice, id, n)).status).toBe(200);
      const owners = sse(srv, id, alice);
      const readers = sse(srv, id, bob);
      await waitFor('both streams’ state', () => owners.events.length > 0 && readers.events.length > 0);
      const listed = async (c: Client) => ((await c.request('GET', '/v1/scopes')).json.scopes as Array<{ id: string }>).map((s) => s.id);
      expect(await listed(alice)).toContain(id);
      expect(await listed(bob)).toContain(id);

      const done = await del(alice, id);
      expect(done.status).toBe(204);
      expect(done.text).toBe('');
      await waitFor('both streams to end, their reconnect refused', () => owners.source.readyState === CLOSED && readers.source.readyState === CLOSED);
      for (const c of [alice, bob]) {
        expect((await c.request('GET', `/v1/scopes/${id}`)).json.error.code).toBe('scope_not_found');
        expect((await c.request('GET', `/v1/scopes/${id}/patches`)).json.error.code).toBe('scope_not_found');
        expect((await c.request('POST', `/v1/scopes/${id}/events/ticket`)).json.error.code).toBe('scope_not_found');
        expect((await patch(c, id, 9)).json.error.code).toBe('scope_not_found');
        expect(await listed(c)).not.toContain(id);
      }
      expect((await alice.request('GET', `/v1/scopes/${id}/access`)).json.error.code).toBe('scope_not_found');
      expect((await alice.request('PUT', `/v1/scopes/${id}/access`, { body: { visibility: 'public' } })).json.error.code).toBe('scope_not_found');
      expect((await del(alice, id)).json.error.code).toBe('scope_not_found'); // a second delete
      // Reserved: nobody creates a scope under the id (its former owner neither), and nothing changes.
      for (const c of [bob, alice]) {
        const again = await c.request('POST', '/v1/scopes', { body: { id, state: { taken: true } } });
        expect(again.status).toBe(409);
        expect(again.json.error.code).toBe('scope_exists');
      }
      expect((await alice.request('GET', `/v1/scopes/${id}`)).status).toBe(404);
      // Purged in the request: no record is left, and the tombstone says so.
      expect(await leftOf(srv.app.adapters, id)).toMatchObject({ records: 0, objects: 0, tombstone: { id, owner: userId(alice), purged: true } });
    });

    it('bundled, then deleted: its bundles and snapshots are gone too', async () => {
      const cold = await start({ bundlePatches: 5, snapshotEvery: 10, retainPatches: 0, retainMinutes: 0 });
      try {
        const owner = await cold.client();
        const { id } = (await owner.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
        for (let n = 1; n <= 22; n++) expect((await patch(owner, id, n)).status).toBe(200);
        expect(await cold.app.bundler.bundleScope(id, { all: true })).toMatchObject({ outcome: 'done', bundles: 5, snapshots: 2, bundledTo: 22 });
        const before = await leftOf(cold.app.adapters, id);
        expect(before.objects).toBe(7);
        expect((await owner.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
        expect(await leftOf(cold.app.adapters, id)).toMatchObject({ records: 0, objects: 0, tombstone: { purged: true } });
        // The bundler finds nothing of it to do any more.
        expect((await cold.app.adapters.ledger.listScopes('', 10_000)).map((s) => s.id)).not.toContain(id);
        await expect(cold.app.bundler.bundleScope(id)).rejects.toMatchObject({ code: 'scope_not_found' });
        expect((await leftOf(cold.app.adapters, id)).objects).toBe(0);
      } finally {
        await cold.close();
      }
    });

    it('a bundler that wrote objects after the purge listed them deletes them when it learns of the delete', async () => {
      // The race: the purge lists the scope's objects (none yet), then a bundler holding the lease
      // writes a bundle and a snapshot; only its advanceBundled finds the tombstone.
      let deleting: { id: string; owner: string; engine: () => TestServer['app']['engine'] } | null = null;
      const s = await start(
        { bundlePatches: 5, snapshotEvery: 5, retainPatches: 0, retainMinutes: 0 },
        {
          wrap: (a) => ({
            ...a,
            blobs: wrap(a.blobs, {
              put: async (real, key, data, opts) => {
                const d = deleting;
                if (d && key.startsWith(bundlePrefix(d.id))) {
                  deleting = null;
                  await d.engine().deleteScope(d.id, { id: d.owner });
                }
                return real(key, data, opts);
              },
            }),
          }),
        },
      );
      try {
        const owner = await s.client();
        const { id } = (await owner.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
        for (let n = 1; n <= 5; n++) expect((await patch(owner, id, n)).status).toBe(200);
        deleting = { id, owner: userId(owner), engine: () => s.app.engine };
        await expect(s.app.bundler.bundleScope(id)).rejects.toMatchObject({ code: 'scope_not_found' });
        expect(deleting).toBeNull(); // the delete ran between the purge's listing and the bundler's writes
        expect(await leftOf(s.app.adapters, id)).toMatchObject({ records: 0, objects: 0, tombstone: { purged: true } });
      } finally {
        await s.close();
      }
    });

    it('gives the owner its scope quota back', async () => {
      const limited = await start({ limits: 'on', quotaScopes: 1 });
      try {
        const owner = await limited.client();
        const { id } = (await owner.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
        expect((await owner.request('POST', '/v1/scopes', { body: {} })).json.error.code).toBe('quota_exceeded');
        expect((await owner.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
        expect((await owner.request('POST', '/v1/scopes', { body: {} })).status).toBe(201);
      } finally {
        await limited.close();
      }
    });

    for (const point of ['between ledger chunks', 'amid the cold deletes', 'before the tombstone is marked purged'] as CrashPoint[]) {
      it(`a purge cut ${point} is finished by the next sweep`, async () => {
        const crash = crashOnce(point);
        const s = await start({ bundlePatches: 5, snapshotEvery: 5, retainPatches: 10, retainMinutes: 0 }, { wrap: crash.wrap });
        try {
          const owner = await s.client();
          const { id } = (await owner.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
          for (let n = 1; n <= 24; n++) expect((await patch(owner, id, n)).status).toBe(200);
          // Bundles 1..20 and trims 1..14 (the last 10 stay in the hot log): both kinds of storage hold something.
          expect(await s.app.bundler.bundleScope(id)).toMatchObject({ outcome: 'done', bundledTo: 20, trimmedTo: 14 });
          expect(await leftOf(s.app.adapters, id)).toMatchObject({ records: 10, objects: 8, tombstone: undefined });

          expect((await owner.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204); // the tombstone is durable before the purge
          expect(crash.fired()).toBe(true);
          const cut = await leftOf(s.app.adapters, id);
          // The crash really hit mid-purge: the tombstone is unpurged and (but for the last step) something is left.
          expect(cut.tombstone?.purged).toBe(false);
          if (point === 'between ledger chunks') expect(cut.records).toBeGreaterThan(0);
          if (point === 'between ledger chunks') expect(cut.records).toBeLessThan(10);
          if (point !== 'before the tombstone is marked purged') expect(cut.objects).toBeGreaterThan(0);
          else expect(cut).toMatchObject({ records: 0, objects: 0 });
          expect((await owner.request('GET', `/v1/scopes/${id}`)).status).toBe(404); // gone all the same

          expect(await s.app.engine.sweepDeleted()).toBeGreaterThanOrEqual(1);
          expect(await leftOf(s.app.adapters, id)).toMatchObject({ records: 0, objects: 0, tombstone: { purged: true } });
          expect((await owner.request('POST', '/v1/scopes', { body: { id } })).status).toBe(409); // still reserved
        } finally {
          await s.close();
        }
      });
    }

    it('after the retention period the sweep frees the id: a new scope under it starts from nothing', async () => {
      const s = await start({ deleteRetentionMs: 0 });
      try {
        const owner = await s.client();
        const { id } = (await owner.request('POST', '/v1/scopes', { body: { state: { n: 0, old: true } } })).json;
        expect((await patch(owner, id, 1)).status).toBe(200);
        expect((await owner.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
        // A consumer that read the live head before the delete writes its (first) cursor after the purge.
        expect(await s.app.adapters.ledger.advanceCursor('late-consumer', id, 0, 1)).toBe(true);
        await new Promise((r) => setTimeout(r, 5)); // the tombstone's time is now in the past
        expect(await s.app.engine.sweepDeleted()).toBeGreaterThanOrEqual(1);
        expect((await leftOf(s.app.adapters, id)).tombstone).toBeUndefined();
        expect(await s.app.adapters.ledger.getCursor('late-consumer', id)).toBe(0); // the new scope's events are not taken for duplicates
        const other = await s.client();
        const again = await other.request('POST', '/v1/scopes', { body: { id, state: { fresh: true } } });
        expect(again.status).toBe(201);
        expect((await other.request('GET', `/v1/scopes/${id}`)).json).toMatchObject({ ii: 0, state: { fresh: true } });
        expect((await other.request('GET', `/v1/scopes/${id}/patches`)).text).toBe('');
      } finally {
        await s.close();
      }
    });

    if (startPeers) {
      it('a delete made through one instance ends the stream held on another', async () => {
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
          expect((await owner.request('DELETE', `/v1/scopes/${id}`)).status).toBe(204);
          await waitFor('the stream on the other instance to end', () => held.source.readyState === CLOSED, 30_000);
          expect((await guest.request('POST', `/v1/scopes/${id}/patches`, { body: { patch: [{ op: 'add', path: '/h', value: 1 }] } })).status).toBe(404);
        } finally {
          await Promise.all([x.close(), y.close()]);
        }
      });
    }
  });
}
