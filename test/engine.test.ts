/**
 * The engine's write path on its own (embedded adapters, no HTTP): hot scopes are committed in
 * groups, each request checked in order within its group; a refused request inside a group
 * changes nothing and does not disturb its neighbours (guarantees 1 and 3); state limits are
 * enforced op by op, so a patch is refused at the op that breaks them whatever its group holds; the read path rebuilds from the
 * log when the cache is cold or behind (guarantee 2); the sweeper publishes what was committed
 * but never published (guarantee 5's "eventually published").
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { FsBlobStore, LocalBus, MemoryCache, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { Engine, type EnginePorts } from '../shared/engine/engine.js';
import { PatchbayError } from '../shared/errors.js';
import type { Bus, Ledger } from '../shared/ports/index.js';
import type { PatchEvent } from '../shared/protocol.js';
import { tempDir, testConfig } from './helpers/server.js';
import { wrap } from './helpers/wrap.js';

/**
 * A ledger decorator that counts transactions (grouping is observable as fewer commits than
 * patches) and log reads.
 */
class CountingLedger {
  commits = 0;
  logReads = 0;
  constructor(readonly inner: Ledger) {}
  wrap(): Ledger {
    return wrap(this.inner, {
      commit: (real, id, plan) => {
        this.commits++;
        return real(id, plan);
      },
      readLog: (real, ...args) => {
        this.logReads++;
        return real(...args);
      },
    });
  }
}

const engines: Engine[] = [];
const ports: EnginePorts[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  for (const p of ports.splice(0)) await p.ledger.close();
});

function setup(overrides = {}, mutate?: (a: EnginePorts) => void) {
  const counting = new CountingLedger(new SqliteLedger(':memory:'));
  const adapters: EnginePorts = { ledger: counting.wrap(), cache: new MemoryCache(), bus: new LocalBus(), blobs: new FsBlobStore(tempDir()) };
  mutate?.(adapters);
  const engine = new Engine(adapters, testConfig(overrides), { logError: () => {} });
  engines.push(engine);
  ports.push(adapters);
  return { engine, adapters, counting };
}

/** Replaces the adapters' bus with one whose publish is `publish` (which may call the real bus). */
function interceptPublish(a: EnginePorts, publish: (events: PatchEvent[], real: Bus) => Promise<void>): void {
  const real = a.bus;
  a.bus = {
    publish: (events) => publish(events, real),
    subscribe: (s, l, g) => real.subscribe(s, l, g),
    signal: (x) => real.signal(x),
    close: () => real.close(),
  };
}

const settle = <T>(p: Promise<T>) =>
  p.then(
    (v) => ({ ok: v }),
    (e: PatchbayError) => ({ err: e.code }),
  );

