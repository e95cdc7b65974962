/**
 * The mirror consumer (shared/mirror/consumer.ts) on the embedded stack: SQLite ledger, engine,
 * LocalDelivery, PGlite. The guarantee it checks: whatever order, repetition or gaps events come
 * in, and across a restart, each scope's rows end equal to its state at head, in its own domain's
 * schema only; a deleted scope's rows go; a domain without a mirror gets nothing. And the
 * coalescing (shared/engine/consumer.ts): a burst of events costs one catch-up and one cursor move,
 * the events queued behind it are duplicates that change nothing, even redelivered after a jump,
 * and a scope deleted mid-burst loses its rows without its cursor being remembered.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FsBlobStore, LocalBus, MemoryCache, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { PGliteMirror } from '../shared/adapters/embedded/pglite-mirror.js';
import { Consumer } from '../shared/engine/consumer.js';
import { Engine } from '../shared/engine/engine.js';
import { LocalDelivery } from '../shared/engine/local-delivery.js';
import { PatchbayError } from '../shared/errors.js';
import { mirrorHandler } from '../shared/mirror/consumer.js';
import type { MirrorTables } from '../shared/mirror/definitions.js';
import { schemaName } from '../shared/mirror/sql.js';
import type { ConsumerCursors } from '../shared/ports/ledger.js';
import type { PatchEvent } from '../shared/protocol.js';
import { tempDir, testConfig } from './helpers/server.js';

const dir = tempDir('patchbay-mirror-consumer-');
const mirror = new PGliteMirror(join(dir, 'mirror'));
afterAll(async () => {
  await mirror.close();
  rmSync(dir, { recursive: true, force: true });
});
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const TABLES: MirrorTables = { counters: { type: 'counter', columns: { n: { type: 'integer' }, label: { type: 'text' } } } };
let seq = 0;

/** An engine, a mirror consumer and (unless `live` is false) in-process delivery, over `ledger`. */
function setup(opts: { ledger: SqliteLedger; live?: boolean; deleted?: Set<string>; mirrored?: string[]; cacheMs?: number; refreshMs?: number }) {
  let delivery: LocalDelivery | null = null;
  const engine = new Engine({ ledger: opts.ledger, cache: new MemoryCache(), bus: new LocalBus(), blobs: new FsBlobStore(tempDir()) }, testConfig(), {
    logError: () => {},
    onPublished: (events) => (opts.live === false ? undefined : delivery?.offer(events)),
  });
  const readLog = (id: string, f: number, t: number) => engine.readLog(id, f, t);
  // The consumer's cursor reads and moves, and the mirror's upserts and removals, counted.
  const counts = { reads: 0, moves: [] as Array<[string, number, number]>, upserts: 0, removes: 0 };
  const cursors: ConsumerCursors = {
    getCursor: (c, id) => {
      counts.reads++;
      return opts.ledger.getCursor(c, id);
    },
    advanceCursor: async (c, id, from, to) => {
      counts.moves.push([id, from, to]);
      return opts.ledger.advanceCursor(c, id, from, to);
    },
  };
  const counted = new Proxy(mirror, {
    get(target, key) {
      if (key === 'upsert') counts.upserts++;
      if (key === 'remove') counts.removes++;
      const v = Reflect.get(target, key);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const handler = mirrorHandler(
    {
      mirror: counted,
      source: {
        head: async (id) => {
          if (opts.deleted?.has(id)) throw new PatchbayError('scope_not_found', 'gone');
          return engine.head(id);
        },
        stateAt: (id, ii) => engine.stateAt(id, ii),
      },
      tables: (domain) => ((opts.mirrored ?? []).includes(domain) ? TABLES : null),
    },
    { cacheMs: opts.cacheMs, refreshMs: opts.refreshMs },
  );
  const consumer = new Consumer('mirror', cursors, readLog, handler);
  delivery = new LocalDelivery([consumer], opts.ledger, readLog, () => {}, { firstRetryMs: 5 });
  const d = delivery;
  closers.push(async () => {
    await d.close();
    await engine.close();
  });
  return { engine, delivery: d, consumer, counts };
}

/** The events of `id`'s patches `from`..`to`, read from the log. */
async function eventsOf(engine: Engine, id: string, from: number, to: number): Promise<PatchEvent[]> {
  const out: PatchEvent[] = [];
  for await (const r of engine.readLog(id, from, to)) out.push({ scope: r.scope, ii: r.ii, patch: r.patch, at: r.at, by: r.by });
  return out;
}

async function rows(domain: string, table: string): Promise<unknown[][]> {
  return (await mirror.adminQuery(`SELECT * FROM "${schemaName(domain)}"."${table}" ORDER BY id`)).rows;
}

const fresh = () => `c${++seq}-${Date.now()}.example.com`;
const inc = (n: number) => ({ patch: [{ op: 'replace' as const, path: '/n', value: n }] });

describe('mirror consumer', () => {
  it('live: concurrent writes to several scopes end with every row at its head, in its domain only', async () => {
    const ledger = new SqliteLedger(':memory:');
    const [a, b, off] = [fresh(), fresh(), fresh()];
    const { engine, delivery } = setup({ ledger, mirrored: [a, b] });
    await engine.createScope('u1', { id: 'a1', type: 'counter', state: { n: 0, label: 'A' } }, { domain: a });
    await engine.createScope('u2', { id: 'b1', type: 'counter', state: { n: 0, label: 'B' } }, { domain: b });
    await engine.createScope('u2', { id: 'b2', type: 'note', state: { n: 0 } }, { domain: b });
    await engine.createScope('u3', { id: 'o1', type: 'counter', state: { n: 0 } }, { domain: off });
    await Promise.all(
      ['a1', 'b1', 'b2', 'o1'].flatMap((id) =>
        Array.from({ length: 15 }, (_, i) =>
          engine.submit(id, id === 'a1' ? 'u1' : id === 'o1' ? 'u3' : 'u2', inc(i + 1), { domain: id === 'a1' ? a : id === 'o1' ? off : b }),
        ),
      ),
    );
    await engine.settled();
    await delivery.idle();
    expect(await rows(a, 'counters')).toEqual([['a1', 15, 15, 'A']]);
    expect(await rows(b, 'counters')).toEqual([['b1', 15, 15, 'B']]);
    expect((await rows(b, 'scopes')).map((r) => [r[0], r[1], r[4]])).toEqual([
      ['b1', 15, 'counter'],
      ['b2', 15, 'note'],
    ]);
    const schemas = await mirror.adminQuery('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schemaName(off)]);
    expect(schemas.rows).toEqual([]); // a domain without a mirror gets no schema
  }, 180_000);

  it('duplicates, reordering and gaps: the rows end at head, never moving backwards', async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const { engine, consumer } = setup({ ledger, live: false, mirrored: [d] });
    await engine.createScope('u', { id: 's', type: 'counter', state: { n: 0 } }, { domain: d });
    const events: PatchEvent[] = [];
    for (let i = 1; i <= 6; i++) {
      await engine.submit('s', 'u', inc(i), { domain: d });
      for await (const r of engine.readLog('s', i, i)) events.push({ scope: r.scope, ii: r.ii, patch: r.patch, at: r.at, by: r.by });
    }
    await engine.settled();
    // 4 first (a gap: 1..3 are read from the log), then 2 and 4 again (duplicates), then 6 (gap 5), 6 again.
    const order = [4, 2, 4, 1, 6, 6, 3];
    for (const ii of order) await consumer.deliver(events[ii - 1] as PatchEvent);
    expect(await rows(d, 'counters')).toEqual([['s', 6, 6, null]]);
    expect((await rows(d, 'scopes')).map((r) => r[5])).toEqual([6]);
  }, 180_000);

  it('a restart catches up from the cursor: writes made while no consumer ran reach the mirror', async () => {
    const file = join(dir, `restart-${++seq}.sqlite`);
    const d = fresh();
    const first = setup({ ledger: new SqliteLedger(file), mirrored: [d] });
    await first.engine.createScope('u', { id: 'r', type: 'counter', state: { n: 0 } }, { domain: d });
    await first.engine.submit('r', 'u', inc(1), { domain: d });
    await first.engine.settled();
    await first.delivery.idle();
    expect(await rows(d, 'counters')).toEqual([['r', 1, 1, null]]);
    for (const c of closers.splice(0).reverse()) await c();
    // Written with no delivery running (as if the process died before delivering).
    const offline = setup({ ledger: new SqliteLedger(file), live: false, mirrored: [d] });
    for (let i = 2; i <= 5; i++) await offline.engine.submit('r', 'u', inc(i), { domain: d });
    await offline.engine.settled();
    for (const c of closers.splice(0).reverse()) await c();
    expect(await rows(d, 'counters')).toEqual([['r', 1, 1, null]]);
    const restarted = setup({ ledger: new SqliteLedger(file), mirrored: [d] });
    await restarted.delivery.catchUp();
    await restarted.delivery.idle();
    expect(await rows(d, 'counters')).toEqual([['r', 5, 5, null]]);
  }, 180_000);

  it("a deleted scope's rows are removed (scope_not_found from the engine)", async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const deleted = new Set<string>();
    const { engine, delivery } = setup({ ledger, deleted, mirrored: [d] });
    await engine.createScope('u', { id: 'gone', type: 'counter', state: { n: 0 } }, { domain: d });
    await engine.createScope('u', { id: 'kept', type: 'counter', state: { n: 0 } }, { domain: d });
    await engine.submit('gone', 'u', inc(1), { domain: d });
    await engine.submit('kept', 'u', inc(1), { domain: d });
    await engine.settled();
    await delivery.idle();
    expect((await rows(d, 'counters')).map((r) => r[0])).toEqual(['gone', 'kept']);
    deleted.add('gone');
    await engine.submit('gone', 'u', inc(2), { domain: d });
    await engine.settled();
    await delivery.idle();
    expect((await rows(d, 'counters')).map((r) => r[0])).toEqual(['kept']);
    expect((await rows(d, 'scopes')).map((r) => r[0])).toEqual(['kept']);
  }, 180_000);
  it('a burst of events: one catch-up to the head and one cursor move, the rest duplicates with no write', async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const { engine, consumer, counts } = setup({ ledger, live: false, mirrored: [d], cacheMs: 60_000, refreshMs: 1e9 });
    await engine.createScope('u', { id: 'hot', type: 'counter', state: { n: 0 } }, { domain: d });
    await engine.createScope('u', { id: 'cold', type: 'counter', state: { n: 0 } }, { domain: d });
    await Promise.all(Array.from({ length: 20 }, (_, i) => engine.submit('hot', 'u', inc(i + 1), { domain: d })));
    await engine.submit('cold', 'u', inc(7), { domain: d });
    await engine.settled();
    const hot = await eventsOf(engine, 'hot', 1, 20);
    const cold = (await eventsOf(engine, 'cold', 1, 1))[0] as PatchEvent;
    // Delivered as Pub/Sub would: in order per scope, the other scope's event in between.
    const results = [];
    for (const [i, e] of hot.entries()) {
      results.push(await consumer.deliver(e));
      if (i === 3) results.push(await consumer.deliver(cold));
    }
    expect(results[0]).toEqual({ handled: [20], duplicate: false });
    expect(results[4]).toEqual({ handled: [1], duplicate: false }); // the other scope: its own catch-up
    expect(results.filter((r) => r.duplicate)).toHaveLength(19);
    expect(counts.moves).toEqual([
      ['hot', 0, 20],
      ['cold', 0, 1],
    ]);
    expect(counts.upserts).toBe(2);
    expect(counts.reads).toBe(2); // the duplicates were answered from the cursor this process moved
    expect(await ledger.getCursor('mirror', 'hot')).toBe(20);
    const n = ((await engine.stateAt('hot', 20)) as { n: number }).n;
    expect(await rows(d, 'counters')).toEqual([
      ['cold', 1, 7, null],
      ['hot', 20, n, null],
    ]);
  }, 180_000);

  it('after a jump, a redelivered old event changes nothing, cached or read; a later gap is one move', async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const { engine, consumer, counts } = setup({ ledger, live: false, mirrored: [d], cacheMs: 0 });
    await engine.createScope('u', { id: 's', type: 'counter', state: { n: 0 } }, { domain: d });
    for (let i = 1; i <= 6; i++) await engine.submit('s', 'u', inc(i), { domain: d });
    await engine.settled();
    const events = await eventsOf(engine, 's', 1, 6);
    expect(await consumer.deliver(events[1] as PatchEvent)).toEqual({ handled: [6], duplicate: false }); // 2 first: a jump to 6
    const before = await rows(d, 'counters');
    for (const ii of [1, 2, 5, 6, 3]) expect(await consumer.deliver(events[ii - 1] as PatchEvent)).toEqual({ handled: [], duplicate: true });
    expect(counts.moves).toEqual([['s', 0, 6]]);
    expect(counts.upserts).toBe(1);
    expect(counts.reads).toBe(6); // no cache: each duplicate read the cursor, and wrote nothing
    expect(await rows(d, 'counters')).toEqual(before);
    for (let i = 7; i <= 9; i++) await engine.submit('s', 'u', inc(i), { domain: d });
    await engine.settled();
    const later = await eventsOf(engine, 's', 7, 9);
    expect(await consumer.deliver(later[2] as PatchEvent)).toEqual({ handled: [9], duplicate: false }); // 9 before 7 and 8
    expect(await consumer.deliver(later[0] as PatchEvent)).toEqual({ handled: [], duplicate: true });
    expect(counts.moves).toEqual([
      ['s', 0, 6],
      ['s', 6, 9],
    ]);
    expect(await rows(d, 'counters')).toEqual([['s', 9, 9, null]]);
  }, 180_000);

  it('a remembered cursor expires: after cacheMs a duplicate is read again, never handled', async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const { engine, consumer, counts } = setup({ ledger, live: false, mirrored: [d], cacheMs: 500, refreshMs: 1e9 });
    await engine.createScope('u', { id: 'warm', type: 'counter', state: { n: 0 } }, { domain: d });
    await engine.createScope('u', { id: 's', type: 'counter', state: { n: 0 } }, { domain: d });
    await engine.submit('warm', 'u', inc(1), { domain: d });
    for (let i = 1; i <= 3; i++) await engine.submit('s', 'u', inc(i), { domain: d });
    await engine.settled();
    await consumer.deliver((await eventsOf(engine, 'warm', 1, 1))[0] as PatchEvent); // makes the schema: not timed below
    const events = await eventsOf(engine, 's', 1, 3);
    const reads = counts.reads;
    await consumer.deliver(events[0] as PatchEvent);
    await consumer.deliver(events[1] as PatchEvent);
    expect(counts.reads - reads).toBe(1);
    await new Promise((r) => setTimeout(r, 600));
    expect(await consumer.deliver(events[2] as PatchEvent)).toEqual({ handled: [], duplicate: true });
    expect(counts.reads - reads).toBe(2);
    expect(counts.upserts).toBe(2);
  }, 180_000);

  it('a scope deleted mid-burst: its rows go, its cursor is not remembered, the later events change nothing', async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const { engine, consumer, counts } = setup({ ledger, live: false, mirrored: [d], cacheMs: 60_000, refreshMs: 1e9 });
    await engine.createScope('u', { id: 'gone', type: 'counter', state: { n: 0 } }, { domain: d });
    await engine.createScope('u', { id: 'kept', type: 'counter', state: { n: 0 } }, { domain: d });
    for (let i = 1; i <= 4; i++) await engine.submit('gone', 'u', inc(i), { domain: d });
    await engine.submit('kept', 'u', inc(1), { domain: d });
    await engine.settled();
    const first = await eventsOf(engine, 'gone', 1, 4);
    expect(await consumer.deliver(first[0] as PatchEvent)).toEqual({ handled: [4], duplicate: false });
    await consumer.deliver((await eventsOf(engine, 'kept', 1, 1))[0] as PatchEvent);
    expect((await rows(d, 'counters')).map((r) => r[0])).toEqual(['gone', 'kept']);
    for (let i = 5; i <= 8; i++) await engine.submit('gone', 'u', inc(i), { domain: d });
    await engine.settled();
    const rest = await eventsOf(engine, 'gone', 5, 8);
    await engine.deleteScope('gone', { id: 'u', domain: d });
    for (const e of [...first.slice(1), ...rest]) await consumer.deliver(e);
    expect((await rows(d, 'counters')).map((r) => r[0])).toEqual(['kept']);
    expect((await rows(d, 'scopes')).map((r) => r[0])).toEqual(['kept']);
    // 2..4 were duplicates of the catch-up; 5..8 each found the scope gone: a removal each, and no
    // cursor written (the purge removed it; a cursor made again would outlive the scope's id).
    expect(counts.removes).toBe(4);
    expect(counts.moves.filter(([id]) => id === 'gone')).toEqual([['gone', 0, 4]]);
    expect(await ledger.getCursor('mirror', 'gone')).toBe(0);
  }, 180_000);
  it('a duplicate long enough after the last catch-up catches up again: the row follows the head while a queue drains', async () => {
    const ledger = new SqliteLedger(':memory:');
    const d = fresh();
    const { engine, consumer, counts } = setup({ ledger, live: false, mirrored: [d], cacheMs: 60_000, refreshMs: 0 });
    await engine.createScope('u', { id: 's', type: 'counter', state: { n: 0 } }, { domain: d });
    for (let i = 1; i <= 3; i++) await engine.submit('s', 'u', inc(i), { domain: d });
    await engine.settled();
    const events = await eventsOf(engine, 's', 1, 3);
    expect(await consumer.deliver(events[0] as PatchEvent)).toEqual({ handled: [3], duplicate: false });
    for (let i = 4; i <= 5; i++) await engine.submit('s', 'u', inc(i), { domain: d });
    await engine.settled();
    // 2 is a duplicate (the cursor is at 3), but the head moved: caught up to 5 in one move.
    expect(await consumer.deliver(events[1] as PatchEvent)).toEqual({ handled: [5], duplicate: true });
    expect(await rows(d, 'counters')).toEqual([['s', 5, 5, null]]);
    // 3 finds the head where the cursor is: no write at all.
    expect(await consumer.deliver(events[2] as PatchEvent)).toEqual({ handled: [], duplicate: true });
    expect(counts.moves).toEqual([
      ['s', 0, 3],
      ['s', 3, 5],
    ]);
    expect(counts.upserts).toBe(2);
  }, 180_000);
});
