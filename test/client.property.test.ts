/**
 * The client's guarantees under random interleavings and random failures (issue #16's property
 * test): two clients write one scope at once, each patch chosen from what that client sees
 * (so they conflict: both remove one key, one replaces what the other removed); requests are lost
 * at random before reaching the server or after it committed (the answer never arrives), and
 * streams are cut at random. In every run both clients end in the server's state, at its head, and
 * the server's log is exactly the acknowledged patches: each index 1..n once, holding the patch
 * acknowledged with that index, and no acknowledged patch missing.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Ack, createClient, type LiveScope, type Patch } from '../client/src/index.js';
import type { Json } from '../shared/json.js';
import { startServer, type TestServer } from './helpers/server.js';

const RUNS = Number(process.env.CLIENT_PROPERTY_RUNS ?? 8);

type Fault = 'none' | 'lose-request' | 'lose-answer';

/** A fetch that fails POSTs as the next fault says, and cuts each stream after a random time. */
function faulty(faults: Fault[], cutAfterMs: () => number): typeof fetch {
  return async (input, init) => {
    const url = String(input);
    if (/\/events(\?|$)/.test(url)) {
      const cut = AbortSignal.timeout(cutAfterMs());
      return fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, cut]) : cut });
    }
    if (init?.method !== 'POST' || url.endsWith('/v1/scopes')) return fetch(input, init);
    const fault = faults.shift() ?? 'none';
    if (fault === 'lose-request') throw new TypeError('fetch failed');
    const res = await fetch(input, init);
    if (fault === 'lose-answer') {
      await res.body?.cancel();
      throw new TypeError('fetch failed');
    }
    return res;
  };
}

/** A patch chosen from what `scope` shows: add a missing key, else replace or remove it; or append. */
function choose(scope: LiveScope, key: number, kind: number, value: number): Patch {
  const state = scope.state as { keys: Record<string, number>; log: number[] };
  const k = `k${key}`;
  if (kind === 0) return [{ op: 'add', path: '/log/-', value }];
  if (!(k in state.keys)) return [{ op: 'add', path: `/keys/${k}`, value }];
  return kind === 1 ? [{ op: 'replace', path: `/keys/${k}`, value }] : [{ op: 'remove', path: `/keys/${k}` }];
}

describe('client property: random interleavings, lost requests and answers, cut streams', () => {
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
        async (steps, fa, fb, cutMs) => {
          const token = ((await (await fetch(`${srv.url}/v1/auth/anonymous`, { method: 'POST' })).json()) as { token: string }).token;
          const cut = () => cutMs + Math.floor(Math.random() * cutMs);
          const clients = [createClient({ url: srv.url, token, fetch: faulty(fa, cut) }), createClient({ url: srv.url, token, fetch: faulty(fb, cut) })];
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
            const head = (await (await fetch(`${srv.url}/v1/scopes/${scopes[0]?.id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
              ii: number;
              state: Json;
            };
            const deadline = Date.now() + 15_000;
            while (scopes.some((s) => s.ii !== head.ii) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
            for (const s of scopes) {
              expect(s.ii).toBe(head.ii);
              expect(s.state).toEqual(head.state);
            }
            const log = (await (await fetch(`${srv.url}/v1/scopes/${scopes[0]?.id}/patches`, { headers: { authorization: `Bearer ${token}` } })).text())
              .split('\n')
              .filter((l) => l !== '')
              .map((l) => JSON.parse(l) as { ii: number; patch: Patch });
            expect(log.map((r) => r.ii)).toEqual(Array.from({ length: head.ii }, (_, i) => i + 1));
            const acked = new Map<number, Patch>();
            settled.forEach((r, i) => {
              if (r.status === 'fulfilled') acked.set(r.value.ii, (sent[i] as { patch: Patch }).patch);
            });
            expect(acked.size).toBe(log.length); // every committed patch was acknowledged, once
            for (const r of log) expect(acked.get(r.ii)).toEqual(r.patch);
          } finally {
            for (const c of clients) c.close();
          }
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: true },
    );
  }, 180_000);
});