describe('group commit', () => {
  it('commits 32 concurrent appends to one scope in fewer transactions, indices 1..32', async () => {
    const { engine, counting } = setup();
    await engine.createScope('u', { id: 's', state: { list: [] } });
    const acks = await Promise.all(Array.from({ length: 32 }, (_, i) => engine.submit('s', 'u', { patch: [{ op: 'add', path: '/list/-', value: i }] })));
    expect(acks.map((a) => a.ii).sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
    // They arrive in one turn of the event loop, and the queue lets a turn's requests gather
    // before it takes a group: one transaction for all of them.
    expect(counting.commits).toBe(1);
    const view = await engine.getScope('s');
    // Arrival order is commit order: value i was appended by the i-th request.
    expect(view.state).toEqual({ list: Array.from({ length: 32 }, (_, i) => i) });
  });

  // A retry is recognised by this hash against records written by any earlier version: its
  // format (sha256 of the patch's JSON text, base64url) must never change, however it is computed.
  it('records the sha256 (base64url) of the patch JSON text as the retry hash', async () => {
    const { engine, adapters } = setup();
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    const patch = [{ op: 'replace' as const, path: '/n', value: 'é ✓ 𝄞' }];
    await engine.submit('s', 'u', { patch, session: 'sess-h', si: 1 });
    const [record] = await adapters.ledger.readLog('s', 1, 1);
    expect(record?.hash).toBe(createHash('sha256').update(JSON.stringify(patch)).digest('base64url'));
  });

  it('checks each request of a group in order: a failure in the middle changes nothing and spares its neighbours', async () => {
    const { engine } = setup();
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    const results = await Promise.all([
      settle(engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: 1 }] })),
      settle(
        engine.submit('s', 'u', {
          patch: [
            { op: 'add', path: '/x', value: 1 },
            { op: 'remove', path: '/missing' },
          ],
        }),
      ),
      settle(engine.submit('s', 'u', { ii: 2, patch: [{ op: 'test', path: '/n', value: 1 }] })),
      settle(engine.submit('s', 'u', { ii: 2, patch: [] })),
      settle(engine.submit('s', 'intruder', { patch: [] })),
      settle(engine.submit('s', 'u', { ii: 9, patch: [] })),
      settle(engine.submit('s', 'u', { session: 'a', si: 1, patch: [{ op: 'add', path: '/y', value: 2 }] })),
      settle(engine.submit('s', 'u', { session: 'a', si: 1, patch: [{ op: 'add', path: '/y', value: 2 }] })),
      settle(engine.submit('s', 'u', { session: 'a', si: 1, patch: [] })),
    ]);
    expect(results).toEqual([
      { ok: { id: 's', ii: 1 } },
      { err: 'patch_failed' },
      { ok: { id: 's', ii: 2 } },
      { err: 'out_of_sync' },
      { err: 'scope_not_found' }, // a stranger to a private scope: as if it did not exist
      { err: 'replay_required' },
      { ok: { id: 's', ii: 3 } },
      { ok: { id: 's', ii: 3, duplicate: true } },
      { err: 'duplicate_mismatch' },
    ]);
    expect((await engine.getScope('s')).state).toEqual({ n: 1, y: 2 });
  });

  it('refuses only the patch that would make the state too large, even inside a group', async () => {
    const { engine } = setup({ maxStateBytes: 200 });
    await engine.createScope('u', { id: 's', state: {} });
    const big = 'x'.repeat(150);
    const results = await Promise.all([
      settle(engine.submit('s', 'u', { patch: [{ op: 'add', path: '/a', value: 1 }] })),
      settle(engine.submit('s', 'u', { patch: [{ op: 'add', path: '/b', value: big }] })),
      settle(engine.submit('s', 'u', { patch: [{ op: 'add', path: '/c', value: big }] })),
      settle(engine.submit('s', 'u', { patch: [{ op: 'add', path: '/d', value: 4 }] })),
    ]);
    expect(results).toEqual([{ ok: { id: 's', ii: 1 } }, { ok: { id: 's', ii: 2 } }, { err: 'too_large' }, { ok: { id: 's', ii: 3 } }]);
    expect((await engine.getScope('s')).state).toEqual({ a: 1, b: big, d: 4 });
  });

  it('refuses a patch that breaks the size limit whatever its group holds (a later patch cannot hide it)', async () => {
    const { engine } = setup({ maxStateBytes: 200 });
    await engine.createScope('u', { id: 's', state: {} });
    const results = await Promise.all([
      settle(engine.submit('s', 'u', { patch: [] })),
      settle(engine.submit('s', 'u', { patch: [{ op: 'add', path: '/big', value: 'x'.repeat(300) }] })),
      settle(engine.submit('s', 'u', { patch: [{ op: 'remove', path: '/big' }] })),
    ]);
    expect(results).toEqual([{ ok: { id: 's', ii: 1 } }, { err: 'too_large' }, { err: 'patch_failed' }]);
  });

  it('stops a tiny patch of repeated root copies at the op that crosses the limit', async () => {
    const { engine } = setup({ maxStateBytes: 64 * 1024 });
    await engine.createScope('u', { id: 's', state: { a: 'x'.repeat(1000) } });
    const patch = Array.from({ length: 40 }, (_, i) => ({ op: 'copy' as const, from: '', path: `/z${i}` }));
    await expect(engine.submit('s', 'u', { patch })).rejects.toMatchObject({ code: 'too_large', details: { limit: 'maxStateBytes', op: 6 } });
    expect((await engine.getScope('s')).ii).toBe(0);
  });

  it('refuses state nesting past the depth limit, built up by copies', async () => {
    const { engine } = setup({ maxValueDepth: 8 });
    await engine.createScope('u', { id: 's', state: { a: {} } });
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await settle(engine.submit('s', 'u', { patch: [{ op: 'copy', from: '/a', path: '/a/a' }] }));
      codes.push('err' in r ? (r.err as string) : 'ok');
    }
    expect(codes.filter((c) => c === 'ok').length).toBeLessThan(10);
    expect(codes.slice(-1)).toEqual(['too_large']);
  });

  it('refuses an initial state over the limits before creating anything', async () => {
    const { engine, adapters } = setup({ maxStateBytes: 50 });
    await expect(engine.createScope('u', { id: 'big', state: { s: 'x'.repeat(100) } })).rejects.toMatchObject({ code: 'too_large' });
    expect(await adapters.ledger.getHead('big')).toBeNull();
  });
});

