/**
 * A live scope: the server's state at the last index this client knows (`confirmed`), the local
 * patches not yet folded into it (`pending`, in order), and the optimistic `state`, which is always
 * `confirmed` with `pending` applied by the server's own apply (./apply.ts).
 *
 * Guarantees, enforced here:
 * - Every patch is sent with its predicted index (`ii`) and a retry key `(session, si)` fixed when
 *   the patch is made: a resend after a lost answer is recognised by the server and acknowledged
 *   once, never applied twice. With `ordering: 'head'` patches carry no index: the server applies
 *   each to its head as it arrives (in the order sent), and the index comes with the ack; one that
 *   does not apply there is a conflict, and a later one (even in the same request) is still
 *   applied. Everything below holds for both.
 * - Patches of one scope are sent in the order they were made, with consecutive predicted
 *   indices: all those pending in one `POST /v1/batch` (committed together by the server's group
 *   commit), one request in flight per scope; patches made meanwhile go in the next request.
 * - Server events are applied in index order, each once. While a patch is in flight, events at or
 *   past its index wait for its answer, so this client's own patch is recognised by the index the
 *   server acknowledged, not mistaken for another writer's.
 * - On `out_of_sync`/`replay_required` (another writer got there first) the missing patches are
 *   fetched from history and applied; the pending patches are re-applied on top, and one that no
 *   longer applies is dropped, reported as a `conflict`, and its promise rejects with `patch_failed`.
 * - Watchers see the optimistic state after every change, one consistent state at a time.
 * - Composing: just before they are sent, patches not yet sent are joined into one patch (their
 *   operations in order, folded by ./collapse.ts, under caps counted after folding): one index,
 *   one ack, one log entry and one event for all of them. By default (`join: 'tick'`) only the
 *   patches made in one tick are joined (from a patch until the microtask it queues runs: in
 *   practice one synchronous run of code), as the seed system merged a tick's
 *   mutations into one message; with `join: 'send'` all those waiting are, as ShareDB composes the
 *   ops pending while one is in flight. A joined patch the server refuses (any refusal but
 *   `out_of_sync`/`replay_required`, which resend it as it is) is split back into the patches it
 *   was made of, each then sent alone and judged as without composing. Only patches never sent
 *   are joined.
 */
import { ERROR_CODES, type ErrorCode } from '../../shared/errors.js';
import { cloneJson, type Json, jsonBytes } from '../../shared/json.js';
import type { Operation, Patch } from '../../shared/wire.js';
import { applyPatch } from './apply.js';
import { fold } from './collapse.js';
import { diff } from './diff.js';
import { Emitter } from './emitter.js';
import { errorFrom, errorOf, PatchbayClientError } from './errors.js';
import { UndoStack } from './history.js';
import type { Transport } from './http.js';
import type { OfflineStore, SavedPending, SavedScope } from './offline.js';
import { backoff, ScopeStream, type StreamHandlers, type StreamStatus } from './stream.js';

/** The server's acknowledgement of one patch: the index it was committed at. */
export interface Ack {
  id: string;
  ii: number;
  /** The server recognised a resend of a patch it had already committed. */
  duplicate?: boolean;
}

/** A committed patch, as streams and history carry it. */
export interface PatchEventData {
  ii: number;
  patch: Patch;
  at?: number;
  by?: string;
}

/**
 * What a watcher receives: the optimistic state, and the patch that turned the previous state
 * into it (`null` on the first call). After a rebase that patch replaces the root.
 */
export type Watcher = (state: Json, patch: Patch | null) => void;

export interface ConflictEvent {
  /** The local patch that no longer applies and was dropped. */
  patch: Patch;
  error: PatchbayClientError;
}

export interface ScopeEvents extends Record<string, unknown> {
  conflict: ConflictEvent;
  /** A patch the server refused for another reason than a conflict (forbidden, too_large...), or the stream's end. */
  error: PatchbayClientError;
  status: StreamStatus;
}

interface Pending {
  patch: Patch;
  si: number;
  /** The patches a composed one was joined from (each keeps its own si, promise and undo entry). */
  parts?: Pending[];
  /** A composed patch's JSON size in UTF-8 bytes (an upper bound; ./scope.ts `foldOnto`). */
  bytes?: number;
  /** Its operations' JSON sizes, each measured when first needed for composing. */
  opBytes?: number[];
  /** Split back from a refused composed patch: sent on its own from then on, so the server judges it alone. */
  alone?: boolean;
  /** The synchronous run of code (`LiveScope.tick`) it was made in: with `join: 'tick'`, only patches of one tick are joined. */
  tick?: number;
  /** The index the server committed it at, once acknowledged. */
  ack?: number;
  /** It went out in a request at least once (whose answer may have been lost). */
  sent?: boolean;
  resolve(ack: Ack): void;
  reject(err: PatchbayClientError): void;
}

