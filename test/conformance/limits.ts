/**
 * LimitStore conformance: what every limit store adapter must do (shared/ports/limits.ts is the
 * contract). The guarantee it protects (guarantee 3 at the limits): a refused take takes no token
 * and a refused acquire holds no slot, so refusals change nothing. Also: a bucket allows `tokens`
 * at once and then one per refill, telling a refused caller how long to wait; a take of `cost`
 * tokens takes them all or none (a cost above the bucket size is clamped); buckets of different
 * rules and keys are independent; usage counters add up under concurrency and never lose a delta;
 * slots are capped, given back on release, and come back by themselves after their TTL.
 *
 * Usage: `limitsConformance('MemoryLimits', async (rules) => new MemoryLimits(rules))`. Each
 * `make()` must return a fresh, empty store; the suite closes every store it made.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { LimitStore, RateRule } from '../../shared/ports/limits.js';

const key = (): string => `k-${randomUUID()}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function limitsConformance(name: string, make: (rules: Record<string, RateRule>) => Promise<LimitStore>): void {
  describe(`${name} (LimitStore conformance)`, () => {
    const made: LimitStore[] = [];
    const open = async (rules: Record<string, RateRule> = {}): Promise<LimitStore> => {
      const s = await make(rules);
      made.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((s) => s.close()));
    });

    it('a bucket allows its tokens at once, then refuses with a wait no longer than one refill', async () => {
      const s = await open({ a: { tokens: 3, windowMs: 60_000 } });
      const k = key();
      for (let i = 0; i < 3; i++) expect(await s.take('a', k)).toEqual({ ok: true, retryAfterMs: 0 });
      const refused = await s.take('a', k);
      expect(refused.ok).toBe(false);
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(20_000); // one token every 60 s / 3
    });

    it('a refused take takes nothing: after the wait it names, exactly one more is allowed', async () => {
      const s = await open({ a: { tokens: 2, windowMs: 600 } }); // one token every 300 ms
      const k = key();
      expect((await s.take('a', k)).ok).toBe(true);
      expect((await s.take('a', k)).ok).toBe(true);
      let refused = await s.take('a', k);
      for (let i = 0; i < 5; i++) refused = await s.take('a', k); // hammering does not push the wait back
      expect(refused.ok).toBe(false);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(300);
      await sleep(refused.retryAfterMs + 30);
      expect((await s.take('a', k)).ok).toBe(true);
      expect((await s.take('a', k)).ok).toBe(false);
    });

    it('a take of cost n takes n tokens or none, and names the wait until n are there', async () => {
      const s = await open({ a: { tokens: 5, windowMs: 2000 } }); // one token every 400 ms
      const k = key();
      expect(await s.take('a', k, 3)).toEqual({ ok: true, retryAfterMs: 0 });
      const refused = await s.take('a', k, 3); // 2 left
      expect(refused.ok).toBe(false);
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(400);
      expect((await s.take('a', k, 4)).ok).toBe(false);
      expect((await s.take('a', k, 2)).ok).toBe(true); // the refusals took nothing
      const empty = await s.take('a', k, 3);
      expect(empty.ok).toBe(false);
      expect(empty.retryAfterMs).toBeGreaterThan(800);
      expect(empty.retryAfterMs).toBeLessThanOrEqual(1200); // three refills
      await sleep(empty.retryAfterMs + 30);
      expect((await s.take('a', k, 3)).ok).toBe(true);
      expect((await s.take('a', k)).ok).toBe(false);
    });

    it('a cost above the bucket size is clamped to it: a full bucket allows it once', async () => {
      const s = await open({ a: { tokens: 3, windowMs: 60_000 } });
      const [k1, k2] = [key(), key()];
      expect((await s.take('a', k1, 1000)).ok).toBe(true);
      expect((await s.take('a', k1)).ok).toBe(false);
      expect((await s.take('a', k2)).ok).toBe(true);
      const refused = await s.take('a', k2, 1000); // 2 left of the 3 it needs
      expect(refused.ok).toBe(false);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(20_000);
      expect((await s.take('a', k2, 2)).ok).toBe(true);
    });

    it('buckets of different keys and rules are independent; an unknown rule throws', async () => {
      const s = await open({ a: { tokens: 1, windowMs: 60_000 }, b: { tokens: 1, windowMs: 60_000 } });
      const [k1, k2] = [key(), key()];
      expect((await s.take('a', k1)).ok).toBe(true);
      expect((await s.take('a', k1)).ok).toBe(false);
      expect((await s.take('a', k2)).ok).toBe(true);
      expect((await s.take('b', k1)).ok).toBe(true);
      await expect(s.take('nope', k1)).rejects.toThrow(RangeError);
    });

    it('usage starts at zero and adds up, negative deltas included, several users in one call', async () => {
      const s = await open();
      const [u, v] = [key(), key()];
      expect(await s.usage(u)).toEqual({ scopes: 0, bytes: 0 });
      const after = await s.addUsage(
        new Map([
          [u, { scopes: 1, bytes: 100 }],
          [v, { scopes: 2, bytes: 5 }],
        ]),
      );
      expect(after).toEqual(
        new Map([
          [u, { scopes: 1, bytes: 100 }],
          [v, { scopes: 2, bytes: 5 }],
        ]),
      );
      expect(await s.addUsage(new Map([[u, { scopes: 0, bytes: -40 }]]))).toEqual(new Map([[u, { scopes: 1, bytes: 60 }]]));
      expect(await s.usage(u)).toEqual({ scopes: 1, bytes: 60 });
      expect(await s.usage(v)).toEqual({ scopes: 2, bytes: 5 });
      expect(await s.addUsage(new Map())).toEqual(new Map());
    });

    it('concurrent usage deltas are never lost', async () => {
      const s = await open();
      const u = key();
      await Promise.all(Array.from({ length: 30 }, (_, i) => s.addUsage(new Map([[u, { scopes: 1, bytes: i }]]))));
      expect(await s.usage(u)).toEqual({ scopes: 30, bytes: (29 * 30) / 2 });
    });

    it('slots are capped; a refused acquire holds nothing; release gives one back, twice is harmless', async () => {
      const s = await open();
      const k = key();
      const slots = await Promise.all([1, 2, 3].map(() => s.acquire(k, 3, 60_000)));
      expect(new Set(slots).size).toBe(3);
      expect(slots.every((x) => typeof x === 'string')).toBe(true);
      expect(await s.acquire(k, 3, 60_000)).toBeNull();
      expect(await s.acquire(k, 3, 60_000)).toBeNull();
      await s.release(k, slots[0] as string);
      await s.release(k, slots[0] as string);
      await s.release(k, 'never-held');
      const again = await s.acquire(k, 3, 60_000);
      expect(again).not.toBeNull();
      expect(await s.acquire(k, 3, 60_000)).toBeNull();
      expect(await s.acquire(key(), 1, 60_000)).not.toBeNull(); // another key has its own slots
    });

    it('a concurrent rush never holds more than max slots', async () => {
      const s = await open();
      const k = key();
      const got = await Promise.all(Array.from({ length: 20 }, () => s.acquire(k, 5, 60_000)));
      expect(got.filter((x) => x !== null)).toHaveLength(5);
    });

    it('a slot never released comes back after its ttl', async () => {
      const s = await open();
      const k = key();
      expect(await s.acquire(k, 1, 200)).not.toBeNull();
      expect(await s.acquire(k, 1, 200)).toBeNull();
      await sleep(260);
      expect(await s.acquire(k, 1, 200)).not.toBeNull();
    });
  });
}
