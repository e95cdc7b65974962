/**
 * The mirror's lag on the emulator stack under write-hot (issue 14's "p99 ≤ 1 s"), called by
 * bench/mirror.ts. The stand-ins run in a child (bench/stack.ts: the Firestore and Pub/Sub
 * emulators, redis-server behind the Upstash gateway, the GCS server); this process holds two
 * Google-mode apps on namespaces of their own (collection, topic, cache keys), as in
 * test/mirror.emulator.test.ts:
 * - mirrored: a private Postgres as PATCHBAY_MIRROR_URL, domains whose configuration mirrors the
 *   hot scope's type, and the built-in `mirror` consumer fed by a Pub/Sub push subscription
 *   (ordered, with its filter) to the app's `push` handler on a real socket. W writers patch one
 *   scope concurrently through the engine (Firestore commit, then publish); the lag is the
 *   consumer's own samples (commit → upsert committed, shared/mirror/lag.ts) read back with
 *   Mirror.status. The warm-up round writes to another domain, so the measured domain's window
 *   holds the measured round's samples only. Also printed: the time from the last write's answer
 *   to the row at the head's `ii` being visible in Postgres (polled every 10 ms).
 * - baseline: the same write-hot on an app with no mirror (no mirror URL, no push subscription)
 *   on the same stack, throughput next to the mirrored app's: what the mirror's push handling in
 *   the same process and on the same emulators costs the writers. (Not an SSE fan-out latency:
 *   throughput is the cheaper of the two and the same baseline as the embedded section.)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PubSub } from '@google-cloud/pubsub';
import pg from 'pg';
import { hasTool } from '../infra/local/proc.js';
import { type App, createApp } from '../shared/app.js';
import { loadConfig } from '../shared/config.js';
import { loadDomainConfig, StaticConfigs } from '../shared/domains/active.js';
import { BUILT_IN_CONSUMERS } from '../shared/domains/consumers.js';
import { MIRROR_CONSUMER } from '../shared/domains/mirror-step.js';
import { mirrorTablesSchema } from '../shared/mirror/definitions.js';
import { FLUSH_MS, LAG_WINDOW_MS } from '../shared/mirror/lag.js';
import { schemaName } from '../shared/mirror/sql.js';
import type { Mirror } from '../shared/ports/mirror.js';
import { startNode } from './harness.js';

export interface EmulatorLagOptions {
  writers: number;
  perWriter: number;
  /** The domain configuration's text (mirrors type `hot` into table `hot`). */
  configText: string;
  /** A Postgres for the mirror (postgres://…). */
  postgresUrl: string;
  say: (line: string) => void;
}

const MEASURED = 'emu.example.com';
const WARM = 'emu-warm.example.com';

const pct = (xs: number[], p: number): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
const ms = (n: number | null) => (n === null ? 'n/a' : `${n.toFixed(1)} ms`);

/** Why the section cannot run here, or null. */
export function emulatorLagUnavailable(): string | null {
  if (!hasTool('gcloud')) return 'no gcloud (the Firestore and Pub/Sub emulators)';
  if (!hasTool('redis-server')) return 'no redis-server';
  return null;
}

/** W writers × P patches on one scope of `domain`, through the engine; patches/s (also the embedded section's, bench/mirror.ts). */
export async function writeHot(app: App, id: string, domain: string, writers: number, perWriter: number, onAck?: (ii: number) => void): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < perWriter; i++) {
        const ack = await app.engine.submit(id, 'bench-user', { patch: [{ op: 'replace', path: '/n', value: w * perWriter + i }] }, { domain });
        onAck?.(ack.ii);
      }
    }),
  );
  return (writers * perWriter) / ((performance.now() - t0) / 1000);
}

