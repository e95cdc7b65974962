/**
 * The mirror consumer (shared/mirror/consumer.ts) on the embedded stack: SQLite ledger, engine,
 * LocalDelivery, PGlite. The guarantee it checks: whatever order, repetition or gaps events come
 * in, and across a restart, each scope's rows end equal to its state at head, in its own domain's
 * schema only; a deleted scope's rows go; a domain without a mirror gets nothing.
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
function setup(opts: { ledger: SqliteLedger; live?: boolean; deleted?: Set<string>; mirrored?: string[] }) {
  let delivery: LocalDelivery | null = null;
  const engine = new Engine({ ledger: opts.ledger, cache: new MemoryCache(), bus: new LocalBus(), blobs: new FsBlobStore(tempDir()) }, testConfig(), {
    logError: () => {},
    onPublished: (events) => (opts.live === false ? undefined : delivery?.offer(events)),
  });
  const readLog = (id: string, f: number, t: number) => engine.readLog(id, f, t);
  const handler = mirrorHandler({
    mirror,
    source: {
      head: async (id) => {
        if (opts.deleted?.has(id)) throw new PatchbayError('scope_not_found', 'gone');
        return engine.head(id);
      },
      stateAt: (id, ii) => engine.stateAt(id, ii),
    },
    tables: (domain) => ((opts.mirrored ?? []).includes(domain) ? TABLES : null),
  });
  const consumer = new Consumer('mirror', opts.ledger, readLog, handler);
  delivery = new LocalDelivery([consumer], opts.ledger, readLog, () => {}, { firstRetryMs: 5 });
  const d = delivery;
  closers.push(async () => {
    await d.close();
    await engine.close();
  });
  return { engine, delivery: d, consumer };
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
});
