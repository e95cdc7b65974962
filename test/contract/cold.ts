/**
 * Cold storage (guarantee 6: cold storage plus the log tail reproduce every acknowledged patch;
 * bundling and trimming never lose one), the same on every stack:
 * - the bundler writes contiguous bundles under deterministic names, snapshots at multiples of
 *   PATCHBAY_SNAPSHOT_EVERY, moves `bundled`, then trims the hot log beyond the retention window
 *   (last N patches and T minutes);
 * - objects can be read and verified with zcat, head, tail and sha256sum; a damaged one is an
 *   error, never wrong data;
 * - history, SSE catch-up and rebuilds (guarantee 2) span bundles and the hot log, each record
 *   once, in order, also while a trim runs under a reader; a rebuild starts at the latest snapshot;
 * - fencing: a bundler whose lease passed on can neither move the pointer nor trim; two racing
 *   bundlers lose nothing;
 * - a crash at every bundling step (before or after each object write, pointer move and trim
 *   chunk) leaves every patch recoverable exactly once, and a fresh bundler finishes the job;
 * - retries are recognised inside the retention window; a retry of a trimmed patch is not.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryCache } from '../../shared/adapters/embedded/memory-cache.js';
import { Bundler, type BundlerConfig } from '../../shared/cold/bundler.js';
import { recordLine } from '../../shared/cold/format.js';
import { readLog } from '../../shared/cold/log.js';
import { bundleKey, bundlePrefix, snapshotKey, snapshotPrefix } from '../../shared/cold/names.js';
import { checkCache } from '../../shared/cold/rebuild.js';
import { ColdStore } from '../../shared/cold/store.js';
import { Engine } from '../../shared/engine/engine.js';
import type { BlobStore, Ledger } from '../../shared/ports/index.js';
import type { PatchRecord } from '../../shared/protocol.js';
import { type CrashPlan, crashing, expectRecoverable, INITIAL, patchFor, pausing, type SeedOptions, seed, stateAfter } from '../helpers/cold.js';
import type { TestServer } from '../helpers/server.js';
import { openSse, patchIndices } from '../helpers/sse.js';
import { wrap } from '../helpers/wrap.js';
import type { StartServer } from './http.js';

/** Small sizes so that one 47-patch scope exercises everything: 4 full bundles and a short one, 2 snapshots, 6 trim chunks. */
const SMALL = { bundlePatches: 10, snapshotEvery: 15, retainPatches: 5, retainMinutes: 0, trimChunk: 7, bundleLeaseMs: 60_000 };
const N = 47;
const LATER = () => Date.now() + 10 * SMALL.bundleLeaseMs; // a clock on which every lease taken now has expired

/** The steps of bundling a fresh 47-patch scope with SMALL, in order. */
const STEPS = [
  'blobs.put b1-10',
  'ledger.advanceBundled 10',
  'blobs.put b11-20',
  'blobs.put s15',
  'ledger.advanceBundled 20',
  'blobs.put b21-30',
  'blobs.put s30',
  'ledger.advanceBundled 30',
  'blobs.put b31-40',
  'ledger.advanceBundled 40',
  'blobs.put b41-42',
  'ledger.advanceBundled 42',
  ...[7, 14, 21, 28, 35, 42].map(() => 'ledger.trimLog 42'),
];

export interface ColdContractOptions {
  /** Which crash points to run: every step before and after (`full`), or every step after plus the first of each kind before (`lean`, for slow backends). */
  crashes?: 'full' | 'lean';
}

