/**
 * History and catch-up at scale (guarantees 4 and 6): on a scope with 100,000 patches, 99,000 of
 * them only in cold storage and the last 1,000 in the hot log, `GET /v1/scopes/{id}/patches` and
 * SSE with `?since=0` stream every patch, in order, each once, then the stream goes on live.
 * The clients read the responses as streams and keep nothing, so the memory the process holds
 * while streaming is the server's working set. It is measured as the live heap after a full
 * garbage collection every 10,000 patches (and the peak RSS) and reported; the live heap may not
 * grow by half of what the 100,000 records would take if they were all held at once (~30 MB).
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client, TestServer } from '../helpers/server.js';
import type { StartServer } from './http.js';

export const SCALE_N = 100_000;
export const SCALE_HOT = 1_000;
/** Most the live heap may grow while streaming: about half of 100,000 records held at once. */
const MAX_GROWTH_MB = 16;

/** Fills scope `id` (created by the test's client, empty) with patches 1..n, `[{replace /n ii}]`, leaving 1..n-SCALE_HOT trimmed into cold storage. */
export type BuildScope = (srv: TestServer, id: string, n: number) => Promise<void>;

interface Sample {
  heapMB: number;
  rssMB: number;
}

setFlagsFromString('--expose-gc');
/** A full garbage collection (V8's gc(), exposed for this process). */
const gc = runInNewContext('gc') as () => void;
const mb = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;

/**
 * Memory while streaming: `base` is the live heap (after a full collection) and RSS before;
 * `point()` collects garbage and notes the live heap; the RSS peak is sampled every 10 ms.
 */
function sampleMemory() {
  gc();
  const base = process.memoryUsage();
  let heap = base.heapUsed;
  let rss = base.rss;
  const timer = setInterval(() => {
    rss = Math.max(rss, process.memoryUsage().rss);
  }, 10);
  return {
    point(): void {
      gc();
      heap = Math.max(heap, process.memoryUsage().heapUsed);
    },
    stop(): { base: Sample; peak: Sample } {
      clearInterval(timer);
      return { base: { heapMB: mb(base.heapUsed), rssMB: mb(base.rss) }, peak: { heapMB: mb(heap), rssMB: mb(rss) } };
    },
  };
}

/** Feeds each line of a streamed response to `onLine` (return `stop` to hang up), without keeping any. */
async function eachLine(res: Response, onLine: (line: string) => undefined | 'stop' | Promise<undefined | 'stop'>): Promise<void> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if ((await onLine(line)) === 'stop') {
        await reader.cancel();
        return;
      }
      nl = buf.indexOf('\n');
    }
  }
}

export function coldScale(stack: string, start: StartServer, build: BuildScope): void {
  describe(`a scope with ${SCALE_N.toLocaleString('en')} patches in cold storage (${stack})`, () => {
    let srv: TestServer;
    let alice: Client;
    let id: string;

    beforeAll(async () => {
      srv = await start({ sseMaxMs: 600_000, sseHeartbeatMs: 60_000 });
      alice = await srv.client();
      id = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json.id as string;
      const t0 = performance.now();
      await build(srv, id, SCALE_N);
      console.log(`[${stack}] built a ${SCALE_N}-patch scope in ${Math.round(performance.now() - t0)} ms`);
      expect(await srv.app.adapters.ledger.getHead(id)).toMatchObject({ ii: SCALE_N, trimmed: SCALE_N - SCALE_HOT });
      expect(await srv.app.adapters.ledger.readLog(id, 1, SCALE_N, 1)).toMatchObject([{ ii: SCALE_N - SCALE_HOT + 1 }]);
    }, 120_000);
    afterAll(() => srv?.close());

    const report = (what: string, n: number, ms: number, mem: { base: Sample; peak: Sample }) =>
      console.log(
        `[${stack}] ${what}: ${n} patches in ${Math.round(ms)} ms (${Math.round(n / (ms / 1000))}/s); ` +
          `live heap ${mem.base.heapMB} MB before, at most ${mem.peak.heapMB} MB during (+${Math.round((mem.peak.heapMB - mem.base.heapMB) * 10) / 10}); ` +
          `rss ${mem.base.rssMB} MB before, ${mem.peak.rssMB} MB at peak`,
      );

    it('GET /patches streams every patch, in order, from bundles and then the hot log', async () => {
      const mem = sampleMemory();
      const t0 = performance.now();
      const res = await fetch(`${srv.url}/v1/scopes/${id}/patches`, { headers: { authorization: `Bearer ${alice.token}` } });
      expect(res.status).toBe(200);
      let next = 1;
      let wrong: string | null = null;
      await eachLine(res, (line) => {
        const r = JSON.parse(line) as { ii: number; patch: Array<{ value: number }> };
        if (r.ii !== next || r.patch[0]?.value !== r.ii) wrong ??= `line ${next}: ${line}`;
        if (next % 10_000 === 0) mem.point();
        next++;
        return undefined;
      });
      const ms = performance.now() - t0;
      const m = mem.stop();
      report('history', next - 1, ms, m);
      expect(wrong).toBeNull();
      expect(next - 1).toBe(SCALE_N);
      expect(m.peak.heapMB - m.base.heapMB).toBeLessThan(MAX_GROWTH_MB);
    });

    it('SSE ?since=0 streams every patch, in order, then continues live', async () => {
      const mem = sampleMemory();
      const t0 = performance.now();
      const res = await fetch(`${srv.url}/v1/scopes/${id}/events?since=0`, { headers: { authorization: `Bearer ${alice.token}` } });
      expect(res.status).toBe(200);
      let next = 1;
      let wrong: string | null = null;
      let caughtUp = 0;
      let live: Promise<unknown> | null = null;
      await eachLine(res, (line) => {
        if (!line.startsWith('id: ')) return undefined;
        const ii = Number(line.slice(4));
        if (ii !== next) wrong ??= `event ${next} has id ${ii}`;
        if (next % 10_000 === 0) mem.point();
        next++;
        if (ii === SCALE_N) {
          caughtUp = performance.now() - t0;
          // caught up: a new patch must arrive live, right after
          live = alice.request('POST', `/v1/scopes/${id}/patches`, { body: { ii: SCALE_N + 1, patch: [{ op: 'replace', path: '/n', value: SCALE_N + 1 }] } });
        }
        return ii >= SCALE_N + 1 ? 'stop' : undefined;
      });
      const m = mem.stop();
      report('SSE catch-up', SCALE_N, caughtUp, m);
      expect(wrong).toBeNull();
      expect(m.peak.heapMB - m.base.heapMB).toBeLessThan(MAX_GROWTH_MB);
      expect(next - 1).toBe(SCALE_N + 1);
      expect(((await live) as { json: unknown } | null)?.json).toEqual({ id, ii: SCALE_N + 1 });
    });
  });
}
