/**
 * A multiplexed stream's reader for tests: `GET /v1/events` over fetch (so it sends the bearer
 * token and any `Last-Event-ID`), parsed by eventsource-parser, every event collected with its
 * type, id and JSON data. It does not reconnect: a test that wants a resume opens another one.
 */
import { createParser } from 'eventsource-parser';
import type { SseEvent } from './sse.js';

export interface MuxReader {
  events: SseEvent[];
  /** The HTTP status of the answer (0 until it came). */
  status: number;
  /** The answer's body when it was not a stream (an error). */
  error: unknown;
  /** Resolves when the server ended the stream or it was closed. */
  ended: Promise<void>;
  /** The stream id (from the first event), once it came. */
  stream(): Promise<string>;
  waitFor(pred: (events: SseEvent[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

export function openMux(url: string, token?: string | null, headers: Record<string, string> = {}): MuxReader {
  const abort = new AbortController();
  const reader: MuxReader = {
    events: [],
    status: 0,
    error: undefined,
    ended: Promise.resolve(),
    async stream() {
      await reader.waitFor((ev) => ev.some((e) => e.type === 'stream'));
      return reader.events.find((e) => e.type === 'stream')?.data.stream as string;
    },
    async waitFor(pred, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(reader.events)) {
        if (Date.now() > deadline) {
          throw new Error(
            `mux condition not met after ${timeoutMs} ms; status ${reader.status}; saw ${JSON.stringify(reader.events.map((e) => [e.type, e.id, e.data?.scope]))}`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => abort.abort(),
  };
  const parser = createParser({
    onEvent: (e) => reader.events.push({ type: e.event ?? 'message', id: e.id ?? '', data: JSON.parse(e.data) }),
  });
  reader.ended = (async () => {
    try {
      const res = await fetch(url, {
        headers: { accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
        signal: abort.signal,
      });
      reader.status = res.status;
      if (!res.ok || !res.body) {
        reader.error = await res.json().catch(() => undefined);
        return;
      }
      const decoder = new TextDecoder();
      for await (const chunk of res.body) parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
    } catch {
      // closed by the test
    }
  })();
  return reader;
}

/** The `[scope, ii]` of every patch event seen, in order. */
export const muxPatches = (events: SseEvent[]): Array<[string, number]> =>
  events.filter((e) => e.type === 'patch').map((e) => [e.data.scope as string, e.data.ii as number]);
