/**
 * Scope leaders on the Firestore emulator, at the ledger level (shared/adapters/google/firestore/
 * leaders.ts), with two clients standing for two instances: one holder per lease at a time; a new
 * holder gets a higher epoch; renewal keeps the epoch; a lapsed lease is taken; release frees it
 * at once. The fence: a commit fenced by an epoch the lease has left writes nothing and throws
 * `write_lease_lost`, on the direct way (the old leader's remembered head version) and on the
 * transactional way alike, while the new holder commits. The inbox: a handed request reaches the
 * leader's listener once, claimed for its epoch, and its sender gets the outcome.
 */
import { randomUUID } from 'node:crypto';
import type { Firestore } from '@google-cloud/firestore';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirestoreLedger, type FirestoreLedgerOptions } from '../shared/adapters/google/firestore/ledger.js';
import type { InboxRequest, Plan } from '../shared/ports/index.js';
import { isLeaseLost } from '../shared/ports/leaders.js';
import type { PatchRecord, ScopeMeta } from '../shared/protocol.js';
import { type FirestoreEmulator, startFirestoreEmulator } from './helpers/firestore-emulator.js';
import { skipWithout } from './helpers/proc.js';

const T0 = 1_700_000_000_000;
const meta: ScopeMeta = { owner: 'u1', domain: 'default', name: null, type: null, created: T0, updated: T0, size: 2 };

const rec = (scope: string, ii: number): PatchRecord => ({
  scope,
  ii,
  patch: [{ op: 'replace', path: '/n', value: ii }],
  at: T0 + ii,
  by: 'u1',
  session: null,
  si: null,
  hash: `h${ii}`,
  epoch: 0,
});

