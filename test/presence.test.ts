/**
 * Presence over its store (shared/sessions/presence.ts), in memory: a read answers at most
 * PATCHBAY_PRESENCE_MAX_LISTED entries, the oldest first, and every change signals the scope on
 * the bus (the streams' cue to re-read). The HTTP behaviour on both stacks is in test/contract/sessions.ts.
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
});
