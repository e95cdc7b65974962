/**
 * The commit decision: a pure function of (head, state at head, the group's requests, the retry
 * records found for them, limits, now, rules) to the records to append, each request's outcome
 * and the state after the accepted ones. `Ledger.commit` runs it inside its transaction
 * (shared/engine/commit.ts) against the head that transaction read.
 *
 * Guarantee 1 (every acknowledged patch is in the log once, indices 1..n without holes): the
 * decision reads nothing but its arguments and writes nothing, so a retried transaction
 * re-decides from scratch; the records it returns run consecutively from head.ii + 1.
 * Guarantee 3 (a rejected request changes nothing): a refused request contributes no record; a
 * patch that fails (or that a rule refuses) was applied to a working copy, which is then rebuilt
 * from the state at head plus the group's accepted patches, so its neighbours are unaffected.
 * Guarantee 7 (limits): a state's size and depth are checked op by op against a running budget,
 * then exactly once for the group's result; only if that fails is the group redone checking
 * after each patch, so exactly the offending patch is refused.
 *
 * Per-domain authorization and validation plug in here, as `CommitRules` (below).
 */
import type { Config } from '../config.js';
import { asPatchbayError, PatchbayError } from '../errors.js';
import { cloneJson, type Json, jsonBytes } from '../json.js';
import { applyPatch, type Budget, checkValueDepth } from '../patch.js';
import type { Head } from '../ports/index.js';
import { retryKey } from '../ports/index.js';
import { type PatchRecord, type PatchRequest, type ScopeMeta, TAG_SCOPE_TYPE } from '../protocol.js';
import { notFound as accessNotFound, canRead, canWrite } from './access.js';

export interface Ack {
  id: string;
  ii: number;
  duplicate?: true;
}

/**
 * The items of one scope in one `POST /v1/batch`, in order: a sequence whose predicted indices
 * count on each other. Once one of them is refused, every later one that has an `ii` is refused
 * too (`out_of_sync`), so a later patch never commits before an earlier one of its sequence that
 * was refused (its `ii` could otherwise happen to match the head another writer moved). `refused`
 * is set only from committed decisions (Writer), so a retried ledger transaction decides the same.
 */
export interface Chain {
  refused: boolean;
}

/** One queued request: the patch request, who sent it from which domain, and the hash of its patch's JSON text. */
export interface Pending {
  req: PatchRequest;
  user: string;
  /** The domain (the app) the request was made in (shared/http/domain.ts). */
  domain: string;
  hash: string;
  /** The batch sequence it belongs to, if any (see Chain). */
  chain?: Chain;
}

export type Outcome = { ack: Ack } | { error: PatchbayError };

/** The limits the decision enforces on a scope's state. */
export type StateLimits = Pick<Config, 'maxStateBytes' | 'maxValueDepth'>;

export { DEFAULT_DOMAIN } from '../protocol.js';

/** What a rule sees of one request. Every field is read-only to a rule. */
export interface RequestContext {
  /** The scope. */
  readonly id: string;
  /** The head the group is decided against; `head.meta` holds the owner, domain and type. */
  readonly head: Head;
  /** The index the request gets if it is accepted. */
  readonly ii: number;
  /** The authenticated user who sent it. */
  readonly user: string;
  /** The domain the request was made in; `head.meta.domain` is the scope's. */
  readonly domain: string;
  readonly req: PatchRequest;
}

/** What `validate` sees: the request, and the scope's state with its patch applied. */
export interface CandidateContext extends RequestContext {
  /** The candidate state (to be read only: it is the working copy the next patch applies to). */
  readonly state: Json;
}

/** What `create` sees: a scope about to be created, nothing of it stored yet. */
export interface CreateContext {
  readonly id: string;
  /** Its meta as it will be stored: owner, domain, name, type, access. */
  readonly meta: ScopeMeta;
  /** Its initial state (to be read only). */
  readonly state: Json;
}

/**
 * The seam where per-domain authorization and validation plug in, after ShareDB's
 * `backend.use('submit' | 'apply' | 'commit', fn)` middleware. A rule refuses a request by
 * throwing a PatchbayError (any other error refuses it as `internal`): that request only is
 * refused, with nothing written for it, and the other requests of its group are decided as if it
 * had not been sent.
 *
 * Rules must be pure and synchronous with respect to the ledger: they run inside a ledger
 * transaction, which may run the decision several times (a retried transaction, a group redone
 * to find the patch over a limit, a group split in halves), so a rule may read only its context
 * and its own fixed configuration, must not perform I/O or keep state between calls, must decide
 * the same way every time, and must return nothing (a returned promise refuses the request as
 * `internal`: nothing would wait for it). Work that follows a commit belongs to after-commit
 * consumers (shared/engine/consumer.ts), which can never undo it.
 */
