/**
 * StateLru (shared/state-lru.ts): scope states bounded by their estimated bytes, least recently
 * used out first, never moved backwards; and the estimate it counts (jsonHeapBytes).
 */
import { describe, expect, it } from 'vitest';
import { jsonHeapBytes } from '../shared/json.js';
import { StateLru } from '../shared/state-lru.js';

const big = (n: number) => ({ data: 'x'.repeat(n) });

describe('StateLru', () => {
  it('evicts the least recently used entries once the bytes pass the bound', () => {
    const lru = new StateLru(4000);
    expect(lru.put('a', 1, big(1000))).toBe(true);
    expect(lru.put('b', 1, big(1000))).toBe(true);
    expect(lru.put('c', 1, big(1000))).toBe(true);
    expect(lru.get('a')?.ii).toBe(1); // a is now more recent than b
    expect(lru.put('d', 1, big(1000))).toBe(true); // over the bound: b goes, not a
    expect(lru.get('b')).toBeUndefined();
    expect([lru.get('a'), lru.get('c'), lru.get('d')].every((e) => e !== undefined)).toBe(true);
    expect(lru.bytes).toBeLessThanOrEqual(4000);
  });

  it('counts bytes, not entries: many small states fit where one large one does', () => {
    const lru = new StateLru(64 * 1024);
    for (let i = 0; i < 200; i++) lru.put(`s${i}`, 1, { i });
    expect(lru.bytes).toBeGreaterThan(200 * 100); // all 200 are there
    lru.put('large', 1, big(50 * 1024));
    expect(lru.get('large')).toBeDefined();
    expect(lru.get('s0')).toBeUndefined(); // the oldest small ones made room
    expect(lru.bytes).toBeLessThanOrEqual(64 * 1024);
  });

  it('does not keep a state larger than the whole bound, and drops the older entry of its scope', () => {
    const lru = new StateLru(10_000);
    expect(lru.put('a', 1, big(100))).toBe(true);
    expect(lru.put('keep', 1, big(100))).toBe(true);
    expect(lru.put('a', 2, big(20_000))).toBe(false);
    expect(lru.get('a')).toBeUndefined();
    expect(lru.get('keep')?.ii).toBe(1); // nothing else was evicted for it
  });

  it('never moves an entry backwards; uses a known byte estimate as given', () => {
    const lru = new StateLru(10_000);
    expect(lru.put('a', 5, { v: 5 }, 100)).toBe(true);
    expect(lru.put('a', 4, { v: 4 }, 100)).toBe(false);
    expect(lru.put('a', 5, { v: 'again' }, 100)).toBe(false);
    expect(lru.get('a')).toEqual({ ii: 5, state: { v: 5 } });
    expect(lru.put('b', 1, { tiny: true }, 20_000)).toBe(false); // the caller's estimate counts
  });

  it('keeps nothing with a bound of 0', () => {
    const lru = new StateLru(0);
    expect(lru.put('a', 1, {})).toBe(false);
    expect(lru.get('a')).toBeUndefined();
  });
});

describe('jsonHeapBytes', () => {
  it('counts structure that JSON text hides: small arrays and objects cost more than their text', () => {
    const nested = Array.from({ length: 1000 }, (_, i) => [i]);
    expect(jsonHeapBytes(nested)).toBeGreaterThan(5 * JSON.stringify(nested).length);
    const text = 'y'.repeat(100_000);
    expect(jsonHeapBytes({ text })).toBeGreaterThanOrEqual(100_000);
    expect(jsonHeapBytes({ text })).toBeLessThan(100_200);
  });

  it('counts long member names and two-byte strings, so neither slips past a byte bound', () => {
    // A state that is one huge member name held 100 KB while counting 56 bytes.
    expect(jsonHeapBytes({ ['k'.repeat(100_000)]: 1 })).toBeGreaterThanOrEqual(100_000);
    // Text past U+00FF takes two bytes a character in V8.
    expect(jsonHeapBytes({ text: '字'.repeat(50_000) })).toBeGreaterThanOrEqual(100_000);
    expect(jsonHeapBytes({ ['字'.repeat(50_000)]: 'x' })).toBeGreaterThanOrEqual(100_000);
  });
});
