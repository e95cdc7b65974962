/**
 * One scope's event stream: SSE over `fetch` (so it carries the `Authorization` header; no
 * ticket), parsed by `eventsource-parser`. After any drop (a network error, the server ending
 * the stream at PATCHBAY_SSE_MAX_MS, a restart) it reconnects with `Last-Event-ID` set to the
 * last index the scope has, after a randomised, growing delay, so a restart does not bring every
 * client back in the same instant. A 401 is retried with a refreshed token (Transport.send); a
 * 403 or 404 ends it for good (`onFatal`).
 */
import { createParser } from 'eventsource-parser';
import { errorFrom, PatchbayClientError } from './errors.js';
import type { Transport } from './http.js';

export type StreamStatus = 'connecting' | 'online' | 'reconnecting' | 'closed';

export interface StreamHandlers {
  /** The last index applied, sent as `Last-Event-ID` (undefined: start from the state at head). */
  lastId(): number | undefined;
  onEvent(type: string, data: string): void;
  onStatus(status: StreamStatus): void;
  onFatal(err: PatchbayClientError): void;
}

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;

/** Full jitter: a uniform delay in [0, min(max, base·2^attempt)], at least 50 ms. */
export function backoff(attempt: number): number {
  return Math.max(50, Math.random() * Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt));
}

export class ScopeStream {
  private readonly abort = new AbortController();
  private attempt = 0;
  private closed = false;

  constructor(
    private readonly transport: Transport,
    private readonly path: string,
    private readonly on: StreamHandlers,
  ) {
    void this.run();
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
    this.on.onStatus('closed');
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      this.on.onStatus(this.attempt === 0 ? 'connecting' : 'reconnecting');
      try {
        await this.connect();
      } catch (err) {
        if (this.closed) return;
        const e = err instanceof PatchbayClientError ? err : new PatchbayClientError('network_error', String(err));
        if (!e.retryable && e.code !== 'unauthorized') {
          this.closed = true;
          this.on.onStatus('closed');
          this.on.onFatal(e);
          return;
        }
      }
      if (this.closed) return;
      this.on.onStatus('reconnecting');
      await this.transport.conn.pause(backoff(this.attempt++), this.abort.signal);
    }
  }

  /** One connection: resolves when the server ends it, rejects on an error answer or a network failure. */
  private async connect(): Promise<void> {
    const link = this.transport.conn;
    const mark = link.mark();
    const last = this.on.lastId();
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (last !== undefined) headers['last-event-id'] = String(last);
    const res = await this.transport.send('GET', this.path, { headers, signal: this.abort.signal });
    if (!res.ok || !res.body) throw await errorFrom(res);
    this.attempt = 0; // it opened: the next drop starts the backoff afresh
    link.streamUp(this);
    this.on.onStatus('online');
    const parser = createParser({
      onEvent: (e) => this.on.onEvent(e.event ?? 'message', e.data),
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(value);
      }
    } catch (err) {
      link.streamDown(this);
      if (this.closed) return;
      const dropped = new PatchbayClientError('network_error', `stream dropped: ${err instanceof Error ? err.message : String(err)}`);
      link.failed(mark, dropped);
      throw dropped;
    } finally {
      link.streamDown(this);
      reader.releaseLock();
    }
  }
}
