/**
 * Scale-out on the Google stack of stand-ins: several real API processes share one Firestore, one
 * Pub/Sub, one Redis and one storage server, and a hot scope is still committed by one of them at
 * a time (shared/engine/leading.ts).
 *
 * - Chaos: writers spread over every instance, some requests sent to two instances at once (a
 *   retry racing its original), some retried on another instance after their ack, a stream on
 *   every instance: every patch is in the log once, every ack at its patch's index, the log runs
 *   1..n, a retry gets its original's index, and every stream sees 1..n in order.
 * - The leader SIGKILLed mid-storm: the lease lapses, another instance takes it, requests of
 *   unknown fate retried elsewhere with their (session, si) are committed once: none lost, none
 *   doubled. Handed requests without (session, si), with the leader killed under them: every one
 *   answered 200 once (their sender gives them a retry key), none `503` of unknown fate.
 * - The leader SIGTERMed: it releases the lease on its way out (the lease document says so), and
 *   the next write through another instance is acked well within a lease.
 * - The leader SIGSTOPped past its lease: another instance takes the scope; once SIGCONTed, the old
 *   leader's pending request is fenced off (its commit refused) and goes to the new leader: the
 *   log holds every patch once, 1..n.
 *
 * Instances 0 and 1 hand requests over through the bus and the inbox, the last one through the
 * inbox alone (PATCHBAY_HANDOVER_BUS=false), so each leader meets both. The ledger-level fence (a
 * refused late commit) is tested directly in test/scope-leaders.emulator.test.ts, the bus's fast
 * path losing, doubling and refusing messages in test/handover-bus.emulator.test.ts.
 */
import { Firestore } from '@google-cloud/firestore';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docId } from '../shared/adapters/google/firestore/layout.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { type Instances, startInstances } from './helpers/instances.js';
import { skipWithout } from './helpers/proc.js';
import { newClient, request } from './helpers/server.js';
import { openSse, patchIndices, type SseCollector } from './helpers/sse.js';

type Op = { op: string; path: string; value?: unknown };
interface Body {
  patch: Op[];
  session: string;
  si: number;
}
interface Reply {
  status: number;
  ii?: number;
  duplicate?: boolean;
  code?: string;
}

const K = 3;
/** Short leases, so takeovers happen within a test's time. */
const LEASE_MS = 2000;

