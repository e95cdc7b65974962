/**
 * The Google limit store: every counter in Upstash Redis, so all instances share them.
 * - Rate limits: `@upstash/ratelimit`'s token bucket (one Lua script, one round trip per take),
 *   keys `<prefix>rate:<rule>:<key>`, which expire once their bucket is full again. Blocked keys are
 *   also remembered in this instance until their refill (the library's ephemeral cache), so a
 *   client hammering a limit costs no Redis call; that cache is bounded (BoundedMap: the
 *   library's default is a plain Map that keeps one entry per key it ever blocked, so an attacker
 *   cycling through addresses or accounts would grow it without end). A take that Redis does not
 *   answer within `timeoutMs` is allowed (the library's fail-open); an error is thrown.
 * - Takes of more than one token (`cost` > 1) run TAKE_SCRIPT instead, on the same bucket (same
 *   key and fields, same refill), with the same fail-open. The pinned library's script refuses
 *   only a bucket at exactly 0: a `rate` above the tokens left is refused yet drives the bucket
 *   negative (upstash/ratelimit-js#156), which breaks the port's "refused takes nothing".
 * - Usage: one hash per user, `<prefix>usage:<user>` {scopes, bytes}, changed by HINCRBY only (so
 *   instances never overwrite each other), all users of one `addUsage` in one pipeline. These
 *   counters are not derived from Firestore: losing them (a flush) forgives past usage.
 * - Slots: one sorted set per key, `<prefix>slots:<key>`, members scored by expiry; one Lua
 *   script drops expired members and adds one only under `max`, atomically.
 *
 * Pinned to @upstash/ratelimit 2.0.x: from 2.1 its scripts start `#!lua flags=allow-key-locking`,
 * a flag Upstash accepts and redis-server 7.0 (what tests run behind the gateway) refuses.
 */
