/**
 * The Upstash limit store on a real redis-server behind the Upstash REST gateway, driven by the
 * real `@upstash/redis` and `@upstash/ratelimit`: it passes the LimitStore conformance suite, and
 * two instances (two clients, as two Cloud Run instances would have) share every counter; an
 * instance remembers at most `blockedCacheMax` blocked keys.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstashLimits } from '../shared/adapters/google/upstash-limits.js';
import { limitsConformance } from './conformance/limits.js';
import { noRedis, type RedisStack, startRedis } from './helpers/redis.js';

describe.skipIf(noRedis())('Upstash limit store (redis-server + gateway)', () => {
  let stack: RedisStack;
  beforeAll(async () => {
    stack = await startRedis();
  });
  afterAll(() => stack?.stop());

  const make = (prefix: string, rules = {}, blockedCacheMax?: number) =>
    new UpstashLimits({ url: stack.gatewayUrl, token: stack.token }, { prefix, rules, blockedCacheMax });

  limitsConformance('UpstashLimits', async (rules) => make(`conf-${randomUUID().slice(0, 8)}:`, rules));

  it('two instances share buckets, usage and slots', async () => {
    const prefix = `shared-${randomUUID().slice(0, 8)}:`;
    const rules = { w: { tokens: 4, windowMs: 60_000 } };
    const [a, b] = [make(prefix, rules), make(prefix, rules)];
    const took = await Promise.all([a, b, a, b, a, b].map((s) => s.take('w', 'user')));
    expect(took.filter((t) => t.ok)).toHaveLength(4);
    await a.addUsage(new Map([['user', { scopes: 1, bytes: 10 }]]));
    await b.addUsage(new Map([['user', { scopes: 1, bytes: 5 }]]));
    expect(await a.usage('user')).toEqual({ scopes: 2, bytes: 15 });
    const slot = await a.acquire('user', 1, 60_000);
    expect(await b.acquire('user', 1, 60_000)).toBeNull();
    await b.release('user', slot as string);
    expect(await b.acquire('user', 1, 60_000)).not.toBeNull();
  });

  it('remembers at most blockedCacheMax blocked keys, the latest ones', async () => {
    const prefix = `blocked-${randomUUID().slice(0, 8)}:`;
    const s = make(prefix, { a: { tokens: 1, windowMs: 60_000 } }, 2);
    const keys = ['k1', 'k2', 'k3'];
    for (const k of keys) {
      expect((await s.take('a', k)).ok).toBe(true);
      expect((await s.take('a', k)).ok).toBe(false); // blocked, remembered here
    }
    // Refill every bucket in Redis: a key still remembered as blocked is refused without asking.
    const redis = new Redis({ url: stack.gatewayUrl, token: stack.token, enableTelemetry: false });
    await redis.del(...keys.map((k) => `${prefix}rate:a:${k}`));
    expect((await s.take('a', 'k1')).ok).toBe(true); // forgotten (oldest past 2): Redis answered
    expect((await s.take('a', 'k3')).ok).toBe(false); // still remembered until its refill
  });
});
