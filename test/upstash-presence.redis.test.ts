/**
 * The Upstash presence store (shared/adapters/google/upstash-presence.ts) against redis-server
 * behind the local Upstash REST gateway: the PresenceStore conformance suite, and that a scope
 * nobody refreshes leaves nothing behind in Redis (the hash expires with its newest entry).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { Redis as IORedis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstashPresence } from '../shared/adapters/google/upstash-presence.js';
import { presenceConformance } from './conformance/presence.js';
import { noRedis, type RedisStack, startRedis } from './helpers/redis.js';

describe.skipIf(noRedis())('Upstash presence (redis-server + gateway)', () => {
  let stack: RedisStack;
  let direct: IORedis;
  beforeAll(async () => {
    stack = await startRedis();
    direct = new IORedis(stack.redisUrl);
  });
  afterAll(async () => {
    await direct?.quit();
    await stack?.stop();
  });
  const client = () => new Redis({ url: stack.gatewayUrl, token: stack.token, enableTelemetry: false, automaticDeserialization: false });

  presenceConformance('UpstashPresence', async (now) => new UpstashPresence(client(), `conf-${randomUUID().slice(0, 8)}:`, now));

  it('the hash expires with its newest entry, and a touch moves that forward', async () => {
    const prefix = `ttl-${randomUUID().slice(0, 8)}:`;
    const p = new UpstashPresence(client(), prefix);
    await p.put('room', { user: 'u', session: 's', since: Date.now(), status: null, expires: Date.now() + 3000 });
    const ttl = await direct.pttl(`${prefix}presence:room`);
    expect(ttl).toBeGreaterThan(1000);
    expect(ttl).toBeLessThanOrEqual(3000);
    await p.touch('room', 's', Date.now() + 60_000);
    expect(await direct.pttl(`${prefix}presence:room`)).toBeGreaterThan(30_000);
  });
});
