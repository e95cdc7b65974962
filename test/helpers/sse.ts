/**
 * A real SSE client for tests: the `eventsource` package (a WHATWG EventSource), with the bearer
 * token added by a custom fetch. It reconnects by itself, sending Last-Event-ID, exactly as a
 * browser would; `opens` counts connections so tests can see a reconnect happened.
 */
import { EventSource } from 'eventsource';

export interface SseEvent {
  type: string;
  id: string;
  // biome-ignore lint/suspicious/noExplicitAny: event payloads are inspected loosely in tests
  data: any;
}

export interface SseCollector {
  events: SseEvent[];
  opens: number;
  errors: number;
  source: EventSource;
  /** Polls until pred holds (bounded), then resolves; rejects with the events seen on timeout. */
  waitFor(pred: (events: SseEvent[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

export function openSse(url: string, token?: string): SseCollector {
  const source = new EventSource(url, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) } }),
  });
  const collector: SseCollector = {
    events: [],
    opens: 0,
    errors: 0,
    source,
    async waitFor(pred, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(collector.events)) {
        if (Date.now() > deadline) {
          throw new Error(`SSE condition not met after ${timeoutMs} ms; saw ${JSON.stringify(collector.events.map((e) => [e.type, e.id]))}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => source.close(),
  };
  for (const type of ['state', 'patch', 'presence', 'result', 'failed']) {
    source.addEventListener(type, (e) => {
      collector.events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) });
    });
  }
  source.addEventListener('open', () => {
    collector.opens++;
  });
  source.addEventListener('error', () => {
    collector.errors++;
  });
  return collector;
}

/** The `ii`s of the patch events seen, in order. */
export const patchIndices = (events: SseEvent[]): number[] => events.filter((e) => e.type === 'patch').map((e) => e.data.ii as number);
