/**
 * `patchbay`, the operator CLI (`npm run patchbay -- <command>`, or `node dist/functions/cli.js`).
 * It builds the app from the environment, like `npm start` (PATCHBAY_MODE picks embedded or
 * google), runs one command and exits. Progress goes to stderr as a bar; results go to stdout as
 * JSON lines (one per scope that needs attention, then a summary), so they can be piped to jq.
 *
 *   bundle [scope] [--all]       bundle, snapshot and trim one scope, or every scope with work;
 *                                --all also bundles the short last bundle (inside retention)
 *   rebuild [scope] [--check]    rebuild each scope from cold storage and the log alone and
 *                                compare the hot cache with it; without --check, missing or wrong
 *                                cache entries are replaced. Exit code 1 when --check finds a
 *                                mismatch, or anything fails.
 *   --progress                   draw the bar even when stderr is not a terminal
 *
 * The embedded hot cache lives inside the server process, so in embedded mode `rebuild` sees an
 * empty cache: it still proves every scope rebuilds from cold storage and the log.
 */
import cliProgress from 'cli-progress';
import { createApp } from '../shared/app.js';
import { Bundler, type ScopeReport } from '../shared/cold/bundler.js';
import { type CacheCheck, checkCache } from '../shared/cold/rebuild.js';
import { ConfigError, loadConfig } from '../shared/config.js';
import type { ScopeSummary } from '../shared/ports/ledger.js';

const USAGE = `usage: patchbay bundle [scope] [--all] [--progress]
       patchbay rebuild [scope] [--check] [--progress]`;

const print = (x: unknown) => process.stdout.write(`${JSON.stringify(x)}\n`);

function bar(force: boolean, unit: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    {
      format: `{bar} {percentage}% | {value}/{total} ${unit} | {eta_formatted} | {scope}`,
      stream: process.stderr,
      noTTYOutput: force,
      notTTYSchedule: 500,
      hideCursor: null,
    },
    cliProgress.Presets.shades_classic,
  );
}

async function main(argv: string[]): Promise<number> {
  const flags = new Set(argv.filter((a) => a.startsWith('--')));
  const [command, scope, ...rest] = argv.filter((a) => !a.startsWith('--'));
  const known = command === 'bundle' ? ['--all', '--progress'] : command === 'rebuild' ? ['--check', '--progress'] : [];
  if ((command !== 'bundle' && command !== 'rebuild') || rest.length > 0 || [...flags].some((f) => !known.includes(f))) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig(process.env, { logLevel: 'off' });
  const app = await createApp(config, { sweeper: false, bundler: false });
  const progress = bar(flags.has('--progress'), command === 'bundle' ? 'patches' : 'scopes');
  try {
    const { ledger, cache } = app.adapters;
    const scopes: ScopeSummary[] = [];
    if (scope !== undefined) {
      const head = await app.engine.head(scope);
      scopes.push({ id: head.id, ii: head.ii, bundled: head.bundled, trimmed: head.trimmed });
    }

    if (command === 'bundle') {
      const bundler = new Bundler(ledger, app.adapters.blobs, config, {
        logError: (e) => process.stderr.write(`\n${JSON.stringify({ severity: 'ERROR', ...e })}\n`),
      });
      if (scope === undefined) for await (const s of bundler.dueScopes()) scopes.push(s);
      progress.start(
        scopes.reduce((n, s) => n + s.ii - s.bundled, 0),
        0,
        { scope: '' },
      );
      const total = { scopes: scopes.length, bundles: 0, snapshots: 0, patches: 0, trimmed: 0, leased: 0, fenced: 0, failed: 0 };
      for (const s of scopes) {
        progress.update({ scope: s.id });
        let r: ScopeReport;
        try {
          r = await bundler.bundleScope(s.id, { all: flags.has('--all'), onPatches: (n) => progress.increment(n) });
        } catch (err) {
          total.failed++;
          print({ id: s.id, error: String(err) });
          continue;
        }
        total.bundles += r.bundles;
        total.snapshots += r.snapshots;
        total.patches += r.patches;
        total.trimmed += r.trimmed;
        if (r.outcome === 'leased') total.leased++;
        if (r.outcome === 'fenced') total.fenced++;
        if (r.outcome !== 'done') print({ id: s.id, outcome: r.outcome });
      }
      progress.stop();
      print({ command: 'bundle', ...total });
      return total.failed > 0 ? 1 : 0;
    }

    if (scope === undefined) {
      let after = '';
      for (;;) {
        const page = await ledger.listScopes(after, 500);
        scopes.push(...page);
        if (page.length < 500) break;
        after = (page[page.length - 1] as ScopeSummary).id;
      }
    }
    const check = flags.has('--check');
    const counts: Record<CacheCheck['status'] | 'repaired' | 'failed', number> = { ok: 0, missing: 0, mismatch: 0, ahead: 0, repaired: 0, failed: 0 };
    progress.start(scopes.length, 0, { scope: '' });
    for (const s of scopes) {
      progress.update({ scope: s.id });
      try {
        const r = await checkCache(ledger, cache, app.engine.cold, s.id, { repair: !check });
        counts[r.status]++;
        if (r.repaired) counts.repaired++;
        if (r.status === 'mismatch' || r.status === 'ahead') print(r);
      } catch (err) {
        counts.failed++;
        print({ id: s.id, error: String(err) });
      }
      progress.increment();
    }
    progress.stop();
    print({ command: 'rebuild', check, scopes: scopes.length, ...counts });
    return counts.failed > 0 || (check && counts.mismatch + counts.ahead > 0) ? 1 : 0;
  } finally {
    progress.stop();
    await app.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof ConfigError ? err.message : err instanceof Error ? err.message : err);
    process.exit(err instanceof ConfigError ? 2 : 1);
  },
);
