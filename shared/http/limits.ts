/**
 * What a request may do, by the numbers: rate limits, per-user quotas and stream caps, as a few
 * calls the routes make before they act (`await limits.write(user, patchBytes)`) and after they
 * commit (`limits.stored(owner, delta)`). The counters live in a LimitStore (shared/ports/limits.ts).
 *
 * Guarantee 3 (a rejected request changes nothing): every check here runs before the route
 * touches the ledger, and a refused check takes no token and holds no slot. Rate limits count
 * requests, whatever became of them: a request refused for another reason has spent its token.
 *
 * Costs. Sign-in and create each take one token: one store call (on Google one Redis round
 * trip). A write takes two, concurrently: a token of its count bucket and its size in KiB from
 * its bytes bucket (on Google two commands that @upstash/redis sends in one pipelined request:
 * still the write path's only added round trip). A create also reads the user's usage (a second
 * command, sent alongside). A write checks the bytes quota against what this instance last
 * learnt of the user's usage, without a call; a patch that cannot grow a state (only `remove`
 * and `test`) passes it, so a user over the quota can always shrink back under it. Usage is counted after commit, batched: each
 * instance adds its users' deltas at most every USAGE_FLUSH_MS in one call, and learns their
 * totals from its answer. So a quota can be passed by what is in flight: a create or a group of
 * patches per instance, at most one state each. A failing store is logged and lets requests
 * through: the limits guard against abuse, and must not take the service down with Redis.
 */