export interface ScopeContext {
  transport: Transport;
  session: string;
  nextSi(): number;
  onClose(scope: LiveScope): void;
  /** The client's storage (./offline.ts), when it has one: every change is stored, and nothing is sent before it is. */
  store?: OfflineStore;
  /** Follows the scope's events on a shared connection; without it the scope opens its own stream. */
  subscribe?(id: string, handlers: StreamHandlers): { close(): void };
  /** Join the patches not yet sent into one before sending (see the guarantees above), within these caps. */
  compose?: ComposeLimits;
  /** `predicted` (the default): each patch carries the index it predicts; `head`: none, the server places it (see above). */
  ordering?: Ordering;
}

/**
 * How a client's patches are ordered against other writers' (client/README.md, Consistency model):
 * `predicted`, each applies only to the state its author saw (else it is rebased and resent);
 * `head`, each applies to whatever the server's head is when it arrives.
 */
export type Ordering = 'predicted' | 'head';

/**
 * Which patches are joined into one (client/README.md, "Composed"), and how large one joined patch
 * may grow: below the server's PATCHBAY_MAX_OPS and PATCHBAY_MAX_PATCH_BYTES.
 */
export interface ComposeLimits {
  /**
   * `tick` (the default): the patches made in one synchronous run of code (one event handler, one
   * loop); `send`: every patch waiting when a request leaves, including those made in earlier
   * ticks while the previous request was in flight.
   */
  join?: 'tick' | 'send';
  /** Most operations in one composed patch, after folding (default 500). */
  maxOps?: number;
  /** Most bytes of JSON in one composed patch, after folding (default 64 KiB). */
  maxBytes?: number;
}

export class LiveScope extends Emitter<ScopeEvents> {
  /** The optimistic local state: the server's state at `ii` with this client's pending patches applied. Undefined until `ready`. */
  state: Json | undefined;
  /** The index of the last server state folded in (every patch up to it is applied). */
  ii = 0;
  /** Resolves with the first state; rejects when the scope cannot be read (`scope_not_found`...). */
  readonly ready: Promise<Json>;
  status: StreamStatus = 'connecting';

  private confirmed: { ii: number; state: Json } | undefined;
  private pending: Pending[] = [];
  private inflight: { pending: Set<Pending>; ii: number } | undefined;
  /** How many patches one request may carry (lowered when the server says its limit is smaller). */
  private batchMax = 100;
  /** The caps of a composed patch (lowered when the server refuses one as too large); undefined: no composing. */
  private composeCaps: { join: 'tick' | 'send'; maxOps: number; maxBytes: number } | undefined;
  /** Counts the synchronous runs of code that made patches (`Pending.tick`); `tickOpen` while one runs. */
  private tick = 0;
  private tickOpen = false;
  private held: PatchEventData[] = [];
  private sending = false;
  private closed = false;
  private catchingUp: Promise<void> | undefined;
  private readonly watchers = new Set<Watcher>();
  private syncWaiters: Array<{ resolve(): void; reject(err: PatchbayClientError): void }> = [];
  private readonly stream: { close(): void };
  private settleReady!: { resolve(s: Json): void; reject(e: PatchbayClientError): void };
  private readonly undoStack = new UndoStack();
  /** Set while `undo()`/`redo()` sends its inverse through `patch()`. */
  private recording: 'undo' | 'redo' | undefined;
  /** What stays stored once the scope is closed (its pending patches are resent when it is opened again). */
  private lastSaved: SavedScope | undefined;

