/**
 * Presence over its store (shared/sessions/presence.ts), in memory: a read answers at most
 * PATCHBAY_PRESENCE_MAX_LISTED entries, the oldest first, and every change signals the scope on
 * the bus (the streams' cue to re-read). Streams woken by one signal share one read, but never a
 * read that started before the signal arrived (it could miss the change). The HTTP behaviour on both stacks is in test/contract/sessions.ts.
 */
import { describe, expect, it } from 'vitest';
import { LocalBus } from '../shared/adapters/embedded/local-bus.js';
import { MemoryPresence } from '../shared/adapters/embedded/memory-presence.js';
import type { ScopeSignal } from '../shared/ports/index.js';
import { Presence } from '../shared/sessions/presence.js';

describe('presence', () => {
  it('lists at most the configured number of entries, oldest first, and signals each change', async () => {
    let t = 1000;
    const bus = new LocalBus();
    const signals: ScopeSignal[] = [];
    await bus.subscribe(
      'room',
      () => {},
      (s) => signals.push(s),
    );
    const p = new Presence(
      new MemoryPresence(() => t),
      bus,
      () => {},
      2,
      () => t,
    );
    for (const s of ['s1', 's2', 's3']) {
      t += 10;
      await p.set('room', `u-${s}`, s, null, t + 60_000);
    }
    expect((await p.list('room')).map((e) => e.session)).toEqual(['s1', 's2']);
    await p.leave(['room'], 's1');
    expect((await p.list('room')).map((e) => e.session)).toEqual(['s2', 's3']);
    expect(signals).toHaveLength(4);
    expect(signals.every((s) => s.kind === 'presence' && s.scope === 'room')).toBe(true);
  });

  it('shares a read among the streams a signal woke, never one that started before the signal', async () => {
    const store = new MemoryPresence();
    let reads = 0;
    const counting = { ...store, put: store.put.bind(store), touch: store.touch.bind(store), remove: store.remove.bind(store) } as MemoryPresence;
    counting.list = async (scope, limit) => {
      reads++;
      const got = await store.list(scope, limit); // what the store held when the read started
      await new Promise((r) => setTimeout(r, 20));
      return got;
    };
    const p = new Presence(counting, new LocalBus(), () => {}, 100);
    const early = p.list('room'); // in flight before the change
    await store.put('room', { user: 'u', session: 's1', since: Date.now(), status: 'x', expires: Date.now() + 60_000 });
    const signalled = p.mark(); // the change's signal arrives
    const woken = await Promise.all([p.list('room', signalled), p.list('room', signalled), p.list('room', signalled)]);
    expect(await early).toEqual([]);
    expect(woken.map((w) => w.map((e) => e.session))).toEqual([['s1'], ['s1'], ['s1']]);
    expect(reads).toBe(2); // the early one, and one shared by the three woken
  });
});
