/**
 * What the SQLite ledger's batched write path promises (shared/adapters/embedded/sqlite/):
 * commits of many scopes that are ready in one event-loop turn are written in one transaction, yet
 * each keeps its own outcome. A plan that throws, a plan whose head moved (it is planned again),
 * and a commit whose insert fails (its savepoint is rolled back) change nothing of their own
 * scope while the rest of the batch is stored (guarantees 1 and 3). A plan that awaits across
 * turns, or never resolves, holds no write lock. The published watermark still only rises, and
 * its fsync-free batches leave the connection at synchronous=FULL for the commits that follow.
 * `readPatches` is exactly `readLog` projected on (ii, patch). A file made before listings gets
 * their members table filled from the access it stores.
 *
 * Everything runs on real SQLite files in temporary directories; a second plain connection on
 * the same file plays "another process" and inspects the rows and the WAL.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteLedger } from '../shared/adapters/embedded/index.js';
import { PatchbayError } from '../shared/errors.js';
import type { Plan } from '../shared/ports/index.js';
import type { PatchRecord, ScopeMeta } from '../shared/protocol.js';
import { tempDir } from './helpers/server.js';

const T0 = 1_700_000_000_000;
const meta: ScopeMeta = { owner: 'user-1', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 };

function record(scope: string, ii: number, epoch: number, overrides: Partial<PatchRecord> = {}): PatchRecord {
  return {
    scope,
    ii,
    patch: [{ op: 'replace', path: '/n', value: ii }],
    at: T0 + ii,
    by: 'user-1',
    session: null,
    si: null,
    hash: `h${ii}`,
    epoch,
    ...overrides,
  };
}

/** `n` records after whatever head the plan is shown; resolves to their indices. */
const append =
  (id: string, n: number, overrides: Partial<PatchRecord> = {}): Plan<number[]> =>
  async (view) => {
    const records = Array.from({ length: n }, (_, i) => record(id, view.head.ii + 1 + i, view.head.epoch, overrides));
    return { records, meta: { updated: T0 + view.head.ii + n, size: view.head.ii + n }, result: records.map((r) => r.ii) };
  };

const settle = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const dirs: string[] = [];
const opened: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const c of opened.splice(0).reverse()) await c.close();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A ledger on a fresh file (synchronous=FULL, the default) and a plain connection beside it. */
function setup() {
  const dir = tempDir('patchbay-sqlite-ledger-');
  dirs.push(dir);
  const file = join(dir, 'ledger.sqlite');
  const ledger = new SqliteLedger(file);
  opened.push(ledger);
  const raw = new Database(file);
  raw.pragma('busy_timeout = 5000');
  opened.push(raw);
  const rows = (id: string) => ({
    head: raw.prepare('SELECT * FROM scopes WHERE id = ?').get(id),
    log: raw.prepare('SELECT * FROM patches WHERE scope = ? ORDER BY ii').all(id),
  });
  /** Frames in the WAL since the last reset: how much the committed transactions wrote. */
  const walFrames = () => (raw.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>)[0]?.log ?? -1;
  const resetWal = () => raw.pragma('wal_checkpoint(TRUNCATE)');
  const create = async (initial = {}) => {
    const id = `scope-${randomUUID()}`;
    await ledger.createScope({ id, meta, initial });
    return id;
  };
  return { file, ledger, raw, rows, walFrames, resetWal, create };
}