export interface CommitRules {
  /**
   * Whether `ctx.user` may patch the scope: runs first for each request, before retries are
   * recognised (ShareDB's `submit`). The default is `writersInDomain`.
   */
  authorize(ctx: RequestContext): void;
  /**
   * Checks the candidate state: runs once the request's patch has been applied and has passed
   * its own checks (ShareDB's `apply`/`commit`), before the request is accepted. Default: none.
   */
  validate?(ctx: CandidateContext): void;
  /**
   * Checks a scope about to be created (its initial state, type and name), after its limits and
   * before anything is written; throwing refuses the create. Runs in `Engine.createScope`, outside
   * any transaction (a create conflicts with nothing but an existing id). Default: none.
   */
  create?(ctx: CreateContext): void;
  /**
   * Awaited before each commit decision of a scope of `domain` (inside the ledger's plan, before
   * `authorize`) and before each create in it, so the synchronous rules above can find what they
   * need in memory (a domain's active configuration: shared/domains/stored-configs.ts). Must be
   * cheap when nothing changed; throwing fails the commit or the create. Default: none.
   */
  prepare?(domain: string): Promise<void>;
}

/** The rule before scopes had access lists: only a scope's owner may patch it (`forbidden`). */
export function ownerOnly(ctx: RequestContext): void {
  if (ctx.head.meta.owner !== ctx.user) throw new PatchbayError('forbidden', 'only the owner of a scope may patch it', { id: ctx.id });
}

/**
 * Only the scope's owner, its listed writers and its domain's service identity (`domain:<d>`) may
 * patch it (`canWrite`, shared/engine/access.ts), as the head read in this transaction says: a revoke that committed first refuses the write. A user
 * who may read the scope is refused with `forbidden`; one who may not even read it, with
 * `scope_not_found`, as for a scope that does not exist.
 */
export function writersOnly(ctx: RequestContext): void {
  const { meta } = ctx.head;
  if (canWrite(meta, ctx.user)) return;
  if (!canRead(meta, { id: ctx.user, domain: ctx.domain })) throw accessNotFound(ctx.id);
  throw new PatchbayError('forbidden', "only a scope's owner and its writers may patch it", { id: ctx.id });
}

/** A scope is patched only from its own domain: a token for domain A cannot write scopes of domain B (`forbidden`). */
export function sameDomain(ctx: RequestContext): void {
  if (ctx.head.meta.domain !== ctx.domain) {
    throw new PatchbayError('forbidden', `scope ${ctx.id} belongs to domain ${ctx.head.meta.domain}, not ${ctx.domain}`, {
      id: ctx.id,
      domain: ctx.head.meta.domain,
      requested: ctx.domain,
    });
  }
}

/**
 * Today's rule: the owner and listed writers, writing from the scope's own domain. The access
 * check comes first, so a caller who may not even read the scope learns nothing about it (404),
 * not even its domain.
 */
export function writersInDomain(ctx: RequestContext): void {
  writersOnly(ctx);
  sameDomain(ctx);
}

/** The rules an engine runs unless it is given others: writes by the owner and listed writers, from the scope's domain; no validation. */
export const DEFAULT_RULES: CommitRules = { authorize: writersInDomain };

/** Runs one rule, holding it to returning nothing (see CommitRules). */
export function runRule(call: () => unknown): void {
  const out = call();
  if (out !== undefined) throw new Error('a commit rule returned a value; rules are synchronous and return nothing');
}

/** Throws `too_large` if the state's JSON text is over the limit; returns its size in bytes. */
export function checkStateSize(state: Json, limits: StateLimits): number {
  const size = jsonBytes(state);
  if (size > limits.maxStateBytes) {
    throw new PatchbayError('too_large', `a scope's state may be at most ${limits.maxStateBytes} bytes`, {
      limit: 'maxStateBytes',
      max: limits.maxStateBytes,
      actual: size,
    });
  }
  return size;
}

/** Checks a state's depth and size; returns its size in bytes. */
export function checkState(state: Json, limits: StateLimits): number {
  checkValueDepth(state, limits.maxValueDepth);
  return checkStateSize(state, limits);
}

/** Everything the decision depends on. */
export interface GroupInput {
  id: string;
  head: Head;
  /** The state at head.ii (never changed: the decision works on a copy). */
  base: Json;
  /** The requests, in arrival order. */
  group: Pending[];
  /** The log's records for the group's (session, si) keys, by retryKey. */
  retries: Map<string, PatchRecord>;
  limits: StateLimits;
  /** The commit time stamped on the records. */
  now: number;
  rules: CommitRules;
}

