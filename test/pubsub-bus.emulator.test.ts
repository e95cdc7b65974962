/**
 * The Pub/Sub bus against the real Pub/Sub emulator: the bus conformance suite, then what only a
 * distributed bus has to get right. Two server instances on one topic see each other's events,
 * in order per scope with scopes interleaved; 200 events over 5 scopes stay in order per scope; a
 * failed publish rethrows within its timeout and does not wedge its scope; a missing topic is
 * created, also when two instances race for it; each instance's subscription exists while it
 * listens and is deleted by close(); a subscription deleted under a live stream is reopened.
 * Also prints publish→listener latency (p50/p99); it is recorded, not asserted.
 */
import { randomUUID } from 'node:crypto';
import type { PubSub } from '@google-cloud/pubsub';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PubSubBus, type PubSubBusOptions } from '../shared/adapters/google/pubsub-bus.js';
import type { PatchEvent } from '../shared/protocol.js';
import { busConformance } from './conformance/bus.js';
import { skipWithout } from './helpers/proc.js';
import { type PubSubEmulator, startPubSubEmulator } from './helpers/pubsub-emulator.js';

const skip = skipWithout('gcloud', 'the Pub/Sub emulator');
const WAIT_MS = 20_000;

let emu: PubSubEmulator;
let client: PubSub;
const buses: PubSubBus[] = [];
/** What the buses logged (failures that reach no caller). */
const logged: Array<Record<string, unknown>> = [];

/** A bus on `topic` (a fresh one by default), closed after the test. */
function bus(topic = `topic-${randomUUID()}`, instanceId?: string, more: Partial<PubSubBusOptions> = {}): PubSubBus {
  const b = new PubSubBus(client, { topic, subscriptionPrefix: 'patchbay-test', instanceId, logger: { error: (e) => logged.push(e) }, ...more });
  buses.push(b);
  return b;
}

function ev(scope: string, ii: number, at = ii): PatchEvent {
  return { scope, ii, patch: [{ op: 'replace', path: '/n', value: ii }], at, by: 'anon:test' };
}

