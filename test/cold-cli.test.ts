/**
 * The ways the bundler runs in embedded mode, each keeping guarantee 6 (cold storage plus the log
 * tail reproduce every acknowledged patch):
 * - the operator CLI (dist/functions/cli.js, a real process on a real data directory):
 *   `bundle` with a progress bar, `bundle <scope> --all`, `rebuild --check` (a damaged bundle is
 *   reported with exit code 1), `rebuild` (fills the cache), usage errors;
 * - the timer of a long-running process (`npm start`), which tests and functions leave off.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../shared/app.js';
import { bundleKey } from '../shared/cold/names.js';
import type { Config } from '../shared/config.js';
import type { PatchRecord } from '../shared/protocol.js';
import { envFor, expectRecoverable, INITIAL, runCli, seed } from './helpers/cold.js';
import { startServer, tempDir, testConfig } from './helpers/server.js';

const SMALL = { bundlePatches: 10, snapshotEvery: 15, retainPatches: 5, retainMinutes: 0, trimChunk: 7 } satisfies Partial<Config>;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A data directory with these scopes (id → patches), built through the app and closed again. */
async function dataDir(scopes: Record<string, number>): Promise<{ dir: string; env: Record<string, string>; original: Map<string, PatchRecord[]> }> {
  const dir = tempDir('patchbay-cli-');
  dirs.push(dir);
  const app = await createApp(testConfig({ ...SMALL, dataDir: dir }), { sweeper: false });
  const original = new Map<string, PatchRecord[]>();
  for (const [id, n] of Object.entries(scopes)) {
    await app.engine.createScope('owner-1', { id, state: INITIAL });
    original.set(id, await seed(app.adapters.ledger, id, n));
  }
  await app.close();
  return { dir, env: { ...envFor({ ...SMALL, sqliteSync: 'normal', logLevel: 'off' }), PATCHBAY_DATA_DIR: dir }, original };
}

/** Opens the data directory again, runs `check` on the app, closes it. */
async function withApp<T>(dir: string, check: (app: App) => Promise<T>): Promise<T> {
  const app = await createApp(testConfig({ ...SMALL, dataDir: dir }), { sweeper: false });
  try {
    return await check(app);
  } finally {
    await app.close();
  }
}

