/**
 * The bench worker: a child process (pinned like the servers) that does what is measured below
 * the HTTP API, answering JSON-line requests on stdin (see `Rpc` in harness.ts):
 *
 *   init        the mode's adapters (the server's SQLite file, or the same Firestore root and
 *               Redis as the server) and an Engine over them;
 *   buildLong   a scope of n patches (patches.ts), written through the ledger port in large
 *               commits (5,000 per SQLite transaction; 490 per Firestore transaction, its limit);
 *               with `bundle`, bundled and trimmed by the cold-storage Bundler every
 *               `bundleEvery` patches and at the end (retention: the last
 *               PATCHBAY_RETAIN_PATCHES in the hot log, no age limit), so that all but that tail
 *               is read back from bundles;
 *   rebuild     the fold of the whole log from the initial state: `Engine.stateAt(head)` after
 *               deleting the scope's hot-cache entry for a hot-log scope; for a bundled scope the
 *               same rebuild with snapshots off (`rebuildState(..., {snapshotGap: Infinity})`),
 *               since a cache miss there starts from the latest snapshot instead of folding;
 *   rawFold     the baseline of rebuild: the same log read with one bare query per page and
 *               folded with fast-json-patch directly (no checks, no copies, no port);
 *   rmwSingle   the raw Firestore baseline: n sequential read-modify-write transactions on one
 *               document with @google-cloud/firestore;
 *   rmwMany     W concurrent writers doing read-modify-write transactions across D documents.
 */
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import fjp from 'fast-json-patch';
import { adaptersFor } from '../shared/app.js';
import { Bundler } from '../shared/cold/bundler.js';
import { rebuildState } from '../shared/cold/rebuild.js';
import { type Config, loadConfig } from '../shared/config.js';
import { Engine } from '../shared/engine/engine.js';
import { cloneJson, type Json, jsonBytes } from '../shared/json.js';
import type { Logger } from '../shared/log.js';
import type { Adapters } from '../shared/ports/index.js';
import type { Patch, PatchRecord } from '../shared/protocol.js';
import { LONG_INITIAL, longPatch } from './patches.js';

/** Rows per page of the raw fold: as many as patchbay's rebuild reads per page. */
const RAW_PAGE = 10_000;

const logger: Logger = {
  request: () => {},
  error: (e) => process.stderr.write(`${JSON.stringify(e)}\n`),
};

let config: Config | undefined;
let adapters: Adapters | undefined;
let engine: Engine | undefined;
// biome-ignore lint/suspicious/noExplicitAny: the Firestore client is loaded lazily (google mode only)
let firestore: any;

const need = <T>(v: T | undefined, what: string): T => {
  if (v === undefined) throw new Error(`call init before ${what}`);
  return v;
};

async function fs() {
  if (!firestore) {
    const { Firestore } = await import('@google-cloud/firestore');
    firestore = new Firestore({ projectId: need(config, 'firestore').gcpProject, ignoreUndefinedProperties: true });
  }
  return firestore;
}

