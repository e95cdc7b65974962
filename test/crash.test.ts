/**
 * Guarantees 1, 2 and 5 across `kill -9`: a crash can leave an unacknowledged patch either
 * complete or absent, never a hole, a duplicate or a half-applied state. Every acknowledged patch
 * is in the log exactly once at its acked index; indices run 1..n; the state is the initial state
 * folded with the log; every patch whose fate was unknown is in the log at most once, and a retry
 * with the same (session, si) either finds it (duplicate ack) or commits it once. Every committed
 * patch is eventually published, and a stream from 0 replays exactly the log.
 *
 * The real server process (dist/functions/serve.js, SQLite with synchronous=FULL) takes a write
 * storm and is SIGKILLed mid-storm, three times, on one data directory.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fastJsonPatch from 'fast-json-patch';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { newClient, request, spawnServer, tempDir } from './helpers/server.js';

type Op = { op: string; path: string; value?: unknown };
type Body = { patch: Op[]; session: string; si: number; ii?: number };
interface Sent {
  scope: string;
  body: Body;
  marker: string;
}
/** A patch response body: an ack or an error envelope. */
interface Reply {
  id?: string;
  ii: number;
  duplicate?: boolean;
  error?: { code: string };
}
interface LogLine {
  ii: number;
  patch: Op[];
}

const SCOPES = ['crash-a', 'crash-b', 'crash-c'];
const INITIAL: Record<string, unknown> = {
  'crash-a': { list: [], n: 0 },
  'crash-b': { list: ['seed'], nested: { deep: true } },
  'crash-c': { list: [] },
};
const WRITERS = 24;
const CYCLES = 3;
// Bounded and varied: SEED makes a run's kill points reproducible (up to scheduling).
const SEED = Number(process.env.PATCHBAY_CRASH_SEED ?? Date.now() % 1_000_000);

const dataDir = tempDir('patchbay-crash-');
const children = new Set<ChildProcess>();
const env = {
  PATCHBAY_DATA_DIR: dataDir,
  PATCHBAY_SQLITE_SYNC: 'full',
  // Let the outbox sweeper run promptly, so "eventually published" is observable in this test.
  PATCHBAY_SWEEP_INTERVAL_MS: '200',
  PATCHBAY_SWEEP_AGE_MS: '0',
  // A few users writing as fast as they can, across restarts: per-client limits are not under test.
  PATCHBAY_LIMITS: 'off',
};

let url: string;
let child: ChildProcess;
/** One user (the scopes' owner) across restarts: the token's secret lives in the data directory. */
let token: string;
const api = (method: string, path: string, opts: { body?: unknown } = {}) => request(url, method, path, { ...opts, token });

/** Every patch acknowledged so far, by marker: its scope, index and exact patch. */
const acked = new Map<string, { scope: string; ii: number; patch: Op[] }>();
/** Requests refused with a 4xx: guarantee 3 says they left no trace. */
const rejected = new Map<string, Sent>();

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function start(): Promise<void> {
  const s = await spawnServer(env);
  child = s.child;
  children.add(child);
  url = s.url;
}

async function killHard(): Promise<void> {
  const c = child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGKILL');
  await exited;
  children.delete(c);
}

function markerOf(patch: Op[]): string | undefined {
  const first = patch[0];
  return first && first.op === 'add' && first.path.startsWith('/k') ? first.path.slice(2) : undefined;
}

