/**
 * The Firestore ledger against the real Firestore emulator. Guarantee 1 (every committed patch is
 * in the log once, at its index, 1..n without holes) holds when Firestore re-runs a transaction:
 * a re-run plan never applies twice, and concurrent commits from two clients get indices 1..n
 * exactly. A plan too large for one transaction is refused with nothing written. The outbox mark
 * survives a commit racing markPublished, so an unpublished scope is never lost. Any JSON value
 * and any valid scope id round-trip. A direct batch checks the retry keys its plan refused in
 * the same batch (no read): a recorded one sends the retry to the transaction, which answers it.
 * Create-or-resolve from two clients gets one id, and heads stored before names were unique are
 * registered under their name on resolve, newest first.
 * Plus the shared ledger conformance suite, and the record store's (FirestoreRecords).
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { type Firestore, Timestamp } from '@google-cloud/firestore';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirestoreLedger, type FirestoreLedgerOptions } from '../shared/adapters/google/firestore/ledger.js';
import { FirestoreRecords } from '../shared/adapters/google/firestore/records.js';
import { ATTEMPTS_EXPIRE_MS, ATTEMPTS_KIND, eventKey, WebhookRecords } from '../shared/domains/webhook-records.js';
import { PatchbayError } from '../shared/errors.js';
import type { Json } from '../shared/json.js';
import type { Plan } from '../shared/ports/index.js';
import { retryKey } from '../shared/ports/index.js';
import { RECORD_TTL_FIELD } from '../shared/ports/records.js';
import type { PatchRecord, ScopeMeta } from '../shared/protocol.js';
import { ledgerConformance } from './conformance/ledger/index.js';
import { createOrResolve } from './conformance/ledger/names.js';
import { recordsConformance } from './conformance/records.js';
import { type FirestoreEmulator, startFirestoreEmulator } from './helpers/firestore-emulator.js';
import { skipWithout } from './helpers/proc.js';

const T0 = 1_700_000_000_000;
const meta: ScopeMeta = { owner: 'u1', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 };

function rec(scope: string, ii: number, o: Partial<PatchRecord> = {}): PatchRecord {
  return { scope, ii, patch: [{ op: 'replace', path: '/n', value: ii }], at: T0 + ii, by: 'u1', session: null, si: null, hash: `h${ii}`, epoch: 0, ...o };
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))('FirestoreLedger on the Firestore emulator', () => {
  let emu: FirestoreEmulator;
  let db: Firestore;
  let other: Firestore; // a second client: another instance of the service

  beforeAll(async () => {
    emu = await startFirestoreEmulator('demo-firestore-ledger');
    db = emu.firestore();
    other = emu.firestore();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  const newRoot = () => `t-${randomUUID().slice(0, 8)}`;
  const ledger = (o: FirestoreLedgerOptions = {}, client?: Firestore) => new FirestoreLedger(client ?? db, { root: newRoot(), ...o });

  it('never re-runs a plan after a commit whose response was lost: the commit fails instead, and a retry is recognised (guarantee 1)', async () => {
    // Fault injection at the real client's commit: the commit goes through, then its response is
    // "lost" (UNAVAILABLE). The library would otherwise run the transaction, plan included, again.
    const require = createRequire(import.meta.url);
    const { WriteBatch } = require(resolve('node_modules/@google-cloud/firestore/build/src/write-batch.js')) as {
      WriteBatch: { prototype: { _commit: (this: unknown, opts?: { transactionId?: unknown }) => Promise<unknown> } };
    };
    const original = WriteBatch.prototype._commit;
    let loseNext = false;
    WriteBatch.prototype._commit = async function (this: unknown, opts?: { transactionId?: unknown }) {
      const result = await original.call(this, opts);
      if (loseNext && opts?.transactionId) {
        loseNext = false;
        throw Object.assign(new Error('14 UNAVAILABLE: connection reset'), { code: 14 });
      }
      return result;
    };
    try {
      const l = ledger({ directCommits: false });
      const id = 'lost-ack';
      await l.createScope({ id, meta, initial: {} });
      let plans = 0;
      const plan: Plan<number> = async (view) => {
        plans++;
        const r: PatchRecord = { scope: id, ii: view.head.ii + 1, patch: [], at: T0, by: 'u1', session: 's', si: 1, hash: 'h', epoch: view.head.epoch };
        return { records: [r], result: r.ii };
      };
      loseNext = true;
      await expect(l.commit(id, plan)).rejects.toMatchObject({ code: 14 });
      expect(plans).toBe(1);
      expect((await l.readLog(id, 1, 10)).map((r) => r.ii)).toEqual([1]);
      // The client's retry: its (session, si) is found, so the engine answers the original ack.
      const found = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([{ session: 's', si: 1 }]) }));
      expect(found.get(retryKey('s', 1))?.ii).toBe(1);
    } finally {
      WriteBatch.prototype._commit = original;
    }
  });

  describe('direct commits (one conditional batch) after a lost response (guarantee 1)', () => {
    // Fault injection at the real client's batch commit: the batch goes through, then its
    // response is lost. `retried`: the library then sends it again (it retries UNAVAILABLE), and
    // that attempt's own error (the head has moved, by the first attempt) is what surfaces.
    const require = createRequire(import.meta.url);
    const { WriteBatch } = require(resolve('node_modules/@google-cloud/firestore/build/src/write-batch.js')) as {
      WriteBatch: { prototype: { _commit: (this: unknown, opts?: { transactionId?: unknown }) => Promise<unknown> } };
    };
    const original = WriteBatch.prototype._commit;
    const losing = (mode: 'retried' | 'lost') => {
      let armed = true;
      WriteBatch.prototype._commit = async function (this: unknown, opts?: { transactionId?: unknown }) {
        const result = await original.call(this, opts);
        if (!armed || opts?.transactionId) return result;
        armed = false;
        if (mode === 'retried') await original.call(this, opts); // rejects: FAILED_PRECONDITION or ALREADY_EXISTS
        throw Object.assign(new Error('14 UNAVAILABLE: connection reset'), { code: 14 });
      };
    };
    const tagged =
      (id: string, plans: { n: number }): Plan<number> =>
      async (view) => {
        plans.n++;
        const r = rec(id, view.head.ii + 1, { session: 's', si: view.head.ii + 1 });
        return { records: [r], meta: { updated: T0 + 1, size: 3 }, result: r.ii };
      };
    afterAll(() => {
      WriteBatch.prototype._commit = original;
    });

    it('a batch the library re-sent is recognised as applied: acknowledged once, never appended twice', async () => {
      const l = ledger();
      const id = 'resent';
      await l.createScope({ id, meta, initial: {} });
      expect(await l.commit(id, tagged(id, { n: 0 }))).toBe(1);
      const plans = { n: 0 };
      losing('retried');
      try {
        expect(await l.commit(id, tagged(id, plans))).toBe(2);
      } finally {
        WriteBatch.prototype._commit = original;
      }
      expect(plans.n).toBe(1);
      expect((await l.readLog(id, 1, 10)).map((r) => r.ii)).toEqual([1, 2]);
      expect(await l.commit(id, tagged(id, { n: 0 }))).toBe(3);
      expect((await l.getHead(id))?.ii).toBe(3);
    });

    it('a batch whose response was lost fails the commit, and the retry is recognised', async () => {
      const l = ledger();
      const id = 'lost-direct';
      await l.createScope({ id, meta, initial: {} });
      const plans = { n: 0 };
      losing('lost');
      try {
        await expect(l.commit(id, tagged(id, plans))).rejects.toMatchObject({ code: 14 });
      } finally {
        WriteBatch.prototype._commit = original;
      }
      expect(plans.n).toBe(1);
      expect((await l.readLog(id, 1, 10)).map((r) => r.ii)).toEqual([1]);
      const found = await l.commit(id, async (view) => ({ records: [], result: await view.findRetries([{ session: 's', si: 1 }]) }));
      expect(found.get(retryKey('s', 1))?.ii).toBe(1);
    });
  });

  it('direct commits on a head another instance moved, or whose lease was taken, fall back to a transaction on the real head', async () => {
    const root = newRoot();
    const a = new FirestoreLedger(db, { root });
    const b = new FirestoreLedger(other, { root });
    const id = 'moved';
    await a.createScope({ id, meta, initial: {} });
    const seen: Array<{ who: string; ii: number; epoch: number }> = [];
    const plan =
      (who: string, extra: Partial<PatchRecord> = {}): Plan<number> =>
      async (view) => {
        seen.push({ who, ii: view.head.ii, epoch: view.head.epoch });
        const r = rec(id, view.head.ii + 1, { by: who, epoch: view.head.epoch, ...extra });
        return { records: [r], meta: { updated: T0 + r.ii, size: r.ii }, result: r.ii };
      };
    expect(await a.commit(id, plan('a'))).toBe(1); // a now knows the head at 1
    expect(await b.commit(id, plan('b'))).toBe(2); // b moves it behind a's back
    seen.length = 0;
    expect(await a.commit(id, plan('a'))).toBe(3); // a's known head (1) is stale: re-planned on 2
    expect(seen.map((s) => s.ii)).toEqual([1, 2]);
    // A lease taken by a bundler (epoch + 1) changes the head too: b's known head (2) is stale
    // twice over, and its record carries the new epoch.
    expect(await a.acquireLease(id, 'bundler', 60_000)).toBe(1);
    seen.length = 0;
    expect(await b.commit(id, plan('b'))).toBe(4);
    expect(seen.map((s) => [s.ii, s.epoch])).toEqual([
      [2, 0],
      [3, 1],
    ]);
    // A retry of a recorded (session, si) on the direct way: its create fails, the transaction finds it.
    const c = new FirestoreLedger(db, { root });
    const once: Plan<number> = async (view) => {
      const prior = (await view.findRetries([{ session: 'sx', si: 1 }])).get(retryKey('sx', 1));
      if (prior) return { records: [], result: -prior.ii };
      const r = rec(id, view.head.ii + 1, { by: 'c', session: 'sx', si: 1, epoch: view.head.epoch });
      return { records: [r], meta: { updated: T0 + r.ii, size: r.ii }, result: r.ii };
    };
    expect(await c.commit(id, once)).toBe(5);
    expect(await c.commit(id, once)).toBe(-5);
    const log = await a.readLog(id, 1, 100);
    expect(log.map((r) => [r.ii, r.by, r.epoch])).toEqual([
      [1, 'a', 0],
      [2, 'b', 0],
      [3, 'a', 0],
      [4, 'b', 1],
      [5, 'c', 1],
    ]);
    expect(await b.getHead(id)).toMatchObject({ ii: 5, epoch: 1, meta: { updated: T0 + 5, size: 5 } });
  });

  it('a direct batch checks the retry keys its plan refused: unrecorded, it commits at once; recorded, the transaction answers the retry', async () => {
    const l = ledger({ maxWrites: 6 });
    const id = 'refused-keys';
    await l.createScope({ id, meta, initial: {} });
    // Engine-like: a recorded key is a duplicate; `refuse` keys are otherwise refused (an ii
    // behind head), the others appended. `runs` counts plan runs: 1 = the direct batch committed,
    // 2 = it wrote nothing and the transaction ran the plan again.
    const group =
      (keys: Array<{ si: number; refuse?: true }>, runs: { n: number }): Plan<string[]> =>
      async (view) => {
        runs.n++;
        const found = await view.findRetries(keys.map((k) => ({ session: 's', si: k.si })));
        const records: PatchRecord[] = [];
        const result = keys.map((k) => {
          const prior = found.get(retryKey('s', k.si));
          if (prior) return `duplicate ${prior.ii}`;
          if (k.refuse) return 'refused';
          records.push(rec(id, view.head.ii + records.length + 1, { session: 's', si: k.si }));
          return `appended ${view.head.ii + records.length}`;
        });
        return { records, meta: { updated: T0 + 1, size: 3 }, result };
      };
    const runs = { n: 0 };
    expect(await l.commit(id, group([{ si: 1 }], runs))).toEqual(['appended 1']);
    runs.n = 0;
    expect(await l.commit(id, group([{ si: 9, refuse: true }, { si: 2 }], runs))).toEqual(['refused', 'appended 2']);
    expect(runs.n).toBe(1); // nothing recorded under si 9: no read, no transaction
    runs.n = 0;
    expect(await l.commit(id, group([{ si: 1, refuse: true }, { si: 3 }], runs))).toEqual(['duplicate 1', 'appended 3']);
    expect(runs.n).toBe(2);
    // Past the write limit only with its checks (log + retry document + 3 checks + head + outbox
    // = 7 > 6): the transaction, which reads them instead (4 writes).
    runs.n = 0;
    const three = group([{ si: 6, refuse: true }, { si: 7, refuse: true }, { si: 8, refuse: true }, { si: 4 }], runs);
    expect(await l.commit(id, three)).toEqual(['refused', 'refused', 'refused', 'appended 4']);
    expect(runs.n).toBe(2);
    expect((await l.readLog(id, 1, 10)).map((r) => [r.ii, r.si])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
  });

  ledgerConformance('FirestoreLedger', async () => ledger());
  ledgerConformance('FirestoreLedger (transactions only)', async () => ledger({ directCommits: false }));
  recordsConformance('FirestoreRecords', async () => new FirestoreRecords(db, newRoot()));

  it('a record put with an expiry carries the timestamp field its TTL policy reads; a put without one clears it', async () => {
    const root = newRoot();
    const records = new FirestoreRecords(db, root);
    const doc = (kind: string, key: string) =>
      db
        .collection(root)
        .doc('~records')
        .collection(kind)
        .doc(`k${encodeURIComponent(key)}`);
    const at = T0 + 86_400_000;
    expect(await records.put('session', 's1', { state: 'closed' }, 0, { expireAt: at })).toEqual({ key: 's1', value: { state: 'closed' }, rev: 1 });
    const field = (await doc('session', 's1').get()).get(RECORD_TTL_FIELD);
    expect(field).toBeInstanceOf(Timestamp);
    expect((field as Timestamp).toMillis()).toBe(at);
    expect(await records.get('session', 's1')).toEqual({ key: 's1', value: { state: 'closed' }, rev: 1 }); // not part of the record
    await records.put('session', 's1', { state: 'open' }, 1);
    expect((await doc('session', 's1').get()).get(RECORD_TTL_FIELD)).toBeUndefined();
    // A refused put (wrong revision) changes nothing, the expiry included.
    expect(await records.put('session', 's1', { state: 'closed' }, 1, { expireAt: at })).toBeNull();
    expect((await doc('session', 's1').get()).get(RECORD_TTL_FIELD)).toBeUndefined();
    // The webhooks' failed attempts expire after Pub/Sub would have stopped redelivering.
    const before = Date.now();
    expect(await new WebhookRecords(records).putAttempts('d.example', 'h', 'scope1', 3, { attempts: 1, lastError: null, done: false }, 0)).toBe(true);
    const expires = ((await doc(ATTEMPTS_KIND, eventKey('d.example', 'h', 'scope1', 3)).get()).get(RECORD_TTL_FIELD) as Timestamp).toMillis();
    expect(expires).toBeGreaterThanOrEqual(before + ATTEMPTS_EXPIRE_MS);
    expect(expires).toBeLessThanOrEqual(Date.now() + ATTEMPTS_EXPIRE_MS);
  });

  it('a plan re-run after another transaction moved the head applies once, at the new head', async () => {
    const root = newRoot();
    const a = new FirestoreLedger(db, { root });
    const b = new FirestoreLedger(other, { root });
    const id = 'rerun';
    await a.createScope({ id, meta, initial: {} });
    // Both plans wait until both have seen the head, so both transactions read ii 0 and at most
    // one can commit that way: the other must be re-run by Firestore against the moved head.
    let seen = 0;
    let release: () => void = () => {};
    const bothSeen = new Promise<void>((r) => {
      release = r;
    });
    const invocations = { a: 0, b: 0 };
    const plan =
      (who: 'a' | 'b'): Plan<number> =>
      async (view) => {
        invocations[who]++;
        if (++seen === 2) release();
        await bothSeen;
        const r = rec(id, view.head.ii + 1, { by: who, session: `s-${who}`, si: 1 });
        return { records: [r], meta: { updated: T0 + 1, size: 3 }, result: r.ii };
      };
    const [ia, ib] = await Promise.all([a.commit(id, plan('a')), b.commit(id, plan('b'))]);

    expect(invocations.a + invocations.b).toBeGreaterThanOrEqual(3); // someone really was re-run
    expect([ia, ib].sort()).toEqual([1, 2]);
    const log = await a.readLog(id, 1, 100);
    expect(log.map((r) => [r.ii, r.by])).toEqual(
      [
        [ia, 'a'],
        [ib, 'b'],
      ].sort((x, y) => (x[0] as number) - (y[0] as number)),
    );
    expect((await a.getHead(id))?.ii).toBe(2);
    const found = await a.commit(id, async (v) => ({
      records: [],
      result: await v.findRetries([
        { session: 's-a', si: 1 },
        { session: 's-b', si: 1 },
      ]),
    }));
    expect(found.get(retryKey('s-a', 1))?.ii).toBe(ia);
    expect(found.get(retryKey('s-b', 1))?.ii).toBe(ib);
  });

  it('20 concurrent commits from two clients end with indices 1..20 exactly, each writer once', async () => {
    const root = newRoot();
    const ledgers = [new FirestoreLedger(db, { root }), new FirestoreLedger(other, { root })];
    const id = 'hot';
    await ledgers[0]?.createScope({ id, meta, initial: {} });
    let invocations = 0;
    // Engine-like: a writer whose retry is already recorded writes nothing and reports that index.
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, k) =>
        (ledgers[k % 2] as FirestoreLedger).commit(id, async (view) => {
          invocations++;
          const prior = (await view.findRetries([{ session: `w${k}`, si: 1 }])).get(retryKey(`w${k}`, 1));
          if (prior) return { records: [], result: prior.ii };
          const r = rec(id, view.head.ii + 1, { by: `w${k}`, session: `w${k}`, si: 1 });
          return { records: [r], meta: { updated: T0 + r.ii, size: r.ii }, result: r.ii };
        }),
      ),
    );
    const log = await ledgers[0]?.readLog(id, 1, 1000);
    expect(log?.map((r) => r.ii)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(results.slice().sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    results.forEach((ii, k) => {
      expect(log?.[ii - 1]?.by).toBe(`w${k}`);
    });
    expect(await ledgers[1]?.getHead(id)).toMatchObject({ ii: 20, meta: { updated: T0 + 20, size: 20 } });
    expect(invocations).toBeGreaterThanOrEqual(20);
    // It asserts order, not time: the emulator locks contended transactions pessimistically and breaks
    // deadlocks after a timeout, so 20 writers on one head took 5-25 s alone and over 60 s once
    // under the whole suite's load.
  }, 180_000);

  it('a plan past the write limit (500) is refused before anything is written; 500 writes commit', async () => {
    const l = ledger();
    const id = 'big';
    await l.createScope({ id, meta, initial: {} });
    // Each retry-tagged record is two writes (log + retry), plus the head and the outbox.
    const tagged =
      (n: number): Plan<number> =>
      async (view) => ({
        records: Array.from({ length: n }, (_, i) => rec(id, view.head.ii + 1 + i, { session: 'bulk', si: view.head.ii + 1 + i })),
        meta: { updated: T0 + 5, size: 5 },
        result: n,
      });
    const err = await failure(l.commit(id, tagged(250))); // 502 writes
    expect(err).toBeInstanceOf(PatchbayError);
    expect(err).toMatchObject({ code: 'unavailable', details: { reason: 'ledger_transaction_limit' } });
    expect(await l.getHead(id)).toMatchObject({ ii: 0, meta });
    expect(await l.readLog(id, 0, 1000)).toEqual([]);
    const none = await l.commit(id, async (v) => ({ records: [], result: await v.findRetries([{ session: 'bulk', si: 1 }]) }));
    expect(none.size).toBe(0);
    expect(await l.listUnpublished(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);

    expect(await l.commit(id, tagged(249))).toBe(249); // exactly 500 writes
    expect((await l.readLog(id, 1, 1000)).map((r) => r.ii)).toEqual(Array.from({ length: 249 }, (_, i) => i + 1));
    expect(await l.listUnpublished(Number.MAX_SAFE_INTEGER, 10)).toEqual([{ id, published: 0, ii: 249 }]);
  });

  it('a plan past the byte budget is refused at once; the largest admitted one really commits', async () => {
    const l = ledger();
    const id = 'bytes';
    await l.createScope({ id, meta, initial: {} });
    const fat =
      (n: number): Plan<number> =>
      async (view) => ({
        records: Array.from({ length: n }, (_, i) => rec(id, view.head.ii + 1 + i, { patch: [{ op: 'add', path: '/s', value: 'x'.repeat(255_000) }] })),
        result: n,
      });
    // 16 x 255 kB is past the 4,000,000-byte default; sent, it would pass the emulator's 4 MiB gRPC
    // limit and the client library would retry RESOURCE_EXHAUSTED for a minute.
    const err = await failure(l.commit(id, fat(16)));
    expect(err).toMatchObject({ code: 'unavailable', details: { reason: 'ledger_transaction_limit' } });
    expect(await l.readLog(id, 0, 100)).toEqual([]);
    // 15 x 255 kB is within budget, so the estimate must also be within what the emulator takes.
    expect(await l.commit(id, fat(15))).toBe(15);
    const log = await l.readLog(id, 1, 100);
    expect(log.map((r) => r.ii)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(log[14]?.patch).toEqual([{ op: 'add', path: '/s', value: 'x'.repeat(255_000) }]);
  });

  it('awkward JSON round-trips as initial state and inside patches', async () => {
    let deep: Json = 'bottom';
    for (let i = 0; i < 40; i++) deep = i % 2 ? [deep] : { [`k${i}`]: deep }; // Firestore maps stop at 20 levels
    const awkward: Json = {
      '': 'empty key',
      ' ': { '': [''] },
      'a.b': 1,
      'a/b': 2,
      '`b`': 3,
      __name__: 'reserved-looking',
      __x__: [[]],
      '.': '..',
      '\u0000nul': 'nul in a key',
      nested: [
        [[[1]], []],
        [[], [[]]],
        [null, [null]],
      ],
      deep,
      unicode: 'é ✓ 𝄞 中文 \u2028 🎉 lone \ud800 surrogate',
      numbers: [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1.7976931348623157e308, 5e-324, 123456789012345680000, 0.1, -0.5],
      empty: [{}, [], ''],
    };
    const l = ledger();
    const shapes: Json[] = [awkward, [[1, [2, [3]]], [], [[]]], [[]], 'text', 1e21, null];
    for (const [i, initial] of shapes.entries()) await l.createScope({ id: `j${i}`, meta, initial });
    for (const [i, initial] of shapes.entries()) expect(await l.getInitial(`j${i}`)).toEqual(initial);

    const patch = [
      { op: 'add' as const, path: '/x', value: awkward },
      { op: 'add' as const, path: '/~0~1', value: [[], [[]]] },
    ];
    await l.commit('j0', async (v) => ({ records: [rec('j0', v.head.ii + 1, { patch })], result: null }));
    expect((await l.readLog('j0', 1, 1))[0]?.patch).toEqual(patch);
  });

  it('scope ids that are not valid document ids (".", "..", "__x__") are separate scopes', async () => {
    const l = ledger();
    const ids = ['.', '..', '__x__', '__', 'a:b', 'A-Z_0.9', '~.', '~'];
    for (const [i, id] of ids.entries()) {
      await l.createScope({ id, meta: { ...meta, name: id }, initial: { i } });
      await l.commit(id, async (v) => ({ records: Array.from({ length: i + 1 }, (_, k) => rec(id, v.head.ii + 1 + k)), result: null }));
    }
    for (const [i, id] of ids.entries()) {
      expect(await l.getHead(id)).toMatchObject({ id, ii: i + 1, meta: { name: id } });
      expect(await l.getInitial(id)).toEqual({ i });
      expect((await l.readLog(id, 1, 100)).map((r) => [r.scope, r.ii])).toEqual(Array.from({ length: i + 1 }, (_, k) => [id, k + 1]));
    }
    expect(await failure(l.createScope({ id: '..', meta, initial: {} }))).toMatchObject({ code: 'scope_exists' });
    expect((await l.listUnpublished(Number.MAX_SAFE_INTEGER, 100)).map((s) => s.id).sort()).toEqual(ids.slice().sort());
  });

  it('a commit landing between markPublished reading and writing the outbox keeps the scope listed', async () => {
    const root = newRoot();
    const writer = new FirestoreLedger(other, { root });
    let raced = 0;
    const publisher = new FirestoreLedger(db, {
      root,
      beforeOutboxWrite: async (id) => {
        // Exactly once: the commit moves ii to 2 after markPublished(1) read ii = 1.
        if (raced++ === 0) await writer.commit(id, async (v) => ({ records: [rec(id, v.head.ii + 1)], meta: { updated: T0 + 2, size: 2 }, result: null }));
      },
    });
    const id = 'race';
    await writer.createScope({ id, meta, initial: {} });
    await writer.commit(id, async (v) => ({ records: [rec(id, v.head.ii + 1)], meta: { updated: T0 + 1, size: 1 }, result: null }));

    await publisher.markPublished(id, 1, 1); // read {published 0, ii 1} → would clear; the commit lands first
    expect(raced).toBeGreaterThanOrEqual(1);
    expect(await publisher.getHead(id)).toMatchObject({ ii: 2, published: 1 });
    expect(await publisher.listUnpublished(T0 + 3, 10)).toEqual([{ id, published: 1, ii: 2 }]);

    await publisher.markPublished(id, 2, 2);
    expect(await publisher.getHead(id)).toMatchObject({ ii: 2, published: 2 });
    expect(await publisher.listUnpublished(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });

  it('a watermark set past a later commit leaves no stale listing', async () => {
    const l = ledger();
    const id = 'ahead';
    await l.createScope({ id, meta, initial: {} });
    await l.markPublished(id, 5); // ahead of head (the engine never does this; the port allows it)
    await l.commit(id, async (v) => ({ records: [rec(id, v.head.ii + 1)], meta: { updated: T0 + 1, size: 1 }, result: null }));
    expect(await l.getHead(id)).toMatchObject({ ii: 1, published: 5 });
    expect(await l.listUnpublished(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
    await l.commit(id, async (v) => ({ records: [rec(id, v.head.ii + 1)], meta: { updated: T0 + 2, size: 1 }, result: null }));
    expect(await l.listUnpublished(Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
  });

  /** Records the document paths of every `getAll` the ledger makes outside a transaction on `client`. */
  function watchGetAll(client: Firestore): { paths: string[][]; stop: () => void } {
    const paths: string[][] = [];
    const original = client.getAll;
    client.getAll = ((...args: Parameters<Firestore['getAll']>) => {
      paths.push(args.flatMap((a) => (a && typeof a === 'object' && 'path' in a ? [(a as { path: string }).path] : [])));
      return original.apply(client, args);
    }) as Firestore['getAll'];
    return {
      paths,
      stop: () => {
        client.getAll = original;
      },
    };
  }

  it('a commit reads the outbox and the cold pointer only for a plan that looks at published, bundled or trimmed', async () => {
    const client = emu.firestore();
    const watch = watchGetAll(client);
    try {
      const l = new FirestoreLedger(client, { root: newRoot() });
      const id = 'side';
      await l.createScope({ id, meta, initial: {} });
      const side = () => watch.paths.filter((ps) => ps.some((path) => path.includes('~outbox') || path.includes('~cold'))).length;

      // The engine's kind of plan (ii, epoch, meta, findRetries): no side reads, one run.
      let runs = 0;
      const before = side();
      for (let k = 0; k < 3; k++) {
        await l.commit(id, async (v) => {
          runs++;
          await v.findRetries([{ session: 's', si: k }]);
          return { records: [rec(id, v.head.ii + 1, { epoch: v.head.epoch })], meta: { updated: T0 + v.head.meta.size, size: v.head.ii }, result: null };
        });
      }
      expect(runs).toBe(3);
      expect(side()).toBe(before);

      // Pointers and watermark that are not 0, so a lazy head that read nothing would show.
      const epoch = (await l.acquireLease(id, 'b', 60_000)) as number;
      await l.advanceBundled(id, 'b', epoch, 2);
      await l.trimLog(id, 'b', epoch, 1, 10);
      await l.markPublished(id, 3);
      const want = { ii: 3, published: 3, bundled: 2, trimmed: 1 };
      expect(await l.getHead(id)).toMatchObject(want);

      // A plan that reads them is run again with them read, and commits once.
      runs = 0;
      const s0 = side();
      const seen = await l.commit(id, async (v) => {
        runs++;
        const { ii, published, bundled, trimmed } = v.head;
        return { records: [rec(id, ii + 1, { epoch })], result: { ii, published, bundled, trimmed } };
      });
      expect(seen).toEqual(want);
      expect(runs).toBe(2);
      expect(side()).toBe(s0 + 1);
      // ... even one that catches the error it got the first time
      runs = 0;
      const caught = await l.commit(id, async (v) => {
        runs++;
        let published: number | string;
        try {
          published = v.head.published;
        } catch {
          published = 'swallowed';
        }
        return { records: [rec(id, v.head.ii + 1, { epoch })], result: published };
      });
      expect(caught).toBe(3);
      expect(runs).toBe(2);
      // and a whole-head comparison sees every field (the conformance suite's toEqual(head) too)
      const head = await l.getHead(id);
      expect(await l.commit(id, async (v) => ({ records: [], result: { ...v.head } }))).toEqual(head);
      expect((await l.readLog(id, 1, 10)).map((r) => r.ii)).toEqual([2, 3, 4, 5]);
    } finally {
      watch.stop();
      await client.terminate();
    }
  });

  it('readPatches asks Firestore for ii and patch only', async () => {
    const client = emu.firestore();
    const l = new FirestoreLedger(client, { root: newRoot() });
    try {
      const id = 'projection';
      await l.createScope({ id, meta, initial: {} });
      await l.commit(id, async (v) => ({ records: [1, 2, 3].map((k) => rec(id, v.head.ii + k, { session: 'p', si: k, by: 'x'.repeat(500) })), result: null }));
      // The same query readPatches sends comes back with two fields per document.
      const { Query } = await import('@google-cloud/firestore');
      const original = Query.prototype.select;
      const selected: string[][] = [];
      Query.prototype.select = function (this: unknown, ...fields: Parameters<typeof original>) {
        selected.push(fields.map(String));
        return original.apply(this, fields);
      } as typeof original;
      try {
        expect(await l.readPatches(id, 1, 3)).toEqual([1, 2, 3].map((ii) => ({ ii, patch: rec(id, ii).patch })));
      } finally {
        Query.prototype.select = original;
      }
      expect(selected).toEqual([['ii', 'patch']]);
    } finally {
      await client.terminate();
    }
  });

  it('create-or-resolve under one name from two clients concurrently gets one id', async () => {
    const root = newRoot();
    const a = new FirestoreLedger(db, { root });
    const b = new FirestoreLedger(other, { root });
    const results = await Promise.all(Array.from({ length: 20 }, (_, k) => createOrResolve(k % 2 === 0 ? a : b, 'u1', 'one board')));
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect((await a.listFor('u1', { limit: 100 })).scopes).toHaveLength(1);
    // A rename on one client and a direct commit on the other: the commit lands after the rename, nothing lost.
    const id = results[0]?.id as string;
    await a.commit(id, async (v) => ({ records: [rec(id, v.head.ii + 1)], result: null }));
    await b.rename(id, 'renamed');
    await a.commit(id, async (v) => ({ records: [rec(id, v.head.ii + 1)], result: null }));
    expect(await b.getHead(id)).toMatchObject({ ii: 2, meta: { name: 'renamed' } });
    expect(await a.resolveName('default', 'u1', 'renamed')).toBe(id);
  });

  it('heads from before names were unique (a name, no name document) are registered on resolve: the newest, then the next once it is renamed away', async () => {
    const root = newRoot();
    const l = new FirestoreLedger(db, { root });
    const ids = ['dup-a', 'dup-b', 'dup-c', 'dup-d'];
    for (const [i, id] of ids.entries()) await l.createScope({ id, meta: { ...meta, created: T0 + (i === 3 ? 1 : 2) }, initial: {} });
    // What an older version stored: the name in the head only.
    for (const id of ids) await db.collection(root).doc(id).update({ 'meta.name': 'dup' });
    expect(await l.resolveName('default', 'u1', 'dup')).toBe('dup-c');
    expect((await db.collection(root).doc('~names').collection('names').get()).size).toBe(1);
    await expect(l.createScope({ id: 'dup-e', meta: { ...meta, name: 'dup' }, initial: {} })).rejects.toMatchObject({ code: 'name_taken' });
    expect(await l.getHead('dup-e')).toBeNull();
    await expect(l.rename('dup-a', 'dup')).rejects.toMatchObject({ code: 'name_taken' });
    await l.rename('dup-c', 'moved');
    expect(await l.resolveName('default', 'u1', 'dup')).toBe('dup-b');
    await l.rename('dup-b', null);
    await l.rename('dup-a', 'elsewhere');
    expect(await l.resolveName('default', 'u1', 'dup')).toBe('dup-d');
    expect((await l.listFor('u1', { limit: 10, name: 'dup' })).scopes.map((s) => s.id)).toEqual(['dup-d']);
  });

  it('reset() empties the emulator project', async () => {
    const ref = db.collection(newRoot()).doc('d');
    await ref.set({ x: 1 });
    await emu.reset();
    expect((await ref.get()).exists).toBe(false);
  });

  // A measurement, not a timing assertion: PATCHBAY_BENCH=1 npx vitest run test/firestore-ledger.emulator.test.ts -t bench
  it.runIf(process.env.PATCHBAY_BENCH)('bench: sequential single-record commits vs raw read-modify-write transactions', async () => {
    const n = Number(process.env.PATCHBAY_BENCH_N ?? 500);
    const l = ledger();
    await l.createScope({ id: 'bench', meta, initial: {} });
    let si = 0;
    const commit = (tagged: boolean) => {
      const key = { session: 'bench', si: ++si }; // one new record per call, even if a plan re-runs
      return l.commit('bench', async (v) => {
        if (tagged) {
          const prior = (await v.findRetries([key])).get(retryKey(key.session, key.si));
          if (prior) return { records: [], result: prior.ii };
        }
        return { records: [rec('bench', v.head.ii + 1, tagged ? key : {})], meta: { updated: T0 + key.si, size: key.si }, result: v.head.ii + 1 };
      });
    };
    const ref = db.collection(newRoot()).doc('counter');
    const raw = () =>
      db.runTransaction(async (tx) => {
        const s = await tx.get(ref);
        tx.set(ref, { n: ((s.get('n') as number | undefined) ?? 0) + 1 });
      });
    const rate = async (label: string, op: () => Promise<unknown>) => {
      const t = performance.now();
      for (let i = 0; i < n; i++) await op();
      const ms = performance.now() - t;
      return `${label} ${((n * 1000) / ms).toFixed(0)}/s`;
    };
    // The emulator's JVM is slow until warm: warm every path first, then measure them in turn.
    for (let i = 0; i < 100; i++) await Promise.all([raw(), commit(true)]);
    const lines = [
      await rate('raw RMW tx', raw),
      await rate('commit (untagged record)', () => commit(false)),
      await rate('commit (retry-tagged record)', () => commit(true)),
    ];
    console.log(`bench, ${n} sequential each: ${lines.join('; ')}`);
    expect((await l.readLog('bench', 1, si, si)).map((r) => r.ii)).toEqual(Array.from({ length: si }, (_, i) => i + 1));
    expect((await ref.get()).get('n')).toBe(n + 100);
  });
});
