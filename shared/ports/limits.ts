/**
 * The limits port: the counters behind rate limits, per-user quotas and stream caps, kept where
 * every instance of a deployment sees them (one process in embedded mode, Redis on the Google
 * stack). It holds numbers only; what a request may do is decided in shared/http/limits.ts.
 *
 * Guarantee 3 (a rejected request changes nothing) starts here: a refused `take` takes no token
 * and a refused `acquire` holds no slot, so a client hammering a limit does not push its own
 * retry time back, and nothing a refused request did is left to undo.
 */

/**
 * A token bucket: it holds at most `tokens` tokens, starts full, and gets one token back every
 * `windowMs / tokens` ms (so `tokens` per `windowMs` sustained, bursts of up to `tokens`).
 */
export interface RateRule {
  tokens: number;
  windowMs: number;
}

/** The refill interval of a rule: one token every this many ms (both adapters use it, so they agree). */
export function refillMs(rule: RateRule): number {
  return Math.max(1, Math.round(rule.windowMs / rule.tokens));
}

export interface RateDecision {
  ok: boolean;
  /** When refused: ms until the bucket holds a token again (> 0). When allowed: 0. */
  retryAfterMs: number;
}

/** What a user has stored: scopes they own, and the sum of those scopes' state sizes (JSON bytes). */
export interface Usage {
  scopes: number;
  bytes: number;
}

export interface LimitStore {
  /**
   * Takes `cost` tokens (an integer >= 1) from the bucket of (`rule`, `key`), the rule being one
   * the adapter was made with (an unknown name throws). Buckets of different rules or keys are
   * independent. All or nothing: refused when the bucket holds fewer than `cost` tokens, and then
   * nothing is taken; the wait named is until it holds them. A cost above the bucket size is
   * clamped to the bucket size (a full bucket allows it, and is then empty), so no request is
   * refused for good. Adapters may fail open (allow) when their backend does not answer in time,
   * and say so.
   */
  take(rule: string, key: string, cost?: number): Promise<RateDecision>;
  /** A user's counters; `{scopes: 0, bytes: 0}` for a user never counted. */
  usage(user: string): Promise<Usage>;
  /**
   * Adds each user's deltas (either may be negative) to their counters, in one backend call, and
   * returns the counters after it, by user. Counting is by addition, so concurrent callers on
   * several instances never lose each other's deltas.
   */
  addUsage(deltas: ReadonlyMap<string, Usage>): Promise<Map<string, Usage>>;
  /**
   * Takes one of the `max` slots of `key` (e.g. a user's concurrent streams) and returns its id,
   * or null when all `max` are held (then nothing is held). A slot is held until `release`, or
   * until `ttlMs` have passed, so slots of a crashed instance come back by themselves.
   */
  acquire(key: string, max: number, ttlMs: number): Promise<string | null>;
  /** Gives a slot back; releasing a slot that expired or was released already does nothing. */
  release(key: string, slot: string): Promise<void>;
  close(): Promise<void>;
}