import { randomUUID } from 'node:crypto';
import { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import { type LimitStore, type RateDecision, type RateRule, refillMs, type Usage } from '../../ports/limits.js';

export interface UpstashLimitsOptions {
  /** Prepended to every key, e.g. `pb:limits:`. */
  prefix: string;
  rules: Readonly<Record<string, RateRule>>;
  /** A take unanswered after this long is allowed (default 1000 ms). */
  timeoutMs?: number;
  /** Blocked keys remembered per rule at most (default 10,000): see BoundedMap. */
  blockedCacheMax?: number;
}

/**
 * A Map that keeps at most `max` entries, dropping the oldest inserted past it: the ephemeral
 * cache handed to `@upstash/ratelimit` (which only calls has/get/set/delete on it). Dropping an
 * entry early only costs that key one Redis call on its next take; the bucket in Redis decides.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    this.delete(key); // re-insert: a renewed block counts as new
    super.set(key, value);
    if (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}

/**
 * A token bucket take of ARGV[4] tokens, all or nothing, on the library's bucket layout (hash
 * {refilledAt, tokens}; one token back per ARGV[2] ms, counted from refilledAt; at most ARGV[1]).
 * KEYS[1] the bucket; ARGV: max, refill ms, now, cost (<= max). Returns {1, 0} when taken, else
 * {0, when the bucket will hold cost tokens}.
 */
const TAKE_SCRIPT = `
local max, interval, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'refilledAt', 'tokens')
local refilledAt, tokens = now, max
if b[1] then refilledAt, tokens = tonumber(b[1]), tonumber(b[2]) end
if now >= refilledAt + interval then
  local n = math.floor((now - refilledAt) / interval)
  tokens = math.min(max, tokens + n)
  refilledAt = refilledAt + n * interval
end
if tokens < cost then return {0, refilledAt + (cost - tokens) * interval} end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'refilledAt', refilledAt, 'tokens', tokens)
redis.call('PEXPIRE', KEYS[1], (max - tokens) * interval)
return {1, 0}
`;

/** KEYS[1] the slot set; ARGV: now, max, ttl ms, slot id. Returns 1 when it took the slot. */
const ACQUIRE_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

export class UpstashLimits implements LimitStore {
  private readonly redis: Redis;
  private readonly limiters = new Map<string, Ratelimit>();
  private readonly rules: Readonly<Record<string, RateRule>>;
  private readonly acquire_: { exec(keys: string[], args: string[]): Promise<unknown> };
  private readonly take_: { exec(keys: string[], args: string[]): Promise<unknown> };
  private readonly prefix: string;
  private readonly timeoutMs: number;

  /**
   * @param client a `Redis` from `@upstash/redis`, or its url and token.
   * @example
   * ```ts
   * const limits = new UpstashLimits({ url, token }, { prefix: 'pb:limits:', rules: { write: { tokens: 100, windowMs: 5000 } } });
   * await limits.take('write', 'user-1'); // { ok: true, retryAfterMs: 0 }
   * ```
   */
  constructor(client: Redis | { url: string; token: string }, options: UpstashLimitsOptions) {
    this.redis =
      client instanceof Redis ? client : new Redis({ url: client.url, token: client.token, enableTelemetry: false, retry: { retries: 1, backoff: () => 50 } });
    this.prefix = options.prefix;
    this.rules = options.rules;
    this.timeoutMs = options.timeoutMs ?? 1000;
    for (const [name, rule] of Object.entries(options.rules)) {
      this.limiters.set(
        name,
        new Ratelimit({
          redis: this.redis,
          limiter: Ratelimit.tokenBucket(1, `${refillMs(rule)} ms`, rule.tokens),
          prefix: `${this.prefix}rate:${name}`,
          analytics: false,
          timeout: this.timeoutMs,
          ephemeralCache: new BoundedMap(options.blockedCacheMax ?? 10_000),
        }),
      );
    }
    this.acquire_ = this.redis.createScript(ACQUIRE_SCRIPT);
    this.take_ = this.redis.createScript(TAKE_SCRIPT);
  }

  async take(rule: string, key: string, cost = 1): Promise<RateDecision> {
    const limiter = this.limiters.get(rule);
    const r = this.rules[rule];
    if (!limiter || !r) throw new RangeError(`no rate rule named ${rule}`);
    const n = Math.min(cost, r.tokens);
    if (n <= 1) {
      const d = await limiter.limit(key);
      return d.success ? { ok: true, retryAfterMs: 0 } : { ok: false, retryAfterMs: Math.max(1, d.reset - Date.now()) };
    }
    const now = Date.now();
    const args = [String(r.tokens), String(refillMs(r)), String(now), String(n)];
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<[number, number]>((resolve) => {
      timer = setTimeout(() => resolve([1, 0]), this.timeoutMs);
    });
    const call = this.take_.exec([`${this.prefix}rate:${rule}:${key}`], args) as Promise<[number, number]>;
    const [ok, at] = await Promise.race([call, timedOut]).finally(() => clearTimeout(timer));
    return Number(ok) === 1 ? { ok: true, retryAfterMs: 0 } : { ok: false, retryAfterMs: Math.max(1, Number(at) - Date.now()) };
  }

  async usage(user: string): Promise<Usage> {
    const [scopes, bytes] = await this.redis.hmget<Record<string, unknown>>(this.usageKey(user), 'scopes', 'bytes').then((r) => [r?.scopes, r?.bytes]);
    return { scopes: Number(scopes ?? 0), bytes: Number(bytes ?? 0) };
  }

  async addUsage(deltas: ReadonlyMap<string, Usage>): Promise<Map<string, Usage>> {
    const out = new Map<string, Usage>();
    if (deltas.size === 0) return out;
    const p = this.redis.pipeline();
    for (const [user, d] of deltas) p.hincrby(this.usageKey(user), 'scopes', d.scopes).hincrby(this.usageKey(user), 'bytes', d.bytes);
    const results = (await p.exec()) as unknown[];
    let i = 0;
    for (const user of deltas.keys()) {
      out.set(user, { scopes: Number(results[i]), bytes: Number(results[i + 1]) });
      i += 2;
    }
    return out;
  }

  async acquire(key: string, max: number, ttlMs: number): Promise<string | null> {
    const slot = randomUUID();
    const took = await this.acquire_.exec([this.slotKey(key)], [String(Date.now()), String(max), String(ttlMs), slot]);
    return Number(took) === 1 ? slot : null;
  }

  async release(key: string, slot: string): Promise<void> {
    await this.redis.zrem(this.slotKey(key), slot);
  }

  /** Nothing to release: the client is stateless HTTP (and, when passed in, not ours). */
  async close(): Promise<void> {}

  private usageKey(user: string): string {
    return `${this.prefix}usage:${user}`;
  }

  private slotKey(key: string): string {
    return `${this.prefix}slots:${key}`;
  }
}
