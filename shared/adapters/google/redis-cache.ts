/**
 * The Google hot cache: Upstash Redis over its REST API (`@upstash/redis`). One string per scope,
 * `<prefix><id>` = `"<ii>\n<state as JSON text>"`.
 *
 * Guarantee: a put never moves an entry backwards. The compare-and-set is one Lua script, which
 * Redis runs atomically: it reads the stored ii (the few bytes before the newline, via GETRANGE,
 * so a 512 KiB state is never copied into Lua) and writes only when the new ii is higher. Two
 * instances finishing group commits out of order therefore cannot leave the older state behind.
 * A lost entry (TTL, eviction, delete) only costs the engine a rebuild from the log.
 *
 * Why one string and not a hash {ii, state}: a GET reads ii and state together in one command, and
 * `"5\n{...}"` is never valid JSON, so the client's automatic deserialization (on by default in
 * `@upstash/redis`, which would JSON.parse a state text and lose the difference between a JSON
 * string and its text) leaves it alone whatever the client passed in was configured with.
 *
 * Failures surface as thrown errors; the engine counts a failed get as a miss.
 */
import { Redis } from '@upstash/redis';
import type { Json } from '../../json.js';
import type { CachedState, HotCache } from '../../ports/index.js';

export interface UpstashCacheOptions {
  /** Prepended to every scope id to make its key, e.g. `pb:state:`. */
  prefix: string;
  /** Entries expire this long after their last successful put; 0 or absent: never. */
  ttlSeconds?: number;
}

/**
 * KEYS[1] the entry; ARGV[1] the new ii; ARGV[2] the new value ("ii\n" .. json); ARGV[3] ttl seconds.
 * Returns 1 when it stored, 0 when the entry is already at ARGV[1] or later. A value that does not
 * start with "<digits>\n" (not ours) is overwritten.
 */
const PUT_SCRIPT = `
local head = redis.call('GETRANGE', KEYS[1], 0, 31)
local current = tonumber(string.match(head, '^(%d+)\\n'))
if current ~= nil and current >= tonumber(ARGV[1]) then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
`;

export class UpstashCache implements HotCache {
  private readonly redis: Redis;
  private readonly put_: { exec(keys: string[], args: string[]): Promise<unknown> };
  private readonly prefix: string;
  private readonly ttl: number;

  /**
   * @param client a `Redis` from `@upstash/redis` (any deserialization setting), or its url and
   * token; a client made here retries a failed request once only, since a slow miss is worse than
   * a fast one for a cache.
   * @example
   * ```ts
   * const cache = new UpstashCache({ url: process.env.UPSTASH_REDIS_REST_URL, token: process.env.UPSTASH_REDIS_REST_TOKEN }, { prefix: 'pb:state:', ttlSeconds: 86400 });
   * await cache.put('scope-1', 3, { count: 3 });
   * await cache.get('scope-1'); // { ii: 3, state: { count: 3 } }
   * ```
   */
  constructor(client: Redis | { url: string; token: string }, options: UpstashCacheOptions) {
    this.redis =
      client instanceof Redis
        ? client
        : new Redis({ url: client.url, token: client.token, automaticDeserialization: false, retry: { retries: 1, backoff: () => 50 } });
    this.prefix = options.prefix;
    this.ttl = options.ttlSeconds ?? 0;
    if (!Number.isInteger(this.ttl) || this.ttl < 0) throw new RangeError(`ttlSeconds must be a non-negative integer, got ${options.ttlSeconds}`);
    // EVALSHA first, EVAL when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
    this.put_ = this.redis.createScript(PUT_SCRIPT);
  }

  async get(id: string): Promise<CachedState | null> {
    const key = this.prefix + id;
    const raw = await this.redis.get<unknown>(key);
    if (raw === null) return null;
    const nl = typeof raw === 'string' ? raw.indexOf('\n') : -1;
    const ii = nl > 0 ? Number((raw as string).slice(0, nl)) : Number.NaN;
    if (!Number.isSafeInteger(ii) || ii < 0) throw new Error(`hot cache: ${key} does not hold an entry of this cache`);
    return { ii, state: JSON.parse((raw as string).slice(nl + 1)) as Json };
  }

  async put(id: string, ii: number, state: Json): Promise<boolean> {
    if (!Number.isSafeInteger(ii) || ii < 0) throw new RangeError(`ii must be a non-negative safe integer, got ${ii}`);
    const stored = await this.put_.exec([this.prefix + id], [String(ii), `${ii}\n${JSON.stringify(state)}`, String(this.ttl)]);
    return Number(stored) === 1;
  }

  async delete(id: string): Promise<void> {
    await this.redis.del(this.prefix + id);
  }

  /** Nothing to release: the client is stateless HTTP (and, when passed in, not ours). */
  async close(): Promise<void> {}
}
