/**
 * The embedded adapters pass the shared conformance suite of their port (SqliteLedger on a temp
 * file, MemoryCache, LocalBus, FsBlobStore on a temp directory), plus what only they promise:
 * a SQLite ledger is durable across reopening (heads, log, leases); two ledgers on one file never
 * give one index to two commits (guarantee 1 with several connections on one file: each commit
 * re-checks the head inside an IMMEDIATE transaction), nor one name to two scopes; a file written
 * before names were unique opens with its duplicate names (the newest holds the name); the memory cache evicts the least recently
 * used scope past its bound; MemoryLimits passes the limit store suite; SqliteRecords the record store suite; the blob store refuses keys that would escape its root.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FsBlobStore, LocalBus, MemoryCache, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { MemoryLimits } from '../shared/adapters/embedded/memory-limits.js';
import { MemoryPresence } from '../shared/adapters/embedded/memory-presence.js';
import { PatchbayError } from '../shared/errors.js';
import type { Ledger } from '../shared/ports/index.js';
import type { PatchRecord, ScopeMeta } from '../shared/protocol.js';
import { blobConformance } from './conformance/blobs.js';
import { busConformance } from './conformance/bus.js';
import { cacheConformance } from './conformance/cache.js';
import { expectCode } from './conformance/ledger/fixtures.js';
import { ledgerConformance } from './conformance/ledger/index.js';
import { createOrResolve } from './conformance/ledger/names.js';
import { limitsConformance } from './conformance/limits.js';
import { presenceConformance } from './conformance/presence.js';
import { recordsConformance } from './conformance/records.js';
import { tempDir } from './helpers/server.js';

const dirs: string[] = [];
const dir = (): string => {
  const d = tempDir('patchbay-conformance-');
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

ledgerConformance('SqliteLedger', async () => new SqliteLedger(join(dir(), 'ledger.sqlite'), { sync: 'normal' }));
cacheConformance('MemoryCache', async () => new MemoryCache());
busConformance('LocalBus', async () => new LocalBus());
blobConformance('FsBlobStore', async () => new FsBlobStore(join(dir(), 'blobs')));
limitsConformance('MemoryLimits', async (rules) => new MemoryLimits(rules));
presenceConformance('MemoryPresence', async (now) => new MemoryPresence(now));
recordsConformance('SqliteRecords', async () => new SqliteLedger(join(dir(), 'records.sqlite'), { sync: 'normal' }).records);

const T0 = 1_700_000_000_000;
const meta: ScopeMeta = { owner: 'user-1', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 };

function record(scope: string, ii: number, epoch: number, by = 'user-1'): PatchRecord {
  return { scope, ii, patch: [{ op: 'replace', path: '/n', value: ii }], at: T0 + ii, by, session: `s-${by}`, si: ii, hash: `h${ii}`, epoch };
}

describe('SqliteLedger (embedded only)', () => {
  const open: Ledger[] = [];
  const ledger = (file: string): SqliteLedger => {
    const l = new SqliteLedger(file, { sync: 'normal' });
    open.push(l);
    return l;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((l) => l.close()));
  });

  it('a ledger reopened on the same file keeps heads, log, watermark and leases', async () => {
    const file = join(dir(), 'ledger.sqlite');
    const first = ledger(file);
    const id = `scope-${randomUUID()}`;
    await first.createScope({ id, meta, initial: { n: 0, text: 'héllo ✓' } });
    const now = Date.now();
    const epoch = await first.acquireLease(id, 'worker-a', 60_000, now);
    await first.commit(id, async (view) => ({
      records: [record(id, view.head.ii + 1, view.head.epoch), record(id, view.head.ii + 2, view.head.epoch)],
      meta: { updated: T0 + 2, size: 7 },
      result: null,
    }));
    await first.markPublished(id, 1);
    const head = await first.getHead(id);
    const log = await first.readLog(id, 1, 100);
    expect(head).toMatchObject({ ii: 2, published: 1, epoch, lease: { holder: 'worker-a', expires: now + 60_000 } });
    expect(log).toHaveLength(2);
    await first.close();

    const again = ledger(file);
    expect(await again.getHead(id)).toEqual(head);
    expect(await again.getInitial(id)).toEqual({ n: 0, text: 'héllo ✓' });
    expect(await again.readLog(id, 1, 100)).toEqual(log);
    expect(await again.listUnpublished(T0 + 3, 10)).toEqual([{ id, published: 1, ii: 2 }]);
    // the lease survived: another holder is refused, the holder keeps its epoch
    expect(await again.acquireLease(id, 'worker-b', 1000, now + 1)).toBeNull();
    expect(await again.acquireLease(id, 'worker-a', 1000, now + 1)).toBe(epoch);
    // and the log continues where it stopped
    const next = await again.commit(id, async (view) => ({ records: [record(id, view.head.ii + 1, view.head.epoch)], result: view.head.ii + 1 }));
    expect(next).toBe(3);
  });

  it('two ledgers on one file committing concurrently to one scope never share an index', async () => {
    const file = join(dir(), 'ledger.sqlite');
    const a = ledger(file);
    const b = ledger(file);
    const id = `scope-${randomUUID()}`;
    await a.createScope({ id, meta, initial: {} });
    const commits = 16;
    // Alternate the two connections; each plan yields first, so plans on both connections see the
    // same head and all but one of them must notice the head moved and plan again.
    const results = await Promise.all(
      Array.from({ length: commits }, (_, k) =>
        (k % 2 === 0 ? a : b).commit(id, async (view) => {
          await new Promise((r) => setImmediate(r));
          const ii = view.head.ii + 1;
          return { records: [record(id, ii, view.head.epoch, `writer-${k}`)], result: ii };
        }),
      ),
    );
    expect(results.slice().sort((x, y) => x - y)).toEqual(Array.from({ length: commits }, (_, i) => i + 1));

    const reader = ledger(file);
    const log = await reader.readLog(id, 1, 1000);
    expect(log.map((r) => r.ii)).toEqual(Array.from({ length: commits }, (_, i) => i + 1));
    for (const [k, ii] of results.entries()) expect(log[ii - 1]?.by, `writer-${k}`).toBe(`writer-${k}`);
    expect((await reader.getHead(id))?.ii).toBe(commits);
  });

  it('two ledgers on one file doing create-or-resolve under one name concurrently get one id', async () => {
    const file = join(dir(), 'ledger.sqlite');
    const a = ledger(file);
    const b = ledger(file);
    const results = await Promise.all(Array.from({ length: 20 }, (_, k) => createOrResolve(k % 2 === 0 ? a : b, 'user-1', 'one board')));
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect((await a.listFor('user-1', { limit: 100 })).scopes).toHaveLength(1);
  });

  it('a file from before names were unique opens with its duplicates: the newest holds the name, the next newest once it is renamed away', async () => {
    const file = join(dir(), 'ledger.sqlite');
    const first = ledger(file);
    const ids = ['dup-a', 'dup-b', 'dup-c', 'dup-d'];
    for (const [i, id] of ids.entries()) await first.createScope({ id, meta: { ...meta, created: T0 + (i === 3 ? 1 : 2) }, initial: {} });
    await first.close();
    // What an older version could store: three scopes of one owner and domain sharing a name, no `names` table.
    const raw = new Database(file);
    raw.exec("DROP TABLE names; DROP INDEX scopes_name; UPDATE scopes SET name = 'dup'");
    raw.close();

    const again = ledger(file);
    // dup-a, dup-b and dup-c were created at T0 + 2, dup-d earlier: the greatest id of the newest wins.
    expect(await again.resolveName('default', 'user-1', 'dup')).toBe('dup-c');
    expect((await again.listFor('user-1', { limit: 10, name: 'dup' })).scopes.map((s) => s.id)).toEqual(ids);
    await expectCode(again.createScope({ id: 'dup-e', meta: { ...meta, name: 'dup' }, initial: {} }), 'name_taken');
    await expectCode(again.rename('dup-a', 'dup'), 'name_taken');
    await again.rename('dup-c', 'moved');
    expect(await again.resolveName('default', 'user-1', 'dup')).toBe('dup-b');
    await again.rename('dup-b', null);
    await again.rename('dup-a', 'elsewhere');
    expect(await again.resolveName('default', 'user-1', 'dup')).toBe('dup-d');
  });
});

describe('MemoryCache (embedded only)', () => {
  it('drops the least recently used scope once its states pass its bound in bytes', async () => {
    // Each entry counts 100 bytes (the caller's estimate) plus its overhead: three fit in 800.
    const cache = new MemoryCache(800);
    const put = (id: string, ii: number, state: string) => cache.put(id, ii, state, 100);
    await put('a', 1, 'A');
    await put('b', 1, 'B');
    await put('c', 1, 'C');
    expect(await cache.get('a')).toEqual({ ii: 1, state: 'A' }); // a is now the most recent
    await put('d', 1, 'D'); // evicts b, the least recently used
    expect(await cache.get('b')).toBeNull();
    expect(await cache.get('a')).toEqual({ ii: 1, state: 'A' });
    expect(await cache.get('c')).toEqual({ ii: 1, state: 'C' });
    expect(await cache.get('d')).toEqual({ ii: 1, state: 'D' });
    // recency is now a, c, d (oldest first); a newer put of c makes it recent too
    await put('c', 2, 'C2');
    await put('e', 1, 'E'); // evicts a
    expect(await cache.get('a')).toBeNull();
    expect(await cache.get('c')).toEqual({ ii: 2, state: 'C2' });
    expect(await cache.get('d')).toEqual({ ii: 1, state: 'D' });
    expect(await cache.get('e')).toEqual({ ii: 1, state: 'E' });
    await cache.close();
  });
});

describe('FsBlobStore (embedded only)', () => {
  it('rejects keys with .. segments and writes nothing outside its root', async () => {
    const parent = dir();
    const store = new FsBlobStore(join(parent, 'blobs'));
    const data = new TextEncoder().encode('escape');
    const bad = ['../escape', 'a/../../escape', '..', 'a/..', 'a/../b', './a', '/abs', 'a//b', ''];
    for (const key of bad) {
      for (const [what, op] of [
        ['put', () => store.put(key, data)],
        ['put ifAbsent', () => store.put(key, data, { ifAbsent: true })],
        ['get', () => store.get(key)],
        ['delete', () => store.delete(key)],
      ] as const) {
        const err = await op().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, `${what} ${JSON.stringify(key)}`).toBeInstanceOf(PatchbayError);
        expect((err as PatchbayError).code).toBe('invalid_request');
      }
    }
    expect(existsSync(join(parent, 'escape'))).toBe(false);
    expect(await store.list('')).toEqual([]);
    await store.close();
  });
});

describe('FsBlobStore key collisions', () => {
  it('refuses a key that is also a folder of other keys, with a coded error and no stray files', async () => {
    const dir = tempDir();
    const b = new FsBlobStore(dir);
    await b.put('a', new Uint8Array([1]));
    await expect(b.put('a/b', new Uint8Array([2]))).rejects.toMatchObject({ code: 'invalid_request' });
    await b.put('c/d', new Uint8Array([3]));
    await expect(b.put('c', new Uint8Array([4]))).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(b.put('c', new Uint8Array([4]), { ifAbsent: true })).rejects.toMatchObject({ code: 'invalid_request' });
    expect(await b.list('')).toEqual(['a', 'c/d']);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(`${dir}/c`)).toEqual(['d']);
  });
});