describe.skipIf(skipWithout('gcloud', 'the Firestore and Pub/Sub emulators'))('several API instances on one Google stack', () => {
  let stack: GoogleStack;
  let inst: Instances;
  let token: string;
  let db: Firestore;

  beforeAll(async () => {
    stack = await startGoogleStack();
    inst = await startInstances(
      stack,
      K,
      {
        PATCHBAY_WRITE_LEASE_MS: String(LEASE_MS),
        PATCHBAY_WRITE_LEASE_IDLE_MS: '3000',
        PATCHBAY_HANDOVER_TIMEOUT_MS: '20000',
        // Shorter than the default 3 s, like the leases: requests handed to the instance without the
        // bus's way wait this long before its inbox carries them.
        PATCHBAY_HANDOVER_INBOX_AFTER_MS: '700',
      },
      // The last instance hands over through the inbox alone (as during a rolling deploy from a
      // version without the bus's fast path): both ways meet at every leader.
      (i): Record<string, string> => (i === K - 1 ? { PATCHBAY_HANDOVER_BUS: 'false' } : {}),
    );
    token = (await newClient(url(0))).token;
    db = new Firestore({ projectId: stack.projectId });
  }, 120_000);
  afterAll(async () => {
    await inst?.stopAll();
    await db?.terminate();
    await stack?.stop();
  });

  const url = (i: number) => inst.list[i]?.url as string;

  async function newScope(): Promise<string> {
    const res = await request(url(0), 'POST', '/v1/scopes', { body: { state: {} }, token });
    expect(res.status).toBe(201);
    return res.json.id as string;
  }

  async function post(i: number, id: string, body: Body): Promise<Reply> {
    const res = await request(url(i), 'POST', `/v1/scopes/${id}/patches`, { body, token });
    return { status: res.status, ii: res.json?.ii, duplicate: res.json?.duplicate, code: res.json?.error?.code };
  }

  /** Posts, and on a network failure (the instance died) answers status 0. */
  const tryPost = (i: number, id: string, body: Body): Promise<Reply> => post(i, id, body).catch(() => ({ status: 0 }));

  async function log(id: string, via = 1): Promise<Array<{ ii: number; patch: Op[] }>> {
    const res = await request(url(via), 'GET', `/v1/scopes/${id}/patches`, { token });
    expect(res.status).toBe(200);
    return res.text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l));
  }

  const marker = (patch: Op[]) => patch[0]?.path.slice(2) as string;
  const bodyOf = (session: string, si: number): Body => ({ session, si, patch: [{ op: 'add', path: `/k${session}-${si}`, value: si }] });

  /** The log runs 1..n, holds each of `markers` exactly once, and every ack is at its patch's index. */
  async function checkLog(id: string, markers: string[], acks: Map<string, number>, via = 1): Promise<number> {
    const entries = await log(id, via);
    expect(entries.map((e) => e.ii)).toEqual(entries.map((_, i) => i + 1));
    const at = new Map(entries.map((e) => [marker(e.patch), e.ii]));
    expect(entries.map((e) => marker(e.patch)).sort()).toEqual([...markers].sort());
    for (const [m, ii] of acks) expect(at.get(m), m).toBe(ii);
    return entries.length;
  }

  it('chaos: writers and retries through every instance, a stream on each: every ack once at its index, streams 1..n in order', async () => {
    const id = await newScope();
    const streams: SseCollector[] = inst.list.map((x) => openSse(`${x.url}/v1/scopes/${id}/events`, token));
    try {
      await Promise.all(streams.map((s) => s.waitFor((e) => e.some((x) => x.type === 'state'))));
      const WRITERS = 8;
      const EACH = 5;
      const acks = new Map<string, number>();
      const markers: string[] = [];
      await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          for (let si = 1; si <= EACH; si++) {
            const session = `w${w}`;
            const body = bodyOf(session, si);
            markers.push(`${session}-${si}`);
            const first = (w + si) % K;
            const second = (w + si + 1) % K;
            if (si % 3 === 0) {
              // The same request on two instances at once: one commit, the same index for both.
              const [a, b] = await Promise.all([post(first, id, body), post(second, id, body)]);
              expect([a.status, b.status]).toEqual([200, 200]);
              expect(a.ii).toBe(b.ii);
              expect([a.duplicate, b.duplicate].filter((d) => d === true)).toHaveLength(1);
              acks.set(`${session}-${si}`, a.ii as number);
            } else {
              const a = await post(first, id, body);
              expect(a.status).toBe(200);
              expect(a.duplicate).toBeUndefined();
              acks.set(`${session}-${si}`, a.ii as number);
              if (si % 2 === 0) {
                // Retried on another instance after its ack: recognised, its original index.
                expect(await post(second, id, body)).toMatchObject({ status: 200, ii: a.ii, duplicate: true });
              }
            }
          }
        }),
      );
      const n = await checkLog(id, markers, acks);
      expect(n).toBe(WRITERS * EACH);
      const all = Array.from({ length: n }, (_, i) => i + 1);
      for (const s of streams) {
        await s.waitFor((e) => patchIndices(e).length >= n, 20_000);
        expect(patchIndices(s.events)).toEqual(all);
      }
    } finally {
      for (const s of streams) s.close();
    }
  }, 120_000);

  /** Makes instance `i` the scope's leader: a write through it, while the lease is free, takes the lease. */
  async function leadFrom(i: number, id: string, session: string): Promise<number> {
    const r = await post(i, id, bodyOf(session, 0));
    expect(r.status).toBe(200);
    return r.ii as number;
  }

  const leaseDoc = async (id: string) => (await db.doc(`${inst.root}/~leaders/leases/${docId(id)}`).get()).data();

  it('the leader SIGKILLed mid-storm: another instance takes over, and nothing is lost or doubled', async () => {
    const id = await newScope();
    await leadFrom(0, id, 'lead');
    const holder = (await leaseDoc(id))?.holder;
    expect(holder).toBeDefined();
    const acks = new Map<string, number>([['lead-0', 1]]);
    const unknown: Array<{ body: Body }> = [];
    const markers = ['lead-0'];
    let sent = 0;
    const WRITERS = 6;
    const EACH = 6;
    const storm = Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        for (let si = 1; si <= EACH; si++) {
          const body = bodyOf(`k${w}`, si);
          markers.push(`k${w}-${si}`);
          sent++;
          const r = await tryPost(si % K, id, body); // a third through the leader, the rest handed to it
          if (r.status === 200) acks.set(`k${w}-${si}`, r.ii as number);
          else unknown.push({ body }); // its instance died, or it waited for a dead leader: fate unknown
        }
      }),
    );
    // Kill the leader once the storm is under way (its group queue busy).
    while (sent < 12) await new Promise((r) => setTimeout(r, 10));
    await inst.signal(0, 'SIGKILL');
    await storm;
    // Retry what is of unknown fate, through the survivors: committed once, or recognised.
    for (const [j, u] of unknown.entries()) {
      const r = await post(1 + (j % 2), id, u.body);
      expect(r.status).toBe(200);
      acks.set(marker(u.body.patch), r.ii as number);
    }
    expect(await checkLog(id, markers, acks)).toBe(WRITERS * EACH + 1);
    const after = await leaseDoc(id);
    expect(after?.holder).not.toBe(holder);
    expect(after?.epoch).toBeGreaterThan(1);
    await inst.start(0);
  }, 120_000);

  it('the leader SIGKILLed while it holds handed requests without (session, si): each is answered once, none of unknown fate', async () => {
    const id = await newScope();
    await leadFrom(0, id, 'nl');
    const markers = ['nl-0'];
    const acks = new Map<string, number>([['nl-0', 1]]);
    const refused: Reply[] = [];
    let sent = 0;
    const WRITERS = 8;
    const EACH = 6;
    const storm = Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        for (let i = 1; i <= EACH; i++) {
          const m = `n${w}-${i}`;
          markers.push(m);
          sent++;
          // Only through the instances that survive: every request is handed to the leader that dies.
          const res = await request(url(1 + (w % 2)), 'POST', `/v1/scopes/${id}/patches`, {
            body: { patch: [{ op: 'add', path: `/k${m}`, value: i }] },
            token,
          });
          if (res.status === 200) {
            expect(res.json.duplicate).toBeUndefined();
            acks.set(m, res.json.ii as number);
          } else refused.push({ status: res.status, code: res.json?.error?.code });
        }
      }),
    );
    while (sent < 16) await new Promise((r) => setTimeout(r, 10));
    await inst.signal(0, 'SIGKILL');
    await storm;
    // Before handed requests carried a retry key, one the dead leader had committed but not
    // answered could only be answered `503 unavailable` ("may or may not have been committed").
    expect(refused).toEqual([]);
    expect(await checkLog(id, markers, acks)).toBe(WRITERS * EACH + 1);
    await inst.start(0);
  }, 120_000);

  it('the leader SIGTERMed releases the lease on its way out; the next write through another instance is acked at once', async () => {
    const id = await newScope();
    await leadFrom(0, id, 't');
    expect((await leaseDoc(id))?.expires).toBeGreaterThan(Date.now());
    await inst.signal(0, 'SIGTERM');
    expect((await leaseDoc(id))?.expires).toBe(0);
    const t0 = Date.now();
    expect(await post(1, id, bodyOf('t', 1))).toMatchObject({ status: 200, ii: 2 });
    expect(Date.now() - t0).toBeLessThan(LEASE_MS);
    await inst.start(0);
  }, 60_000);

  it('a leader SIGSTOPped past its lease cannot commit once SIGCONTed: its request goes to the new leader, once', async () => {
    const id = await newScope();
    await leadFrom(0, id, 'p');
    const { epoch } = (await leaseDoc(id)) as { epoch: number };
    // A request reaches the leader, which is paused before it can commit it.
    const paused = tryPost(0, id, bodyOf('p', 1));
    await inst.signal(0, 'SIGSTOP');
    try {
      // Another instance's writer waits for the lease to lapse, takes it, and commits.
      const other = await post(1, id, bodyOf('q', 1));
      expect(other.status).toBe(200);
      expect((await leaseDoc(id))?.epoch).toBeGreaterThan(epoch);
    } finally {
      await inst.signal(0, 'SIGCONT');
    }
    // Resumed, the old leader still believes it leads: its commit is fenced off, and the request
    // is handed to the new leader (or it had committed just before the pause: then it is there once).
    const r = await paused;
    expect(r.status).toBe(200);
    const entries = await log(id);
    expect(entries.map((e) => marker(e.patch)).sort()).toEqual(['p-0', 'p-1', 'q-1']);
    expect(entries.map((e) => e.ii)).toEqual([1, 2, 3]);
    expect(entries.find((e) => marker(e.patch) === 'p-1')?.ii).toBe(r.ii);
  }, 60_000);
});
