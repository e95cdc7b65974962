/**
 * SSE framing (the WHATWG event-stream format) for one response: events, comments, `retry:`,
 * with back-pressure (a write that fills the socket buffer waits for `drain`).
 */
import type { ServerResponse } from 'node:http';

export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  /** Sends the headers and the first `retry:` hint; later calls do nothing. */
  start(retryMs: number): void {
    if (this.res.headersSent) return;
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
    if (!this.res.write(chunk)) await drained(this.res);
  }
}

/** Resolves when `res` can take more data, or has closed; leaves no listener behind. */
export function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
