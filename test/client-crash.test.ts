/**
 * The client across `kill -9` of the server mid-batch (issue 16): guarantees 1 and 5 seen from the
 * client. One client writes two scopes as fast as it can (its patches batched through
 * POST /v1/batch, one request in flight per scope); the real server process (dist/functions/serve.js,
 * SQLite with synchronous=FULL) is SIGKILLed while a batch is in flight, the client keeps writing
 * while it is down, and the server restarts on the same data directory. Afterwards each scope's log
 * is exactly the client's acknowledged patches: every patch the client made acknowledged once, at
 * the index its ack named, none missing, none twice (a batch whose answer died with the server is
 * resent with the same (session, si) and acknowledged as a duplicate if it had committed), and the
 * client's state is the server's. Twice, on one data directory.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Ack, createClient, type LiveScope, type Patch } from '../client/src/index.js';
import { newClient, removeTempDirs, request, spawnServer, tempDir } from './helpers/server.js';

const CYCLES = 2;
const PER_TICK = 4;
const dataDir = tempDir('patchbay-client-crash-');
const env = { PATCHBAY_DATA_DIR: dataDir, PATCHBAY_SQLITE_SYNC: 'full', PATCHBAY_LIMITS: 'off' };
let url = '';
let child: ChildProcess;
const children = new Set<ChildProcess>();

async function start(): Promise<void> {
  const s = await spawnServer(env);
  child = s.child;
  children.add(child);
  url = s.url;
}

async function killHard(): Promise<void> {
  const c = child;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGKILL');
  await exited;
  children.delete(c);
}

beforeAll(start);
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  removeTempDirs();
});

it(`every patch the client made is in the log once, at its acked index, across ${CYCLES} SIGKILLs mid-batch`, async () => {
  const token = (await newClient(url)).token;
  // The client keeps one base URL; its fetch sends to wherever the server runs now (a new port after each restart).
  let batchesInFlight = 0;
  /** Batch requests sent before a kill whose answer never came (the server died with them). */
  let cutByKill = 0;
  let kills = 0;
  let duplicates = 0;
  let killing: Promise<void> | undefined;
  let acked = 0;
  const routed: typeof fetch = async (input, init) => {
    const target = String(input).replace('http://patchbay.invalid', url);
    const batch = init?.method === 'POST' && target.endsWith('/v1/batch');
    if (!batch) return fetch(target, init);
    batchesInFlight++;
    const sentBefore = kills;
    try {
      const res = await fetch(target, init);
      const body = await res.text();
      duplicates += (body.match(/"duplicate":true/g) ?? []).length;
      return new Response(body, { status: res.status, headers: res.headers });
    } catch (err) {
      if (kills > sentBefore) cutByKill++;
      throw err;
    } finally {
      batchesInFlight--;
    }
  };
  const client = createClient({ url: 'http://patchbay.invalid', token, fetch: routed, compose: false }); // one log entry per call, each checked at its acked index
  const scopes: LiveScope[] = [];
  for (const id of ['cc-a', 'cc-b']) {
    const res = await request(url, 'POST', '/v1/scopes', { token, body: { id, state: { list: [] } } });
    expect(res.status).toBe(201);
    scopes.push(client.scope(id));
  }
  await Promise.all(scopes.map((s) => s.ready));
  const made: Array<{ scope: string; patch: Patch; ack: Promise<Ack> }> = [];
  let n = 0;
  const write = (s: LiveScope) => {
    const marker = `m${++n}`;
    const patch: Patch = [
      { op: 'add', path: '/list/-', value: marker },
      { op: 'add', path: `/${marker}`, value: n },
    ];
    const ack = s.patch(patch);
    ack.then(() => acked++).catch(() => {});
    made.push({ scope: s.id, patch, ack });
  };

  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    // A kill can land just after the batch in flight was answered: then it proved nothing about
    // batches cut mid-flight, so the cycle is run again (its writes still count), up to a bound.
    const cutBefore = cutByKill;
    let attempts = 0;
    while (cutByKill === cutBefore && attempts < 6) {
      attempts++;
      const killAt = acked + 150 + Math.floor(Math.random() * 150);
      killing = undefined;
      while (killing === undefined) {
        for (const s of scopes) for (let k = 0; k < PER_TICK; k++) write(s);
        await new Promise((r) => setTimeout(r, 2));
        if (acked >= killAt && batchesInFlight > 0) {
          kills++;
          killing = killHard();
        }
      }
      await killing;
      // The server is down: writes go on, queued by the client.
      for (const s of scopes) for (let k = 0; k < 10; k++) write(s);
      await new Promise((r) => setTimeout(r, 300));
      await start(); // same data directory, new port
      await client.synced();
    }
    expect(cutByKill - cutBefore, `cycle ${cycle}: a kill cut a batch in flight (${attempts} attempts)`).toBeGreaterThan(0);
  }

  const acks = await Promise.all(made.map((m) => m.ack));
  expect(batchesInFlight).toBe(0);
  for (const s of scopes) {
    const res = await fetch(`${url}/v1/scopes/${s.id}/patches`, { headers: { authorization: `Bearer ${token}` } });
    const log = (await res.text())
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { ii: number; patch: Patch });
    const mine = made.map((m, i) => ({ ...m, ii: (acks[i] as Ack).ii })).filter((m) => m.scope === s.id);
    // The log is exactly this client's acknowledged patches: one record per patch made, at its acked index.
    expect(log.map((r) => r.ii)).toEqual(log.map((_, i) => i + 1));
    expect(log.length).toBe(mine.length);
    for (const m of mine) expect(log[m.ii - 1]?.patch).toEqual(m.patch);
    // Made in this order, committed in this order.
    expect(mine.map((m) => m.ii)).toEqual(mine.map((_, i) => i + 1));
    const head = await request(url, 'GET', `/v1/scopes/${s.id}`, { token });
    expect(head.json.ii).toBe(mine.length);
    await s.synced();
    expect(s.state).toEqual(head.json.state);
  }
  client.close();
  console.log(`client crash test: ${made.length} patches, ${cutByKill} batches cut by the kills, ${duplicates} resent patches acknowledged as duplicates`);
}, 240_000);
