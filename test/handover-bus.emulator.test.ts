/**
 * The hand-over's fast path (shared/engine/handover-bus.ts) on the Firestore emulator: two engines
 * in one process stand for two instances (two Firestore clients on one namespace, each with its own
 * scope leaders), sharing one in-process bus that the tests make lose, double or refuse messages.
 *
 * - Handed requests answered on the bus within PATCHBAY_HANDOVER_INBOX_AFTER_MS write no inbox
 *   document at all. With it at 0 the document is written at once, and the bus still answers while
 *   the leader's inbox answer is held back; once let go, the document is answered and removed.
 * - The bus losing every request, or every answer: each request is written to the inbox after
 *   PATCHBAY_HANDOVER_INBOX_AFTER_MS, which carries it (slower, the same acks).
 * - A leader that released its lease (shut down) answers nothing: its sender asks the lease again
 *   after PATCHBAY_HANDOVER_INBOX_AFTER_MS, takes it and commits the request itself.
 * - A leader that committed a request from the bus, lost its answer and shut down: the sender
 *   commits it again with its retry key, which recognises it: one record, the first ack.
 * - Messages are signed: a request with a bad signature, or none, is dropped.
 * - The bus delivering every request twice (and the inbox a third time): each is committed once.
 * - The inbox's create failing: the bus alone carries the request; both failing: `503` and nothing
 *   stored.
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Firestore } from '@google-cloud/firestore';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore, LocalBus, MemoryCache } from '../shared/adapters/embedded/index.js';
import { Layout } from '../shared/adapters/google/firestore/layout.js';
import { FirestoreLedger } from '../shared/adapters/google/firestore/ledger.js';
import { type Ack, Engine, type EnginePorts } from '../shared/engine/engine.js';
import type { Bus, ScopeLeaders, ScopeSignal } from '../shared/ports/index.js';
import { type FirestoreEmulator, startFirestoreEmulator } from './helpers/firestore-emulator.js';
import { skipWithout } from './helpers/proc.js';
import { tempDir, testConfig } from './helpers/server.js';
import { wrap } from './helpers/wrap.js';

/** What the tests let the bus do with a signal on a hand-over key: pass it, drop it, or send it twice. */
type Fate = 'pass' | 'drop' | 'twice';

describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))('the hand-over through the bus, on the Firestore emulator', () => {
  let emu: FirestoreEmulator;
  let db: Firestore;
  let other: Firestore;
  const open: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    emu = await startFirestoreEmulator('demo-handover-bus');
    db = emu.firestore();
    other = emu.firestore();
  });
  afterEach(async () => {
    for (const close of open.splice(0).reverse()) await close();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  /**
   * Two engines on one namespace and one bus, and a scope B leads. `requests` and `answers` say
   * what the bus does with hand-over requests and answers; `leaders` decorates each engine's port.
   */
  async function twoInstances(
    opts: {
      requests?: Fate;
      answers?: Fate;
      leaderA?: (l: ScopeLeaders) => ScopeLeaders;
      leaderB?: (l: ScopeLeaders) => ScopeLeaders;
      /** PATCHBAY_HANDOVER_INBOX_AFTER_MS (default here 300 ms). */
      inboxAfterMs?: number;
    } = {},
  ) {
    const root = `t-${randomUUID().slice(0, 8)}`;
    const shared = new LocalBus();
    const seen = { requests: 0, answers: 0 }; // hand-over requests sent on the bus, answer messages
    const bus: Bus = wrap(shared, {
      signal: async (real, s: ScopeSignal) => {
        const kind = s.scope.startsWith('~inbox:') ? 'requests' : s.scope.startsWith('~answers:') ? 'answers' : null;
        if (kind === null) return real(s);
        seen[kind] += kind === 'requests' ? requestsIn(s.data as string) : 1;
        const fate = (kind === 'requests' ? opts.requests : opts.answers) ?? 'pass';
        if (fate === 'drop') return;
        await real(s);
        if (fate === 'twice') await real(s);
      },
    });
    const config = testConfig({
      scopeLeaders: true,
      handoverBus: true,
      handoverInboxAfterMs: opts.inboxAfterMs ?? 300,
      writeLeaseMs: 2000,
      writeLeaseIdleMs: 60_000,
      handoverTimeoutMs: 8000,
    });
    const engine = (fs: Firestore, name: string, decorate?: (l: ScopeLeaders) => ScopeLeaders) => {
      const ledger = new FirestoreLedger(fs, { root });
      const leaders = ledger.leaders(name);
      const ports: EnginePorts = { ledger, cache: new MemoryCache(), bus, blobs: new FsBlobStore(tempDir()), leaders: decorate ? decorate(leaders) : leaders };
      const e = new Engine(ports, config, { logError: () => {} });
      open.push(async () => {
        await e.close();
        await ledger.close();
      });
      return e;
    };
    const a = engine(db, 'A', opts.leaderA);
    const b = engine(other, 'B', opts.leaderB);
    const { id } = await b.createScope('u1', { state: { n: 0 } });
    // B takes the lease with a write of its own: A's requests are then handed to B.
    expect((await b.submit(id, 'u1', { patch: [{ op: 'add', path: '/lead', value: true }] })).ii).toBe(1);
    return { a, b, id, root, seen, bus };
  }

  const add = (k: string) => ({ patch: [{ op: 'add' as const, path: `/${k}`, value: k }] });

  async function logOf(e: Engine, id: string): Promise<Array<{ ii: number; key: string }>> {
    const out: Array<{ ii: number; key: string }> = [];
    for await (const r of e.readLog(id, 1, Number.MAX_SAFE_INTEGER)) out.push({ ii: r.ii, key: r.patch[0]?.path.slice(1) as string });
    return out;
  }

  const inboxSize = async (root: string, id: string) => (await new Layout(db, root).inbox(id).get()).size;

  /** The log runs 1..n, holds 'lead' and each of `keys` once, each at its ack's index. */
  async function checkLog(e: Engine, id: string, keys: string[], acks: Ack[]): Promise<void> {
    const log = await logOf(e, id);
    expect(log.map((r) => r.ii)).toEqual(log.map((_, i) => i + 1));
    expect(log.map((r) => r.key).sort()).toEqual(['lead', ...keys].sort());
    for (const [i, k] of keys.entries()) expect(log.find((r) => r.key === k)?.ii, k).toBe(acks[i]?.ii);
    expect(acks.every((x) => !x.duplicate)).toBe(true);
  }

  /** A's leaders port, counting the requests it writes to the inbox. */
  const countingSends = (counter: { sends: number }) => (l: ScopeLeaders) =>
    wrap(l, {
      send: (real, id, request, waitMs, key) => {
        if (key === undefined) counter.sends++;
        return real(id, request, waitMs, key);
      },
    });

  it('answers handed requests on the bus, and writes no inbox document while the leader answers in time', async () => {
    const counter = { sends: 0 };
    const { a, id, root, seen } = await twoInstances({ leaderA: countingSends(counter), inboxAfterMs: 5000 });
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    const acks = await Promise.all(keys.map((k) => a.submit(id, 'u1', add(k))));
    await checkLog(a, id, keys, acks);
    expect(seen.requests).toBe(10);
    expect(counter.sends).toBe(0);
    expect(await inboxSize(root, id)).toBe(0);
  });

  it('with PATCHBAY_HANDOVER_INBOX_AFTER_MS=0, writes the inbox document at once; the bus answers while the inbox answer is held back', async () => {
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    let inboxAnswers = 0; // written to the documents
    const { a, id, root, seen } = await twoInstances({
      inboxAfterMs: 0,
      leaderB: (l) =>
        wrap(l, {
          answer: async (real, scope, answers) => {
            await held;
            await real(scope, answers);
            inboxAnswers += answers.length;
          },
        }),
    });
    open.push(async () => letGo()); // closed first: the engines' close waits for the held answers
    const keys = ['x', 'y', 'z'];
    const acks = await Promise.all(keys.map((k) => a.submit(id, 'u1', add(k))));
    await checkLog(a, id, keys, acks);
    expect(seen.requests).toBe(3);
    expect(seen.answers).toBeGreaterThanOrEqual(1);
    expect(inboxAnswers).toBe(0); // no inbox answer was written yet: the acks came on the bus
    letGo();
    await waitFor('the inbox answers written', () => inboxAnswers === 3);
    await waitFor('the answered documents deleted', async () => (await inboxSize(root, id)) === 0);
  });

  for (const lost of ['requests', 'answers'] as const) {
    it(`the bus losing every hand-over ${lost}: the inbox carries them after PATCHBAY_HANDOVER_INBOX_AFTER_MS, with the same acks`, async () => {
      const counter = { sends: 0 };
      const { a, id, root, seen } = await twoInstances({ [lost]: 'drop', leaderA: countingSends(counter) });
      const keys = Array.from({ length: 5 }, (_, i) => `k${i}`);
      const acks = await Promise.all(keys.map((k) => a.submit(id, 'u1', add(k))));
      expect(seen[lost]).toBeGreaterThan(0);
      expect(counter.sends).toBe(5);
      await checkLog(a, id, keys, acks);
      await waitFor('the answered documents deleted', async () => (await inboxSize(root, id)) === 0);
    });
  }

  it('a leader that released its lease answers nothing on the bus: the sender asks the lease again, takes it and commits itself, with no inbox document', async () => {
    const counter = { sends: 0 };
    const { a, b, id, root } = await twoInstances({ leaderA: countingSends(counter) });
    const first = await a.submit(id, 'u1', add('handed')); // A learns that B leads
    const leaseRef = new Layout(db, root).writeLease(id);
    const byB = (await leaseRef.get()).get('holder') as string;
    await b.close(); // B shuts down: its lease is released, A still thinks B leads
    const second = await a.submit(id, 'u1', add('mine'));
    await checkLog(a, id, ['handed', 'mine'], [first, second]);
    expect(counter.sends).toBe(0);
    expect(await inboxSize(root, id)).toBe(0);
    const lease = await leaseRef.get();
    expect(lease.get('holder')).not.toBe(byB); // A's, taken when B's answer did not come
    expect(lease.get('expires')).toBeGreaterThan(Date.now());
  });

  it('a leader that committed a bus request, lost its answer and left: its sender commits the request again, recognised, and gets the first ack', async () => {
    const { a, b, id } = await twoInstances({ answers: 'drop' });
    await a.submit(id, 'u1', add('first')); // A learns that B leads (its answer came through the inbox)
    const pending = a.submit(id, 'u1', add('twice'));
    // B commits it from the bus; its answer is lost; then B shuts down before A stops waiting.
    await waitFor('B committed it', async () => (await logOf(b, id)).some((r) => r.key === 'twice'));
    await b.close();
    const ack = await pending;
    const log = await logOf(a, id);
    expect(log.filter((r) => r.key === 'twice')).toEqual([{ ii: ack.ii, key: 'twice' }]);
    expect(log.map((r) => r.ii)).toEqual([1, 2, 3]);
    expect(ack.duplicate).toBeUndefined(); // its retry key was its sender's: the client sees its first ack
  });

  it('drops a request on the bus whose signature does not verify; the same request signed is committed', async () => {
    const { a, id, bus } = await twoInstances();
    const request = (key: string) => JSON.stringify([{ key, from: 'nobody', req: JSON.stringify(add(key)), user: 'u1', domain: 'default' }]);
    const key = createHmac('sha256', '').update('patchbay hand-over v1').digest(); // testConfig's PATCHBAY_JWT_SECRET is empty
    const signed = (text: string) => `${createHmac('sha256', key).update(text).digest('base64url')}.${text}`;
    const before = await logOf(a, id);
    await bus.signal({ scope: `~inbox:${id}`, kind: 'control', data: `${'A'.repeat(43)}.${request('forged')}`, unordered: true });
    await bus.signal({ scope: `~inbox:${id}`, kind: 'control', data: request('unsigned'), unordered: true });
    await bus.signal({ scope: `~inbox:${id}`, kind: 'control', data: signed(request('signed')), unordered: true });
    await waitFor('the signed request committed', async () => (await logOf(a, id)).some((r) => r.key === 'signed'));
    expect((await logOf(a, id)).map((r) => r.key)).toEqual([...before.map((r) => r.key), 'signed']);
  });

  it('a request the bus delivers twice, and the inbox once more, is committed once', async () => {
    const { a, id, seen } = await twoInstances({ requests: 'twice', answers: 'twice' });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    const acks = await Promise.all(keys.map((k) => a.submit(id, 'u1', add(k))));
    expect(seen.requests).toBe(20);
    await checkLog(a, id, keys, acks);
  });

  it('the inbox failing to take a request: the bus alone carries it; both failing: 503 and nothing stored', async () => {
    const failingSend = (l: ScopeLeaders) => wrap(l, { send: async () => Promise.reject(Object.assign(new Error('injected'), { code: 14 })) });
    const one = await twoInstances({ leaderA: failingSend });
    const ack = await one.a.submit(one.id, 'u1', add('viaBus'));
    await checkLog(one.a, one.id, ['viaBus'], [ack]);

    const two = await twoInstances({ leaderA: failingSend, requests: 'drop' });
    const before = await logOf(two.a, two.id);
    const err = await two.a.submit(two.id, 'u1', add('nowhere')).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'unavailable' });
    expect(await logOf(two.a, two.id)).toEqual(before);
    expect((await two.b.getScope(two.id)).state).toEqual({ n: 0, lead: true });
  });
});

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** How many requests a signed requests message (`<signature>.<JSON array>`) carries; 0 when it is not one. */
function requestsIn(data: string): number {
  try {
    const list: unknown = JSON.parse(data.slice(data.indexOf('.') + 1));
    return Array.isArray(list) ? list.length : 0;
  } catch {
    return 0;
  }
}