  constructor(
    readonly id: string,
    private readonly ctx: ScopeContext,
    initial?: { ii: number; state: Json; pending?: SavedPending[] },
  ) {
    super();
    if (ctx.compose) {
      const { join = 'tick', maxOps = 500, maxBytes = 64 * 1024 } = ctx.compose;
      this.composeCaps = { join, maxOps, maxBytes };
    }
    this.ready = new Promise<Json>((resolve, reject) => {
      this.settleReady = { resolve, reject };
    });
    this.ready.catch(() => {}); // a caller who never awaits it must not see an unhandled rejection
    if (initial?.pending?.length) {
      // Restored from storage (./offline.ts): no caller awaits them; they may have reached the
      // server before the restart (`sent`), so only the server's answer may drop them.
      this.pending = initial.pending.map((p) => ({ patch: p.patch, si: p.si, sent: true, resolve() {}, reject() {} }));
      queueMicrotask(() => void this.flush());
    }
    if (initial) this.setConfirmed(initial.ii, initial.state);
    const handlers: StreamHandlers = {
      lastId: () => this.confirmed?.ii,
      onEvent: (type, data) => this.onStreamEvent(type, data),
      onStatus: (s) => {
        this.status = s;
        this.emit('status', s);
      },
      onFatal: (err) => {
        this.settleReady.reject(err);
        this.emit('error', err);
      },
    };
    // The client's shared connection (client/src/mux.ts) when it has one, else a stream of its own.
    this.stream = ctx.subscribe ? ctx.subscribe(id, handlers) : new ScopeStream(ctx.transport, `/v1/scopes/${encodeURIComponent(id)}/events`, handlers);
  }

  /**
   * Applies `patch` locally at once (watchers see it) and sends it. Resolves with the server's
   * ack; rejects with a PatchbayClientError: `patch_failed` at once when it does not apply to the
   * current state (nothing changes), or later when a rebase or the server finds it no longer applies
   * (also a `conflict` event), or the server's refusal (`forbidden`, `too_large`...).
   */
  patch(patch: Patch): Promise<Ack> {
    if (this.closed) return Promise.reject(new PatchbayClientError('closed', 'the scope is closed'));
    if (this.state === undefined) return quiet(this.ready.then(() => this.patch(patch)));
    let next: Json;
    try {
      next = applyPatch(this.state, patch);
    } catch (err) {
      return Promise.reject(asClientError(err));
    }
    if (!this.tickOpen) {
      // A new synchronous run of code: it ends with this microtask, which sends what it made (one
      // flush per tick, not per patch).
      this.tickOpen = true;
      this.tick++;
      queueMicrotask(() => {
        this.tickOpen = false;
        this.flush().catch((err: unknown) => this.emit('error', asClientError(err)));
      });
    }
    const p = { patch, si: this.ctx.nextSi(), tick: this.tick } as Pending;
    const promise = new Promise<Ack>((resolve, reject) => {
      p.resolve = resolve;
      // A patch made and not awaited (fire and forget) must not become an unhandled rejection when
      // it conflicts: the same failure is also a `conflict` or `error` event. Awaiting it still
      // throws. (The handler is added only when it rejects: one promise less per patch.)
      p.reject = (err) => {
        promise.catch(() => {});
        reject(err);
      };
    });
    this.pending.push(p);
    if (this.recording) this.undoStack.did(this.recording, this.state, patch, next, promise);
    else this.undoStack.made(this.state, patch, next, promise);
    this.state = next;
    this.notify(patch);
    return promise;
  }

  /**
   * The proxy style: `fn` mutates a draft (a copy of the current state) in place, or returns a new
   * state; the difference becomes one RFC 6902 patch, sent as `patch()` does. Resolves with its ack,
   * or null when `fn` changed nothing (nothing is sent).
   *
   * @example
   * await todo.draft((s) => { s.items.push('eggs'); s.done = false; });
   */
  // biome-ignore lint/suspicious/noExplicitAny: the state's shape is the app's; a caller names it with T (`draft<Todo>(...)`)
  draft<T = any>(fn: (draft: T) => unknown): Promise<Ack | null> {
    return quiet(this.drafted(fn as (draft: unknown) => unknown));
  }

  private async drafted(fn: (draft: unknown) => unknown): Promise<Ack | null> {
    if (this.state === undefined) await this.ready;
    const before = this.state as Json;
    const copy = cloneJson(before);
    const returned = fn(copy);
    // JSON text is what the server stores: undefined members vanish, as they would on the wire.
    const after = JSON.parse(JSON.stringify(returned === undefined ? copy : returned) ?? 'null') as Json;
    const ops = diff(before, after);
    if (ops.length === 0) return null;
    // The diff must give exactly the drafted state under the server's semantics; else send the whole state.
    let exact = false;
    try {
      exact = JSON.stringify(applyPatch(before, ops)) === JSON.stringify(after);
    } catch {}
    return this.patch(exact ? ops : [{ op: 'replace', path: '', value: after }]);
  }

