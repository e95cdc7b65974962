/**
 * The bus port: fan-out of committed patches. Delivery is at least once and in order per scope
 * for a well-behaved transport; subscribers (the engine's streams) still deduplicate by ii and
 * fill gaps from the log, so a bus that duplicates or drops costs time, never correctness.
 */
import type { PatchEvent } from '../protocol.js';

export type Listener = (event: PatchEvent) => void;

export interface Bus {
  /** Publishes events (all of one scope, ascending ii). Resolves once the transport has them. */
  publish(events: PatchEvent[]): Promise<void>;
  /** Calls `listener` for each event of `scope` published after this call. Returns the unsubscribe. */
  subscribe(scope: string, listener: Listener): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