function post(body: Body, scope: string) {
  return fetch(`${url}/v1/scopes/${scope}/patches`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function readLog(scope: string): Promise<LogLine[]> {
  const res = await api('GET', `/v1/scopes/${scope}/patches`);
  expect(res.status).toBe(200);
  return res.text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogLine);
}

/** Guarantees 1 and 2 for every scope, and guarantee 3 for every refused request. Returns the logs. */
async function checkLogs(): Promise<Map<string, LogLine[]>> {
  const logs = new Map<string, LogLine[]>();
  const where = new Map<string, { scope: string; ii: number }>();
  for (const scope of SCOPES) {
    const log = await readLog(scope);
    logs.set(scope, log);
    expect(
      log.map((r) => r.ii),
      `indices of ${scope} run 1..n (seed ${SEED})`,
    ).toEqual(log.map((_, i) => i + 1));
    for (const r of log) {
      const m = markerOf(r.patch);
      expect(m, `every record of ${scope} is one of ours`).toBeDefined();
      expect(where.has(m as string), `${m} is in the logs at most once (seed ${SEED})`).toBe(false);
      where.set(m as string, { scope, ii: r.ii });
    }
    const folded = fastJsonPatch.applyPatch(
      structuredClone(INITIAL[scope]),
      log.flatMap((r) => r.patch as fastJsonPatch.Operation[]),
      true,
      false,
    ).newDocument;
    const got = await api('GET', `/v1/scopes/${scope}`);
    expect(got.status).toBe(200);
    expect(got.json.ii).toBe(log.length);
    expect(got.headers.get('etag')).toBe(`"${log.length}"`);
    expect(got.json.state, `state of ${scope} = initial + log (seed ${SEED})`).toEqual(folded);
  }
  for (const [m, a] of acked) {
    const at = where.get(m);
    expect(at, `acked ${m} is in the log (seed ${SEED})`).toEqual({ scope: a.scope, ii: a.ii });
    expect((logs.get(a.scope) as LogLine[])[a.ii - 1]?.patch).toEqual(a.patch);
  }
  for (const m of rejected.keys()) expect(where.has(m), `refused ${m} left no trace`).toBe(false);
  return logs;
}

/** Guarantee 5's "eventually published": the restarted server's sweeper catches the outbox up. */
async function waitPublished(): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const db = new Database(join(dataDir, 'patchbay.sqlite'), { fileMustExist: true });
    let behind: Array<{ id: string; ii: number; published: number }>;
    try {
      behind = db.prepare('SELECT id, ii, published FROM scopes WHERE published < ii').all() as typeof behind;
    } finally {
      db.close();
    }
    if (behind.length === 0) return;
    if (Date.now() > deadline) expect(behind, 'every committed patch is eventually published').toEqual([]);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs writers until `target` acks, then SIGKILLs the server; returns the requests of unknown fate. */
async function storm(cycle: number, target: number, rand: () => number): Promise<{ unknown: Sent[]; acks: number }> {
  const known = new Map<string, number>();
  for (const scope of SCOPES) known.set(scope, (await api('GET', `/v1/scopes/${scope}`)).json.ii);
  const unknown: Sent[] = [];
  let acks = 0;
  let killing: Promise<void> | undefined;
  const writer = async (w: number) => {
    const scope = SCOPES[w % SCOPES.length] as string;
    const session = `c${cycle}w${w}`;
    for (let si = 1; killing === undefined; si++) {
      const marker = `${session}-${si}`;
      const patch: Op[] = [
        { op: 'add', path: `/k${marker}`, value: { w, si } },
        { op: 'add', path: '/list/-', value: marker },
      ];
      const body: Body = { patch, session, si };
      if (rand() < 0.3) body.ii = (known.get(scope) as number) + 1;
      const sent: Sent = { scope, body, marker };
      let status: number;
      let json: Reply;
      try {
        const res = await post(body, scope);
        status = res.status;
        json = (await res.json()) as Reply;
      } catch {
        unknown.push(sent); // the connection died with the server: committed or not, we cannot tell
        continue;
      }
      if (status === 200) {
        expect(json.duplicate).toBeUndefined();
        acked.set(marker, { scope, ii: json.ii as number, patch });
        known.set(scope, Math.max(known.get(scope) as number, json.ii as number));
        acks++;
        if (acks === target) killing = killHard();
      } else {
        expect(status, `only index conflicts are refused: ${JSON.stringify(json)}`).toBe(409);
        expect(['out_of_sync', 'replay_required']).toContain(json.error?.code);
        expect(body.ii).toBeDefined();
        rejected.set(marker, sent);
      }
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
  await killing;
  return { unknown, acks };
}

/** Retries each request of unknown fate with the same (session, si); afterwards it is in the log once. */
async function retryUnknown(unknown: Sent[], logs: Map<string, LogLine[]>): Promise<void> {
  for (const u of unknown) {
    const log = logs.get(u.scope) as LogLine[];
    const found = log.filter((r) => markerOf(r.patch) === u.marker);
    expect(found.length).toBeLessThanOrEqual(1);
    const logged = found[0];
    if (logged) expect(logged.patch).toEqual(u.body.patch);
    let res = await post(u.body, u.scope);
    let json = (await res.json()) as Reply;
    if (logged) {
      // Recognised before any index check, even when the retry carries a stale ii.
      expect(res.status).toBe(200);
      expect(json).toEqual({ id: u.scope, ii: logged.ii, duplicate: true });
    } else {
      if (res.status === 409) {
        // An ii-bearing retry of a patch that never landed: the index has moved on. Rebase (drop ii).
        expect(u.body.ii).toBeDefined();
        expect(['out_of_sync', 'replay_required']).toContain(json.error?.code);
        const { ii: _stale, ...rebased } = u.body;
        res = await post(rebased, u.scope);
        json = (await res.json()) as Reply;
      }
      expect(res.status).toBe(200);
      expect(json.duplicate).toBeUndefined();
      expect(json.id).toBe(u.scope);
    }
    acked.set(u.marker, { scope: u.scope, ii: json.ii, patch: u.body.patch });
  }
}

/** Reads `GET /events?since=0` until it has delivered `count` patch events, runs `probe`, then reads one more. */
async function streamFromZero(scope: string, count: number, probe: () => Promise<void>): Promise<Array<{ event: string; id: string; data: LogLine }>> {
  const ctl = new AbortController();
  const guard = setTimeout(() => ctl.abort(new Error(`stream of ${scope} stalled`)), 30_000);
  const res = await fetch(`${url}/v1/scopes/${scope}/events?since=0`, { headers: { authorization: `Bearer ${token}` }, signal: ctl.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
  const events: Array<{ event: string; id: string; data: LogLine }> = [];
  let buf = '';
  let probed = false;
  try {
    while (events.length < count + 1) {
      if (events.length === count && !probed) {
        probed = true;
        await probe();
      }
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let end = buf.indexOf('\n\n');
      while (end >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        end = buf.indexOf('\n\n');
        const fields = new Map<string, string>();
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          fields.set(line.slice(0, i), line.slice(i + 1).replace(/^ /, ''));
        }
        if (!fields.has('data')) continue; // retry: hints, heartbeats
        events.push({ event: fields.get('event') ?? 'message', id: fields.get('id') ?? '', data: JSON.parse(fields.get('data') as string) });
      }
    }
  } finally {
    clearTimeout(guard);
    ctl.abort();
  }
  return events;
}

beforeAll(async () => {
  await start();
  token = (await newClient(url)).token;
  for (const id of SCOPES) {
    const res = await api('POST', '/v1/scopes', { body: { id, state: INITIAL[id] } });
    expect(res.status).toBe(201);
  }
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

it(`keeps every ack exactly once, no holes, state = fold of the log across ${CYCLES} SIGKILLs`, async () => {
  const rand = mulberry32(SEED);
  let unknownTotal = 0;
  let unknownInLog = 0;
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    const target = 200 + Math.floor(rand() * 300);
    const { unknown, acks } = await storm(cycle, target, rand);
    expect(acks).toBeGreaterThanOrEqual(target);
    unknownTotal += unknown.length;

    await start(); // same data directory, new port
    const logs = await checkLogs();
    for (const u of unknown) if ((logs.get(u.scope) as LogLine[]).some((r) => markerOf(r.patch) === u.marker)) unknownInLog++;
    await waitPublished();

    await retryUnknown(unknown, logs);
    const after = await checkLogs();
    for (const u of unknown) {
      expect((after.get(u.scope) as LogLine[]).filter((r) => markerOf(r.patch) === u.marker)).toHaveLength(1);
    }

    // The restarted server's stream from 0 is exactly the log, then goes live with the next patch.
    const scope = SCOPES[cycle % SCOPES.length] as string;
    const log = after.get(scope) as LogLine[];
    const probe: Body = { session: 'probe', si: cycle, patch: [{ op: 'add', path: `/kprobe-${cycle}`, value: cycle }] };
    const events = await streamFromZero(scope, log.length, async () => {
      const res = await post(probe, scope);
      expect(res.status).toBe(200);
      const json = (await res.json()) as Reply;
      expect(json.ii).toBe(log.length + 1);
      acked.set(`probe-${cycle}`, { scope, ii: json.ii, patch: probe.patch });
    });
    expect(events.map((e) => e.event)).toEqual(Array(log.length + 1).fill('patch'));
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => String(i + 1)));
    expect(events.map((e) => ({ ii: e.data.ii, patch: e.data.patch }))).toEqual([
      ...log.map((r) => ({ ii: r.ii, patch: r.patch })),
      { ii: log.length + 1, patch: probe.patch },
    ]);
  }
  // The storm must have caught requests in flight, or the crash checks above checked nothing.
  expect(unknownTotal, `seed ${SEED}`).toBeGreaterThan(0);
  console.log(`crash test: seed ${SEED}, ${acked.size} acked, ${unknownTotal} unknown at kill (${unknownInLog} had committed)`);
});
