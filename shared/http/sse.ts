/**
 * SSE framing (the WHATWG event-stream format) for one response: events, comments, `retry:`,
 * with back-pressure (a write that fills the socket buffer waits for `drain`).
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  start(retryMs: number): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.res.write(`retry: ${retryMs}\n\n`);
  }

  /** `data` is JSON text: it has no newlines, so one `data:` line carries it. */
  async event(type: string, data: string, id?: number): Promise<void> {
    await this.write(`event: ${type}\n${id === undefined ? '' : `id: ${id}\n`}data: ${data}\n\n`);
  }

  async comment(text: string): Promise<void> {
    await this.write(`: ${text}\n\n`);
  }

  /** Ends the stream, telling the client when to come back. */
  end(retryMs: number): void {
    if (!this.open) return;
    this.res.end(`retry: ${retryMs}\n: stream closed by server, reconnect with Last-Event-ID\n\n`);
  }

  private async write(chunk: string): Promise<void> {
    if (!this.open) return;
    if (!this.res.write(chunk)) {
      await Promise.race([once(this.res, 'drain'), once(this.res, 'close')]);
    }
  }
}