async function waitFor(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The ii sequence each scope's listener received, in arrival order. */
class Received {
  readonly by = new Map<string, number[]>();
  listen(scope: string) {
    const list: number[] = [];
    this.by.set(scope, list);
    return (e: PatchEvent) => {
      expect(e.scope).toBe(scope);
      list.push(e.ii);
    };
  }
  count(scope: string): number {
    return this.by.get(scope)?.length ?? 0;
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

async function subscriptionsOf(topic: string): Promise<string[]> {
  const [subs] = await client.topic(topic).getSubscriptions();
  return subs.map((s) => s.name.split('/').pop() as string);
}

describe.skipIf(skip)('PubSubBus on the Pub/Sub emulator', () => {
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    client = emu.pubsub();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
    logged.length = 0;
  });
  afterAll(async () => {
    await emu?.stop();
  });

  busConformance('PubSubBus', async () => bus());

  it('two instances on one topic: each sees the other’s events, in order per scope, scopes interleaved', async () => {
    const topic = `topic-${randomUUID()}`;
    const a = bus(topic, 'a');
    const b = bus(topic, 'b');
    const [s1, s2, s3] = ['s1', 's2', 's3'].map((s) => `${s}-${randomUUID()}`) as [string, string, string];
    const atA = new Received();
    const atB = new Received();
    await b.subscribe(s1, atB.listen(s1));
    await b.subscribe(s2, atB.listen(s2));
    await a.subscribe(s3, atA.listen(s3));
    // A publishes s1 and s2 interleaved, B publishes s3; nothing waits between publishes, as
    // concurrent requests on one instance would (each scope's batches in ii order).
    const sent: Promise<void>[] = [];
    for (let i = 1; i <= 30; i += 3) {
      sent.push(a.publish([ev(s1, i), ev(s1, i + 1), ev(s1, i + 2)]));
      sent.push(a.publish([ev(s2, i)]), a.publish([ev(s2, i + 1), ev(s2, i + 2)]));
      sent.push(b.publish([ev(s3, i), ev(s3, i + 1)]), b.publish([ev(s3, i + 2)]));
    }
    await Promise.all(sent);
    await waitFor('30 events of each scope', () => atB.count(s1) >= 30 && atB.count(s2) >= 30 && atA.count(s3) >= 30);
    expect(atB.by.get(s1)).toEqual(range(30));
    expect(atB.by.get(s2)).toEqual(range(30));
    expect(atA.by.get(s3)).toEqual(range(30));
    expect(await subscriptionsOf(topic)).toEqual(expect.arrayContaining(['patchbay-test-a', 'patchbay-test-b']));
  });

  it('200 events across 5 scopes arrive in order per scope; publish→listener latency is recorded', async () => {
    const topic = `topic-${randomUUID()}`;
    const publisher = bus(topic, 'pub');
    const subscriber = bus(topic, 'sub');
    const scopes = range(5).map((i) => `s${i}-${randomUUID()}`);
    const got = new Received();
    const latencies: number[] = [];
    for (const s of scopes) {
      const push = got.listen(s);
      await subscriber.subscribe(s, (e) => {
        latencies.push(Date.now() - e.at);
        push(e);
      });
    }
    // 40 per scope, round-robin over scopes, each publish awaited: single-message latency, not queueing.
    for (let i = 1; i <= 40; i++) {
      for (const s of scopes) await publisher.publish([ev(s, i, Date.now())]);
    }
    await waitFor('40 events of each of 5 scopes', () => scopes.every((s) => got.count(s) >= 40));
    for (const s of scopes) expect(got.by.get(s)).toEqual(range(40));

    // A burst: 100 more events per scope in batches of 10, nothing awaited in between.
    const burst: Promise<void>[] = [];
    const t0 = Date.now();
    for (let i = 41; i <= 140; i += 10) {
      for (const s of scopes) burst.push(publisher.publish(range(10).map((k) => ev(s, i + k - 1, Date.now()))));
    }
    await Promise.all(burst);
    await waitFor('140 events of each scope', () => scopes.every((s) => got.count(s) >= 140));
    const burstMs = Date.now() - t0;
    for (const s of scopes) expect(got.by.get(s)).toEqual(range(140));

    const single = latencies.slice(0, 200).sort((x, y) => x - y);
    const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
    const burstLat = latencies.slice(200).sort((x, y) => x - y);
    console.log(
      `pubsub emulator latency: single publishes n=${single.length} p50=${pct(single, 50)}ms p99=${pct(single, 99)}ms max=${single.at(-1)}ms; ` +
        `burst of ${burstLat.length} (50 batches of 10) delivered in ${burstMs}ms, p50=${pct(burstLat, 50)}ms p99=${pct(burstLat, 99)}ms`,
    );
  });

  it('a failed publish rethrows, and later publishes of its scope still go through, in order', async () => {
    const topic = `topic-${randomUUID()}`;
    const a = bus(topic, 'a', { publishTimeoutMs: 2_000 });
    const scope = `s-${randomUUID()}`;
    const got = new Received();
    await a.subscribe(scope, got.listen(scope));
    await a.publish([ev(scope, 1)]);
    // Over Pub/Sub's 10 MB message limit: the emulator never answers, so the publish fails after
    // publishTimeoutMs (DEADLINE_EXCEEDED) instead of the library's default of 600 s. A failure
    // pauses the ordering key; the bus resumes it (client 5.3 also drops a drained failed queue
    // by itself, so this checks the outcome, a scope that is not stuck, not who unstuck it).
    const huge: PatchEvent = { ...ev(scope, 2), patch: [{ op: 'add', path: '/big', value: 'x'.repeat(11 * 1024 * 1024) }] };
    await expect(a.publish([huge])).rejects.toThrow();
    // A key left paused would fail this with "Unable to publish for key".
    await a.publish([ev(scope, 2), ev(scope, 3)]);
    await waitFor('events 1..3', () => got.count(scope) >= 3);
    expect(got.by.get(scope)).toEqual([1, 2, 3]);
  });

  it('creates a missing topic, also when two instances race for it, and recreates one deleted under a publisher', async () => {
    const topic = `topic-${randomUUID()}`;
    const [exists] = await client.topic(topic).exists();
    expect(exists).toBe(false);
    const scope = `s-${randomUUID()}`;
    const a = bus(topic, 'a');
    const b = bus(topic, 'b');
    const atA = new Received();
    const atB = new Received();
    await Promise.all([a.subscribe(scope, atA.listen(scope)), b.subscribe(scope, atB.listen(scope))]);
    await a.publish([ev(scope, 1)]);
    await waitFor('event 1 at both', () => atA.count(scope) >= 1 && atB.count(scope) >= 1);

    // Deleted topic: the publish fails with NOT_FOUND, the bus creates the topic again and
    // republishes on the same ordering key. A new instance's subscription sees what follows.
    await client.topic(topic).delete();
    await a.publish([ev(scope, 2)]);
    const c = bus(topic, 'c');
    const atC = new Received();
    await c.subscribe(scope, atC.listen(scope));
    await a.publish([ev(scope, 3)]);
    await waitFor('event 3 at the new instance', () => atC.count(scope) >= 1);
    expect(atC.by.get(scope)).toEqual([3]);
  });

  it('the instance’s subscription exists once it listens and close() deletes it', async () => {
    const topic = `topic-${randomUUID()}`;
    await client.createTopic(topic);
    const a = bus(topic, 'a');
    const other = bus(topic, 'other');
    expect(await subscriptionsOf(topic)).toEqual([]);
    await a.publish([ev('x', 1)]); // publishing alone creates no subscription
    expect(await subscriptionsOf(topic)).toEqual([]);
    await a.subscribe('x', () => {});
    await other.subscribe('x', () => {});
    expect((await subscriptionsOf(topic)).sort()).toEqual([a.subscriptionName, other.subscriptionName].sort());
    const [meta] = await client.subscription(a.subscriptionName).getMetadata();
    expect(meta.enableMessageOrdering).toBe(true);
    expect(Number(meta.expirationPolicy?.ttl?.seconds)).toBeGreaterThan(0);

    await a.close();
    expect(await subscriptionsOf(topic)).toEqual([other.subscriptionName]);
    await expect(a.publish([ev('x', 2)])).rejects.toThrow(/closed/);
    await expect(a.subscribe('x', () => {})).rejects.toThrow(/closed/);
  });

  it('a subscription deleted under a live stream is recreated and delivery resumes', async () => {
    const topic = `topic-${randomUUID()}`;
    const a = bus(topic, 'a');
    const scope = `s-${randomUUID()}`;
    const got = new Received();
    await a.subscribe(scope, got.listen(scope));
    await a.publish([ev(scope, 1)]);
    await waitFor('event 1', () => got.count(scope) >= 1);
    await client.subscription(a.subscriptionName).delete();
    await waitFor('the stream error to be logged', () => logged.some((e) => e.subscription === a.subscriptionName));
    // Until the bus has reopened, publishes go nowhere (the engine reads such gaps from the log);
    // keep publishing until one arrives.
    let ii = 1;
    const deadline = Date.now() + WAIT_MS;
    while (got.count(scope) < 2) {
      if (Date.now() > deadline) throw new Error('delivery did not resume after the subscription was deleted');
      await a.publish([ev(scope, ++ii)]);
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = got.by.get(scope) as number[];
    expect(after[0]).toBe(1);
    const resumed = after.slice(1); // from the first event the new subscription saw, consecutive
    expect(resumed).toEqual(range(resumed.length).map((k) => (resumed[0] as number) + k - 1));
  });
});