const methods: Record<string, (p: Record<string, unknown>) => Promise<unknown>> = {
  async init(p) {
    config = loadConfig({ ...process.env, ...(p.env as Record<string, string>) }, { logLevel: 'off' });
    adapters = await adaptersFor(config, logger);
    engine = new Engine(adapters, config, { logError: logger.error });
    return { mode: config.mode };
  },

  async buildLong(p) {
    const { ledger, blobs } = need(adapters, 'buildLong');
    const cfg = need(config, 'buildLong');
    const id = String(p.id);
    const n = Number(p.n);
    // With `bundle`, the bundler runs every `bundleEvery` patches (and at the end), as its timer
    // would in production: the hot log never holds more than bundleEvery + the retention window.
    // On the emulator that matters: it answers a log page by scanning the log collection.
    const bundleEvery = p.bundleEvery === undefined ? n : Number(p.bundleEvery);
    const chunk = cfg.mode === 'embedded' ? 5000 : 490;
    const now = Date.now();
    const t0 = performance.now();
    await ledger.createScope({
      id,
      meta: { owner: String(p.owner), domain: 'default', name: null, type: null, created: now, updated: now, size: jsonBytes(LONG_INITIAL) },
      initial: LONG_INITIAL,
    });
    const bundler = new Bundler(ledger, blobs, { ...cfg, retainMinutes: 0 }, { holder: 'bench', logError: logger.error });
    const built = { seconds: 0, bundleSeconds: 0, bundles: 0, snapshots: 0, trimmedTo: 0 };
    let state = cloneJson(LONG_INITIAL);
    for (let from = 1, bundledAt = 0; from <= n; from += chunk) {
      const to = Math.min(n, from + chunk - 1);
      const records: PatchRecord[] = [];
      for (let i = from; i <= to; i++) {
        const patch = longPatch(i);
        state = fjp.applyPatch(state, patch as fjp.Operation[], false, true).newDocument as Json;
        records.push({ scope: id, ii: i, patch, at: now, by: String(p.owner), session: null, si: null, hash: `bench-${i}`, epoch: 0 });
      }
      const size = jsonBytes(state);
      await ledger.commit(id, async (view) => {
        if (view.head.ii !== from - 1) throw new Error(`buildLong: head at ${view.head.ii}, expected ${from - 1}`);
        for (const r of records) r.epoch = view.head.epoch;
        return { records, meta: { updated: now, size }, result: null };
      });
      if (p.bundle === true && (to - bundledAt >= bundleEvery || to === n)) {
        const t1 = performance.now();
        // The server under test bundles too (its sweep reaches this scope once it has enough
        // unbundled patches): while it holds the scope's bundle lease, wait for it and go on.
        let report = await bundler.bundleScope(id);
        for (let tries = 0; report.outcome === 'leased' && tries < 120; tries++) {
          await new Promise((r) => setTimeout(r, 500));
          report = await bundler.bundleScope(id);
        }
        if (report.outcome !== 'done') throw new Error(`buildLong: bundling ended ${report.outcome}`);
        built.bundleSeconds += (performance.now() - t1) / 1000;
        built.bundles += report.bundles;
        built.snapshots += report.snapshots;
        built.trimmedTo = report.trimmedTo;
        bundledAt = to;
      }
    }
    built.seconds = (performance.now() - t0) / 1000 - built.bundleSeconds;
    return built;
  },

  async rebuild(p) {
    const id = String(p.id);
    const eng = need(engine, 'rebuild');
    const head = await eng.head(id);
    await need(adapters, 'rebuild').cache.delete(id);
    const t0 = performance.now();
    const state =
      head.bundled > 0
        ? await rebuildState(need(adapters, 'rebuild').ledger, eng.cold, id, head.ii, { snapshotGap: Number.POSITIVE_INFINITY, trimmed: head.trimmed })
        : await eng.stateAt(id, head.ii);
    const seconds = (performance.now() - t0) / 1000;
    return { rate: head.ii / seconds, ops: head.ii, seconds, bytes: jsonBytes(state) };
  },

  async rawFold(p) {
    // The page patchbay's own rebuild reads (shared/cold/log.ts PATCH_PAGE), so the baseline
    // differs from it only in what patchbay does on top.
    const id = String(p.id);
    const cfg = need(config, 'rawFold');
    let state = cloneJson(LONG_INITIAL);
    let count = 0;
    const t0 = performance.now();
    if (cfg.mode === 'embedded') {
      const db = new Database(`${cfg.dataDir}/patchbay.sqlite`, { readonly: true });
      try {
        const page = db.prepare<[string, number, number], { ii: number; patch: string }>(
          'SELECT ii, patch FROM patches WHERE scope = ? AND ii > ? ORDER BY ii LIMIT ?',
        );
        for (let last = 0; ; ) {
          const rows = page.all(id, last, RAW_PAGE);
          for (const r of rows) state = fjp.applyPatch(state, JSON.parse(r.patch) as fjp.Operation[], false, true).newDocument as Json;
          count += rows.length;
          if (rows.length < RAW_PAGE) break;
          last = (rows[rows.length - 1] as { ii: number }).ii;
        }
      } finally {
        db.close();
      }
    } else {
      const db = await fs();
      const log = db.collection(cfg.firestoreRoot).doc(id).collection('log');
      for (let last = 0; ; ) {
        const snap = await log.where('ii', '>', last).orderBy('ii').limit(RAW_PAGE).select('ii', 'patch').get();
        for (const d of snap.docs) state = fjp.applyPatch(state, JSON.parse(d.get('patch')) as Patch as fjp.Operation[], false, true).newDocument as Json;
        count += snap.size;
        if (snap.size < RAW_PAGE) break;
        last = snap.docs[snap.size - 1].get('ii');
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    return { rate: count / seconds, ops: count, seconds, bytes: jsonBytes(state) };
  },

  async rmwSingle(p) {
    const db = await fs();
    const ref = db.collection(`bench-rmw-${process.pid}`).doc(`one-${Date.now()}`);
    await ref.set({ n: 0 });
    const n = Number(p.n);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      // biome-ignore lint/suspicious/noExplicitAny: Firestore's Transaction type is loaded lazily
      await db.runTransaction(async (tx: any) => {
        const snap = await tx.get(ref);
        tx.update(ref, { n: snap.get('n') + 1 });
      });
    }
    const seconds = (performance.now() - t0) / 1000;
    return { rate: n / seconds, ops: n, seconds };
  },

  async rmwMany(p) {
    const db = await fs();
    const writers = Number(p.writers);
    const perWriter = Number(p.perWriter);
    const docs = Number(p.docs);
    const col = db.collection(`bench-rmw-many-${process.pid}-${Date.now()}`);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        let x = (w * 2654435761) >>> 0;
        for (let i = 0; i < perWriter; i++) {
          x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
          const ref = col.doc(`d${x % docs}`);
          // biome-ignore lint/suspicious/noExplicitAny: Firestore's Transaction type is loaded lazily
          await db.runTransaction(async (tx: any) => {
            const snap = await tx.get(ref);
            if (snap.exists) tx.update(ref, { n: snap.get('n') + 1 });
            else tx.set(ref, { n: 1 });
          });
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { rate: (writers * perWriter) / seconds, ops: writers * perWriter, seconds };
  },
};

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const { id, method, params } = JSON.parse(line) as { id: number; method: string; params: Record<string, unknown> };
  const run = methods[method];
  (run ? run(params) : Promise.reject(new Error(`no method ${method}`))).then(
    (value) => process.stdout.write(`${JSON.stringify({ id, ok: true, value })}\n`),
    (err: unknown) => process.stdout.write(`${JSON.stringify({ id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) })}\n`),
  );
});
lines.on('close', () => process.exit(0));
process.once('SIGTERM', () => process.exit(0));
console.log(JSON.stringify({ ready: true }));