import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import proxyaddr from 'proxy-addr';
import type { QuotaConfig, SseConfig } from '../config.js';
import { isBackendError, PatchbayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { LimitStore, RateDecision, RateRule, Usage } from '../ports/limits.js';

/** Usage deltas are sent to the store at most this often. */
export const USAGE_FLUSH_MS = 200;
/** Users whose usage an instance remembers (least recently used go first). */
const KNOWN_MAX = 10_000;
/** `Retry-After` for a user at their stream cap: a slot frees only when one of their streams ends. */
const STREAM_RETRY_S = 10;

/** Its section of the configuration, and the stream length (a stream slot's lifetime). */
export type QuotaLimitsConfig = QuotaConfig & Pick<SseConfig, 'sseMaxMs'>;

/** The rate rules a store is made with, by the names `Limits` takes tokens under. */
export function rateRules(config: QuotaLimitsConfig): Record<string, RateRule> {
  return {
    signIn: config.rateSignIn,
    create: config.rateCreate,
    write: config.rateWrite,
    writeKiB: config.rateWriteKiB,
    list: config.rateList,
    stateAt: config.rateStateAt,
    query: config.rateQuery,
    claim: config.rateClaim,
    serviceTokens: config.rateServiceTokens,
    session: config.rateSession,
    presence: config.ratePresence,
    upload: config.rateUpload,
    streamControl: config.rateStreamControl,
  };
}

export class Limits {
  private readonly on: boolean;
  private readonly trust: ((addr: string, i: number) => boolean) | number | null;
  /** Usage this instance learnt from the store, by user. */
  private readonly known = new Map<string, Usage>();
  /** Deltas counted here and not yet sent to the store. */
  private pending = new Map<string, Usage>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private streams = 0;

  constructor(
    private readonly store: LimitStore,
    private readonly config: QuotaLimitsConfig,
    private readonly logger: Pick<Logger, 'error'>,
  ) {
    this.on = config.limits === 'on';
    const t = config.trustProxy.trim();
    this.trust = t === '' ? null : /^[0-9]+$/.test(t) ? Number(t) : proxyaddr.compile(t.split(',').map((p) => p.trim()));
  }

  /**
   * The client's address: the socket's peer, or, when PATCHBAY_TRUST_PROXY names the proxies in
   * front, the address the outermost trusted proxy put in `X-Forwarded-For` (proxy-addr's rules).
   * Never the header alone: any client can write one. IPv6 addresses count by their /64, which one
   * subscriber usually holds whole.
   */
  clientAddress(req: IncomingMessage): string {
    let addr: string;
    if (this.trust === null) addr = req.socket.remoteAddress ?? '';
    else if (typeof this.trust === 'number') {
      const all = proxyaddr.all(req); // socket first, then X-Forwarded-For from the right
      addr = all[Math.min(this.trust, all.length - 1)] ?? '';
    } else addr = proxyaddr(req, this.trust);
    return addressKey(addr);
  }

  /** Before issuing a token: the sign-in rate of the client's address. */
  async signIn(req: IncomingMessage): Promise<void> {
    if (this.on) await this.rate('signIn', this.clientAddress(req));
  }

  /** Before creating a scope: the user's create rate, scope quota and bytes quota. */
  async createScope(user: string): Promise<void> {
    if (!this.on) return;
    const [, stored] = await Promise.all([this.rate('create', user), this.guard(() => this.store.usage(user), null)]);
    if (stored) this.remember(user, stored);
    const u = this.usage(user);
    if (this.config.quotaScopes > 0 && u.scopes >= this.config.quotaScopes) {
      throw new PatchbayError('quota_exceeded', `a user may own at most ${this.config.quotaScopes} scopes`, {
        quota: 'scopes',
        max: this.config.quotaScopes,
        actual: u.scopes,
      });
    }
    this.checkBytes(u);
  }

  /**
   * Before issuing an upload URL: the user's upload rate, and the file-bytes quota
   * (PATCHBAY_QUOTA_FILE_BYTES) with `bytes` more. File bytes are counted apart from state bytes,
   * under the key `files:<user>` of the same counters.
   */
  async upload(user: string, bytes: number): Promise<void> {
    if (!this.on) return;
    const key = filesKey(user);
    const [, stored] = await Promise.all([this.rate('upload', user), this.guard(() => this.store.usage(key), null)]);
    if (stored) this.remember(key, stored);
    const u = this.usage(key);
    const max = this.config.quotaFileBytes;
    if (max > 0 && u.bytes + bytes > max) {
      throw new PatchbayError('quota_exceeded', `a user may hold at most ${max} bytes of files`, { quota: 'fileBytes', max, actual: u.bytes });
    }
  }

  /** A user's file bytes changed by `delta` (reserved by a new upload, corrected when it lands, given back when it expires or is deleted). */
  files(user: string, delta: number): void {
    if (this.on && delta !== 0) this.count(filesKey(user), { scopes: 0, bytes: delta });
  }

  /** Before listing the user's scopes (a page of `GET /v1/scopes`): the user's list rate. */
  async list(user: string): Promise<void> {
    if (this.on) await this.rate('list', user);
  }

  /** Before rebuilding a state at a past index: the user's rate, or the client address's without a token. */
  async stateAt(user: string | null, req: IncomingMessage): Promise<void> {
    if (this.on) await this.rate('stateAt', user ?? `addr:${this.clientAddress(req)}`);
  }

  /** Before running a named query (`POST /v1/domains/{domain}/queries/{name}`): the user's query rate. */
  async query(user: string): Promise<void> {
    if (this.on) await this.rate('query', user);
  }

  /** Before starting or re-checking a domain claim: the user's claim rate. */
  async claim(user: string): Promise<void> {
    if (this.on) await this.rate('claim', user);
  }

  /** Before a session request (open, heartbeat, close, guarantees): the user's session rate. */
  async session(user: string): Promise<void> {
    if (this.on) await this.rate('session', user);
  }

  /** Before a presence update: the user's presence rate. */
  async presence(user: string): Promise<void> {
    if (this.on) await this.rate('presence', user);
  }

  /** Before changing a multiplexed stream (`POST /v1/events/{stream}`): the rate of its user, or of the address without one. */
  async streamControl(key: string): Promise<void> {
    if (this.on) await this.rate('streamControl', key);
  }

  /** Before minting a service token (`POST /v1/domains/{domain}/tokens`): the admin's mint rate. */
  async mintServiceToken(user: string): Promise<void> {
    if (this.on) await this.rate('serviceTokens', user);
  }

  /** After a scope was created: count it (not when limits are off: nothing reads the counts). */
  created(owner: string, bytes: number): void {
    if (this.on) this.count(owner, { scopes: 1, bytes });
  }

  /** After a scope was deleted: give its owner back the scope and its state's bytes (when limits are on). */
  deleted(owner: string, bytes: number): void {
    if (this.on) this.count(owner, { scopes: -1, bytes: -bytes });
  }

  /**
   * Before a patch of `patchBytes` (its JSON size): the bytes quota, as this instance knows the
   * user's usage (skipped for a patch that `cannotGrow` a state), then the write rates: one patch
   * and ceil(patchBytes / 1024) KiB (at least 1), taken concurrently. When one of the two refuses,
   * the other may have taken its share (a request refused for a rate has spent the other one).
   */
  async write(user: string, patchBytes: number, cannotGrow = false): Promise<void> {
    if (!this.on) return;
    if (!cannotGrow) this.checkBytes(this.usage(user));
    const kib = Math.max(1, Math.ceil(patchBytes / 1024));
    const [count, bytes] = await Promise.all([this.take('write', user), this.take('writeKiB', user, kib)]);
    if (!count.ok || !bytes.ok) this.refuse(count.ok ? 'writeKiB' : 'write', Math.max(count.retryAfterMs, bytes.retryAfterMs));
  }

  /** After a commit changed the size of an owner's scope by `delta` bytes: count it (when limits are on). */
  stored(owner: string, delta: number): void {
    if (this.on && delta !== 0) this.count(owner, { scopes: 0, bytes: delta });
  }

  /**
   * Before a stream starts: a slot of this instance and one of the user's. Returns the function
   * that gives both back, to be called once when the stream ends.
   */
  async openStream(user: string): Promise<() => void> {
    const cap = this.config.sseMaxPerInstance;
    if (cap > 0 && this.streams >= cap) {
      throw new PatchbayError('unavailable', `this instance serves at most ${cap} streams; retry`, { limit: 'sseMaxPerInstance', retryAfter: 1 });
    }
    this.streams += 1;
    const key = `streams:${user}`;
    let slot: string | null = null;
    if (this.on && this.config.sseMaxPerUser > 0) {
      try {
        slot = await this.guard(() => this.store.acquire(key, this.config.sseMaxPerUser, this.config.sseMaxMs + 60_000), '');
      } catch (err) {
        this.streams -= 1;
        throw err;
      }
      if (slot === null) {
        this.streams -= 1;
        throw new PatchbayError('rate_limited', `a user may hold at most ${this.config.sseMaxPerUser} streams at once`, {
          limit: 'sseMaxPerUser',
          max: this.config.sseMaxPerUser,
          retryAfter: STREAM_RETRY_S,
        });
      }
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.streams -= 1;
      if (slot) void this.guard(() => this.store.release(key, slot as string), undefined);
    };
  }

  /** Streams (and long polls) this instance serves now. */
  get openStreams(): number {
    return this.streams;
  }

  /** Sends the pending usage deltas now (also what `close` does). */
  flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.size === 0) return this.flushing;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.flushing
      .then(() => this.store.addUsage(batch))
      .then(
        (totals) => {
          for (const [user, u] of totals) this.remember(user, u);
        },
        (err) => this.logger.error({ message: 'usage counters not updated; quotas will undercount', users: batch.size, err: String(err) }),
      );
    return this.flushing;
  }

  async close(): Promise<void> {
    await this.flush();
  }

  private async rate(rule: string, key: string): Promise<void> {
    const d = await this.take(rule, key);
    if (!d.ok) this.refuse(rule, d.retryAfterMs);
  }

  /** Takes from a bucket; a failing store answers "allowed" (see `guard`). */
  private take(rule: string, key: string, cost = 1): Promise<RateDecision> {
    return this.guard(() => this.store.take(rule, key, cost), { ok: true, retryAfterMs: 0 });
  }

  private refuse(rule: string, retryAfterMs: number): never {
    const retryAfter = Math.ceil(retryAfterMs / 1000);
    throw new PatchbayError('rate_limited', `too many requests; retry in ${retryAfter} s`, { limit: rule, retryAfter });
  }

  private checkBytes(u: Usage): void {
    if (this.config.quotaBytes > 0 && u.bytes >= this.config.quotaBytes) {
      const max = this.config.quotaBytes;
      throw new PatchbayError(
        'quota_exceeded',
        `a user may store at most ${max} bytes of state; patches of only remove and test operations are still accepted, to store less`,
        {
          quota: 'bytes',
          max,
          actual: u.bytes,
        },
      );
    }
  }

  /** What this instance knows of a user's usage: the store's last answer plus deltas not yet sent. */
  private usage(user: string): Usage {
    const k = this.known.get(user) ?? { scopes: 0, bytes: 0 };
    const p = this.pending.get(user) ?? { scopes: 0, bytes: 0 };
    return { scopes: k.scopes + p.scopes, bytes: k.bytes + p.bytes };
  }

  private remember(user: string, u: Usage): void {
    this.known.delete(user); // re-insert: Map order is recency order
    this.known.set(user, u);
    if (this.known.size > KNOWN_MAX) this.known.delete(this.known.keys().next().value as string);
  }

  private count(owner: string, d: Usage): void {
    const p = this.pending.get(owner) ?? { scopes: 0, bytes: 0 };
    this.pending.set(owner, { scopes: p.scopes + d.scopes, bytes: p.bytes + d.bytes });
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => void this.flush(), USAGE_FLUSH_MS);
      this.flushTimer.unref();
    }
  }

  /** Runs a store call; a backend failure is logged and answers `fallback` (fail open). */
  private async guard<T>(call: () => Promise<T>, fallback: T): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (!isBackendError(err)) throw err;
      this.logger.error({ message: 'limit store unavailable; request let through', err: String(err) });
      return fallback;
    }
  }
}

/** The counter key of a user's file bytes. */
const filesKey = (user: string): string => `files:${user}`;

/** The key an address is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64. */
export function addressKey(addr: string): string {
  if (!ipaddr.isValid(addr)) return addr;
  const ip = ipaddr.process(addr);
  if (ip.kind() === 'ipv4') return ip.toString();
  const parts = (ip as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
}