describe('after the commit', () => {
  /*
   * The ack follows the commit; the cache put and the publish follow the ack, per scope in commit
   * order (shared/engine/after-commit.ts). A publish that is slow or fails delays the events,
   * never the ack, and the outbox still covers it.
   */
  it('acks without waiting for the publish, publishes in commit order, and close waits for it', async () => {
    let release: () => void = () => {};
    let gate = new Promise<void>((r) => (release = r));
    const published: number[][] = [];
    const { engine } = setup({}, (a) =>
      interceptPublish(a, async (events, real) => {
        await gate;
        published.push(events.map((e) => e.ii));
        await real.publish(events);
      }),
    );
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    for (let i = 1; i <= 5; i++) expect((await engine.submit('s', 'u', { ii: i, patch: [{ op: 'replace', path: '/n', value: i }] })).ii).toBe(i);
    expect(published).toEqual([]); // all five acked while the bus hangs
    await Promise.all([engine.submit('s', 'u', { patch: [] }), engine.submit('s', 'u', { patch: [] })]);
    let closed = false;
    const closing = engine.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false); // close waits for the publish
    release();
    gate = Promise.resolve();
    await closing;
    expect(published.flat()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('with PATCHBAY_ACK_AFTER=publish, holds each ack until its publish, while later groups commit', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const published: number[] = [];
    const { engine, adapters } = setup({ ackAfter: 'publish' }, (a) =>
      interceptPublish(a, async (events, real) => {
        await gate;
        published.push(...events.map((e) => e.ii));
        await real.publish(events);
      }),
    );
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    const acked: number[] = [];
    const first = engine.submit('s', 'u', { ii: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] }).then((a) => acked.push(a.ii));
    const deadline = Date.now() + 5000;
    while ((await adapters.ledger.getHead('s'))?.ii !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const second = engine.submit('s', 'u', { ii: 2, patch: [{ op: 'replace', path: '/n', value: 2 }] }).then((a) => acked.push(a.ii));
    while ((await adapters.ledger.getHead('s'))?.ii !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect((await adapters.ledger.getHead('s'))?.ii).toBe(2); // the second group committed meanwhile
    await new Promise((r) => setTimeout(r, 30));
    expect(acked).toEqual([]); // but nobody is acked before the publish
    release();
    await Promise.all([first, second]);
    expect(acked).toEqual([1, 2]);
    expect(published).toEqual([1, 2]);
  });

  it('with PATCHBAY_ACK_AFTER=publish, does not hold an ack for its cache put, which still lands', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const { engine, adapters } = setup({ ackAfter: 'publish' }, (a) => {
      const real = a.cache;
      a.cache = {
        get: (id) => real.get(id),
        put: async (id, ii, st) => gate.then(() => real.put(id, ii, st)),
        delete: (id) => real.delete(id),
        close: () => real.close(),
      };
    });
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    const events: number[] = [];
    const stop = await engine.openStream('s', 0, { state: () => {}, patch: (e) => void events.push(e.ii) });
    expect((await engine.submit('s', 'u', { ii: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] })).ii).toBe(1);
    expect(events).toEqual([1]); // acked after its publish, while the cache put hangs
    expect(await adapters.cache.get('s')).toBeNull();
    release();
    await engine.settled();
    expect(await adapters.cache.get('s')).toEqual({ ii: 1, state: { n: 1 } });
    await stop();
  });

  it('reads the hot cache only for a head this instance did not write', async () => {
    const gets: string[] = [];
    let shared: EnginePorts | null = null;
    const { engine: first } = setup({}, (a) => {
      shared = a;
      const real = a.cache;
      a.cache = {
        get: (id) => {
          gets.push(id);
          return real.get(id);
        },
        put: (id, ii, st) => real.put(id, ii, st),
        delete: (id) => real.delete(id),
        close: () => real.close(),
      };
    });
    // A second instance on the same ledger and cache: its commits move the head past what the
    // first instance holds, so the first must not trust its own copy after that.
    const second = new Engine(shared as unknown as EnginePorts, testConfig(), { logError: () => {} });
    engines.push(second);
    await first.createScope('u', { id: 's', state: { list: [] } });
    const add = (e: Engine, v: number) => e.submit('s', 'u', { patch: [{ op: 'add', path: '/list/-', value: v }] });
    await add(first, 1);
    gets.length = 0;
    await add(first, 2);
    await add(first, 3);
    expect(gets).toEqual([]); // the first instance wrote heads 1 and 2 itself
    await add(second, 4);
    await second.settled();
    await add(first, 5); // head 4 came from the other instance
    expect(gets.length).toBeGreaterThan(0);
    expect((await first.getScope('s')).state).toEqual({ list: [1, 2, 3, 4, 5] });
    expect((await second.getScope('s')).state).toEqual({ list: [1, 2, 3, 4, 5] });
  });
});

