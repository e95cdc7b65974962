/**
 * Bus conformance: what every bus adapter must do (shared/ports/bus.ts is the contract).
 * A subscriber receives every event of its scope published after it subscribed, in publish
 * order and with every field intact; never another scope's; several subscribers of one scope
 * each receive everything; unsubscribing stops only that listener; a signal reaches the scope's
 * subscribers that listen for signals, and never arrives as an event.
 *
 * The port allows at-least-once delivery, so a redelivered event (same ii, same content) is
 * tolerated: order is checked on first deliveries, and every delivery, duplicate or not, must
 * equal the event published at its ii. Delivery may be asynchronous and slow (Pub/Sub's first
 * delivery can take seconds), so every wait polls with a bound; nothing sleeps and then asserts.
 *
 * Usage: `busConformance('LocalBus', async () => new LocalBus())`. Each `make()` must return a
 * fresh instance; the suite closes every instance it made. Scopes are unique per test anyway.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Bus, ScopeSignal } from '../../shared/ports/index.js';
import type { PatchEvent } from '../../shared/protocol.js';

const WAIT_MS = 15_000;

const newScope = (): string => `scope-${randomUUID()}`;

function event(scope: string, ii: number): PatchEvent {
  return {
    scope,
    ii,
    patch: [
      { op: 'replace', path: '/count', value: ii },
      { op: 'add', path: '/log/-', value: { text: `héllo 世界 🎉 #${ii}`, nested: [1, [2, null], { ok: true, n: -1.5 }] } },
      { op: 'remove', path: '/a~1b' },
      { op: 'move', from: '/x', path: '/y' },
    ],
    at: 1_700_000_000_000 + ii,
    by: `anon:user-${ii % 3}`,
  };
}

const events = (scope: string, from: number, to: number): PatchEvent[] => Array.from({ length: to - from + 1 }, (_, i) => event(scope, from + i));

/** Polls `done` until it holds, for at most WAIT_MS; fails with `what` otherwise. */
async function waitFor(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects what a listener receives. */
class Inbox {
  readonly got: PatchEvent[] = [];
  readonly listener = (e: PatchEvent): void => {
    this.got.push(e);
  };

  /** First delivery of each ii, in arrival order (redeliveries dropped). */
  firsts(): PatchEvent[] {
    const seen = new Set<number>();
    const out: PatchEvent[] = [];
    for (const e of this.got) {
      if (seen.has(e.ii)) continue;
      seen.add(e.ii);
      out.push(e);
    }
    return out;
  }

  has(scope: string, ii: number): boolean {
    return this.got.some((e) => e.scope === scope && e.ii === ii);
  }

  hasAll(expected: PatchEvent[]): boolean {
    return expected.every((e) => this.has(e.scope, e.ii));
  }

  /** Everything expected arrived, first deliveries in order, and every delivery is exactly a published event. */
  check(expected: PatchEvent[]): void {
    expect(this.firsts()).toEqual(expected);
    const byIi = new Map(expected.map((e) => [e.ii, e]));
    for (const e of this.got) expect(e).toEqual(byIi.get(e.ii));
  }
}

export function busConformance(name: string, make: () => Promise<Bus>): void {
  describe(`${name} (Bus conformance)`, () => {
    const made: Bus[] = [];
    const open = async (): Promise<Bus> => {
      const b = await make();
      made.push(b);
      return b;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((b) => b.close()));
    });

    it('a subscriber receives its scope’s events in publish order with every field intact', async () => {
      const bus = await open();
      const scope = newScope();
      const inbox = new Inbox();
      const unsubscribe = await bus.subscribe(scope, inbox.listener);
      const expected = events(scope, 1, 5);
      await bus.publish(expected.slice(0, 3));
      await bus.publish(expected.slice(3, 4));
      await bus.publish(expected.slice(4));
      await waitFor('events 1..5', () => inbox.hasAll(expected));
      inbox.check(expected);
      await unsubscribe();
    });

    it('other scopes’ events are not delivered', async () => {
      const bus = await open();
      const mine = newScope();
      const theirs = newScope();
      const inbox = new Inbox();
      const control = new Inbox();
      await bus.subscribe(mine, inbox.listener);
      await bus.subscribe(theirs, control.listener);
      await bus.publish(events(theirs, 1, 3));
      await bus.publish(events(mine, 1, 2));
      await bus.publish(events(theirs, 4, 6));
      await bus.publish(events(mine, 3, 3));
      // Once the other scope's subscriber has everything of its own, the events were out there.
      await waitFor('both scopes’ events', () => inbox.hasAll(events(mine, 1, 3)) && control.hasAll(events(theirs, 1, 6)));
      inbox.check(events(mine, 1, 3));
      control.check(events(theirs, 1, 6));
    });

    it('two subscribers of one scope both receive everything', async () => {
      const bus = await open();
      const scope = newScope();
      const first = new Inbox();
      const second = new Inbox();
      await bus.subscribe(scope, first.listener);
      await bus.subscribe(scope, second.listener);
      const expected = events(scope, 1, 4);
      await bus.publish(expected.slice(0, 2));
      await bus.publish(expected.slice(2));
      await waitFor('both subscribers', () => first.hasAll(expected) && second.hasAll(expected));
      first.check(expected);
      second.check(expected);
    });

    it('unsubscribe stops delivery to that listener only', async () => {
      const bus = await open();
      const scope = newScope();
      const leaving = new Inbox();
      const staying = new Inbox();
      const unsubscribe = await bus.subscribe(scope, leaving.listener);
      await bus.subscribe(scope, staying.listener);
      await bus.publish(events(scope, 1, 2));
      await waitFor('events 1..2 at both', () => leaving.hasAll(events(scope, 1, 2)) && staying.hasAll(events(scope, 1, 2)));

      await unsubscribe();
      await bus.publish(events(scope, 3, 5));
      await waitFor('events 3..5 at the remaining subscriber', () => staying.hasAll(events(scope, 3, 5)));
      staying.check(events(scope, 1, 5));
      // the unsubscribed listener got nothing published after it left (at most a redelivery of 1..2)
      expect(leaving.got.filter((e) => e.ii > 2)).toEqual([]);
      leaving.check(events(scope, 1, 2));
    });

    it('a signal reaches every subscriber of its scope that listens for signals, and no other scope', async () => {
      const bus = await open();
      const scope = newScope();
      const other = newScope();
      const got: ScopeSignal[] = [];
      const second: ScopeSignal[] = [];
      const elsewhere: ScopeSignal[] = [];
      const inbox = new Inbox();
      await bus.subscribe(scope, inbox.listener, (s) => got.push(s));
      await bus.subscribe(
        scope,
        () => {},
        (s) => second.push(s),
      );
      await bus.subscribe(scope, () => {}); // listens for events only: a signal must not break it
      await bus.subscribe(
        other,
        () => {},
        (s) => elsewhere.push(s),
      );
      await bus.signal({ scope, kind: 'access' });
      await bus.publish(events(scope, 1, 2));
      await waitFor('the signal at both subscribers and the events after it', () => got.length > 0 && second.length > 0 && inbox.hasAll(events(scope, 1, 2)));
      expect(got[0]).toEqual({ scope, kind: 'access' });
      expect(second[0]).toEqual({ scope, kind: 'access' });
      inbox.check(events(scope, 1, 2)); // a signal is never delivered as an event
      await bus.signal({ scope: other, kind: 'access' });
      await waitFor('the other scope’s signal', () => elsewhere.length > 0);
      expect(got.every((s) => s.scope === scope)).toBe(true);
    });

    it('a control signal arrives with its data as sent', async () => {
      const bus = await open();
      const key = `stream:${newScope()}`;
      const got: ScopeSignal[] = [];
      await bus.subscribe(
        key,
        () => {},
        (s) => got.push(s),
      );
      const data = JSON.stringify({ add: [{ scope: 'a', since: 3 }], remove: ['b'], by: 'u1' });
      await bus.signal({ scope: key, kind: 'control', data });
      await waitFor('the control signal', () => got.length > 0);
      expect(got[0]).toEqual({ scope: key, kind: 'control', data });
    });

    it('unordered control signals arrive, each once with its data, to the key’s subscriber only', async () => {
      const bus = await open();
      const key = `~inbox:${newScope()}`;
      const got: ScopeSignal[] = [];
      const elsewhere: ScopeSignal[] = [];
      await bus.subscribe(
        key,
        () => {},
        (s) => got.push(s),
      );
      await bus.subscribe(
        `~inbox:${newScope()}`,
        () => {},
        (s) => elsewhere.push(s),
      );
      const sent = Array.from({ length: 20 }, (_, i) => JSON.stringify([{ key: `r${i}` }]));
      await Promise.all(sent.map((data) => bus.signal({ scope: key, kind: 'control', data, unordered: true })));
      await waitFor('the 20 unordered signals', () => got.length >= 20);
      // Delivery is at least once: a transport may repeat one, never lose or change it.
      expect(new Set(got.map((s) => s.data))).toEqual(new Set(sent));
      expect(got.every((s) => s.scope === key && s.kind === 'control')).toBe(true);
      expect(elsewhere).toEqual([]);
    });

    it('a batch of 50 events arrives complete and in order', async () => {
      const bus = await open();
      const scope = newScope();
      const inbox = new Inbox();
      await bus.subscribe(scope, inbox.listener);
      const expected = events(scope, 1, 50);
      await bus.publish(expected);
      await waitFor('50 events', () => inbox.hasAll(expected));
      inbox.check(expected);
    });
  });
}
