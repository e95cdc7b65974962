/**
 * A real redis-server (free port, no persistence) with the Upstash REST gateway in front of it,
 * for tests of the Upstash hot cache. A missing redis-server skips the file locally and fails it
 * in CI: `describe.skipIf(noRedis())(...)`.
 */
import { randomBytes } from 'node:crypto';
import { startRedisServer } from '../../infra/local/emulators.js';
import { startUpstashGateway } from '../../infra/local/upstash-gateway.js';
import { skipWithout } from './proc.js';

export interface RedisStack {
  /** `redis://127.0.0.1:PORT`, for direct (ioredis) access. */
  redisUrl: string;
  /** The gateway, what `@upstash/redis` takes as `url`. */
  gatewayUrl: string;
  token: string;
  stop(): Promise<void>;
}

/** True when the file should be skipped (redis-server missing outside CI); throws in CI. */
export function noRedis(): boolean {
  return skipWithout('redis-server');
}

export async function startRedis(): Promise<RedisStack> {
  const server = await startRedisServer();
  try {
    const token = randomBytes(16).toString('hex');
    const redisUrl = `redis://${server.host}`;
    const gw = await startUpstashGateway({ redisUrl, port: 0, token });
    return {
      redisUrl,
      gatewayUrl: gw.url,
      token,
      stop: async () => {
        await gw.close();
        await server.stop();
      },
    };
  } catch (err) {
    await server.stop();
    throw err;
  }
}
