/**
 * The client's guarantees under random interleavings and random failures (issue #16's property
 * test): two clients write one scope at once, each patch chosen from what that client sees
 * (so they conflict: both remove one key, one replaces what the other removed); requests are lost
 * at random before reaching the server or after it committed (the answer never arrives), and
 * streams are cut at random. In every run both clients end in the server's state, at its head, and
 * the server's log is exactly the acknowledged patches: each index 1..n once, holding the patch
 * acknowledged with that index (or, for a client drawn to compose, the patches acknowledged with
 * it joined in the order they were made), and no acknowledged patch missing. Each client is drawn
 * to predict indices or to let the server place its patches at the head (`ordering`).
 *
 * And the offline queue across restarts: both clients have storage (openClient + memoryStorage),
 * and at random one "restarts": its object is closed and a new one opens the same storage,
 * resending what was pending with the original (session, si). Then every patch made is in the
 * log exactly once (alone, or joined with others of its client when it composes), or was dropped as a conflict (its promise rejected with `patch_failed`, or a
 * restored client's `conflict` event) and is not in the log: none lost, none doubled; every
 * acknowledged one is at the index its ack named; both clients end in the server state.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collapse } from '../client/src/collapse.js';
import {
  type Ack,
  type ClientStorage,
  createClient,
  type LiveScope,
  memoryStorage,
  type Ordering,
  openClient,
  type Patch,
  type PatchbayClient,
} from '../client/src/index.js';
import type { Json } from '../shared/json.js';
import { type Fault, faulty } from './helpers/faulty-fetch.js';
import { startServer, type TestServer } from './helpers/server.js';

const RUNS = Number(process.env.CLIENT_PROPERTY_RUNS ?? 8);

/** A patch chosen from what `scope` shows: add a missing key, else replace or remove it; or append. */
function choose(scope: LiveScope, key: number, kind: number, value: number): Patch {
  const state = scope.state as { keys: Record<string, number>; log: number[] };
  const k = `k${key}`;
  if (kind === 0) return [{ op: 'add', path: '/log/-', value }];
  if (!(k in state.keys)) return [{ op: 'add', path: `/keys/${k}`, value }];
  return kind === 1 ? [{ op: 'replace', path: `/keys/${k}`, value }] : [{ op: 'remove', path: `/keys/${k}` }];
}

/** A patch from what `scope` shows (add, replace or remove a key), marked by `m` appended to /seen. */
function chooseMarked(scope: LiveScope, key: number, kind: number, m: number): Patch {
  const state = scope.state as { keys: Record<string, number> };
  const k = `k${key}`;
  const mark = { op: 'add', path: '/seen/-', value: m } as const;
  if (!(k in state.keys)) return [{ op: 'add', path: `/keys/${k}`, value: m }, mark];
  return kind === 0 ? [{ op: 'replace', path: `/keys/${k}`, value: m }, mark] : [{ op: 'remove', path: `/keys/${k}` }, mark];
}

const markOf = (patch: Patch): number => (patch[1] as { value: number }).value;

/**
 * Waits for every scope to reach the server's head, checks each holds the server's state there,
 * and returns the server's log, checked to run 1..head without a hole.
 */
async function converged(srv: TestServer, token: string, scopes: LiveScope[]): Promise<Array<{ ii: number; patch: Patch }>> {
  const id = scopes[0]?.id as string;
  const auth = { headers: { authorization: `Bearer ${token}` } };
  const head = (await (await fetch(`${srv.url}/v1/scopes/${id}`, auth)).json()) as { ii: number; state: Json };
  const deadline = Date.now() + 15_000;
  while (scopes.some((s) => s.ii !== head.ii) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const s of scopes) {
    expect(s.ii).toBe(head.ii);
    expect(s.state).toEqual(head.state);
  }
  const log = (await (await fetch(`${srv.url}/v1/scopes/${id}/patches`, auth)).text())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { ii: number; patch: Patch });
  expect(log.map((r) => r.ii)).toEqual(Array.from({ length: head.ii }, (_, i) => i + 1));
  return log;
}

