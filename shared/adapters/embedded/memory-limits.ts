/**
 * The embedded limit store: token buckets, usage counters and slots in this process's memory.
 * Buckets and slots are lost on restart, which forgives a client its recent requests and streams
 * (the streams died with the process anyway). Usage counters are seeded at start from the stored
 * scopes (see `seedUsage`), and file bytes from the stored uploads (`Uploads.fileUsage`, called by
 * shared/app.ts), so quotas survive restarts.
 *
 * Buckets use the same discrete refill as `@upstash/ratelimit`'s token bucket (one token each
 * `windowMs / tokens` ms, counted from the last refill), so both adapters answer alike.
 */
import { randomUUID } from 'node:crypto';
import type { Ledger } from '../../ports/ledger.js';
import { type LimitStore, type RateDecision, type RateRule, refillMs, type Usage } from '../../ports/limits.js';

/** Buckets kept at most; past it the least recently touched bucket is dropped (it starts full again). */
const MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  refilledAt: number;
}

export class MemoryLimits implements LimitStore {
  private readonly buckets = new Map<string, Bucket>();
  private readonly counters = new Map<string, Usage>();
  private readonly slots = new Map<string, Map<string, number>>();

  constructor(
    private readonly rules: Readonly<Record<string, RateRule>>,
    private readonly now: () => number = Date.now,
  ) {}

  async take(rule: string, key: string, cost = 1): Promise<RateDecision> {
    const r = this.rules[rule];
    if (!r) throw new RangeError(`no rate rule named ${rule}`);
    const n = Math.min(cost, r.tokens);
    const interval = refillMs(r);
    const id = `${rule}\n${key}`;
    const now = this.now();
    const b = this.buckets.get(id) ?? { tokens: r.tokens, refilledAt: now };
    const refills = Math.floor((now - b.refilledAt) / interval);
    if (refills > 0) {
      b.tokens = Math.min(r.tokens, b.tokens + refills);
      b.refilledAt += refills * interval;
    }
    this.buckets.delete(id); // re-insert: Map order is recency order
    this.buckets.set(id, b);
    if (this.buckets.size > MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value as string);
    if (b.tokens < n) return { ok: false, retryAfterMs: Math.max(1, b.refilledAt + (n - b.tokens) * interval - now) };
    b.tokens -= n;
    return { ok: true, retryAfterMs: 0 };
  }

  async usage(user: string): Promise<Usage> {
    return { ...(this.counters.get(user) ?? { scopes: 0, bytes: 0 }) };
  }

  async addUsage(deltas: ReadonlyMap<string, Usage>): Promise<Map<string, Usage>> {
    const out = new Map<string, Usage>();
    for (const [user, d] of deltas) {
      const u = this.counters.get(user) ?? { scopes: 0, bytes: 0 };
      u.scopes += d.scopes;
      u.bytes += d.bytes;
      this.counters.set(user, u);
      out.set(user, { ...u });
    }
    return out;
  }

  async acquire(key: string, max: number, ttlMs: number): Promise<string | null> {
    const now = this.now();
    const held = this.slots.get(key) ?? new Map<string, number>();
    for (const [slot, expires] of held) if (expires <= now) held.delete(slot);
    if (held.size >= max) {
      if (held.size === 0) this.slots.delete(key);
      return null;
    }
    const slot = randomUUID();
    held.set(slot, now + ttlMs);
    this.slots.set(key, held);
    return slot;
  }

  async release(key: string, slot: string): Promise<void> {
    const held = this.slots.get(key);
    if (!held) return;
    held.delete(slot);
    if (held.size === 0) this.slots.delete(key);
  }

  async close(): Promise<void> {}
}

/**
 * Every user's usage derived from the stored scopes (owner and state size of each head): what
 * embedded mode seeds its counters with at start, so quotas survive restarts and never drift.
 * Reads every head once (about 20 µs each on SQLite).
 */
export async function seedUsage(ledger: Ledger, store: LimitStore): Promise<number> {
  const totals = new Map<string, Usage>();
  let after = '';
  let scopes = 0;
  for (;;) {
    const page = await ledger.listScopes(after, 1000);
    for (const s of page) {
      const head = await ledger.getHead(s.id);
      if (!head) continue;
      const u = totals.get(head.meta.owner) ?? { scopes: 0, bytes: 0 };
      u.scopes += 1;
      u.bytes += head.meta.size;
      totals.set(head.meta.owner, u);
      scopes += 1;
    }
    if (page.length < 1000) break;
    after = (page[page.length - 1] as { id: string }).id;
  }
  if (totals.size > 0) await store.addUsage(totals);
  return scopes;
}