export function coldContract(stack: string, start: StartServer, opts: ColdContractOptions = {}): void {
  describe(`cold storage contract (${stack})`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await start(SMALL);
    });
    afterAll(() => srv?.close());

    const ports = () => srv.app.adapters;
    const newId = (prefix = 'cold') => `${prefix}-${randomUUID().slice(0, 8)}`;

    async function scope(n: number, o: SeedOptions & { id?: string } = {}): Promise<{ id: string; original: PatchRecord[] }> {
      const id = o.id ?? newId();
      await srv.app.engine.createScope('owner-1', { id, state: INITIAL });
      return { id, original: n > 0 ? await seed(ports().ledger, id, n, o) : [] };
    }

    function bundler(o: { ledger?: Ledger; blobs?: BlobStore; config?: Partial<BundlerConfig>; now?: () => number; holder?: string } = {}): Bundler {
      return new Bundler(
        o.ledger ?? ports().ledger,
        o.blobs ?? ports().blobs,
        { ...srv.app.config, ...o.config },
        {
          holder: o.holder ?? `bundler-${randomUUID().slice(0, 6)}`,
          now: o.now,
          logError: () => {},
        },
      );
    }

    const bundleKeys = (id: string) => ports().blobs.list(bundlePrefix(id));
    const snapshotKeys = (id: string) => ports().blobs.list(snapshotPrefix(id));

    describe('bundling', () => {
      it('writes contiguous bundles under deterministic names and snapshots at multiples, moves the pointer, trims beyond retention', async () => {
        const { id, original } = await scope(N);
        const before = await ports().ledger.getHead(id);
        const report = await bundler().bundleScope(id);
        expect(report).toEqual({ id, outcome: 'done', bundles: 5, snapshots: 2, patches: 42, trimmed: 42, bundledTo: 42, trimmedTo: 42 });
        expect(await bundleKeys(id)).toEqual([
          bundleKey(id, 1, 10),
          bundleKey(id, 11, 20),
          bundleKey(id, 21, 30),
          bundleKey(id, 31, 40),
          bundleKey(id, 41, 42),
        ]);
        expect(bundleKey(id, 1, 10)).toBe(`bundles/${id}/000000000001-000000000010.ndjson.gz`);
        expect(await snapshotKeys(id)).toEqual([snapshotKey(id, 15), snapshotKey(id, 30)]);
        expect(snapshotKey(id, 15)).toBe(`snapshots/${id}/000000000015.ndjson.gz`);
        const head = await ports().ledger.getHead(id);
        // the lease was taken (a new epoch) and released
        expect(head).toMatchObject({ ii: N, bundled: 42, trimmed: 42, lease: null, epoch: (before?.epoch ?? 0) + 1 });
        await expectRecoverable(srv.app, id, original);

        // nothing more to do: not due, and a forced run changes nothing
        const b = bundler();
        expect(await b.due({ id, ii: N, bundled: 42, trimmed: 42 })).toBe(false);
        expect(await b.bundleScope(id)).toMatchObject({ outcome: 'done', bundles: 0, snapshots: 0, patches: 0, trimmed: 0 });

        // later patches: one more full bundle (43..52), and trimming up to the retention horizon (55 - 5)
        original.push(...(await seed(ports().ledger, id, 8)));
        expect(await b.due({ id, ii: 55, bundled: 42, trimmed: 42 })).toBe(true);
        expect(await b.bundleScope(id)).toMatchObject({ outcome: 'done', bundles: 1, snapshots: 1, patches: 10, trimmed: 8, bundledTo: 52, trimmedTo: 50 });
        expect((await bundleKeys(id)).at(-1)).toBe(bundleKey(id, 43, 52));
        expect(await snapshotKeys(id)).toEqual([snapshotKey(id, 15), snapshotKey(id, 30), snapshotKey(id, 45)]);
        await expectRecoverable(srv.app, id, original);
      });

      it('names objects validly for any scope id, and never lists one scope’s objects under another', async () => {
        const u = randomUUID().slice(0, 6);
        const ids = [`.${u}`, `..${u}`, `.tmp-${u}`, `a:b.c_d-${u}`, `p${u}`, `p${u}x`];
        for (const id of ids) {
          const { original } = await scope(12, { id });
          expect(await bundler().bundleScope(id, { all: true })).toMatchObject({ outcome: 'done', bundles: 2, bundledTo: 12 });
          await expectRecoverable(srv.app, id, original);
        }
        // ids starting with `.` get a `=` in front (`.` or `..` segments, `.tmp-` files are not valid keys)
        for (const id of [`.${u}`, `..${u}`, `.tmp-${u}`]) {
          expect(await bundleKeys(id)).toEqual([`bundles/=${id}/000000000001-000000000010.ndjson.gz`, `bundles/=${id}/000000000011-000000000012.ndjson.gz`]);
        }
        expect(await bundleKeys(`p${u}`)).toEqual([bundleKey(`p${u}`, 1, 10), bundleKey(`p${u}`, 11, 12)]);
      });

      it('writes objects an operator can check with zcat, head, tail and sha256sum', async () => {
        const { id, original } = await scope(20);
        await bundler().bundleScope(id);
        const sh = (script: string, input: Uint8Array) => {
          const r = spawnSync('sh', ['-c', script], { input });
          expect(r.status, String(r.stderr)).toBe(0);
          return r.stdout.toString('utf8');
        };
        const bundle = (await ports().blobs.get(bundleKey(id, 11, 20))) as Uint8Array;
        const digest = sh('zcat | head -n -1 | sha256sum', bundle).split(' ')[0];
        expect(JSON.parse(sh('zcat | tail -n 1', bundle))).toEqual({ sha256: digest });
        const lines = sh('zcat', bundle).trimEnd().split('\n');
        expect(lines).toHaveLength(12); // header, 10 records, trailer
        expect(JSON.parse(lines[0] as string)).toEqual({ patchbay: 'bundle', v: 1, scope: id, from: 11, to: 20, count: 10 });
        const r11 = original[10] as PatchRecord;
        expect(JSON.parse(lines[1] as string)).toEqual({
          ii: 11,
          patch: r11.patch,
          at: r11.at,
          by: r11.by,
          session: null,
          si: null,
          hash: r11.hash,
          epoch: r11.epoch,
        });

        const snapshot = (await ports().blobs.get(snapshotKey(id, 15))) as Uint8Array;
        const snap = sh('zcat', snapshot).trimEnd().split('\n');
        expect(JSON.parse(snap[0] as string)).toEqual({ patchbay: 'snapshot', v: 1, scope: id, ii: 15 });
        expect(JSON.parse(snap[1] as string)).toEqual(stateAfter(15));
        expect(JSON.parse(snap[2] as string)).toEqual({ sha256: sh('zcat | head -n -1 | sha256sum', snapshot).split(' ')[0] });
      });

      it('keeps the last N patches and every patch younger than T minutes in the hot log', async () => {
        const now = Date.now();
        // 1..25 were committed two hours ago, 26..40 just now
        const { id, original } = await scope(40, { at: (ii) => (ii <= 25 ? now - 2 * 3_600_000 : now) });
        const config = { retainPatches: 5, retainMinutes: 60 };
        expect(await bundler({ config, now: () => now }).bundleScope(id)).toMatchObject({ bundledTo: 40, trimmedTo: 25 });
        expect((await ports().ledger.readLog(id, 1, 100)).map((r) => r.ii)).toEqual(original.slice(25).map((r) => r.ii));
        // three hours later every patch is old: only the count window (last 5) keeps any
        expect(await bundler({ config, now: () => now + 3 * 3_600_000 }).bundleScope(id)).toMatchObject({ bundledTo: 40, trimmedTo: 35 });
        // nothing retained at all: everything bundled leaves the hot log
        expect(await bundler({ config: { retainPatches: 0, retainMinutes: 0 } }).bundleScope(id)).toMatchObject({ bundledTo: 40, trimmedTo: 40 });
        await expectRecoverable(srv.app, id, original);
      });

      it('bundles patches leaving the retention window even when they are fewer than a full bundle', async () => {
        const now = Date.now();
        const { id, original } = await scope(8, { at: () => now - 2 * 3_600_000 });
        const config = { retainPatches: 2, retainMinutes: 60 };
        const b = bundler({ config, now: () => now });
        expect(await b.due({ id, ii: 8, bundled: 0, trimmed: 0 })).toBe(true);
        expect(await b.bundleScope(id)).toMatchObject({ bundles: 1, bundledTo: 6, trimmedTo: 6 });
        expect(await bundleKeys(id)).toEqual([bundleKey(id, 1, 6)]);
        await expectRecoverable(srv.app, id, original);
        // young patches are left alone, and a scope with nothing to do is not even leased
        const young = await scope(8);
        const epoch = (await ports().ledger.getHead(young.id))?.epoch;
        expect(await bundler({ config, now: () => now }).due({ id: young.id, ii: 8, bundled: 0, trimmed: 0 })).toBe(false);
        expect((await ports().ledger.getHead(young.id))?.epoch).toBe(epoch);
      });

      it('renews its lease while it works, and stops as fenced when the lease lapsed under it', async () => {
        const { id, original } = await scope(N);
        let t = Date.now();
        const pause = pausing(ports().blobs, 'put', 2); // the second bundle
        const b = bundler({ blobs: pause.port, now: () => t });
        const run = b.bundleScope(id);
        await pause.reached;
        t += 10 * SMALL.bundleLeaseMs; // the process stalls far past its lease; nobody takes it meanwhile
        pause.release();
        const report = await run;
        // the stalled step finished under the old epoch (still the scope's epoch); the next renewal
        // found the lease expired, which means a new epoch: the bundler stops
        expect(report).toMatchObject({ outcome: 'fenced', bundledTo: 20, trimmedTo: 0 });
        expect(await ports().ledger.getHead(id)).toMatchObject({ bundled: 20, trimmed: 0 });
        await expectRecoverable(srv.app, id, original);
      });
    });

    describe('reading across cold storage and the hot log', () => {
      it('serves history and SSE from 0 across bundles and the hot log, then continues live', async () => {
        const alice = await srv.client();
        const created = await alice.request('POST', '/v1/scopes', { body: { state: INITIAL } });
        const id = created.json.id as string;
        const original = await seed(ports().ledger, id, N);
        await bundler().bundleScope(id);
        expect(await ports().ledger.getHead(id)).toMatchObject({ bundled: 42, trimmed: 42 });

        const lines = (await alice.request('GET', `/v1/scopes/${id}/patches`)).text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        expect(lines).toEqual(original.map((r) => ({ ii: r.ii, patch: r.patch, at: r.at, by: r.by })));
        const mid = (await alice.request('GET', `/v1/scopes/${id}/patches?from=39&to=44`)).text.trim().split('\n');
        expect(mid.map((l) => JSON.parse(l).ii)).toEqual([39, 40, 41, 42, 43, 44]);
        expect((await alice.request('GET', `/v1/scopes/${id}`)).json).toMatchObject({ ii: N, state: stateAfter(N) });

        const sse = openSse(`${srv.url}/v1/scopes/${id}/events?since=0`, alice.token);
        const resumed = openSse(`${srv.url}/v1/scopes/${id}/events?since=20`, alice.token);
        try {
          await sse.waitFor((ev) => patchIndices(ev).length >= N);
          await resumed.waitFor((ev) => patchIndices(ev).length >= N - 20);
          const ack = await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { ii: N + 1, patch: patchFor(N + 1) } });
          expect(ack.json).toEqual({ id, ii: N + 1 });
          await sse.waitFor((ev) => patchIndices(ev).length >= N + 1);
          await resumed.waitFor((ev) => patchIndices(ev).length >= N + 1 - 20);
          expect(patchIndices(sse.events)).toEqual(Array.from({ length: N + 1 }, (_, i) => i + 1));
          expect(patchIndices(resumed.events)).toEqual(Array.from({ length: N + 1 - 20 }, (_, i) => i + 21));
          expect(sse.events.slice(0, N).map((e) => e.data.patch)).toEqual(original.map((r) => r.patch));
        } finally {
          sse.close();
          resumed.close();
        }
        expect((await alice.request('GET', `/v1/scopes/${id}`)).json).toMatchObject({ ii: N + 1, state: stateAfter(N + 1) });
      });

      it('a reader racing a trim still gets every record once, in order', async () => {
        const { id, original } = await scope(N);
        const got: PatchRecord[] = [];
        let trimmedMidway = false;
        const cold = new ColdStore(ports().blobs);
        // 5 records per hot-log page: the trim lands between pages, under the reader's feet
        for await (const r of readLog(ports().ledger, cold, id, 1, N, { page: 5 })) {
          got.push(r);
          if (r.ii === 3) {
            await bundler().bundleScope(id);
            trimmedMidway = (await ports().ledger.getHead(id))?.trimmed === 42;
          }
        }
        expect(trimmedMidway).toBe(true);
        expect(got).toEqual(original);
      });

      it('rebuilds on a cache miss, or a cache far behind, from the latest snapshot at or below the target, reading only the bundles after it', async () => {
        const { id } = await scope(N);
        await bundler().bundleScope(id);
        const read: string[] = [];
        const blobs = wrap(ports().blobs, {
          get: (real, key) => {
            read.push(key);
            return real(key);
          },
        });
        // a fresh engine with an empty cache: every state is a rebuild
        const engine = new Engine({ ...ports(), blobs, cache: new MemoryCache() }, srv.app.config, { logError: () => {} });
        expect(await engine.stateAt(id, N)).toEqual(stateAfter(N));
        expect(read).toEqual([snapshotKey(id, 30), bundleKey(id, 31, 40), bundleKey(id, 41, 42)]);
        read.length = 0;
        expect(await new Engine({ ...ports(), blobs, cache: new MemoryCache() }, srv.app.config).stateAt(id, 29)).toEqual(stateAfter(29));
        expect(read).toEqual([snapshotKey(id, 15), bundleKey(id, 11, 20), bundleKey(id, 21, 30)]);

        // a cache entry far behind (more than PATCHBAY_SNAPSHOT_EVERY): the snapshot is closer
        const behind = new MemoryCache();
        await behind.put(id, 5, stateAfter(5));
        read.length = 0;
        expect(await new Engine({ ...ports(), blobs, cache: behind }, srv.app.config).stateAt(id, N)).toEqual(stateAfter(N));
        expect(read).toEqual([snapshotKey(id, 30), bundleKey(id, 31, 40), bundleKey(id, 41, 42)]);
        // a cache entry a little behind: folded forward from there, no snapshot needed
        const near = new MemoryCache();
        await near.put(id, 40, stateAfter(40));
        read.length = 0;
        expect(await new Engine({ ...ports(), blobs, cache: near }, srv.app.config).stateAt(id, N)).toEqual(stateAfter(N));
        expect(read).toEqual([bundleKey(id, 41, 42)]);

        // a damaged snapshot is skipped for an older one
        await ports().blobs.put(snapshotKey(id, 30), new Uint8Array([1, 2, 3]));
        read.length = 0;
        const errors: unknown[] = [];
        const wary = new Engine({ ...ports(), blobs, cache: new MemoryCache() }, srv.app.config, { logError: (e) => errors.push(e) });
        expect(await wary.stateAt(id, N)).toEqual(stateAfter(N));
        expect(read.slice(0, 2)).toEqual([snapshotKey(id, 30), snapshotKey(id, 15)]);
        expect(errors).toHaveLength(1);
      });

      it('reports a damaged bundle as an error, never as different data, and a rewrite repairs it', async () => {
        const { id, original } = await scope(20);
        await bundler().bundleScope(id);
        const key = bundleKey(id, 11, 20);
        const good = (await ports().blobs.get(key)) as Uint8Array;
        // one record changed, the rest (header, trailer, gzip) intact
        const text = gunzipSync(good).toString('utf8').replace('"value":12}', '"value":13}');
        await ports().blobs.put(key, new Uint8Array(gzipSync(text)));
        const history = async () => {
          const out: PatchRecord[] = [];
          for await (const r of await srv.app.engine.history(id, 1, undefined)) out.push(r);
          return out;
        };
        await expect(history()).rejects.toMatchObject({ code: 'internal', details: { reason: 'cold_object_damaged', key } });
        await ports().blobs.put(key, new Uint8Array([0x1f, 0x8b, 0, 0]));
        await expect(history()).rejects.toMatchObject({ code: 'internal', details: { reason: 'cold_object_damaged' } });

        const cold = new ColdStore(ports().blobs);
        expect(await cold.writeBundle(id, 11, 20, original.slice(10, 20).map(recordLine))).toBe('repaired');
        expect(await cold.writeBundle(id, 11, 20, original.slice(10, 20).map(recordLine))).toBe('present');
        expect(await history()).toEqual(original);
      });

      it('rebuild check: a wrong or missing cache entry is reported, and repaired unless only checking', async () => {
        const { id } = await scope(N);
        await bundler().bundleScope(id);
        const { ledger, cache } = ports();
        const cold = new ColdStore(ports().blobs);
        await cache.delete(id);
        expect(await checkCache(ledger, cache, cold, id, { repair: false })).toMatchObject({ status: 'missing', ii: N, cached: null, repaired: false });
        expect(await cache.get(id)).toBeNull();
        expect(await checkCache(ledger, cache, cold, id, { repair: true })).toMatchObject({ status: 'missing', ii: N, cached: null, repaired: true });
        expect(await cache.get(id)).toEqual({ ii: N, state: stateAfter(N) });
        expect(await checkCache(ledger, cache, cold, id, { repair: true })).toMatchObject({ status: 'ok', repaired: false });
        // an entry behind head is fine if it is right at its own index
        await cache.delete(id);
        await cache.put(id, 44, stateAfter(44));
        expect(await checkCache(ledger, cache, cold, id, { repair: true })).toMatchObject({ status: 'ok', cached: 44, repaired: false });
        await cache.delete(id);
        await cache.put(id, N, { n: -1 });
        expect(await checkCache(ledger, cache, cold, id, { repair: false })).toMatchObject({ status: 'mismatch', cached: N, repaired: false });
        expect(await cache.get(id)).toEqual({ ii: N, state: { n: -1 } });
        expect(await checkCache(ledger, cache, cold, id, { repair: true })).toMatchObject({ status: 'mismatch', repaired: true });
        expect(await cache.get(id)).toEqual({ ii: N, state: stateAfter(N) });
        await cache.delete(id);
        await cache.put(id, N + 5, { n: 'from the future' });
        expect(await checkCache(ledger, cache, cold, id, { repair: true })).toMatchObject({ status: 'ahead', repaired: true });
        expect(await cache.get(id)).toEqual({ ii: N, state: stateAfter(N) });
      });
    });

    describe('retries and retention', () => {
      it('recognises a retry inside the retention window; a retry of a trimmed patch is not recognised', async () => {
        const id = newId();
        const { engine } = srv.app;
        await engine.createScope('owner-1', { id, state: INITIAL });
        for (let i = 1; i <= 30; i += 10) {
          await Promise.all(Array.from({ length: 10 }, (_, k) => engine.submit(id, 'owner-1', { session: 'tab', si: i + k, patch: patchFor(i + k) })));
        }
        expect(await bundler().bundleScope(id)).toMatchObject({ bundledTo: 30, trimmedTo: 25 });
        // inside the window (26..30): the original ack
        expect(await engine.submit(id, 'owner-1', { session: 'tab', si: 28, patch: patchFor(28) })).toEqual({ id, ii: 28, duplicate: true });
        // trimmed (1..25): with ii, the index check refuses it (the client finds its patch in history)
        await expect(engine.submit(id, 'owner-1', { ii: 3, session: 'tab', si: 3, patch: patchFor(3) })).rejects.toMatchObject({
          code: 'out_of_sync',
          details: { head: 30 },
        });
        // without ii it is taken as a new patch
        expect(await engine.submit(id, 'owner-1', { session: 'tab', si: 3, patch: [{ op: 'replace', path: '/n', value: 3 }] })).toEqual({ id, ii: 31 });
        expect((await engine.getScope(id)).state).toEqual({ ...(stateAfter(30) as object), n: 3 });
      });
    });

    describe('fencing', () => {
      it('a bundler whose lease passed on mid-way cannot move the pointer', async () => {
        const { id, original } = await scope(N);
        const pause = pausing(ports().blobs, 'put', 1);
        const advances: Array<number | null> = [];
        const ledger = wrap(ports().ledger, {
          advanceBundled: async (real, ...a) => {
            const r = await real(...a);
            advances.push(r);
            return r;
          },
        });
        const first = bundler({ ledger, blobs: pause.port, holder: 'first' });
        const run = first.bundleScope(id);
        await pause.reached; // `first` holds the lease and is about to write its first bundle
        // its lease expires; `second` takes over (a new epoch) and does everything
        expect(await bundler({ holder: 'second', now: LATER }).bundleScope(id)).toMatchObject({ outcome: 'done', bundledTo: 42, trimmedTo: 42 });
        pause.release();
        expect(await run).toMatchObject({ outcome: 'fenced', patches: 0, trimmed: 0 });
        expect(advances).toEqual([null]);
        expect(await ports().ledger.getHead(id)).toMatchObject({ bundled: 42, trimmed: 42 });
        await expectRecoverable(srv.app, id, original);
      });

      it('a bundler whose lease passed on mid-trim cannot trim further', async () => {
        const { id, original } = await scope(N);
        const pause = pausing(ports().ledger, 'trimLog', 2);
        const first = bundler({ ledger: pause.port, holder: 'first' });
        const run = first.bundleScope(id);
        await pause.reached; // one chunk (1..7) trimmed, the second about to go
        expect(await ports().ledger.getHead(id)).toMatchObject({ bundled: 42, trimmed: 7 });
        const more = await seed(ports().ledger, id, 20); // 48..67 arrive meanwhile
        expect(await bundler({ holder: 'second', now: LATER }).bundleScope(id)).toMatchObject({ outcome: 'done', bundledTo: 62, trimmedTo: 62 });
        pause.release();
        expect(await run).toMatchObject({ outcome: 'fenced', trimmed: 7, trimmedTo: 7 });
        expect(await ports().ledger.getHead(id)).toMatchObject({ bundled: 62, trimmed: 62 });
        await expectRecoverable(srv.app, id, [...original, ...more]);
      });

      it('one bundler asked twice at once for one scope works on it once (its lease cannot tell the two apart)', async () => {
        const { id, original } = await scope(N);
        const b = bundler();
        const reports = await Promise.all([b.bundleScope(id), b.bundleScope(id)]);
        expect(reports.map((r) => r.outcome).sort()).toEqual(['done', 'leased']);
        expect(reports.reduce((n, r) => n + r.bundles, 0)).toBe(5);
        await expectRecoverable(srv.app, id, original);
      });

      it('two bundlers racing on one scope, round after round, lose nothing and duplicate nothing', async () => {
        const { id, original } = await scope(N);
        for (let round = 0; round < 2; round++) {
          // `late` sees every lease `early` takes as expired, so it can take over at any moment
          const early = bundler({ holder: `early-${round}` });
          const late = bundler({ holder: `late-${round}`, now: LATER });
          const reports = await Promise.all([early.bundleScope(id), late.bundleScope(id)]);
          expect(reports.some((r) => r.outcome === 'done')).toBe(true);
          await expectRecoverable(srv.app, id, original);
          original.push(...(await seed(ports().ledger, id, 23)));
        }
        await bundler({ now: () => Date.now() + 100 * SMALL.bundleLeaseMs }).bundleScope(id);
        await expectRecoverable(srv.app, id, original);
        expect(await ports().ledger.getHead(id)).toMatchObject({ ii: original.length, trimmed: original.length - 5 });
      });
    });

    describe('crash points', () => {
      it('bundling a 47-patch scope takes these steps, in this order', async () => {
        const { id } = await scope(N);
        const probe = crashing(ports(), null);
        await bundler({ ledger: probe.ledger, blobs: probe.blobs }).bundleScope(id);
        const short = probe.trace.map((s) =>
          s.replace(/^blobs\.put (bundles|snapshots)\/[^/]+\/(\d+)(?:-(\d+))?\.ndjson\.gz$/, (_, kind: string, a: string, b?: string) =>
            kind === 'bundles' ? `blobs.put b${Number(a)}-${Number(b)}` : `blobs.put s${Number(a)}`,
          ),
        );
        expect(short).toEqual(STEPS);
      });

      const cases: CrashPlan[] = [];
      STEPS.forEach((_, i) => {
        const firstOfKind = STEPS.findIndex((s) => s.split(' ')[0] === STEPS[i]?.split(' ')[0]) === i;
        if (opts.crashes !== 'lean' || firstOfKind) cases.push({ at: i + 1, when: 'before', how: 'throw' });
        cases.push({ at: i + 1, when: 'after', how: 'hang' });
      });

      it.each(cases.map((c) => [`${c.when} step ${c.at} (${STEPS[c.at - 1]})`, c] as const))(
        'a crash %s leaves every patch recoverable exactly once, and a fresh bundler finishes',
        async (_, plan) => {
          const { id, original } = await scope(N);
          const crash = crashing(ports(), plan);
          const doomed = bundler({ ledger: crash.ledger, blobs: crash.blobs }).bundleScope(id);
          await Promise.race([doomed.catch(() => {}), crash.died]);
          expect(crash.dead).toBe(true);
          await expectRecoverable(srv.app, id, original);

          // the crashed bundler never released its lease: the next one waits it out (a later clock)
          expect(await bundler({ now: LATER }).bundleScope(id)).toMatchObject({ outcome: 'done', bundledTo: 42, trimmedTo: 42 });
          await expectRecoverable(srv.app, id, original);
          expect(await bundleKeys(id)).toContain(bundleKey(id, 41, 42));
          expect(await snapshotKeys(id)).toEqual([snapshotKey(id, 15), snapshotKey(id, 30)]);
        },
      );
    });

    describe('runs over every scope', () => {
      it('run() bundles every scope with work, skips the rest, and stops when its budget is spent', async () => {
        const own = await start(SMALL); // its own namespace: no other test's scopes
        try {
          const mk = async (n: number) => {
            const id = newId('run');
            await own.app.engine.createScope('o', { id, state: INITIAL });
            return { id, original: await seed(own.app.adapters.ledger, id, n) };
          };
          const busy = await mk(23);
          const quiet = await mk(4);
          const b = new Bundler(own.app.adapters.ledger, own.app.adapters.blobs, own.app.config, { logError: () => {} });
          expect(await b.run({ budgetMs: -1 })).toMatchObject({ scopes: 0, worked: 0, complete: false });
          const seen: string[] = [];
          const report = await b.run({ onScope: (r) => seen.push(r.id) });
          expect(report).toMatchObject({ scopes: 2, worked: 1, bundles: 2, patches: 20, trimmed: 18, failed: [], complete: true });
          expect(seen).toEqual([busy.id]);
          expect(await own.app.adapters.ledger.getHead(quiet.id)).toMatchObject({ bundled: 0, trimmed: 0 });
          await expectRecoverable(own.app, busy.id, busy.original);
          expect(await b.run()).toMatchObject({ scopes: 2, worked: 0, complete: true });
        } finally {
          await own.close();
        }
      });
    });
  });
}
