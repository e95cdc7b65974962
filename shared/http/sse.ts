/**
 * SSE framing (the WHATWG event-stream format) for one response: events, comments, `retry:`,
 * with back-pressure (a write that fills the socket buffer waits for `drain`).
 *
 * A patch goes to every stream of its scope as the same text: `patchFrame` builds it once per
 * event (not once per stream) and `SseWriter.frame` writes it, at once (see there).
 */
import type { ServerResponse } from 'node:http';
import type { PatchEvent } from '../protocol.js';

/** `data` is JSON text: it has no newlines, so one `data:` line carries it. */
function eventText(type: string, data: string, id?: number): string {
  return `event: ${type}\n${id === undefined ? '' : `id: ${id}\n`}data: ${data}\n\n`;
}

/**
 * The last event framed, and its frame. A bus hands each event, as one object, to all the
 * streams of its scope one after the other, so one entry serves a whole dispatch; an event read
 * from the log for one stream's catch-up costs a miss and nothing more (no map to keep).
 */
let lastEvent: PatchEvent | undefined;
let lastFrame = '';

/** The `patch` event of `e` (`id: <ii>`, data `{ii, patch, at, by}`), built once per event. */
export function patchFrame(e: PatchEvent): string {
  if (e !== lastEvent) {
    lastFrame = eventText('patch', JSON.stringify({ ii: e.ii, patch: e.patch, at: e.at, by: e.by }), e.ii);
    lastEvent = e;
  }
  return lastFrame;
}

export class SseWriter {
  /** A frame went out uncorked in this tick (reset at the next one): see `frame`. */
  private sentThisTick = false;
  private readonly nextTick = () => {
    this.sentThisTick = false;
  };

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

  /**
   * Keeps the open stream alive until `finished` resolves or `maxMs` (PATCHBAY_SSE_MAX_MS) passes,
   * with a heartbeat comment every `heartbeatMs` (PATCHBAY_SSE_HEARTBEAT_MS) so proxies and the
   * client see it is alive; leaves no timer behind.
   */
  async hold(finished: Promise<void>, heartbeatMs: number, maxMs: number): Promise<void> {
    const heartbeat = setInterval(() => void this.comment('hb'), heartbeatMs);
    let limit: NodeJS.Timeout | undefined;
    try {
      await Promise.race([finished, new Promise<void>((resolve) => (limit = setTimeout(resolve, maxMs)))]);
    } finally {
      clearTimeout(limit);
      clearInterval(heartbeat);
    }
  }

  /** `data` is JSON text: it has no newlines, so one `data:` line carries it. */
  async event(type: string, data: string, id?: number): Promise<void> {
    await this.write(eventText(type, data, id));
  }

  /**
   * Writes a prepared frame (`patchFrame`). Returns nothing when the socket took it without
   * filling its buffer, so a caller with more to send goes on at once; otherwise a promise that
   * resolves on `drain` (or close).
   *
   * Node's http holds a response's writes (corked) until the next tick. The first frame a stream
   * writes in a tick leaves at once instead: a bus dispatch writes to every stream of the scope
   * before that tick comes, and the first clients could be reading their event meanwhile. Later
   * frames of the same tick (the rest of a group's events, a page of catch-up) stay corked and
   * leave together, one socket write for all of them.
   */
  frame(frame: string): Promise<void> | undefined {
    if (!this.open) return undefined;
    const ok = this.res.write(frame);
    if (!this.sentThisTick) {
      this.sentThisTick = true;
      process.nextTick(this.nextTick);
      this.res.uncork();
    }
    return ok ? undefined : drained(this.res);
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

/**
 * A stream's end as its client sees it, listened for from this call: `finished` resolves when the
 * client hangs up or `finish()` is called; `gone()` says whether the client hung up. Listen before
 * anything is sent: a client that hangs up during catch-up must stop it. `goneAlready` is true
 * when the client hung up before this call (while the route checked its credential and took its
 * stream slots): the route must then return, or it would hold them for a whole stream's length.
 */
export function streamEnd(res: ServerResponse): { finished: Promise<void>; finish(): void; gone(): boolean; goneAlready: boolean } {
  let gone = false;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  res.once('close', () => {
    gone = true;
    finish();
  });
  return { finished, finish, gone: () => gone, goneAlready: res.closed || res.req.socket?.destroyed === true };
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