export async function lagOnEmulators(o: EmulatorLagOptions): Promise<void> {
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) await s().catch((err) => console.error(err));
  };
  try {
    const t0 = performance.now();
    const stack = await startNode('dist/bench/stack.js', [], { timeoutMs: 120_000, stopTimeoutMs: 60_000 });
    stops.push(stack.stop);
    const env = stack.info.env as Record<string, string>;
    // The client libraries read these from this process's environment.
    for (const k of ['FIRESTORE_EMULATOR_HOST', 'PUBSUB_EMULATOR_HOST', 'STORAGE_EMULATOR_HOST', 'METADATA_SERVER_DETECTION']) process.env[k] = env[k];
    o.say(`  (stack up in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

    const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-mirror-emu-'));
    stops.push(async () => rmSync(dir, { recursive: true, force: true }));
    const appFor = async (ns: string, mirrored: boolean): Promise<App> => {
      const configs = new StaticConfigs();
      if (mirrored) for (const d of [MEASURED, WARM]) configs.set(d, loadDomainConfig(o.configText, { maxConfigBytes: 65_536 }));
      const config = loadConfig(env, {
        port: 0,
        host: '127.0.0.1',
        logLevel: 'error',
        dataDir: join(dir, ns),
        limits: 'off',
        firestoreRoot: `mirror-${ns}`,
        pubsubTopic: `patches-${ns}`,
        pubsubSubscriptionPrefix: `sse-${ns}`,
        cachePrefix: `pb:${ns}:`,
        mirrorUrl: mirrored ? o.postgresUrl : '',
        domainCacheMs: 0,
      });
      const app = await createApp(config, { configs, sweeper: false, deliverLocally: false });
      stops.push(() => app.close());
      return app;
    };
    const on = await appFor('on', true);
    const off = await appFor('off', false);
    const mirror = on.mirror as Mirror;

    // The mirror consumer's push endpoint, and its subscription as deployed (ordered, filtered).
    // Each push delivery's time in the handler (consumer: cursor read and advance, head read, upsert).
    const pushes: Array<{ at: number; ms: number; ok: boolean }> = [];
    const server = createServer((req, res) => {
      const t = performance.now();
      void on.push(req, res).finally(() => pushes.push({ at: t, ms: performance.now() - t, ok: res.statusCode < 300 }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    stops.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const pushUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const pubsub = new PubSub({ projectId: on.config.gcpProject });
    stops.push(() => pubsub.close());
    const [topic] = await pubsub.topic(on.config.pubsubTopic).get({ autoCreate: true });
    const filter = BUILT_IN_CONSUMERS[MIRROR_CONSUMER]?.filter;
    const [sub] = await topic.createSubscription(`${MIRROR_CONSUMER}-${randomUUID().slice(0, 8)}`, {
      pushConfig: { pushEndpoint: `${pushUrl}/push/${MIRROR_CONSUMER}` },
      enableMessageOrdering: true,
      ...(filter ? { filter } : {}),
    });
    stops.push(async () => void (await sub.delete()));

    const tables = mirrorTablesSchema.parse(loadDomainConfig(o.configText, { maxConfigBytes: 65_536 }).config.tables);
    for (const d of [MEASURED, WARM]) await mirror.ensure(d, tables);
    const db = new pg.Client({ connectionString: o.postgresUrl });
    await db.connect();
    stops.push(() => db.end());
    const rowIi = async (domain: string): Promise<number> => {
      const r = await db.query(`SELECT _ii FROM "${schemaName(domain)}".hot WHERE id = $1`, [`hot-${domain}`]);
      return r.rows.length === 0 ? -1 : Number(r.rows[0]._ii);
    };
    /** Ms until the mirrored row of the domain's hot scope is at `ii` (null: not within 60 s). */
    const visibleAt = async (domain: string, ii: number): Promise<number | null> => {
      const t = performance.now();
      while ((await rowIi(domain)) < ii) {
        if (performance.now() - t > 60_000) return null;
        await new Promise((r) => setTimeout(r, 10));
      }
      return performance.now() - t;
    };

    for (const d of [MEASURED, WARM]) await on.engine.createScope('bench-user', { id: `hot-${d}`, type: 'hot', state: { n: 0 } }, { domain: d });
    await off.engine.createScope('bench-user', { id: 'hot', type: 'hot', state: { n: 0 } }, { domain: MEASURED });
    // Warm-up: a round each (the mirrored one on the other domain), then wait for the mirror to catch up.
    await writeHot(on, `hot-${WARM}`, WARM, o.writers, o.perWriter);
    await writeHot(off, 'hot', MEASURED, o.writers, o.perWriter);
    await visibleAt(WARM, (await on.engine.head(`hot-${WARM}`)).ii);
    // The row is at the head long before the warm-up's last events are delivered (each is still
    // pushed, its cursor advanced): wait for the deliveries to stop, so the round has the consumer alone.
    const quiet = async () => {
      for (let n = -1, still = 0; still < 3 && performance.now() - t0 < 300_000; ) {
        await new Promise((r) => setTimeout(r, 500));
        still = pushes.length === n ? still + 1 : 0;
        n = pushes.length;
      }
    };
    await quiet();
    const warmDeliveries = pushes.length;

    // Seen from outside too, for every patch: its answer → a row at or past its `ii` visible,
    // the row's `_ii` polled every 10 ms while the round runs (an upper bound by up to a poll).
    const answered = new Map<number, number>();
    const seen: number[] = [];
    let visible = await rowIi(MEASURED);
    let writing = true;
    let last = performance.now();
    const poller = (async () => {
      while (writing || answered.size > 0) {
        const now = await rowIi(MEASURED);
        const t = performance.now();
        if (now > visible) {
          visible = now;
          for (const [ii, at] of answered)
            if (ii <= visible) {
              seen.push(t - at);
              answered.delete(ii);
            }
        }
        if (!writing && performance.now() - last > 60_000) break;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const onAck = (ii: number) => {
      last = performance.now();
      if (ii <= visible) seen.push(0);
      else answered.set(ii, last);
    };
    pushes.length = 0;
    const roundStart = performance.now();
    const withMirror = await writeHot(on, `hot-${MEASURED}`, MEASURED, o.writers, o.perWriter, onAck);
    writing = false;
    const headIi = (await on.engine.head(`hot-${MEASURED}`)).ii;
    const drain = await visibleAt(MEASURED, headIi);
    await poller;
    const drained = performance.now();
    const inRound = pushes.filter((p) => p.at >= roundStart && p.at <= drained);
    const handled = inRound.map((p) => p.ms);
    const refused = inRound.filter((p) => !p.ok).length;
    const busy = handled.reduce((a, b) => a + b, 0);
    // Every delivery of the round, up to the last (the events queued behind the row's catch-up):
    // the consumer's rate, in events per second of the round.
    await quiet();
    const round = pushes.filter((p) => p.at >= roundStart);
    const lastDone = Math.max(...round.map((p) => p.at + p.ms));
    const without = await writeHot(off, 'hot', MEASURED, o.writers, o.perWriter);
    await new Promise((r) => setTimeout(r, FLUSH_MS * 2)); // the lag recorder's timer writes the last samples
    const s = await mirror.status(MEASURED, LAG_WINDOW_MS);
    const n = o.writers * o.perWriter;
    o.say(
      `  mirror lag (commit → row visible, Pub/Sub push to the consumer, Postgres), ${s.lag.count} samples for ${n} patches: p50 ${ms(s.lag.p50)}, p99 ${ms(s.lag.p99)}, max ${ms(s.lag.max)}`,
    );
    o.say(
      `  seen from outside (each patch's answer → a row at or past it, polled every 10 ms), ${seen.length} of ${n} patches: p50 ${ms(pct(seen, 50))}, p99 ${ms(pct(seen, 99))}, max ${ms(pct(seen, 100))}${answered.size > 0 ? `; ${answered.size} never seen within 60 s` : ''}`,
    );
    o.say(`  the last write's answer → its row visible in Postgres: ${drain === null ? 'not within 60 s' : ms(drain)}`);
    o.say(`  (the warm-up's ${warmDeliveries} deliveries were over before the round)`);
    o.say(
      `  push deliveries to the mirror consumer from the round's start to the row at the head: ${handled.length} (${refused} answered non-2xx, so redelivered), ${ms(pct(handled, 50))} p50 / ${ms(pct(handled, 99))} p99 each in the handler, handler time ${((100 * busy) / (drained - roundStart)).toFixed(0)}% of the wall time (over 100%: deliveries overlap) of ${ms(drained - roundStart)}`,
    );
    o.say(
      `  every delivery of the round: ${round.length} events in ${ms(lastDone - roundStart)} from the round's start = ${((1000 * round.length) / (lastDone - roundStart)).toFixed(0)} events/s (writes: ${withMirror.toFixed(0)} patches/s)`,
    );
    o.say(
      `  write-hot throughput with the mirror ${withMirror.toFixed(0)} patches/s vs without (baseline, same stack) ${without.toFixed(0)} patches/s = ${(withMirror / without).toFixed(2)}x`,
    );
  } finally {
    await stopAll();
  }
}