describe('patchbay CLI (embedded)', () => {
  it('bundle: every scope with work, with a progress bar; then rebuild --check and rebuild', async () => {
    const { dir, env, original } = await dataDir({ alpha: 47, beta: 23, quiet: 4 });
    const bundled = await runCli(['bundle', '--progress'], env);
    expect(bundled.code, bundled.stderr).toBe(0);
    expect(bundled.lines.at(-1)).toEqual({ command: 'bundle', scopes: 2, bundles: 7, snapshots: 3, patches: 62, trimmed: 60, leased: 0, fenced: 0, failed: 0 });
    expect(bundled.stderr).toMatch(/\d+\/70 patches/); // the bar: alpha's 47 and beta's 23 to bundle
    await withApp(dir, async (app) => {
      expect(await app.adapters.ledger.getHead('alpha')).toMatchObject({ bundled: 42, trimmed: 42 });
      expect(await app.adapters.ledger.getHead('beta')).toMatchObject({ bundled: 20, trimmed: 18 });
      expect(await app.adapters.ledger.getHead('quiet')).toMatchObject({ bundled: 0, trimmed: 0 });
      for (const [id, records] of original) await expectRecoverable(app, id, records);
    });

    // a fresh process has an empty cache: nothing to compare, but every scope must rebuild
    const checked = await runCli(['rebuild', '--check'], env);
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.lines).toEqual([{ command: 'rebuild', check: true, scopes: 3, ok: 0, missing: 3, mismatch: 0, ahead: 0, repaired: 0, failed: 0 }]);
    const rebuilt = await runCli(['rebuild', 'alpha'], env);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(rebuilt.lines).toEqual([{ command: 'rebuild', check: false, scopes: 1, ok: 0, missing: 1, mismatch: 0, ahead: 0, repaired: 1, failed: 0 }]);
  });

  it('bundle <scope> --all bundles that scope to its head; rebuild --check fails on a damaged bundle', async () => {
    const { dir, env, original } = await dataDir({ gamma: 23, delta: 23 });
    const one = await runCli(['bundle', 'gamma', '--all'], env);
    expect(one.code, one.stderr).toBe(0);
    expect(one.lines.at(-1)).toMatchObject({ command: 'bundle', scopes: 1, bundles: 3, patches: 23, trimmed: 18 });
    await withApp(dir, async (app) => {
      expect(await app.adapters.ledger.getHead('gamma')).toMatchObject({ bundled: 23, trimmed: 18 });
      expect(await app.adapters.ledger.getHead('delta')).toMatchObject({ bundled: 0 });
      await expectRecoverable(app, 'gamma', original.get('gamma') as PatchRecord[]);
      await app.adapters.blobs.put(bundleKey('gamma', 11, 20), new Uint8Array([1, 2, 3]));
    });
    const checked = await runCli(['rebuild', '--check'], env);
    expect(checked.code).toBe(1);
    expect(checked.lines[0]).toMatchObject({ id: 'gamma' });
    expect(checked.lines[0].error).toMatch(/damaged/);
    expect(checked.lines.at(-1)).toMatchObject({ command: 'rebuild', scopes: 2, failed: 1 });
  });

  it('refuses unknown commands and flags (exit 2) and unknown scopes (exit 1)', async () => {
    const { env } = await dataDir({});
    for (const args of [[], ['frobnicate'], ['bundle', '--check'], ['rebuild', 'a', 'b'], ['rebuild', '--all']]) {
      const r = await runCli(args, env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/usage: patchbay/);
      expect(r.stderr).toContain('npm run patchbay -- --help');
    }
    const missing = await runCli(['bundle', 'nope'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/scope nope does not exist/);
    const bad = await runCli(['bundle'], { ...env, PATCHBAY_BUNDLE_PATCHES: 'many' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/PATCHBAY_BUNDLE_PATCHES/);
  });
});

describe('the bundler timer (embedded)', () => {
  const waitFor = async (pred: () => Promise<boolean>, what: string) => {
    const deadline = Date.now() + 15_000;
    while (!(await pred())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('runs in a long-running process, and closing the app waits for a run in progress', async () => {
    const dir = tempDir('patchbay-timer-');
    dirs.push(dir);
    const app = await createApp(testConfig({ ...SMALL, dataDir: dir, bundleIntervalMs: 50 }), { sweeper: false, bundler: true });
    let closed = false;
    try {
      await app.engine.createScope('o', { id: 'ticking', state: INITIAL });
      const original = await seed(app.adapters.ledger, 'ticking', 47);
      await waitFor(async () => (await app.adapters.ledger.getHead('ticking'))?.trimmed === 42, 'the timer to bundle and trim');
      await expectRecoverable(app, 'ticking', original);
      original.push(...(await seed(app.adapters.ledger, 'ticking', 30)));
      await new Promise((r) => setTimeout(r, 60)); // let a run start
      await app.close();
      closed = true;
      // closed mid-run or not, what is there is whole
      await withApp(dir, (reopened) => expectRecoverable(reopened, 'ticking', original));
    } finally {
      if (!closed) await app.close();
    }
  });

  it('is off in test servers (and in functions) unless asked for', async () => {
    const srv = await startServer({ ...SMALL, bundleIntervalMs: 50 });
    try {
      await srv.app.engine.createScope('o', { id: 'idle', state: INITIAL });
      await seed(srv.app.adapters.ledger, 'idle', 30);
      await new Promise((r) => setTimeout(r, 400));
      expect(await srv.app.adapters.ledger.getHead('idle')).toMatchObject({ bundled: 0, trimmed: 0 });
    } finally {
      await srv.close();
    }
  });
});