  /**
   * Undoes this client's last own patch (not undone yet, not refused) with a new patch: its inverse,
   * computed from the state it applied to, sent like any patch (ordered, checked, retried). Each
   * place it restores is first tested to still hold what the patch put there, so if someone else
   * changed the same place since, the undo rejects with `patch_failed` (at once when this client
   * already sees their change; else as a `conflict`, like any patch) and changes nothing.
   * Resolves with its ack, or null when there is nothing to undo.
   */
  undo(): Promise<Ack | null> {
    return quiet(this.revert('undo'));
  }

  /** Redoes the last undone patch (as `undo()` does, the other way); null when there is nothing to redo. A new patch of this client's clears the redos. */
  redo(): Promise<Ack | null> {
    return quiet(this.revert('redo'));
  }

  /** Whether `undo()` / `redo()` has something to send. */
  get canUndo(): boolean {
    return this.undoStack.canUndo();
  }

  get canRedo(): boolean {
    return this.undoStack.canRedo();
  }

  private async revert(which: 'undo' | 'redo'): Promise<Ack | null> {
    if (this.state === undefined) await this.ready;
    const inverse = this.undoStack.take(which);
    if (!inverse) return null;
    this.recording = which; // patch() records synchronously, before it returns
    let sent: Promise<Ack>;
    try {
      sent = this.patch(inverse);
    } finally {
      this.recording = undefined;
    }
    return sent;
  }