/** A plan appending one record after the head it sees. */
const append =
  (id: string): Plan<number> =>
  async (view) => ({ records: [rec(id, view.head.ii + 1)], result: view.head.ii + 1 });

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))('scope leaders on the Firestore emulator', () => {
  let emu: FirestoreEmulator;
  let db: Firestore;
  let other: Firestore; // a second client: another instance

  beforeAll(async () => {
    emu = await startFirestoreEmulator('demo-scope-leaders');
    db = emu.firestore();
    other = emu.firestore();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  /** Two ledgers on one namespace, as two instances see it, and a fresh scope. */
  async function twoInstances(o: FirestoreLedgerOptions = {}) {
    const root = `t-${randomUUID().slice(0, 8)}`;
    const a = new FirestoreLedger(db, { root, ...o });
    const b = new FirestoreLedger(other, { root, ...o });
    const id = `s-${randomUUID().slice(0, 8)}`;
    await a.createScope({ id, meta, initial: { n: 0 } });
    return { a, b, id, root, la: a.leaders('A'), lb: b.leaders('B') };
  }

  it('gives the lease to one holder at a time, a higher epoch to each new holder, and frees it on release or lapse', async () => {
    const { id, la, lb } = await twoInstances();
    const now = Date.now();
    const first = await la.acquire(id, 'A', 10_000, now);
    expect(first).toEqual({ mine: true, epoch: 1, expires: now + 10_000 });
    expect(await lb.acquire(id, 'B', 10_000, now + 1)).toEqual({ mine: false, holder: 'A', expires: now + 10_000 });
    // A renewal (or acquire by the holder) keeps the epoch.
    expect(await la.renew(id, 'A', 1, 10_000, now + 2)).toBe(true);
    expect(await la.acquire(id, 'A', 10_000, now + 3)).toMatchObject({ mine: true, epoch: 1 });
    // Lapsed: B takes it at epoch 2; A can no longer renew or release it.
    expect(await lb.acquire(id, 'B', 10_000, now + 20_000)).toMatchObject({ mine: true, epoch: 2 });
    expect(await la.renew(id, 'A', 1, 10_000, now + 20_001)).toBe(false);
    await la.release(id, 'A', 1);
    expect(await la.acquire(id, 'A', 10_000, now + 20_002)).toMatchObject({ mine: false, holder: 'B' });
    // Released: A takes it at once, at epoch 3.
    await lb.release(id, 'B', 2);
    expect(await la.acquire(id, 'A', 10_000, now + 20_003)).toMatchObject({ mine: true, epoch: 3 });
    expect(await failure(la.acquire('no-such-scope', 'A', 10_000))).toMatchObject({ code: 'scope_not_found' });
  });

  it('gives a lease that several instances ask for at once to exactly one of them, fresh or released, and writes its epoch to the head', async () => {
    const { a, id, root } = await twoInstances();
    // Four instances (two clients each): a transaction per acquirer deadlocked here for seconds.
    const clients = [db, other, emu.firestore(), emu.firestore()];
    const leaders = clients.map((c, i) => new FirestoreLedger(c, { root }).leaders(`I${i}`));
    for (const round of [1, 2]) {
      const now = Date.now();
      const answers = await Promise.all(leaders.map((l, i) => l.acquire(id, `I${i}`, 10_000, now)));
      const mine = answers.flatMap((x, i) => (x.mine ? [{ i, epoch: x.epoch }] : []));
      expect(mine).toHaveLength(1);
      const winner = mine[0] as { i: number; epoch: number };
      // Round 1: a fresh lease (epoch 1); round 2: after the winner released it (the next epoch).
      expect(winner.epoch).toBe(round);
      for (const x of answers) if (!x.mine) expect(x).toEqual({ mine: false, holder: `I${winner.i}`, expires: now + 10_000 });
      // The head carries the winner's epoch: its commits pass the fence, and nobody else's would.
      expect((await a.getHead(id))?.ii).toBe(round - 1);
      const fenced = await failure(a.commit(id, append(id), winner.epoch + 1));
      expect(isLeaseLost(fenced)).toBe(true);
      expect(await a.commit(id, append(id), winner.epoch)).toBe(round);
      await (leaders[winner.i] as (typeof leaders)[number]).release(id, `I${winner.i}`, winner.epoch);
    }
  });

  it('refuses a fenced commit once the lease moved on, on the direct way and in the transaction, and writes nothing', async () => {
    for (const directCommits of [true, false]) {
      const { a, b, id, la, lb } = await twoInstances({ directCommits });
      const now = Date.now();
      const { epoch } = (await la.acquire(id, 'A', 1000, now)) as { epoch: number };
      expect(await a.commit(id, append(id), epoch)).toBe(1);
      expect(await a.commit(id, append(id), epoch)).toBe(2); // direct: on the head version it remembers
      // A pauses past its lease; B takes it (its first commit reads the head, at the new epoch).
      const taken = (await lb.acquire(id, 'B', 1000, now + 5000)) as { epoch: number };
      expect(taken.epoch).toBe(epoch + 1);
      // A's late commit, still fenced by its old epoch: refused, nothing written.
      const late = await failure(a.commit(id, append(id), epoch));
      expect(isLeaseLost(late)).toBe(true);
      expect(late).toMatchObject({ code: 'unavailable' });
      expect((await b.getHead(id))?.ii).toBe(2);
      expect(await b.commit(id, append(id), taken.epoch)).toBe(3);
      expect(await failure(a.commit(id, append(id), epoch))).toMatchObject({ details: { reason: 'write_lease_lost' } });
      // A takes the lease back later: a new epoch, and its commits go on at the right index.
      await lb.release(id, 'B', taken.epoch);
      const back = (await la.acquire(id, 'A', 1000, now + 6000)) as { epoch: number };
      expect(back.epoch).toBe(epoch + 2);
      expect(await a.commit(id, append(id), back.epoch)).toBe(4);
      expect((await a.readLog(id, 1, 10)).map((r) => r.ii)).toEqual([1, 2, 3, 4]);
    }
  });

  it('hands a request to the leader: its listener gets it once, claimed for its epoch, and the sender gets the answer', async () => {
    const { id, root, la, lb } = await twoInstances();
    const { epoch } = (await la.acquire(id, 'A', 10_000)) as { epoch: number };
    const got: InboxRequest[] = [];
    /** Each request document's creation time, as a watcher of the inbox saw it. */
    const created = new Map<string, string>();
    const unwatch = db.collection(`${root}/${id}/inbox`).onSnapshot((snap) => {
      for (const c of snap.docChanges()) if (c.type === 'added') created.set(c.doc.id, c.doc.createTime.toDate().toISOString() + c.doc.createTime.nanoseconds);
    });
    const stop = la.listen(
      id,
      epoch,
      (requests) => {
        got.push(...requests);
        void la.answer(
          id,
          requests.map((r) => ({ key: r.key, outcome: { ack: { id, ii: 7, echo: r.req } } })),
        );
      },
      (err) => {
        throw err;
      },
    );
    try {
      const req = JSON.stringify({ patch: [{ op: 'add', path: '/x', value: 1 }], ii: 0 });
      const sent = await lb.send(id, { req, user: 'u2', domain: 'default', retriable: false }, 10_000);
      expect(sent.outcome).toEqual({ ack: { id, ii: 7, echo: req } });
      expect(got).toHaveLength(1);
      expect(got[0]).toMatchObject({ req, user: 'u2', domain: 'default', retriable: false, claimed: 0 });
      // Two at once, and an error outcome round-trips.
      const [x, y] = await Promise.all([
        lb.send(id, { req: '1', user: 'u2', domain: 'd', retriable: true }, 10_000),
        lb.send(id, { req: '2', user: 'u3', domain: 'd', retriable: false }, 10_000),
      ]);
      expect([x.outcome, y.outcome]).toEqual([{ ack: { id, ii: 7, echo: '1' } }, { ack: { id, ii: 7, echo: '2' } }]);
      expect(got).toHaveLength(3);
      // Sent together, they were created in one batch (one commit time), not one write each.
      expect(created.get(x.key)).toBeDefined();
      expect(created.get(x.key)).toBe(created.get(y.key));
      expect(created.get(x.key)).not.toBe(created.get(sent.key));
      // The sender deleted its answered requests.
      await new Promise((r) => setTimeout(r, 300));
      expect((await db.collection(`${root}/${id}/inbox`).get()).size).toBe(0);
    } finally {
      stop();
      unwatch();
    }
  }, 30_000);

  it('leaves an unanswered request in the inbox for the next leader, which sees the earlier claim', async () => {
    const { id, la, lb } = await twoInstances();
    const first = (await la.acquire(id, 'A', 1000, Date.now())) as { epoch: number };
    const claimedByA: InboxRequest[] = [];
    const stopA = la.listen(
      id,
      first.epoch,
      (r) => claimedByA.push(...r),
      () => {},
    );
    const waiting = lb.send(id, { req: '"r"', user: 'u2', domain: 'd', retriable: false }, 800);
    await expect.poll(() => claimedByA.length, { timeout: 5000 }).toBe(1);
    stopA(); // A "dies" without answering
    const timedOut = await waiting;
    expect(timedOut.outcome).toBeNull();
    // B takes the lapsed lease, listens, and answers; the sender waits again on the same request.
    const second = (await lb.acquire(id, 'B', 1000, Date.now() + 5000)) as { epoch: number };
    const seen: InboxRequest[] = [];
    const stopB = lb.listen(
      id,
      second.epoch,
      (r) => {
        seen.push(...r);
        void lb.answer(id, [{ key: r[0]?.key as string, outcome: { error: { code: 'unavailable', message: 'm', details: {} } } }]);
      },
      () => {},
    );
    try {
      const again = await lb.send(id, { req: '"r"', user: 'u2', domain: 'd', retriable: false }, 5000, timedOut.key);
      expect(again.outcome).toEqual({ error: { code: 'unavailable', message: 'm', details: {} } });
      expect(seen).toEqual([expect.objectContaining({ key: timedOut.key, claimed: first.epoch })]);
    } finally {
      stopB();
    }
  }, 30_000);
});