describe('client property: random interleavings, lost requests and answers, cut streams, client restarts', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ sseRetryMs: 0 });
  });
  afterAll(() => srv.close());

  it('both clients end in the server state, and the log is exactly the acknowledged patches', async () => {
    const step = fc.record({
      who: fc.integer({ min: 0, max: 1 }),
      key: fc.integer({ min: 0, max: 3 }),
      kind: fc.integer({ min: 0, max: 2 }),
      pause: fc.integer({ min: 0, max: 15 }),
    });
    const fault = fc.constantFrom<Fault>('none', 'none', 'none', 'lose-request', 'lose-answer');
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 5, maxLength: 30 }),
        fc.array(fault, { maxLength: 30 }),
        fc.array(fault, { maxLength: 30 }),
        fc.integer({ min: 100, max: 600 }),
        fc.tuple(fc.boolean(), fc.boolean()),
        fc.tuple(fc.constantFrom<Ordering>('predicted', 'head'), fc.constantFrom<Ordering>('predicted', 'head')),
        async (steps, fa, fb, cutMs, [ca, cb], [oa, ob]) => {
          const token = ((await (await fetch(`${srv.url}/v1/auth/anonymous`, { method: 'POST' })).json()) as { token: string }).token;
          const cut = () => cutMs + Math.floor(Math.random() * cutMs);
          const clients = [
            createClient({ url: srv.url, token, fetch: faulty(fa, cut), compose: ca, ordering: oa }),
            createClient({ url: srv.url, token, fetch: faulty(fb, cut), compose: cb, ordering: ob }),
          ];
          try {
            const first = await clients[0]?.create({ state: { keys: {}, log: [] } });
            const scopes = [first as LiveScope, clients[1]?.scope((first as LiveScope).id) as LiveScope];
            await scopes[1]?.ready;
            const sent: Array<{ patch: Patch; ack: Promise<Ack> }> = [];
            for (const [i, s] of steps.entries()) {
              const scope = scopes[s.who] as LiveScope;
              const patch = choose(scope, s.key, s.kind, i);
              // A patch that does not apply locally is refused at once and sent nowhere: not part of the log.
              const ack = scope.patch(patch);
              sent.push({ patch, ack });
              if (s.pause > 0) await new Promise((r) => setTimeout(r, s.pause));
            }
            const settled = await Promise.allSettled(sent.map((x) => x.ack));
            await Promise.all(scopes.map((s) => s.synced()));
            const log = await converged(srv, token, scopes);
            // Acked patches by index, in the order they were made: one patch each, or (a composing
            // client) the patches joined into one entry, their operations in that order, folded.
            const acked = new Map<number, Patch>();
            settled.forEach((r, i) => {
              if (r.status === 'fulfilled') acked.set(r.value.ii, [...(acked.get(r.value.ii) ?? []), ...(sent[i] as { patch: Patch }).patch]);
            });
            expect(acked.size).toBe(log.length); // every committed patch was acknowledged, once
            // Joined, successive replaces of one path are folded into one operation (client/src/collapse.ts).
            for (const r of log) expect(collapse(acked.get(r.ii) ?? [])).toEqual(r.patch);
          } finally {
            for (const c of clients) c.close();
          }
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: true },
    );
  }, 180_000);

  it('every patch made is in the log once or dropped as a conflict, and both clients end in the server state', async () => {
    const step = fc.record({
      who: fc.integer({ min: 0, max: 1 }),
      key: fc.integer({ min: 0, max: 3 }),
      kind: fc.integer({ min: 0, max: 1 }),
      pause: fc.integer({ min: 0, max: 10 }),
      restart: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    });
    const fault = fc.constantFrom<Fault>('none', 'none', 'none', 'lose-request', 'lose-answer');
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 5, maxLength: 25 }),
        fc.array(fault, { maxLength: 25 }),
        fc.integer({ min: 100, max: 500 }),
        fc.tuple(fc.boolean(), fc.boolean()),
        fc.tuple(fc.constantFrom<Ordering>('predicted', 'head'), fc.constantFrom<Ordering>('predicted', 'head')),
        async (steps, faults, cutMs, compose, ordering) => {
          const token = ((await (await fetch(`${srv.url}/v1/auth/anonymous`, { method: 'POST' })).json()) as { token: string }).token;
          const f = faulty(faults, () => cutMs + Math.floor(Math.random() * cutMs));
          const storages: ClientStorage[] = [memoryStorage(), memoryStorage()];
          const all: PatchbayClient[] = [];
          const dropped = new Set<number>();
          const open = async (w: number) => {
            const c = await openClient({ url: srv.url, token, storage: storages[w] as ClientStorage, fetch: f, compose: compose[w], ordering: ordering[w] });
            c.on('conflict', (e) => dropped.add(markOf(e.patch)));
            all.push(c);
            return c;
          };
          try {
            const clients = [await open(0), await open(1)];
            const first = await (clients[0] as PatchbayClient).create({ state: { keys: {}, seen: [] } });
            const id = first.id;
            const scopes: LiveScope[] = [first, (clients[1] as PatchbayClient).scope(id)];
            await scopes[1]?.ready;
            const acks = new Map<number, Promise<{ ii: number }>>();
            const made = new Map<number, Patch>();
            for (const [i, s] of steps.entries()) {
              if (s.restart) {
                (clients[s.who] as PatchbayClient).close(); // its queue stays in its storage
                await new Promise((r) => setTimeout(r, 20));
                clients[s.who] = await open(s.who);
                scopes[s.who] = (clients[s.who] as PatchbayClient).scope(id);
                await scopes[s.who]?.ready;
              }
              const scope = scopes[s.who] as LiveScope;
              const patch = chooseMarked(scope, s.key, s.kind, i);
              made.set(i, patch);
              const ack = scope.patch(patch);
              ack.catch((e) => {
                if (e.code === 'patch_failed') dropped.add(i);
              });
              acks.set(i, ack);
              if (s.pause > 0) await new Promise((r) => setTimeout(r, s.pause));
            }
            await Promise.all(clients.map((c) => c.synced()));
            const settled = new Map<number, PromiseSettledResult<{ ii: number }>>();
            for (const [i, p] of acks) settled.set(i, (await Promise.allSettled([p]))[0] as PromiseSettledResult<{ ii: number }>);
            const log = await converged(srv, token, scopes);
            const inLog = new Map<number, number>();
            for (const r of log) {
              // Each made patch is two operations (its change, its mark); a composed entry holds several, in order.
              for (let k = 0; k < r.patch.length; k += 2) {
                const part = r.patch.slice(k, k + 2);
                const m = markOf(part);
                expect(inLog.has(m), `patch ${m} twice in the log`).toBe(false);
                expect(part).toEqual(made.get(m));
                inLog.set(m, r.ii);
              }
            }
            for (const [m] of made) {
              expect(inLog.has(m) !== dropped.has(m), `patch ${m}: in the log ${inLog.has(m)}, dropped ${dropped.has(m)}`).toBe(true);
              const r = settled.get(m);
              if (r?.status === 'fulfilled') expect(inLog.get(m)).toBe(r.value.ii);
            }
          } finally {
            for (const c of all) c.close();
          }
        },
      ),
      { numRuns: Math.max(1, Math.ceil((RUNS * 3) / 4)), interruptAfterTimeLimit: 120_000, markInterruptAsFailure: true },
    );
  }, 180_000);
});
