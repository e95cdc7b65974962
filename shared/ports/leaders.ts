/**
 * The scope-leader port: which instance may commit to a scope, and how a request that reached
 * another instance is handed to it. Only deployments of several instances sharing one ledger
 * need it (Google); embedded mode has none, and its one process commits every scope.
 *
 * The write lease: one holder per scope at a time, until `expires`; each new holder gets a new
 * `epoch`, higher than every earlier one. Taking the lease moves the scope's write epoch in the
 * ledger in the same atomic step, and `ScopeLog.commit(id, plan, fence)` commits only while the
 * scope's write epoch is still `fence`: so a holder whose lease passed on (it paused, was cut off,
 * or died mid-group) can never commit again, whatever its clock says.
 *
 * The hand-over: a request document in the scope's inbox, created by the instance the request
 * reached (`send`), taken by the leader's inbox listener (`listen`), which claims a batch, commits
 * it through its own group queue, and writes each request's outcome (`answer`), which `send`'s
 * promise then resolves with. A request outlives its sender's instance: a new leader answers what
 * an old one claimed but never answered (see `InboxRequest.claimed`).
 */
import { type ErrorCode, PatchbayError } from '../errors.js';

/** The refusal of a commit fenced by an epoch the scope's write lease has left: nothing was written. */
export function leaseLost(id: string, fence: number | undefined): PatchbayError {
  return new PatchbayError('unavailable', `this instance no longer leads scope ${id}; retry`, { id, reason: 'write_lease_lost', epoch: fence ?? null });
}

/** Whether an error is a fenced commit's refusal (leaseLost). */
export function isLeaseLost(err: unknown): boolean {
  return err instanceof PatchbayError && err.details.reason === 'write_lease_lost';
}

/** The answer to `acquire`: the lease is ours at `epoch`, or another instance holds it until `expires`. */
export type LeaseAnswer = { mine: true; epoch: number; expires: number } | { mine: false; holder: string; expires: number };

/** A request handed over: what the leader needs to decide it exactly as the instance it reached would. */
export interface HandedRequest {
  /** The PatchRequest as JSON text (exactly as received). */
  req: string;
  user: string;
  domain: string;
  /**
   * Whether committing the request twice is harmless: it has a (session, si), so a second commit
   * is recognised as a retry. Such requests are not claimed (one write less per request).
   */
  retriable: boolean;
  /** The request document's id: a fresh random one when absent (it must be unique per request). */
  key?: string;
  /**
   * Where the leader may also send the outcome by a faster way than the document (the sending
   * engine's holder name: shared/engine/handover-bus.ts); kept and handed over as it is.
   */
  replyTo?: string;
}

/** A request document as the leader's listener sees it. */
export interface InboxRequest extends HandedRequest {
  /** Its document id (unique per request). */
  key: string;
  /**
   * The epoch of the leader that claimed it, 0 when none did (a retriable request is never
   * claimed). A claim older than the listener's epoch without an answer means an earlier leader
   * may or may not have committed it.
   */
  claimed: number;
}

/** What a request came to: its ack (as the leader's engine returned it) or its error. */
export type HandedOutcome = { ack: unknown } | { error: { code: ErrorCode; message: string; details: Record<string, unknown> } };

export interface ScopeLeaders {
  /**
   * Takes or renews the write lease of scope `id` for `holder` until `now + ttlMs`: ours when it is
   * free, lapsed or already ours (a renewal keeps the epoch; a new holder gets epoch + 1 and moves
   * the scope's write epoch with it). Throws `scope_not_found` when there is no such scope.
   */
  acquire(id: string, holder: string, ttlMs: number, now?: number): Promise<LeaseAnswer>;
  /**
   * Extends the lease `holder` holds at `epoch` to `now + ttlMs`; false (and nothing changes) when
   * the lease has passed to another epoch. A lapsed lease nobody took is renewed: its epoch is
   * still the scope's write epoch, so no one else can have committed meanwhile.
   */
  renew(id: string, holder: string, epoch: number, ttlMs: number, now?: number): Promise<boolean>;
  /** Ends the lease `holder` holds at `epoch` now (others may take it at once); nothing when it has passed on. */
  release(id: string, holder: string, epoch: number): Promise<void>;
  /**
   * Hands a request to the scope's leader: creates its request document (id `request.key`, or a
   * fresh one), and resolves with the outcome written to it, or with null once `waitMs` passed
   * without one (the request stays in the inbox; the caller may take the lease and answer it
   * itself, then wait again with `key`, which creates nothing). Whoever reads the outcome first,
   * the sender deletes the request document once its outcome is written and read here.
   */
  send(id: string, request: HandedRequest, waitMs: number, key?: string): Promise<{ key: string; outcome: HandedOutcome | null }>;
  /**
   * Listens to scope `id`'s inbox while this instance leads it at `epoch`: `onRequests` gets every
   * unanswered request, once per listener, in creation order, after this listener claimed the ones
   * not retriable for `epoch` (`claimed` is the claim found before). Returns the function that stops listening.
   */
  listen(id: string, epoch: number, onRequests: (requests: InboxRequest[]) => void, onError: (err: unknown) => void): () => Promise<void>;
  /**
   * Gives back this instance's claims on requests `keys` of scope `id` (their commit was refused
   * by the fence, so nothing of them was written), unless another leader claimed them since.
   * The function `listen` returned does this for claims it had not handed over yet, before it
   * resolves; so a leader that stops listening and then releases its lease leaves no claim of a
   * request it never decided.
   */
  unclaim(id: string, keys: string[]): Promise<void>;
  /** Writes the outcome of request `key` of scope `id` (several at once: one batch). */
  answer(id: string, answers: Array<{ key: string; outcome: HandedOutcome }>): Promise<void>;
}