describe('read path', () => {
  it('rebuilds from the log when the cache is empty or behind', async () => {
    const { engine, adapters } = setup();
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    for (let i = 1; i <= 5; i++) await engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: i }] });
    await adapters.cache.delete('s');
    expect(await engine.getScope('s')).toMatchObject({ ii: 5, state: { n: 5 } });
    // A cache entry behind head is folded forward, not trusted.
    await adapters.cache.delete('s');
    await adapters.cache.put('s', 2, { n: 2 });
    expect(await engine.stateAt('s', 5)).toEqual({ n: 5 });
  });

  it('serves correct state when the cache fails', async () => {
    const { engine } = setup({}, (a) => {
      a.cache = {
        get: async () => {
          throw new Error('cache down');
        },
        put: async () => {
          throw new Error('cache down');
        },
        delete: async () => {},
        close: async () => {},
      };
    });
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    await engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: 1 }] });
    expect(await engine.getScope('s')).toMatchObject({ ii: 1, state: { n: 1 } });
  });
});

describe('outbox sweeper', () => {
  it('publishes patches that were committed but whose publish failed', async () => {
    let failing = true;
    const { engine, adapters } = setup({ sweepAgeMs: 0 }, (a) => {
      interceptPublish(a, async (events, real) => {
        if (failing) throw new Error('bus down');
        await real.publish(events);
      });
    });
    await engine.createScope('u', { id: 's', state: {} });
    const seen: PatchEvent[] = [];
    await adapters.bus.subscribe('s', (e) => seen.push(e));
    await engine.submit('s', 'u', { patch: [] });
    await engine.submit('s', 'u', { patch: [] });
    await engine.settled();
    expect(seen).toEqual([]);
    expect((await adapters.ledger.getHead('s'))?.published).toBe(0);
    failing = false;
    expect(await engine.sweep(Date.now() + 1)).toBe(2);
    expect(seen.map((e) => e.ii)).toEqual([1, 2]);
    expect((await adapters.ledger.getHead('s'))?.published).toBe(2);
    expect(await engine.sweep(Date.now() + 1)).toBe(0);
  });
});

describe('groups too big for one ledger transaction', () => {
  it('are committed as halves, in order, when the ledger refuses them before writing', async () => {
    // A ledger with a transaction limit of 4 records, like Firestore's write and byte budgets.
    const { engine, counting } = setup({}, (a) => {
      const inner = a.ledger;
      a.ledger = wrap(inner, {
        commit: (real, id, plan) =>
          real(id, async (view) => {
            const planned = await plan(view);
            if (planned.records.length > 4) throw new PatchbayError('unavailable', 'too big', { reason: 'ledger_transaction_limit' });
            return planned;
          }),
      });
    });
    await engine.createScope('u', { id: 's', state: { list: [] } });
    const acks = await Promise.all(Array.from({ length: 20 }, (_, i) => engine.submit('s', 'u', { patch: [{ op: 'add', path: '/list/-', value: i }] })));
    expect(acks.map((a) => a.ii).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect((await engine.getScope('s')).state).toEqual({ list: Array.from({ length: 20 }, (_, i) => i) });
    expect(counting.commits).toBeGreaterThan(1);
  });
});

describe('streams over a lossy bus', () => {
  it('deliver every patch once, in order, when the bus drops, duplicates and reorders (guarantee 4)', async () => {
    let n = 0;
    const { engine } = setup({}, (a) => {
      // Drops every third event, sends every fourth twice, and swaps pairs in larger batches.
      interceptPublish(a, async (events, real) => {
        const out: PatchEvent[] = [];
        for (const e of events) {
          n++;
          if (n % 3 === 0) continue;
          out.push(e);
          if (n % 4 === 0) out.push(e);
        }
        if (out.length >= 2) [out[0], out[1]] = [out[1] as PatchEvent, out[0] as PatchEvent];
        await real.publish(out);
      });
    });
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    const got: number[] = [];
    const stop = await engine.openStream('s', undefined, { state: () => {}, patch: (e) => void got.push(e.ii) });
    for (let i = 1; i <= 30; i++) await engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: i }] });
    await Promise.all(Array.from({ length: 10 }, () => engine.submit('s', 'u', { patch: [] })));
    // The last patches may have been dropped with nothing after them: a later one fills the gap.
    await engine.submit('s', 'u', { patch: [] });
    await engine.submit('s', 'u', { patch: [] });
    const deadline = Date.now() + 5000;
    while (got.length < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await stop();
    expect(got.slice(0, 40)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(new Set(got).size).toBe(got.length);
  });
});

