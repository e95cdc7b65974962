/**
 * The Upstash limit store on a real redis-server behind the Upstash REST gateway, driven by the
 * real `@upstash/redis` and `@upstash/ratelimit`: it passes the LimitStore conformance suite, and
 * two instances (two clients, as two Cloud Run instances would have) share every counter.
 */
import { randomUUID } from 'node:crypto';
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

  const make = (prefix: string, rules = {}) => new UpstashLimits({ url: stack.gatewayUrl, token: stack.token }, { prefix, rules });

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
});