  /**
   * The committed patches `from..to` (inclusive; default the whole log), from the log tail and
   * cold storage alike (`GET /v1/scopes/{id}/patches`).
   */
  async history(range: { from?: number; to?: number } = {}): Promise<PatchEventData[]> {
    const q = new URLSearchParams();
    if (range.from !== undefined) q.set('from', String(range.from));
    if (range.to !== undefined) q.set('to', String(range.to));
    const res = await this.ctx.transport.send('GET', `/v1/scopes/${encodeURIComponent(this.id)}/patches${q.size > 0 ? `?${q}` : ''}`);
    if (!res.ok) throw await errorFrom(res);
    return (await res.text())
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as PatchEventData);
  }

  /** The server's state of this scope at index `ii` (0: the initial state), rebuilt by the server (`GET /v1/scopes/{id}/at/{ii}`). */
  async stateAt(ii: number): Promise<Json> {
    const body = await this.ctx.transport.json<{ state: Json }>('GET', `/v1/scopes/${encodeURIComponent(this.id)}/at/${ii}`);
    return body.state;
  }

  /** Calls `watcher` with the current state (at once, or when ready) and after every change; returns the unsubscribe function. */
  watch(watcher: Watcher): () => void {
    this.watchers.add(watcher);
    if (this.state !== undefined) watcher(this.state, null);
    else void this.ready.then((s) => this.watchers.has(watcher) && watcher(s, null)).catch(() => {});
    return () => this.watchers.delete(watcher);
  }

  /** Resolves when every local patch is acknowledged and folded into the server state this client holds. */
  synced(): Promise<void> {
    if (this.closed) return Promise.reject(new PatchbayClientError('closed', 'the scope is closed'));
    if (this.pending.length === 0 && this.confirmed) return Promise.resolve();
    return new Promise((resolve, reject) => this.syncWaiters.push({ resolve, reject }));
  }

  /** Stops the stream; patches not yet acknowledged are given up (their promises reject with `closed`). */
  close(): void {
    if (this.closed) return;
    this.lastSaved = this.saved();
    this.closed = true;
    this.stream.close();
    const err = new PatchbayClientError('closed', 'the scope was closed');
    for (const p of this.pending) if (p.ack === undefined) p.reject(err);
    this.pending = [];
    for (const w of this.syncWaiters) w.reject(err);
    this.syncWaiters = [];
    this.settleReady.reject(err);
    this.ctx.onClose(this);
  }

  // --- server events ---------------------------------------------------------------------

  private onStreamEvent(type: string, data: string): void {
    if (this.closed) return;
    if (type === 'state') {
      const e = JSON.parse(data) as { ii: number; state: Json };
      if (!this.confirmed) this.setConfirmed(e.ii, e.state);
      else if (e.ii > this.confirmed.ii) this.replaceConfirmed(e.ii, e.state);
    } else if (type === 'patch') {
      this.onPatch(JSON.parse(data) as PatchEventData);
    }
  }

  private setConfirmed(ii: number, state: Json): void {
    this.confirmed = { ii, state };
    this.ii = ii;
    this.state = state;
    if (this.pending.length > 0) this.rebase(); // patches restored from storage, on top of the state stored with them
    this.settleReady.resolve(this.state);
    for (const w of this.watchers) w(this.state, null);
    this.checkSynced();
  }

  /** A state past what this client had (a stream that restarted from a snapshot): patches acknowledged up to it are in it. */
  private replaceConfirmed(ii: number, state: Json): void {
    this.confirmed = { ii, state };
    this.ii = ii;
    this.pending = this.pending.filter((p) => p.ack === undefined || p.ack > ii);
    this.rebase();
  }

  /** One committed patch, from the stream or from history, applied in index order exactly once. */
  private onPatch(e: PatchEventData): void {
    const c = this.confirmed;
    if (!c || this.closed || e.ii <= c.ii) return;
    if (this.inflight && e.ii >= this.inflight.ii) {
      this.held.push(e);
      return;
    }
    if (e.ii > c.ii + 1) {
      void this.catchUp().catch((err) => this.emit('error', asClientError(err)));
      return;
    }
    try {
      c.state = applyPatch(c.state, e.patch);
    } catch (err) {
      // Cannot happen while the client applies exactly as the server does; if it does, say so loudly.
      this.emit('error', new PatchbayClientError('internal', `a committed patch (ii ${e.ii}) does not apply locally: ${asClientError(err).message}`));
      return;
    }
    c.ii = e.ii;
    this.ii = e.ii;
    const mine = this.pending.findIndex((p) => p.ack === e.ii);
    if (mine === 0) {
      this.pending.shift(); // this client's own patch, next in line: the optimistic state already has it
      this.checkSynced();
      return;
    }
    if (this.pending.length === 0) {
      this.state = c.state;
      this.notify(e.patch);
    } else {
      this.rebase();
    }
  }

  /** The optimistic state rebuilt: `confirmed` with each pending patch re-applied; one that no longer applies is dropped. */
  private rebase(): void {
    const c = this.confirmed as { ii: number; state: Json };
    let s = c.state;
    const kept: Pending[] = [];
    const dropped: Array<[Pending, PatchbayClientError]> = [];
    const queue = [...this.pending];
    for (let i = 0; i < queue.length; i++) {
      const p = queue[i] as Pending;
      if (p.ack !== undefined && p.ack <= c.ii) continue; // committed and folded into the confirmed state
      try {
        s = applyPatch(s, p.patch);
        kept.push(p);
      } catch (err) {
        // A patch the server may have committed (acknowledged, in flight, or sent before with the
        // answer lost) is the server's to judge: keep it; its answer (a resend is recognised by its
        // (session, si)) or its event decides.
        if (p.ack !== undefined || p.sent || this.inflight?.pending.has(p)) {
          kept.push(p);
          continue;
        }
        if (p.parts) {
          queue.splice(i + 1, 0, ...p.parts); // a composed patch not sent yet: its parts are judged one by one
          continue;
        }
        dropped.push([p, asClientError(err)]); // reported once the list is rebuilt (no splicing while iterating)
      }
    }
    this.pending = kept;
    this.state = s;
    this.notify([{ op: 'replace', path: '', value: s }]);
    for (const [p, err] of dropped) this.conflict(p, err);
    this.checkSynced();
  }

  /** Fetches the patches after `confirmed` from history and applies them. */
  private catchUp(): Promise<void> {
    this.catchingUp ??= (async () => {
      try {
        const from = (this.confirmed?.ii ?? 0) + 1;
        const res = await this.ctx.transport.send('GET', `/v1/scopes/${encodeURIComponent(this.id)}/patches?from=${from}`);
        if (!res.ok) throw await errorFrom(res);
        for (const line of (await res.text()).split('\n')) if (line.trim() !== '') this.onPatch(JSON.parse(line) as PatchEventData);
      } finally {
        this.catchingUp = undefined;
      }
    })();
    return this.catchingUp;
  }

  // --- sending -----------------------------------------------------------------------------

  /** The highest index known committed: the confirmed state's, or a later ack of this client. */
  private head(): number {
    let h = this.confirmed?.ii ?? 0;
    for (const p of this.pending) if (p.ack !== undefined && p.ack > h) h = p.ack;
    return h;
  }

  /**
   * Sends the pending patches until none is left unacknowledged: all of them (up to `batchMax`)
   * in one `POST /v1/batch` with consecutive predicted indices, or one alone through
   * `POST /v1/scopes/{id}/patches`. Answers are handled in order; the first refusal decides what
   * happens next (a refusal after it is a consequence: its predicted index counted on the one before).
   */
  private async flush(): Promise<void> {
    if (this.sending || this.closed) return;
    this.sending = true;
    let attempt = 0;
    try {
      for (;;) {
        this.compose();
        // Nothing leaves before it is stored with its si (./offline.ts): a restart resends it, never
        // re-numbers it. Patches made while the store writes are not in this write: they wait for the next.
        const stored = this.ctx.store ? new Set(this.pending) : undefined;
        if (this.ctx.store) await this.ctx.store.durable();
        if (this.closed) break;
        const unacked = this.pending.filter((x) => x.ack === undefined);
        const batch = (stored ? unacked.filter((x) => stored.has(x)) : unacked).slice(0, this.batchMax);
        if (batch.length === 0) {
          if (unacked.length > 0) continue; // made during the store's write: stored (and composed) next round
          break;
        }
        const base = this.head();
        this.inflight = { pending: new Set(batch), ii: base + 1 };
        for (const p of batch) p.sent = true;
        let outcomes: Array<Ack | PatchbayClientError>;
        try {
          outcomes = await this.send(batch, base);
        } catch (err) {
          const e = asClientError(err);
          outcomes = batch.map(() => e);
        }
        this.inflight = undefined;
        let first: PatchbayClientError | undefined;
        let dropped = false;
        outcomes.forEach((o, k) => {
          const p = batch[k] as Pending;
          if (!(o instanceof PatchbayClientError)) {
            this.acked(p, o);
            return;
          }
          first ??= o;
          if (o.code === 'out_of_sync' || o.code === 'replay_required' || o.retryable) return; // resent next round
          dropped = true;
          // A refusal changes nothing (guarantee 3): a composed patch's parts are each judged again, alone.
          if (p.parts) this.split(p, o);
          else if (o.code === 'patch_failed') this.conflict(p, o);
          else {
            this.pending.splice(this.pending.indexOf(p), 1);
            p.reject(o);
            this.emit('error', o);
          }
        });
        this.releaseHeld();
        if (dropped) this.rebase();
        const e = first as PatchbayClientError | undefined;
        if (e === undefined || dropped) {
          attempt = 0;
        } else if (e.code === 'out_of_sync' || e.code === 'replay_required') {
          const before = this.confirmed?.ii;
          try {
            await this.catchUp();
          } catch (err) {
            this.emit('error', asClientError(err));
          }
          // No progress (the missing patches are not readable yet): wait before asking again.
          if (this.confirmed?.ii === before) await this.ctx.transport.conn.pause(backoff(attempt++));
        } else {
          // Retryable: the same patches with the same (session, si), which the server acknowledges once.
          await this.ctx.transport.conn.pause(backoff(attempt++));
        }
      }
    } finally {
      this.sending = false;
      this.inflight = undefined;
    }
    // Acknowledged patches whose index the stream has not brought yet: fold them from history.
    if (!this.closed && this.pending.some((p) => p.ack !== undefined)) {
      await this.catchUp().catch((err) => this.emit('error', asClientError(err)));
    }
    this.checkSynced();
  }

  /** One request for `batch` (predicted indices from `base + 1`): an ack or an error per patch, in order. */
  private async send(batch: Pending[], base: number): Promise<Array<Ack | PatchbayClientError>> {
    const { transport, session } = this.ctx;
    const id = this.id;
    // Predicted indices, or none (`ordering: 'head'`): the server places each patch at its head.
    const at = (k: number): { ii?: number } => (this.ctx.ordering === 'head' ? {} : { ii: base + k + 1 });
    if (batch.length === 1) {
      const p = batch[0] as Pending;
      const res = await transport.send('POST', `/v1/scopes/${encodeURIComponent(id)}/patches`, { body: { patch: p.patch, ...at(0), session, si: p.si } });
      return [res.ok ? ((await res.json()) as Ack) : await errorFrom(res)];
    }
    const res = await transport.send('POST', '/v1/batch', {
      body: { patches: batch.map((p, k) => ({ scope: id, patch: p.patch, ...at(k), session, si: p.si })) },
    });
    if (!res.ok) {
      const err = await errorFrom(res);
      // A server without the batch route, or with a smaller batch or body limit: send fewer at a time.
      if (err.code === 'not_found' || err.code === 'method_not_allowed') this.batchMax = 1;
      else if (err.code === 'too_large') this.batchMax = Math.max(1, Math.min(Math.floor(batch.length / 2), Number(err.details.max) || batch.length));
      else return batch.map(() => err);
      return batch.map(() => new PatchbayClientError('unavailable', 'resending in smaller batches', 503));
    }
    const { results } = (await res.json()) as { results: Array<Ack | { id: string; error: { code: ErrorCode; message?: string } & Record<string, unknown> }> };
    return results.map((r) => ('error' in r ? errorOf(r.error, ERROR_CODES[r.error.code] ?? 0) : r));
  }

  /**
   * With `compose`: joins each run of patches not yet sent (a suffix of `pending`) into one patch
   * with a new si, within the caps (counted on the folded operations, so a burst of replaces of one
   * path is one operation however long), and with `join: 'tick'` within one tick. A patch that went
   * out once is never changed: its resend must be the same patch under the same si.
   */
  private compose(): void {
    const caps = this.composeCaps;
    if (!caps) return;
    const first = this.pending.findIndex((p) => p.ack === undefined && !p.sent && !p.alone);
    if (first < 0 || first === this.pending.length - 1) return;
    const out = this.pending.slice(0, first);
    let run: Pending[] = [];
    /** The run's operations folded as collapse() folds them, each one's JSON size (an upper bound), and their sum (without the array's commas and brackets). */
    let ops: Operation[] = [];
    let sizes: number[] = [];
    let bytes = 0;
    const close = () => {
      if (run.length > 1) out.push(this.joined(run, ops, bytes + ops.length + 1));
      else out.push(...run);
      run = [];
      ops = [];
      sizes = [];
      bytes = 0;
    };
    for (const p of this.pending.slice(first)) {
      // Only runs of patches never sent: one sent (its resend must be the same), acknowledged (a
      // split can leave one committed after the parts put back before it) or split stays as it is.
      if (p.ack !== undefined || p.sent || p.alone) {
        close();
        out.push(p);
        continue;
      }
      if (run.length > 0 && caps.join === 'tick' && p.tick !== (run[0] as Pending).tick) close();
      // Folded onto the run: within the caps, it joins; else the run closes and it starts the next.
      const before = { n: ops.length, bytes, last: ops[ops.length - 1], lastSize: sizes[sizes.length - 1] };
      bytes = foldOnto(ops, sizes, bytes, p);
      // The patch's JSON text: the operations, a comma between each two, and the brackets.
      if (run.length > 0 && (ops.length > caps.maxOps || bytes + ops.length + 1 > caps.maxBytes)) {
        // Undo the fold of p (only the run's last operation can have changed), close, and start again with p.
        ops.length = before.n;
        sizes.length = before.n;
        if (before.last !== undefined) {
          ops[before.n - 1] = before.last;
          sizes[before.n - 1] = before.lastSize as number;
        }
        bytes = before.bytes;
        close();
        bytes = foldOnto(ops, sizes, 0, p);
      }
      run.push(p);
    }
    close();
    if (out.length === this.pending.length) return;
    this.pending = out;
    this.persist();
  }

  /** One patch made of `run` (in order); its ack and refusal are each of theirs. */
  private joined(run: Pending[], ops: Operation[], bytes: number): Pending {
    const parts = run.flatMap((p) => p.parts ?? [p]);
    return {
      patch: ops,
      si: this.ctx.nextSi(),
      parts,
      bytes,
      tick: (run[0] as Pending).tick,
      resolve: (ack) => {
        for (const q of parts) q.resolve(ack);
      },
      reject: (err) => {
        for (const q of parts) q.reject(err);
      },
    };
  }

  /**
   * A composed patch the server refused (which changes nothing): back to the patches it was made
   * of (their own si were never used), each re-applied locally and then sent alone, so the server
   * judges each one (`patch_failed`, `validation_failed`, `forbidden`...) as without composing.
   * When it was too large for the server's patch limits, the caps drop to half its size.
   */
  private split(p: Pending, err: PatchbayClientError): void {
    const parts = p.parts as Pending[];
    const caps = this.composeCaps;
    const limit = err.details.limit;
    if (err.code === 'too_large' && caps && (limit === 'maxOps' || limit === 'maxPatchBytes' || limit === 'maxBodyBytes')) {
      // at most half the refused patch (two refused in one request halve once, not twice)
      caps.maxOps = Math.max(1, Math.min(caps.maxOps, Math.floor(p.patch.length / 2)));
      caps.maxBytes = Math.max(1024, Math.min(caps.maxBytes, Math.floor((p.bytes ?? caps.maxBytes) / 2)));
    }
    for (const q of parts) {
      q.sent = false;
      q.alone = true;
    }
    this.pending.splice(this.pending.indexOf(p), 1, ...parts);
  }

  private acked(p: Pending, ack: Ack): void {
    p.ack = ack.ii;
    p.resolve(ack);
    this.persist();
    const c = this.confirmed as { ii: number; state: Json };
    if (ack.ii <= c.ii) {
      // A resend acknowledged as a duplicate whose event came first (and was taken for another
      // writer's): it is in the confirmed state already, so drop it from pending and rebuild.
      this.pending.splice(this.pending.indexOf(p), 1);
      this.rebase();
    } else if (ack.ii === c.ii + 1 && this.pending[0] === p) {
      // Next in line: fold it now rather than wait for its event (which will then be skipped).
      this.onPatch({ ii: ack.ii, patch: p.patch });
    }
  }

  private releaseHeld(): void {
    const held = this.held.sort((a, b) => a.ii - b.ii);
    this.held = [];
    for (const e of held) this.onPatch(e);
  }

  private conflict(p: Pending, error: PatchbayClientError): void {
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
    const err = error.code === 'patch_failed' ? error : new PatchbayClientError('patch_failed', error.message, 422, error.details);
    p.reject(err);
    this.emit('conflict', { patch: p.patch, error: err });
  }

  private notify(patch: Patch | null): void {
    const state = this.state as Json;
    for (const w of this.watchers) w(state, patch);
    this.persist();
  }

  /** What storage keeps of this scope: the confirmed state and the patches not acknowledged yet. */
  private saved(): SavedScope | undefined {
    if (this.closed) return this.lastSaved;
    const c = this.confirmed;
    if (!c) return undefined;
    return { ii: c.ii, state: c.state, pending: this.pending.filter((p) => p.ack === undefined).map((p) => ({ patch: p.patch, si: p.si })) };
  }

  private persist(): void {
    if (this.ctx.store && this.confirmed && !this.closed) this.ctx.store.scope(this.id, () => this.saved());
  }

  private checkSynced(): void {
    this.persist();
    if (this.pending.length > 0 || !this.confirmed) return;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiters) w.resolve();
  }
}

