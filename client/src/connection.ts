/**
 * The client's connection as a whole (`client.status`, and its `online` / `reconnecting` /
 * `offline` events), derived from what its requests (./http.ts) and streams (./mux.ts,
 * ./stream.ts, relayed by ./tabs.ts) see. One state per client, whatever the number of scopes.
 *
 * - `connecting`: nothing has reached the server yet (the state a client starts in).
 * - `online`: the server answers: a request got an answer (any status: a 404 or the server's own
 *   `unavailable` is an answer) or a stream opened.
 * - `reconnecting`: while `online`, a request got no answer (or a gateway's: a 502/503/504 that is
 *   not the server's JSON error, i.e. a proxy or load balancer that cannot reach it) with no stream up,
 *   or the stream dropped with an error: the client retries (randomised backoff) and does not know
 *   yet whether the server is gone.
 * - `offline`: an attempt that started after that also failed (or the first attempt from
 *   `connecting` did): the server cannot be reached. Retries go on; writes queue locally.
 *
 * In a browser, its `offline` event makes the state `offline` at once (no request has to fail
 * first), and its `online` event ends every retry's wait (`pause`): the streams reopen and the
 * queued writes go out now, not at the end of a backoff of up to 10 s.
 *
 * No flapping: an event fires only when the state changes, so a run of failures gives at most
 * `reconnecting` then `offline`, and a run of answers nothing. While a stream is up, a request
 * that fails changes nothing (the stream shows the server is there); a stream the server ends
 * cleanly (PATCHBAY_SSE_MAX_MS) and that reopens changes nothing either.
 */
import { Emitter } from './emitter.js';
import { PatchbayClientError } from './errors.js';

export type ConnectionStatus = 'connecting' | 'online' | 'reconnecting' | 'offline';

/** A change of the connection's state, with the failure that caused a loss. */
export interface ConnectionChange {
  status: ConnectionStatus;
  error?: PatchbayClientError;
}

/** The key under which another tab's connection (./tabs.ts) counts as a stream of this one. */
const RELAY = 'relay';

export class Connection extends Emitter<{ change: ConnectionChange }> {
  status: ConnectionStatus = 'connecting';
  /** Bumped on each loss: an attempt started before the current `reconnecting` cannot make it `offline`. */
  private epoch = 0;
  /** The streams open now (any key: the multiplexed stream, a scope's own stream, another tab's relay). */
  private readonly up = new Set<unknown>();
  /** The retries waiting in `pause`, each ended early by `wake`. */
  private readonly sleepers = new Set<() => void>();

  /**
   * Waits `ms` (a retry's backoff), or less: until `wake` (the network is back) or `signal` aborts.
   */
  pause(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
      signal?.addEventListener('abort', done);
    });
  }

  /** The network is back (the browser's `online` event): every waiting retry goes now. */
  wake(): void {
    for (const done of [...this.sleepers]) done();
  }

  /** The network is gone (the browser's `offline` event): `offline` now, whatever the streams say. */
  lost(): void {
    if (this.status === 'offline') return;
    this.epoch++;
    this.set('offline', new PatchbayClientError('network_error', 'the browser is offline'));
  }

  /** Taken when an attempt starts, given back to `failed`. */
  mark(): number {
    return this.epoch;
  }

  /**
   * An answer arrived, with its HTTP status and content type. A 502/503/504 that is not JSON comes
   * from a gateway that cannot reach the server (the server's own errors are JSON): a failure.
   */
  answered(status: number, type: string | null, mark: number): void {
    if ((status === 502 || status === 503 || status === 504) && !type?.includes('json')) {
      this.failed(mark, new PatchbayClientError('unavailable', `HTTP ${status} from a gateway`, status));
    } else this.set('online');
  }

  /** An attempt (request or stream) that started at `mark` got no answer, or a stream dropped. */
  failed(mark: number, error?: PatchbayClientError): void {
    if (this.up.size > 0) return;
    if (this.status === 'online') {
      this.epoch++;
      this.set('reconnecting', error);
    } else if (this.status === 'connecting' || (this.status === 'reconnecting' && mark === this.epoch)) {
      this.set('offline', error);
    }
  }

  /** A stream opened (`key` names it); it counts as up until `streamDown(key)`. */
  streamUp(key: unknown): void {
    this.up.add(key);
    this.set('online');
  }

  streamDown(key: unknown): void {
    this.up.delete(key);
  }

  /** A tab served by another (./tabs.ts) takes that tab's state: its stream is this tab's. */
  relay(status: ConnectionStatus): void {
    if (status === 'online') this.streamUp(RELAY);
    else {
      this.up.delete(RELAY);
      if (status !== 'connecting') this.set(status);
    }
  }

  private set(status: ConnectionStatus, error?: PatchbayClientError): void {
    if (status === this.status) return;
    this.status = status;
    this.emit('change', error ? { status, error } : { status });
  }
}