describe('opening a stream', () => {
  it('reads the log only up to the head it read, none at head: later patches come from the bus', async () => {
    const { engine, counting } = setup();
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    for (let i = 1; i <= 5; i++) await engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: i }] });
    await engine.settled();
    const atHead: number[] = [];
    const behind: number[] = [];
    const before = counting.logReads;
    const stop1 = await engine.openStream('s', undefined, { state: (ii) => void atHead.push(ii), patch: (e) => void atHead.push(e.ii) });
    expect(counting.logReads - before).toBe(0); // the state came from the cache: no range query
    const stop2 = await engine.openStream('s', 3, { state: () => {}, patch: (e) => void behind.push(e.ii) });
    expect(behind).toEqual([4, 5]);
    await engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: 6 }] });
    await engine.settled();
    await stop1();
    await stop2();
    expect(atHead).toEqual([5, 6]);
    expect(behind).toEqual([4, 5, 6]);
  });
});

describe('streams and slow or failing readers', () => {
  it('keep memory bounded for a slow reader and still deliver every patch once, in order', async () => {
    const { engine } = setup();
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const got: number[] = [];
    const stop = await engine.openStream(
      's',
      0,
      {
        state: () => {},
        patch: async (e) => {
          await gate; // the reader is stuck while 30 patches arrive, 6 times the queue's size
          got.push(e.ii);
        },
      },
      { queueMax: 5 },
    );
    for (let i = 1; i <= 30; i++) await engine.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: i }] });
    release();
    const deadline = Date.now() + 5000;
    while (got.length < 30 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await stop();
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });

  it('end (rather than skip a patch) when the log cannot be read to fill a gap', async () => {
    let failReads = false;
    let dropNext = false;
    const { engine } = setup({}, (a) => {
      const ledger = a.ledger;
      a.ledger = wrap(ledger, {
        readLog: (real, ...args) => (failReads ? Promise.reject(new Error('log unreachable')) : real(...args)),
      });
      interceptPublish(a, async (events, real) => {
        if (dropNext) {
          dropNext = false;
          return;
        }
        await real.publish(events);
      });
    });
    await engine.createScope('u', { id: 's', state: { n: 0 } });
    const got: number[] = [];
    let failed = false;
    const stop = await engine.openStream('s', 0, { state: () => {}, patch: (e) => void got.push(e.ii), failed: () => (failed = true) });
    await engine.submit('s', 'u', { patch: [] }); // 1, delivered
    await engine.settled();
    dropNext = true;
    await engine.submit('s', 'u', { patch: [] }); // 2, dropped by the bus
    await engine.settled();
    failReads = true;
    await engine.submit('s', 'u', { patch: [] }); // 3: a gap the log cannot fill now
    const deadline = Date.now() + 5000;
    while (!failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await stop();
    expect(failed).toBe(true);
    expect(got).toEqual([1]); // never 1, 3
    failReads = false;
    const resumed: number[] = [];
    const stop2 = await engine.openStream('s', 1, { state: () => {}, patch: (e) => void resumed.push(e.ii) });
    await stop2();
    expect(resumed).toEqual([2, 3]);
  });
});

describe('outbox sweeper backlog', () => {
  it('clears more unpublished scopes than one listing page in a single run', async () => {
    let failing = true;
    const { engine, adapters } = setup({ sweepAgeMs: 0 }, (a) => {
      interceptPublish(a, async (events, real) => {
        if (failing) throw new Error('bus down');
        await real.publish(events);
      });
    });
    for (let i = 0; i < 250; i++) {
      await engine.createScope('u', { id: `s${i}`, state: {} });
      await engine.submit(`s${i}`, 'u', { patch: [] });
    }
    await engine.settled();
    failing = false;
    expect(await engine.sweep(Date.now() + 1)).toBe(250);
    expect(await adapters.ledger.listUnpublished(Date.now() + 1, 10)).toEqual([]);
  });
});
