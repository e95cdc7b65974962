/**
 * In-process delivery to consumers (shared/engine/local-delivery.ts), on the embedded adapters:
 * each consumer handles each scope's patches once, in index order, under concurrent writes to
 * several scopes; a failing handler is called again with the same patch until it succeeds, and
 * nothing after it is handled first; a restart (a new delivery over the same ledger, which never
 * saw the commits) catches up from the cursors; and through the app, an embedded server delivers
 * to its consumers by itself. A coalescing consumer (the mirror's kind) is called far less often
 * than once per patch, ends at the head, and a failing catch-up moves no cursor.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { FsBlobStore, LocalBus, MemoryCache, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { type Coalescing, Consumer, type PatchHandler } from '../shared/engine/consumer.js';
import { Engine } from '../shared/engine/engine.js';
import { LocalDelivery } from '../shared/engine/local-delivery.js';
import type { PatchEvent } from '../shared/protocol.js';
import { startServer, type TestServer, tempDir, testConfig } from './helpers/server.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function setup(handlers: Record<string, PatchHandler | Coalescing>, ledger = new SqliteLedger(':memory:')) {
  let delivery: LocalDelivery | null = null;
  const engine = new Engine({ ledger, cache: new MemoryCache(), bus: new LocalBus(), blobs: new FsBlobStore(tempDir()) }, testConfig(), {
    logError: () => {},
    onPublished: (events) => delivery?.offer(events),
  });
  const consumers = Object.entries(handlers).map(([name, h]) => new Consumer(name, ledger, (id, f, t) => engine.readLog(id, f, t), h));
  delivery = new LocalDelivery(
    consumers,
    ledger,
    (id, f, t) => engine.readLog(id, f, t),
    () => {},
    { firstRetryMs: 5 },
  );
  const d = delivery;
  closers.push(async () => {
    await d.close();
    await engine.close();
  });
  return { engine, delivery: d, ledger };
}

const patch = (i: number) => ({ patch: [{ op: 'add' as const, path: `/k${i}`, value: i }] });

/** Every (scope, ii) a handler saw, by scope. */
function recorder() {
  const seen = new Map<string, number[]>();
  const handle: PatchHandler = async (e: PatchEvent) => {
    seen.set(e.scope, [...(seen.get(e.scope) ?? []), e.ii]);
  };
  return { seen, handle };
}

describe('LocalDelivery', () => {
  it('each consumer handles every patch of every scope once, in order, under concurrent writes', async () => {
    const a = recorder();
    const b = recorder();
    const { engine, delivery } = setup({ a: a.handle, b: b.handle });
    const ids = ['s1', 's2', 's3'];
    for (const id of ids) await engine.createScope('u', { id });
    await Promise.all(ids.flatMap((id) => Array.from({ length: 40 }, (_, i) => engine.submit(id, 'u', patch(i)))));
    await engine.settled();
    await delivery.idle();
    const expected = Array.from({ length: 40 }, (_, i) => i + 1);
    for (const r of [a, b]) for (const id of ids) expect(r.seen.get(id)).toEqual(expected);
  });

  it('a failing handler gets the same patch again, and nothing after it first', async () => {
    const seen: number[] = [];
    let failures = 0;
    const { engine, delivery } = setup({
      flaky: async (e) => {
        if (e.ii === 3 && failures < 3) {
          failures++;
          throw new Error('down');
        }
        seen.push(e.ii);
      },
    });
    await engine.createScope('u', { id: 's' });
    for (let i = 0; i < 6; i++) await engine.submit('s', 'u', patch(i));
    await engine.settled();
    await delivery.idle();
    expect(failures).toBe(3);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('a coalescing consumer: a burst costs a few catch-ups to the head, each one cursor move; a failed one moves nothing', async () => {
    let engine: Engine | null = null;
    const calls: Array<[string, number, number]> = [];
    let failures = 0;
    const catchUp = async (e: PatchEvent) => {
      if (e.scope === 'flaky' && failures < 2) {
        failures++;
        throw new Error('down');
      }
      const head = (await (engine as Engine).head(e.scope)).ii;
      calls.push([e.scope, e.ii, head]);
      return head;
    };
    const s = setup({ m: { catchUp, cacheMs: 10_000 } });
    engine = s.engine;
    for (const id of ['hot', 'flaky']) await engine.createScope('u', { id });
    await Promise.all(['hot', 'flaky'].flatMap((id) => Array.from({ length: 40 }, (_, i) => (engine as Engine).submit(id, 'u', patch(i)))));
    await engine.settled();
    await s.delivery.idle();
    expect(failures).toBe(2);
    for (const id of ['hot', 'flaky']) {
      const mine = calls.filter(([scope]) => scope === id);
      expect(mine.length).toBeLessThan(40);
      expect(mine.at(-1)?.[2]).toBe(40);
      for (const [, ii, head] of mine) expect(head).toBeGreaterThanOrEqual(ii);
      // One cursor move per successful catch-up, to the head it reached.
      expect(await s.ledger.getCursor('m', id)).toBe(40);
    }
  });

  it('after a restart, catch-up delivers from each cursor what the old process never delivered', async () => {
    const file = `${tempDir()}/ledger.sqlite`;
    const first = recorder();
    const before = setup({ c: first.handle }, new SqliteLedger(file));
    await before.engine.createScope('u', { id: 's' });
    for (let i = 0; i < 3; i++) await before.engine.submit('s', 'u', patch(i));
    await before.engine.settled();
    await before.delivery.idle();
    await before.delivery.close(); // "crashes": the next commits are never offered
    for (let i = 3; i < 7; i++) await before.engine.submit('s', 'u', patch(i));
    await before.engine.createScope('u', { id: 't' });
    await before.engine.submit('t', 'u', patch(0));
    await before.engine.settled();
    expect(first.seen.get('s')).toEqual([1, 2, 3]);

    const second = recorder();
    const after = setup({ c: second.handle }, new SqliteLedger(file));
    await after.delivery.catchUp();
    await after.delivery.idle();
    expect(second.seen.get('s')).toEqual([4, 5, 6, 7]);
    expect(second.seen.get('t')).toEqual([1]);
  });
});

describe('an embedded server with consumers', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('delivers to them by itself, through the HTTP write path', async () => {
    const r = recorder();
    server = await startServer({}, undefined, { consumers: { r: r.handle }, deliverLocally: true });
    const c = await server.client();
    const id = `d-${randomUUID()}`;
    expect((await c.request('POST', '/v1/scopes', { body: { id } })).status).toBe(201);
    for (let i = 0; i < 5; i++) expect((await c.request('POST', `/v1/scopes/${id}/patches`, { body: patch(i) })).status).toBe(200);
    await server.app.engine.settled();
    await server.app.delivery?.idle();
    expect(r.seen.get(id)).toEqual([1, 2, 3, 4, 5]);
  });
});