export interface Decision {
  /** The records to append, consecutive from head.ii + 1. */
  records: PatchRecord[];
  /** One per request, in order. */
  outcomes: Outcome[];
  /** The state after the records (the base itself when there are none). */
  state: Json;
  /** The size of `state` in bytes. */
  size: number;
}

/** Decides a group: each request in arrival order against the head and the requests before it. */
export function decide(input: GroupInput): Decision {
  const { head, limits } = input;
  // Each patch is checked op by op against a running size and depth budget (shared/patch.ts),
  // so a patch that would break a limit is refused at that op, whatever else its group holds.
  // The exact size and depth of the result are then checked once for the group; only if that
  // fails (the budget started from a stale size) is the group redone checking every patch.
  const fast = runGroup(input, false);
  if (fast.records.length === 0) return { ...fast, size: head.meta.size };
  try {
    return { ...fast, size: checkState(fast.state, limits) };
  } catch {
    const slow = runGroup(input, true);
    return { ...slow, size: slow.records.length > 0 ? jsonBytes(slow.state) : head.meta.size };
  }
}

function runGroup(input: GroupInput, checkEach: boolean) {
  const { id, head, group, retries, base, now, limits, rules } = input;
  let state: Json | null = null; // working copy, made on first use
  const budget: Budget = { maxBytes: limits.maxStateBytes, maxDepth: limits.maxValueDepth, bytes: head.meta.size };
  let acceptedBytes = budget.bytes;
  const records: PatchRecord[] = [];
  const inGroup = new Map<string, PatchRecord>();
  const outcomes: Outcome[] = [];
  /** Chains with an item refused in this group (Chain.refused holds those refused in earlier groups). */
  const refusedHere = new Set<Chain>();
  const refuse = (p: Pending, error: PatchbayError): void => {
    outcomes.push({ error });
    if (p.chain) refusedHere.add(p.chain);
  };
  const rebuild = (): Json => {
    let s = cloneJson(base);
    for (const r of records) s = applyPatch(s, r.patch);
    return s;
  };
  for (const p of group) {
    const next = head.ii + records.length + 1;
    const { req } = p;
    try {
      runRule(() => rules.authorize({ id, head, ii: next, user: p.user, domain: p.domain, req }));
      // A tag is immutable: its index entry and its mirror row say what it was created with (shared/domains/tags.ts).
      if (head.meta.type === TAG_SCOPE_TYPE) throw new PatchbayError('forbidden', 'a tag is not patched: delete it and tag again', { id });
    } catch (err) {
      refuse(p, asPatchbayError(err));
      continue;
    }
    if (req.session !== undefined) {
      const key = retryKey(req.session, req.si as number);
      const prior = retries.get(key) ?? inGroup.get(key);
      if (prior) {
        if (prior.hash === p.hash) outcomes.push({ ack: { id, ii: prior.ii, duplicate: true } });
        else refuse(p, new PatchbayError('duplicate_mismatch', `session ${req.session} already sent a different patch as si ${req.si}`, { ii: prior.ii }));
        continue;
      }
    }
    if (req.ii !== undefined && p.chain && (p.chain.refused || refusedHere.has(p.chain))) {
      refuse(p, new PatchbayError('out_of_sync', 'an earlier patch of this scope in the batch was refused, so this one was not applied', { head: next - 1 }));
      continue;
    }
    if (req.ii !== undefined && req.ii > next) {
      refuse(p, new PatchbayError('replay_required', `patch ii ${req.ii} is ahead of the next index ${next}`, { expected: next }));
      continue;
    }
    if (req.ii !== undefined && req.ii < next) {
      refuse(p, new PatchbayError('out_of_sync', `patch ii ${req.ii} is at or below head ${next - 1}`, { head: next - 1 }));
      continue;
    }
    try {
      state = applyPatch(state ?? cloneJson(base), req.patch, budget);
      if (checkEach) budget.bytes = checkState(state, limits);
      if (rules.validate) runRule(() => rules.validate?.({ id, head, ii: next, user: p.user, domain: p.domain, req, state: state as Json }));
    } catch (err) {
      refuse(p, asPatchbayError(err));
      state = rebuild();
      budget.bytes = acceptedBytes;
      continue;
    }
    acceptedBytes = budget.bytes;
    const record: PatchRecord = {
      scope: id,
      ii: next,
      patch: req.patch,
      at: now,
      by: p.user,
      session: req.session ?? null,
      si: req.si ?? null,
      hash: p.hash,
      epoch: head.epoch,
    };
    records.push(record);
    if (req.session !== undefined) inGroup.set(retryKey(req.session, req.si as number), record);
    outcomes.push({ ack: { id, ii: next } });
  }
  return { records, outcomes, state: state ?? base };
}
