/**
 * `patchbay`, the operator CLI (`npm run patchbay -- <command>`, or `node dist/functions/cli.js`).
 * It builds the app from the environment, like `npm start` (PATCHBAY_MODE picks embedded or
 * google), runs one command and exits. Progress goes to stderr as a bar; results go to stdout as
 * JSON lines (one per scope that needs attention, then a summary), so they can be piped to jq.
 * HELP below is the reference for every command, flag and exit code.
 *
 * The embedded hot cache lives inside the server process, so in embedded mode `rebuild` sees an
 * empty cache: it still proves every scope rebuilds from cold storage and the log.
 */
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { createApp } from '../shared/app.js';
import { Bundler, type ScopeReport } from '../shared/cold/bundler.js';
import { type CacheCheck, checkCache } from '../shared/cold/rebuild.js';
import { ConfigError, loadConfig } from '../shared/config.js';
import type { ScopeSummary } from '../shared/ports/ledger.js';

const USAGE = 'usage: patchbay bundle [scope] [--all] [--progress] | rebuild [scope] [--check] [--progress] | help';

const HELP = `patchbay: the operator CLI. Runs one command on the stack the environment describes, then exits.

usage: npm run patchbay -- <command> [scope] [flags]
       node dist/functions/cli.js <command> [scope] [flags]   (after npm run build)

commands:
  bundle [scope]    Bundle, snapshot and trim one scope, or every scope with patches to bundle:
                    writes gzip NDJSON bundles to the blob store, moves the scope's bundle
                    pointer, then trims the hot log beyond the retention window.
    --all           also bundle the short last bundle (patches inside the retention window)
  rebuild [scope]   Rebuild one scope, or every scope, from cold storage and the log alone and
                    compare the hot cache with it; missing or wrong cache entries are replaced.
    --check         only compare, replace nothing; exit 1 on a mismatch
  help              print this help (same as --help)

flags for every command:
  --progress        draw the progress bar even when stderr is not a terminal
  -h, --help        print this help and exit 0

output: one JSON line per scope that needs attention, then a summary line, on stdout (use
  npm run -s patchbay ... | jq to keep npm's banner out); the progress bar goes to stderr.
exit codes: 0 done; 1 a scope failed, or rebuild --check found a mismatch; 2 a usage or
  configuration error.

environment: the same settings as npm start (shared/config.ts, .env.example).
  embedded (default): PATCHBAY_DATA_DIR (default ./data), the directory npm start uses.
  google: PATCHBAY_MODE=google, PATCHBAY_GCP_PROJECT, PATCHBAY_BUCKET, UPSTASH_REDIS_REST_URL,
    UPSTASH_REDIS_REST_TOKEN, PATCHBAY_JWT_SECRET.
  against npm run dev:cloud: it writes all of those, and the emulator hosts, to
    PATCHBAY_DATA_DIR/cloud/cli.env while it runs:
    (set -a; . ./data/cloud/cli.env; npm run patchbay -- rebuild --check)`;

/** A usage error: what was wrong, the short usage, and where the full help is (exit 2). */
function usageError(problem: string): number {
  console.error(`patchbay: ${problem}\n${USAGE}\nrun "npm run patchbay -- --help" for every command and flag`);
  return 2;
}

const parse = (argv: string[]) =>
  parseArgs({
    args: argv,
    allowPositionals: true,
    options: { all: { type: 'boolean' }, check: { type: 'boolean' }, progress: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });

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
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    const unknown = (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && /'([^']+)'/.exec((err as Error).message)?.[1];
    return usageError(unknown ? `unknown flag ${unknown}` : (err as Error).message);
  }
  const { values: flags, positionals } = parsed;
  const [command, scope, ...rest] = positionals;
  if (flags.help || command === 'help') {
    console.log(HELP);
    return 0;
  }
  if (command === undefined) return usageError('no command given');
  if (command !== 'bundle' && command !== 'rebuild') return usageError(`unknown command ${JSON.stringify(command)}`);
  if (rest.length > 0) return usageError(`${command} takes one scope at most, got ${positionals.slice(1).join(' ')}`);
  const wrong = command === 'bundle' ? flags.check && '--check' : flags.all && '--all';
  if (wrong) return usageError(`${wrong} is not a flag of ${command}`);
  // The CLI serves no internal endpoint, so it needs no OIDC settings (PATCHBAY_OIDC).
  const config = loadConfig(process.env, { logLevel: 'off', oidc: 'off' });
  const app = await createApp(config, { sweeper: false, bundler: false });
  const progress = bar(flags.progress === true, command === 'bundle' ? 'patches' : 'scopes');
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
          r = await bundler.bundleScope(s.id, { all: flags.all === true, onPatches: (n) => progress.increment(n) });
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
    const check = flags.check === true;
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