describe('SqliteLedger: commits of one turn share a transaction, outcomes stay their own', () => {
  it('stores the good commits and leaves every failed one exactly as it was', async () => {
    const { ledger, raw, rows, create } = setup();
    const good = await Promise.all(Array.from({ length: 6 }, () => create()));
    const throwing = await Promise.all(Array.from({ length: 2 }, () => create()));
    const stale = await create();
    const duplicate = await create();
    const twice = await create();
    // `duplicate` already holds (session s, si 1): a second record with it fails on insert, after
    // its head row was moved, so only its savepoint's rollback can undo the move.
    await ledger.commit(duplicate, append(duplicate, 1, { session: 's', si: 1 }));
    const before = Object.fromEntries([...throwing, duplicate].map((id) => [id, rows(id)]));

    let stalePlans = 0;
    const outcomes = await Promise.all([
      ...good.map((id, k) => settle(ledger.commit(id, append(id, k + 1)))),
      ...throwing.map((id) =>
        settle(
          ledger.commit(id, async () => {
            throw new PatchbayError('patch_failed', `plan of ${id} refuses`);
          }),
        ),
      ),
      // Another process moves this head while the plan runs: the write must notice and plan again.
      settle(
        ledger.commit(stale, async (view) => {
          stalePlans++;
          if (stalePlans === 1) {
            raw.prepare("INSERT INTO patches (scope, ii, patch, at, by, hash, epoch) VALUES (?, 1, '[]', 0, 'other', 'x', ?)").run(stale, view.head.epoch);
            raw.prepare('UPDATE scopes SET ii = 1 WHERE id = ?').run(stale);
          }
          return append(stale, 1)(view);
        }),
      ),
      settle(ledger.commit(duplicate, append(duplicate, 2, { session: 's', si: 1 }))),
      // Two commits of one scope in one turn see the same head: one wins, the other plans again.
      settle(ledger.commit(twice, append(twice, 2))),
      settle(ledger.commit(twice, append(twice, 1))),
    ]);

    const [g, t, st, dup, tw] = [outcomes.slice(0, 6), outcomes.slice(6, 8), outcomes[8], outcomes[9], outcomes.slice(10)];
    expect(g).toEqual(good.map((_, k) => ({ value: Array.from({ length: k + 1 }, (_, i) => i + 1) })));
    for (const o of t) expect((o as { error: PatchbayError }).error.code).toBe('patch_failed');
    expect(st).toEqual({ value: [2] });
    expect(stalePlans).toBe(2);
    expect((dup as { error: { code: string } }).error.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
    expect(tw).toEqual([{ value: [1, 2] }, { value: [3] }]);

    // The failed ones: not a byte changed, head row and log alike.
    for (const id of [...throwing, duplicate]) expect(rows(id), id).toEqual(before[id]);
    // The good ones: their records and heads, as if committed alone.
    for (const [k, id] of good.entries()) {
      expect((await ledger.readLog(id, 1, 100)).map((r) => r.ii)).toEqual(Array.from({ length: k + 1 }, (_, i) => i + 1));
      expect(await ledger.getHead(id)).toMatchObject({ ii: k + 1, meta: { size: k + 1, updated: T0 + k + 1 } });
    }
    expect((await ledger.readLog(stale, 1, 10)).map((r) => [r.ii, r.by])).toEqual([
      [1, 'other'],
      [2, 'user-1'],
    ]);
    expect((await ledger.getHead(twice))?.ii).toBe(3);
    // and a scope whose savepoint was rolled back takes its next good commit at head + 1
    expect(await ledger.commit(duplicate, append(duplicate, 1, { session: 's', si: 2 }))).toEqual([2]);
  });

  it('writes the commits of one turn as one transaction (one fsync), not one each', async () => {
    const { ledger, walFrames, resetWal, create } = setup();
    const n = 12;
    const one = await Promise.all(Array.from({ length: n }, () => create()));
    const other = await Promise.all(Array.from({ length: n }, () => create()));

    resetWal();
    for (const id of one) await ledger.commit(id, append(id, 1)); // a turn each
    const separate = walFrames();

    resetWal();
    await Promise.all(other.map((id) => ledger.commit(id, append(id, 1)))); // all in one turn
    const together = walFrames();

    // Each transaction writes every page it touched (head row, outbox index, log) once: twelve
    // transactions write about twelve times the frames of one.
    expect(separate).toBeGreaterThanOrEqual(2 * n);
    expect(together).toBeLessThan(separate / 4);
    for (const id of [...one, ...other]) expect((await ledger.getHead(id))?.ii).toBe(1);
  });
});

describe('SqliteLedger: plans that await across turns hold no lock', () => {
  it('other scopes commit, and another connection can write, while a plan waits', async () => {
    const { file, ledger, create } = setup();
    const slow = await create();
    const fast = await create();
    const gate = deferred();
    let slowPlans = 0;
    const pending = ledger.commit(slow, async (view) => {
      slowPlans++;
      await gate.promise;
      return append(slow, 1)(view);
    });

    expect(await ledger.commit(fast, append(fast, 2))).toEqual([1, 2]);
    await ledger.markPublished(fast, 1);
    // No write lock is held: a connection that would rather fail than wait gets it at once.
    const other = new Database(file);
    opened.push(other);
    other.pragma('busy_timeout = 0');
    expect(() => other.exec('BEGIN IMMEDIATE; ROLLBACK')).not.toThrow();
    // Meanwhile a commit to the waiting plan's own scope lands: the waiting plan must plan again.
    expect(await ledger.commit(slow, append(slow, 1, { by: 'meanwhile' }))).toEqual([1]);
    expect(slowPlans).toBe(1);

    gate.resolve();
    expect(await pending).toEqual([2]);
    expect(slowPlans).toBe(2); // its first plan saw head 0: written nothing, planned again on head 1
    expect((await ledger.readLog(slow, 1, 10)).map((r) => [r.ii, r.by])).toEqual([
      [1, 'meanwhile'],
      [2, 'user-1'],
    ]);
    expect(await ledger.getHead(fast)).toMatchObject({ ii: 2, published: 1 });
  });

  it('a plan that never resolves blocks nothing', async () => {
    const { ledger, create } = setup();
    const stuck = await create();
    void ledger.commit(stuck, () => new Promise<never>(() => {}));
    const others = await Promise.all(Array.from({ length: 5 }, () => create()));
    for (let round = 1; round <= 3; round++) {
      expect(await Promise.all(others.map((id) => ledger.commit(id, append(id, 1))))).toEqual(others.map(() => [round]));
    }
    expect((await ledger.getHead(stuck))?.ii).toBe(0);
  });
});

describe('SqliteLedger: the published watermark', () => {
  it('only rises, whatever order the moves of one turn come in, and honours from', async () => {
    const { ledger, create } = setup();
    const id = await create();
    await ledger.commit(id, append(id, 8));
    await Promise.all([ledger.markPublished(id, 3), ledger.markPublished(id, 5), ledger.markPublished(id, 4), ledger.markPublished(id, 2)]);
    expect((await ledger.getHead(id))?.published).toBe(5);
    // In call order within a turn: the run 8..8 comes before 6..7 has landed, so it changes nothing.
    await Promise.all([ledger.markPublished(id, 8, 8), ledger.markPublished(id, 7, 6)]);
    expect((await ledger.getHead(id))?.published).toBe(7);
    await Promise.all([ledger.markPublished(id, 8, 8), ledger.markPublished(id, 1)]);
    expect((await ledger.getHead(id))?.published).toBe(8);
  });

  it('rides along with commits of the same turn, and a watermark-only batch leaves synchronous at FULL', async () => {
    const { ledger, create } = setup();
    const id = await create();
    await ledger.commit(id, append(id, 2));
    const other = await create();
    const [, ack] = await Promise.all([ledger.markPublished(id, 2), ledger.commit(other, append(other, 1))]);
    expect(ack).toEqual([1]);
    expect((await ledger.getHead(id))?.published).toBe(2);

    await ledger.markPublished(other, 1); // alone: written without an fsync
    // The ledger's own connection, looked at directly: the next commit must be fsynced again.
    const db = Reflect.get(ledger, 'db') as Database.Database;
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(await ledger.listUnpublished(T0 + 10_000_000_000_000, 10)).toEqual([]);
  });

  it('a move queued just before close is written, not dropped', async () => {
    const { file, ledger, create } = setup();
    const id = await create();
    await ledger.commit(id, append(id, 3));
    const moved = ledger.markPublished(id, 3);
    await ledger.close();
    await moved;
    const again = new SqliteLedger(file);
    opened.push(again);
    expect((await again.getHead(id))?.published).toBe(3);
    await expect(ledger.markPublished(id, 3)).rejects.toThrow();
  });
});

describe('SqliteLedger: readPatches', () => {
  it('is readLog projected on ii and patch, for any range and limit, after trimming too', async () => {
    const { ledger, create } = setup();
    const id = await create();
    const other = await create();
    await ledger.commit(other, append(other, 3));
    const patches = (ii: number) => [
      { op: 'add', path: `/k${ii}`, value: { text: `é ✓ 𝄞 ${ii}`, list: [1, [2, null], { x: true }] } },
      { op: 'remove', path: '/a~1b/~0c' },
    ];
    await ledger.commit(id, async (view) => ({
      records: Array.from({ length: 30 }, (_, i) => record(id, view.head.ii + 1 + i, view.head.epoch, { patch: patches(i + 1) as PatchRecord['patch'] })),
      result: null,
    }));
    const same = async () => {
      for (const [from, to, limit] of [
        [1, 30, 1000],
        [0, 100, 1000],
        [5, 9, 1000],
        [7, 7, 1000],
        [1, 30, 4],
        [10, 30, 7],
        [31, 40, 1000],
        [9, 8, 1000],
        [1, 30, 0],
      ] as const) {
        const log = await ledger.readLog(id, from, to, limit);
        expect(await ledger.readPatches(id, from, to, limit), `${from}..${to} limit ${limit}`).toEqual(log.map((r) => ({ ii: r.ii, patch: r.patch })));
      }
      expect(await ledger.readPatches(id, 1, 30)).toHaveLength(30 - ((await ledger.getHead(id))?.trimmed ?? 0));
    };
    await same();
    const epoch = (await ledger.acquireLease(id, 'worker', 60_000)) as number;
    await ledger.advanceBundled(id, 'worker', epoch, 12);
    await ledger.trimLog(id, 'worker', epoch, 12, 100);
    await same();
    expect((await ledger.readPatches(id, 1, 30))[0]?.ii).toBe(13);
  });
});

describe('SqliteLedger: listings on a file made before them', () => {
  it('opening the file fills the members table from the stored access, once', async () => {
    const { file, ledger, raw, create } = setup();
    const id = await create();
    await ledger.setAccess(id, { visibility: 'private', readers: ['user-r'], writers: ['user-w'] }, 0);
    await ledger.close();
    // What a file of the version before listings holds: no owner index, no members table.
    raw.exec('DROP INDEX scopes_owner; DROP TABLE members');
    const reopened = new SqliteLedger(file);
    opened.push(reopened);
    for (const user of ['user-r', 'user-w', 'user-1'])
      expect(
        (await reopened.listFor(user, { limit: 10 })).scopes.map((s) => s.id),
        user,
      ).toEqual([id]);
    await reopened.setAccess(id, { visibility: 'private', readers: [], writers: ['user-w'] }, 1);
    expect((await reopened.listFor('user-r', { limit: 10 })).scopes).toEqual([]);
    expect(raw.prepare('SELECT user FROM members WHERE scope = ?').all(id)).toEqual([{ user: 'user-w' }]);
  });
});
