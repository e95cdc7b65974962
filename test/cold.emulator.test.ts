/**
 * Cold storage on the Google stack (guarantee 6: cold storage plus the log tail reproduce every
 * acknowledged patch; bundling and trimming never lose one): the shared cold-storage contract on
 * the real Firestore emulator (ledger: pointers, fenced transactions, chunked trims that delete
 * retry documents too) and the project's Cloud Storage server through the real
 * @google-cloud/storage client (bundles and snapshots), with Redis behind the Upstash gateway
 * as the hot cache. FirestoreLedger sizes each trim chunk to one transaction's write limit.
 * Plus the bundler's Google entry points: the operator CLI in google mode
 * (bundle, and rebuild --check finding a wrong Redis entry) and the `bundle` Cloud Function
 * served by the real Functions Framework.
 */
import { randomUUID } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirestoreLedger } from '../shared/adapters/google/firestore/ledger.js';
import type { Config } from '../shared/config.js';
import { coldContract } from './contract/cold.js';
import { envFor, expectRecoverable, INITIAL, runCli, seed, stateAfter } from './helpers/cold.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { freePort, skipWithout, spawnService, waitForPort } from './helpers/proc.js';
import { startServer } from './helpers/server.js';

const SMALL = { bundlePatches: 10, snapshotEvery: 15, retainPatches: 5, retainMinutes: 0, trimChunk: 7 } satisfies Partial<Config>;
const FRAMEWORK = 'node_modules/@google-cloud/functions-framework/build/src/main.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

describe.skipIf(skip)('cold storage on the Google stack', () => {
  let stack: GoogleStack;
  beforeAll(async () => {
    stack = await startGoogleStack();
  }, 180_000);
  afterAll(() => stack?.stop());

  // Every crash point after its step, and the first of each kind before it: the emulator is slow.
  coldContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }), { crashes: 'lean' });

  it('FirestoreLedger trims as many records per transaction as its write limit allows (a delete per record and per retry document)', async () => {
    const db = new Firestore({ projectId: stack.projectId });
    try {
      const ledger = new FirestoreLedger(db, { root: `trim-${randomUUID().slice(0, 8)}`, maxWrites: 10 });
      const meta = { owner: 'o', domain: 'default', name: null, type: null, created: 1, updated: 1, size: 2 };
      await ledger.createScope({ id: 'with-retries', meta, initial: INITIAL });
      await seed(ledger, 'with-retries', 12, { session: 'tab', chunk: 4 });
      await ledger.createScope({ id: 'plain', meta, initial: INITIAL });
      await seed(ledger, 'plain', 12, { chunk: 8 });
      for (const id of ['with-retries', 'plain']) {
        const epoch = (await ledger.acquireLease(id, 'b', 60_000)) as number;
        await ledger.advanceBundled(id, 'b', epoch, 12);
      }
      const trims = async (id: string) => {
        const epoch = (await ledger.getHead(id))?.epoch as number;
        const out: Array<number | null> = [];
        let t: number | null = 0;
        while (t !== null && t < 12) {
          t = await ledger.trimLog(id, 'b', epoch, 12, 100);
          out.push(t);
        }
        return out;
      };
      // 1 pointer write + 2 per record with a retry document: 4 records fit in 10 writes
      expect(await trims('with-retries')).toEqual([4, 8, 12]);
      expect(await trims('plain')).toEqual([9, 12]);
      const keys = Array.from({ length: 12 }, (_, i) => ({ session: 'tab', si: i + 1 }));
      expect((await ledger.commit('with-retries', async (view) => ({ records: [], result: await view.findRetries(keys) }))).size).toBe(0);
    } finally {
      await db.terminate();
    }
  });

  describe('entry points', () => {
    it('the CLI bundles in google mode, and rebuild --check finds and repairs a wrong Redis entry', async () => {
      const cfg = { ...stack.config(), ...SMALL };
      const srv = await startServer(cfg);
      try {
        const { engine, adapters } = srv.app;
        await engine.createScope('o', { id: 'cli-busy', state: INITIAL });
        const busy = await seed(adapters.ledger, 'cli-busy', 23);
        await engine.createScope('o', { id: 'cli-quiet', state: INITIAL });
        await seed(adapters.ledger, 'cli-quiet', 4);
        const env = envFor({ ...cfg, logLevel: 'off' });

        const bundled = await runCli(['bundle'], env);
        expect(bundled.code, bundled.stderr).toBe(0);
        expect(bundled.lines).toEqual([{ command: 'bundle', scopes: 1, bundles: 2, snapshots: 1, patches: 20, trimmed: 18, leased: 0, fenced: 0, failed: 0 }]);
        await expectRecoverable(srv.app, 'cli-busy', busy); // (also leaves the right state in Redis)

        await adapters.cache.delete('cli-quiet');
        await adapters.cache.put('cli-quiet', 4, { n: 'wrong' });
        const checked = await runCli(['rebuild', '--check'], env);
        expect(checked.code).toBe(1);
        expect(checked.lines).toEqual([
          { id: 'cli-quiet', ii: 4, cached: 4, status: 'mismatch', repaired: false },
          { command: 'rebuild', check: true, scopes: 2, ok: 1, missing: 0, mismatch: 1, ahead: 0, repaired: 0, failed: 0 },
        ]);
        const repaired = await runCli(['rebuild'], env);
        expect(repaired.code, repaired.stderr).toBe(0);
        expect(repaired.lines.at(-1)).toMatchObject({ mismatch: 1, repaired: 1 });
        expect(await adapters.cache.get('cli-quiet')).toEqual({ ii: 4, state: stateAfter(4) });
      } finally {
        await srv.close();
      }
    });

    it('the bundle function (a Cloud Scheduler target) bundles every scope with work and answers its report', async () => {
      const cfg = { ...stack.config(), ...SMALL };
      const srv = await startServer(cfg);
      const port = await freePort();
      const fn = spawnService(process.execPath, [FRAMEWORK, '--target=bundle', '--source=dist/functions/index.js', `--port=${port}`], {
        NODE_ENV: 'production',
        ...envFor({ ...cfg, logLevel: 'error' }),
      });
      try {
        const { engine, adapters } = srv.app;
        await engine.createScope('o', { id: 'fn-busy', state: INITIAL });
        const busy = await seed(adapters.ledger, 'fn-busy', 47);
        await waitForPort(port);
        const url = `http://127.0.0.1:${port}`;
        const all = await fetch(url, { method: 'POST' });
        expect(all.status, fn.output()).toBe(200);
        expect(await all.json()).toEqual({
          scopes: 1,
          worked: 1,
          bundles: 5,
          snapshots: 2,
          patches: 42,
          trimmed: 42,
          leased: 0,
          fenced: 0,
          failed: [],
          complete: true,
        });
        await expectRecoverable(srv.app, 'fn-busy', busy);

        busy.push(...(await seed(adapters.ledger, 'fn-busy', 3)));
        const one = await fetch(`${url}/?scope=fn-busy`, { method: 'POST' });
        // 43..45 are leaving the retention window (last 5 of 50): a short bundle, then the trim
        expect(await one.json()).toMatchObject({ id: 'fn-busy', outcome: 'done', bundles: 1, patches: 3, trimmed: 3, bundledTo: 45, trimmedTo: 45 });
        await expectRecoverable(srv.app, 'fn-busy', busy);
        const missing = await fetch(`${url}/?scope=nope`, { method: 'POST' });
        expect(missing.status).toBe(404);
        expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('scope_not_found');
      } finally {
        await fn.stop();
        await srv.close();
      }
    });
  });
});
