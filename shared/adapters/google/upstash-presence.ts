/**
 * Presence on Google: Upstash Redis over REST (`@upstash/redis`), shared by every instance. One
 * hash per scope, `<prefix>presence:<scope>`, field = session, value = the entry as JSON text.
 * The PresenceStore contracts: shared/ports/presence.ts.
 *
 * Expiry: each entry carries its own `expires`, which reads honour (and clean up), and the hash
 * itself expires (PEXPIREAT) at the latest `expires` written to it, so a scope nobody refreshes
 * leaves nothing behind in Redis. A put is one Lua script (atomic): it keeps the `since` of a
 * live prior entry and moves the hash's expiry only forwards.
 */
import { Redis } from '@upstash/redis';
import type { PresenceEntry, PresenceStore } from '../../ports/presence.js';

/** KEYS[1] the hash; ARGV[1] session, ARGV[2] entry JSON, ARGV[3] now, ARGV[4] expires. Returns the prior entry's text or false. */
const PUT_SCRIPT = `
local prior = redis.call('HGET', KEYS[1], ARGV[1])
local entry = cjson.decode(ARGV[2])
local joined = 1
if prior then
  local p = cjson.decode(prior)
  if tonumber(p.expires) > tonumber(ARGV[3]) then
    entry.since = p.since
    joined = 0
  end
end
local text = cjson.encode(entry)
redis.call('HSET', KEYS[1], ARGV[1], text)
local ttl = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[4]) - tonumber(ARGV[3])
if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
return {joined, text}
`;

/** KEYS[1] the hash; ARGV[1] session, ARGV[2] now, ARGV[3] expires. Returns 1 when a live entry was moved. */
const TOUCH_SCRIPT = `
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if not prior then return 0 end
local p = cjson.decode(prior)
if tonumber(p.expires) <= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) > tonumber(p.expires) then
  p.expires = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(p))
  local ttl = redis.call('PTTL', KEYS[1])
  local want = tonumber(ARGV[3]) - tonumber(ARGV[2])
  if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
end
return 1
`;

export class UpstashPresence implements PresenceStore {
  private readonly redis: Redis;
  private readonly put_: { exec(keys: string[], args: string[]): Promise<unknown> };
  private readonly touch_: { exec(keys: string[], args: string[]): Promise<unknown> };

  constructor(
    client: Redis | { url: string; token: string },
    private readonly prefix: string,
    private readonly now: () => number = Date.now,
  ) {
    this.redis =
      client instanceof Redis
        ? client
        : new Redis({
            url: client.url,
            token: client.token,
            enableTelemetry: false,
            automaticDeserialization: false,
            retry: { retries: 1, backoff: () => 50 },
          });
    this.put_ = this.redis.createScript(PUT_SCRIPT);
    this.touch_ = this.redis.createScript(TOUCH_SCRIPT);
  }

  private key(scope: string): string {
    return `${this.prefix}presence:${scope}`;
  }

  async put(scope: string, entry: PresenceEntry): Promise<{ joined: boolean; entry: PresenceEntry }> {
    // `status` travels as JSON text inside the entry, so cjson's number and empty-table quirks never touch it.
    const wire = { ...entry, status: JSON.stringify(entry.status) };
    const res = (await this.put_.exec([this.key(scope)], [entry.session, JSON.stringify(wire), String(this.now()), String(entry.expires)])) as [number, string];
    return { joined: Number(res[0]) === 1, entry: toEntry(res[1]) };
  }

  async touch(scope: string, session: string, expires: number): Promise<boolean> {
    return Number(await this.touch_.exec([this.key(scope)], [session, String(this.now()), String(expires)])) === 1;
  }

  async remove(scope: string, session: string): Promise<boolean> {
    const prior = (await this.redis.hget(this.key(scope), session)) as string | null;
    await this.redis.hdel(this.key(scope), session);
    return prior !== null && toEntry(prior).expires > this.now();
  }

  async list(scope: string, limit: number): Promise<PresenceEntry[]> {
    // Without automatic deserialization the client answers HGETALL as Redis does: [field, value, field, value, ...].
    const raw = (await this.redis.hgetall(this.key(scope))) as unknown;
    const pairs: Array<[string, string]> = [];
    if (Array.isArray(raw)) for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([String(raw[i]), String(raw[i + 1])]);
    else if (raw && typeof raw === 'object') for (const [k, v] of Object.entries(raw)) pairs.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
    const now = this.now();
    const live: PresenceEntry[] = [];
    const lapsed: string[] = [];
    for (const [session, text] of pairs) {
      const e = toEntry(text);
      if (e.expires > now) live.push(e);
      else lapsed.push(session);
    }
    if (lapsed.length > 0) await this.redis.hdel(this.key(scope), ...lapsed).catch(() => {});
    return live.sort((a, b) => a.since - b.since || (a.session < b.session ? -1 : 1)).slice(0, limit);
  }

  async close(): Promise<void> {}
}

function toEntry(text: string): PresenceEntry {
  const w = JSON.parse(text) as Omit<PresenceEntry, 'status'> & { status: string };
  return { user: w.user, session: w.session, since: Number(w.since), expires: Number(w.expires), status: JSON.parse(w.status) };
}
