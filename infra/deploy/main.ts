/**
 * `npm run deploy`: the deploy pipeline's command line. Reads the env file, builds the desired
 * state (desired.ts), reconciles it with the live project through gcloud (reconcile.ts), then runs
 * the bootstrap (today: a service token of its own, bootstrap.ts, and the smoke test with it). HELP is the reference for every flag and exit code.
 * `main` takes its surroundings as arguments (environment, output, gcloud runner, consumers,
 * confirmation) so tests run it in-process against a simulated gcloud.
 */
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { consumers as registered } from '../../functions/consumers.js';
import { BUILT_IN_CONSUMERS } from '../../shared/domains/consumers.js';
import type { RecordStore } from '../../shared/ports/records.js';
import { deploymentRecords, type MintedToken, mintDeployToken, type RecordAccess } from './bootstrap.js';
import { desiredState, sourceHash } from './desired.js';
import { Gcloud, GcloudError, type Runner, spawnRunner } from './gcloud.js';
import { KINDS } from './kinds/index.js';
import type { Context, Resource } from './model.js';
import { describeStep, type Mode, reconcile, type Step } from './reconcile.js';
import { DEPLOY_TABLE, type DeployConfig, deployConfig, readEnvFile, SECRETS, SettingsError } from './settings.js';
import { smokeTest } from './smoke.js';

export const HELP = `patchbay deploy: creates or updates everything a patchbay deployment needs on Google Cloud,
with the gcloud CLI on PATH (run \`gcloud auth login\` first, and \`gcloud auth application-default login\`
for the bootstrap's own service token). Idempotent: it reads each resource,
creates it when missing, updates it when it differs, and otherwise leaves it alone.

usage: npm run deploy -- --project P --region R [--env FILE] [--plan | --check] [--prune [--yes]]
       npm run deploy -- destroy --project P --region R [--env FILE] [--yes]

  --project P     the Google Cloud project id
  --region R      the region of the functions, bucket, scheduler jobs (and Firestore by default)
  --env FILE      the deployment's settings: runtime settings of shared/config.ts, secret values,
                  and DEPLOY_* settings (docs/deploy.md); default: no file
  --plan          print what would be created, updated or left alone; change nothing
  --check         compare the live deployment with the configuration; change nothing; exit 3 on
                  drift, naming each difference
  --prune         also delete what patchbay created that the configuration no longer wants
                  (asks first; never the Firestore database, the bucket or the APIs)
  --yes           do not ask before deleting
  --no-smoke      skip the smoke test after the deploy
  destroy         delete everything patchbay created (like --prune with an empty configuration)
  -h, --help      print this help

exit codes: 0 done (or no drift); 1 a gcloud call, a blocked change or the smoke test failed;
  2 a usage or configuration error; 3 --check found drift.

deploy settings (in the env file):
${Object.values(DEPLOY_TABLE)
  .map((s) => `  ${s.env} (default ${JSON.stringify(s.default)}): ${s.doc}`)
  .join('\n')}`;

export interface MainIO {
  env?: NodeJS.ProcessEnv;
  out?: (line: string) => void;
  err?: (line: string) => void;
  /** How gcloud is run (default: the gcloud on env.PATH). */
  runner?: Runner;
  /** Push consumer names (default: functions/consumers.ts). */
  consumers?: string[];
  /** Asked before deletions without --yes (default: a y/N question on the terminal). */
  confirm?: (doomed: Step[]) => Promise<boolean>;
  /** The deployment's record store, for the bootstrap (default: its Firestore, with the operator's credentials). */
  records?: RecordStore;
  /** Smoke test retries (tests make them fast). */
  smoke?: { attempts?: number; delayMs?: number };
}