/**
 * `p` itself, with a handler that keeps a rejection nobody awaits from being reported as unhandled
 * (the failure is also a `conflict` or `error` event); awaiting `p` still throws.
 */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/**
 * Folds `patch` onto `ops` by collapse()'s rule (./collapse.ts), keeping `sizes` (each operation's
 * JSON size in UTF-8 bytes, or an upper bound of it) in step; returns the new sum of the sizes. A
 * fold changes only the value (the operation keeps its name and path, and may lose stray keys),
 * so its new size is bounded without writing the operation out: a burst of replaces of one
 * number costs no JSON.stringify.
 */
function foldOnto(ops: Operation[], sizes: number[], bytes: number, p: Pending): number {
  let sum = bytes;
  for (const [i, op] of p.patch.entries()) {
    const k = ops.length - 1;
    const last = ops[k];
    if (fold(ops, op)) {
      const was = sizes[k] as number;
      const size = was - valueBytes((last as { value: Json }).value) + valueBytes((op as { value: Json }).value);
      sizes[k] = size;
      sum += size - was;
    } else {
      // Measured once per operation, however many times the flush loop composes again.
      p.opBytes ??= [];
      const size = p.opBytes[i] ?? jsonBytes(op);
      p.opBytes[i] = size;
      ops.push(op);
      sizes.push(size);
      sum += size;
    }
  }
  return sum;
}

/** A value's JSON size in UTF-8 bytes (a finite number's JSON text is its String()). */
function valueBytes(v: Json): number {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v).length;
  if (typeof v === 'boolean') return v ? 4 : 5;
  if (v === null) return 4;
  return jsonBytes(v);
}

/** Any thrown value as a PatchbayClientError (the server's PatchbayError keeps its code and details). */
export function asClientError(err: unknown): PatchbayClientError {
  if (err instanceof PatchbayClientError) return err;
  const e = err as { code?: unknown; message?: unknown; details?: unknown; status?: unknown };
  if (err instanceof Error && typeof e.code === 'string' && typeof e.status === 'number') {
    return new PatchbayClientError(e.code as PatchbayClientError['code'], err.message, e.status, (e.details as Record<string, unknown>) ?? {});
  }
  return new PatchbayClientError('network_error', err instanceof Error ? err.message : String(err));
}
