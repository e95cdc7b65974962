/**
 * The bus port: fan-out of committed patches. Delivery is at least once and in order per scope
 * for a well-behaved transport; subscribers (the engine's streams) still deduplicate by ii and
 * fill gaps from the log, so a bus that duplicates or drops costs time, never correctness.
 */
import type { PatchEvent } from '../protocol.js';

export type Listener = (event: PatchEvent) => void;

/**
 * Something about a scope other than its patches changed, which its subscribers must act on:
 * `access` (who may read it changed: each stream checks its own user again and ends if it
 * lost access), `deleted` (the scope was deleted: every stream of it ends), `presence` (who is
 * watching it changed: each stream re-reads the scope's presence and sends what differs). It carries no content: a subscriber reads what it needs from the ledger, so a
 * signal that arrives late, twice or out of order against another one is harmless.
 *
 * `control` is the one kind with content, in `data` (JSON text, opaque to the bus), sent to a key
 * that is not a scope id: a message to a multiplexed stream (its key, shared/http/routes/mux.ts),
 * naming scopes to add or remove, or a request handed to a scope's leader and its answer
 * (`~inbox:<scope>`, `~answers:<instance>`, signed: shared/engine/handover-bus.ts). Like every
 * signal it is best-effort; its senders say what stands behind a lost one.
 */
export interface ScopeSignal {
  scope: string;
  kind: 'access' | 'deleted' | 'presence' | 'control';
  /** Only for `control`: its content, delivered as sent. */
  data?: string;
  /**
   * Whether the signal may overtake (and be overtaken by) the key's other messages: a transport
   * that orders per key need not wait for the key's previous publish (the hand-over's messages,
   * shared/engine/handover-bus.ts, which carry their own keys and need no order).
   */
  unordered?: boolean;
}
export type SignalListener = (signal: ScopeSignal) => void;

export interface Bus {
  /** Publishes events (all of one scope, ascending ii). Resolves once the transport has them. */
  publish(events: PatchEvent[]): Promise<void>;
  /**
   * Calls `listener` for each event of `scope` published after this call, and `onSignal` (when
   * given) for each of its signals sent after it. Returns the unsubscribe.
   */
  subscribe(scope: string, listener: Listener, onSignal?: SignalListener): Promise<() => Promise<void>>;
  /**
   * Delivers a signal to the scope's subscribers on every instance, at least once when the
   * transport is up (best-effort, like `publish`). Resolves once the transport has it.
   */
  signal(signal: ScopeSignal): Promise<void>;
  close(): Promise<void>;
}