async function askOnTerminal(doomed: Step[]): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`delete these ${doomed.length} resources? [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export async function main(argv: string[], io: MainIO = {}): Promise<number> {
  const env = io.env ?? process.env;
  const out = io.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const err = io.err ?? ((l: string) => process.stderr.write(`${l}\n`));
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    err(`deploy: ${(e as Error).message}\nrun "npm run deploy -- --help" for the flags`);
    return 2;
  }
  const v = args.values;
  if (v.help) {
    out(HELP);
    return 0;
  }
  const destroy = args.positionals[0] === 'destroy';
  if (args.positionals.length > (destroy ? 1 : 0)) return usage(err, `unexpected argument ${args.positionals[destroy ? 1 : 0]}`);
  if (!v.project || !v.region) return usage(err, '--project and --region are required');
  if (v.plan && v.check) return usage(err, '--plan and --check exclude each other');
  const mode: Mode = v.check ? 'check' : v.plan ? 'plan' : 'apply';

  let cfg: DeployConfig;
  try {
    cfg = deployConfig({ project: v.project, region: v.region }, v.env ? readEnvFile(v.env) : {});
  } catch (e) {
    if (e instanceof SettingsError) {
      err(`deploy: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const gcloud = new Gcloud(io.runner ?? spawnRunner(env), cfg.project, (line) => out(`  $ ${line}`));
  try {
    const project = await gcloud.json<{ projectNumber: string }>(['projects', 'describe', cfg.project]);
    const ctx: Context = { gcloud, cfg, projectNumber: project.projectNumber };
    const resources: Resource[] = destroy
      ? []
      : desiredState({
          cfg,
          consumers: io.consumers ?? [...Object.keys(BUILT_IN_CONSUMERS), ...Object.keys(registered)],
          projectNumber: project.projectNumber,
          source: sourceHash(cfg.deploy.source),
        });
    out(`${destroy ? 'destroy' : mode} ${cfg.project} in ${cfg.region}: ${resources.length} resources`);
    const outcome = await reconcile(ctx, KINDS, resources, {
      mode: destroy && mode === 'apply' ? 'apply' : mode,
      prune: destroy || v.prune === true,
      confirm: v.yes ? async () => true : (io.confirm ?? askOnTerminal),
      out,
    });
    const count = (a: string) => outcome.steps.filter((s) => s.action === a).length;
    const summary = `${count('create')} to create, ${count('update')} to update, ${count('delete')} to delete, ${count('ok')} up to date, ${count('blocked')} blocked`;
    if (mode === 'check') {
      const drift = outcome.steps.filter((s) => s.action !== 'ok');
      if (drift.length === 0) {
        out(`check: no drift (${count('ok')} resources as configured)`);
        return 0;
      }
      out(`check: ${drift.length} differences:`);
      for (const s of drift) out(`  drift: ${describeStep(s).replace(/^(create|update|delete|blocked) +/, (_m, a: string) => `${DRIFT[a]} `)}`);
      return 3;
    }
    if (mode === 'plan') {
      out(`plan: ${summary}`);
      return 0;
    }
    out(
      gcloud.done.length === 0 && outcome.blocked === 0
        ? `no changes: all ${count('ok')} resources are up to date`
        : `done: ${count('create')} created, ${count('update')} updated, ${count('delete')} deleted, ${count('ok')} unchanged (${gcloud.done.length} gcloud calls)`,
    );
    if (outcome.blocked > 0) {
      err(`deploy: ${outcome.blocked} resources differ in ways gcloud cannot change in place (see "blocked" above)`);
      return 1;
    }
    if (destroy || v['no-smoke'] || cfg.deploy.smoke === 'off') return 0;
    const live = await gcloud.describe<{ url?: string; serviceConfig?: { uri?: string } }>(['functions', 'describe', 'api', `--region=${cfg.region}`, '--v2']);
    const url = live?.serviceConfig?.uri ?? live?.url;
    if (!url) {
      err('deploy: the api function has no URL; smoke test not run');
      return 1;
    }
    // The bootstrap: the deploy's own service token (never printed), for the smoke test; revoked after.
    let access: RecordAccess | undefined;
    let minted: MintedToken | undefined;
    try {
      if (!io.records) access = deploymentRecords(cfg);
      const records = io.records ?? (access as RecordAccess).records;
      minted = await mintDeployToken(cfg, gcloud, records, JWT_SECRET_ID);
      out(`bootstrap: service token minted for the smoke test (domain ${minted.domain}, expires in 10 minutes, revoked after)`);
    } catch (e) {
      out(`bootstrap: no service token for the smoke test (${(e as Error).message.split('\n')[0]}); is "gcloud auth application-default login" done?`);
    }
    try {
      const smoke = await smokeTest(url, { ...io.smoke, ...(minted ? { token: minted } : {}) });
      for (const l of smoke.lines) out(l);
      return smoke.ok ? 0 : 1;
    } finally {
      await minted
        ?.revoke()
        .catch((e: unknown) => err(`deploy: the smoke test's service token was not revoked (${(e as Error).message}); it expires by itself`));
      await access?.close().catch(() => {});
    }
  } catch (e) {
    if (e instanceof GcloudError) {
      err(`deploy: ${e.message}\nnothing after this step was done; fix the cause and run the same command again`);
      return 1;
    }
    if (e instanceof SettingsError) {
      err(`deploy: ${e.message}\nnothing after this step was done; fix the env file and run the same command again`);
      return 2;
    }
    throw e;
  }
}

/** The Secret Manager secret of the JWT key (settings.ts, SECRETS). */
const JWT_SECRET_ID = SECRETS.find((s) => s.env === 'PATCHBAY_JWT_SECRET')?.id as string;

/** How --check names each kind of difference. */
const DRIFT: Record<string, string> = { create: 'missing', update: 'differs', delete: 'unwanted', blocked: 'differs (not changeable in place)' };

function usage(err: (l: string) => void, problem: string): number {
  err(`deploy: ${problem}\nrun "npm run deploy -- --help" for the flags`);
  return 2;
}

const parse = (argv: string[]) =>
  parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      project: { type: 'string' },
      region: { type: 'string' },
      env: { type: 'string' },
      plan: { type: 'boolean' },
      check: { type: 'boolean' },
      prune: { type: 'boolean' },
      yes: { type: 'boolean' },
      'no-smoke': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
