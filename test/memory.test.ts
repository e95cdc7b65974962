/**
 * Memory is bounded by bytes, not by entry count: the real server process (dist/functions/serve.js,
 * embedded mode) creates, patches and reads many large scopes, and its resident set stays within
 * its caches' byte bounds (PATCHBAY_CACHE_BYTES + PATCHBAY_NEAR_CACHE_BYTES) plus a margin for
 * the garbage collector's slack. Before the bounds were in bytes, the hot cache kept up to 10,000
 * states whatever their size: this run then grew the process by about the size of every state.
 *
 * States are large strings (their estimated size is their real size; shared/json.ts measures the
 * other shapes), 1 MiB each: large enough that a few requests move a lot of memory, small enough
 * that the garbage of one request (its body, parsed and copied) stays well inside the margin. No GC is forced: the
 * margin is generous (measured on a loaded 2-core machine: +80 MB with the bounds, +246 MB with
 * the old count-bounded cache), and the bound is far below what the unbounded cache reached.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Client, newClient, spawnServer, tempDir } from './helpers/server.js';

const MiB = 1024 * 1024;
const CACHE = 8 * MiB;
const NEAR = 8 * MiB;
const STATE = 1 * MiB;
/** 160 states of 1 MiB: ten times the caches' bounds together. */
const SCOPES = 160;
/** What the garbage collector may hold beyond live data (V8 grows the heap well before it collects). */
const MARGIN = 112 * MiB;
/**
 * The server's V8 heap is capped well below the states it is given (160 MiB): a cache that kept
 * them (by count, or with a wrong byte estimate) runs out of heap and the process dies, whatever
 * the machine's load; the byte-bounded caches fit, and the collector runs before the RSS grows.
 */
// Checked: with PATCHBAY_TEST_CACHE_BYTES=2000000000 (a cache that keeps every state) the server
// dies of heap exhaustion within about 12 s and this test fails; with the bounds its RSS grew 27 MB.
const HEAP_CAP_MB = Number(process.env.PATCHBAY_TEST_HEAP_CAP_MB ?? 96);

const dataDir = tempDir('patchbay-memory-');
let child: ChildProcess;
let client: Client;
/** The end of the server's stderr: what it said if it died (V8's "heap out of memory"). */
let stderr = '';

/** The server process's resident set, in bytes (Linux /proc). */
function rss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]) * 1024;
}

beforeAll(async () => {
  const s = await spawnServer({
    PATCHBAY_DATA_DIR: dataDir,
    PATCHBAY_SQLITE_SYNC: 'normal',
    PATCHBAY_MAX_STATE_BYTES: String(STATE + 1024),
    PATCHBAY_MAX_BODY_BYTES: String(STATE + 4096),
    PATCHBAY_CACHE_BYTES: String(CACHE),
    PATCHBAY_NEAR_CACHE_BYTES: String(NEAR),
    PATCHBAY_BUNDLE_INTERVAL_MS: '0',
    // One user creates 160 MiB of state here: far past the default quotas, which are not under test.
    PATCHBAY_LIMITS: 'off',
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=${HEAP_CAP_MB}`.trim(),
    ...(process.env.PATCHBAY_TEST_CACHE_BYTES ? { PATCHBAY_CACHE_BYTES: process.env.PATCHBAY_TEST_CACHE_BYTES } : {}),
  });
  child = s.child;
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  client = await newClient(s.url);
});

afterAll(() => {
  child?.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

/** Creates a scope holding a large string, patches it once (the near cache) and reads it (the hot cache). */
async function bigScope(i: number): Promise<void> {
  const id = `big-${i}`;
  const created = await client.request('POST', '/v1/scopes', { body: { id, state: { n: 0, data: `${i}:`.padEnd(STATE - 64, 'x') } } });
  expect(created.status).toBe(201);
  const patched = await client.request('POST', `/v1/scopes/${id}/patches`, { body: { ii: 1, patch: [{ op: 'replace', path: '/n', value: i }] } });
  expect(patched.status).toBe(200);
  const read = await client.request('GET', `/v1/scopes/${id}`);
  expect(read.status).toBe(200);
  expect(read.json.state.n).toBe(i);
}

it.skipIf(!existsSync('/proc/self/status'))(
  `${SCOPES} scopes of ${STATE / MiB} MiB keep the server within its cache bounds`,
  async () => {
    for (let i = 0; i < 3; i++) await bigScope(-1 - i); // warm up: code paths, SQLite, buffers
    const base = rss();
    let peak = base;
    for (let i = 0; i < SCOPES; i++) {
      try {
        await bigScope(i);
      } catch (err) {
        // Dead of heap exhaustion (the cap below the states given): say so rather than a bare fetch error.
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`the server died at scope ${i} (${child.exitCode ?? child.signalCode}): ${stderr}`);
        throw err;
      }
      peak = Math.max(peak, rss());
    }
    expect(child.exitCode, stderr).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const settled = rss();
    const mb = (n: number) => `${Math.round(n / MiB)} MB`;
    console.log(`server RSS: base ${mb(base)}, peak ${mb(peak)}, settled ${mb(settled)}; bound ${mb(CACHE + NEAR)} + margin ${mb(MARGIN)}`);
    expect(peak - base).toBeLessThan(CACHE + NEAR + MARGIN);
  },
  300_000,
);
