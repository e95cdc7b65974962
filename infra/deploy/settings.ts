/**
 * What a deployment is configured by: the command line (project, region) and one env file. The
 * env file holds the runtime settings of the configuration table (shared/config.ts; every
 * `PATCHBAY_*` row and the Upstash URL), which become the functions' environment, the secret
 * values (moved to Secret Manager, never into the environment), and the few deploy-only
 * settings of DEPLOY_TABLE below. The whole runtime configuration is checked with the table's own
 * `loadConfig` before anything is touched, so a bad value stops the deploy naming the variable,
 * exactly as it would stop an instance.
 */
import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { CONFIG_TABLE, type Config, ConfigError, loadConfig } from '../../shared/config.js';

/** Deploy-only settings: read by the deployer, never given to the functions. */
export const DEPLOY_TABLE = {
  runtime: {
    env: 'DEPLOY_RUNTIME',
    default: 'nodejs22',
    schema: z.string().regex(/^nodejs(2[0-9]|[3-9][0-9])$/, 'must be a Cloud Functions Node runtime, e.g. nodejs22'),
    doc: 'Cloud Functions runtime. nodejs22 is the newest Node LTS the platform offers; the code also runs on Node 20.',
  },
  memory: { env: 'DEPLOY_MEMORY', default: '512Mi', schema: z.string().regex(/^[0-9]+(Mi|Gi)$/, 'must be like 512Mi or 1Gi'), doc: 'Memory of each function.' },
  apiMaxInstances: { env: 'DEPLOY_API_MAX_INSTANCES', default: '100', schema: z.string().regex(/^[1-9][0-9]{0,4}$/), doc: 'Most instances of `api`.' },
  firestoreLocation: {
    env: 'DEPLOY_FIRESTORE_LOCATION',
    default: '',
    schema: z.string().regex(/^[a-z0-9-]*$/),
    doc: 'Firestore location (`nam5`, `eur3`, a region). Empty: the deploy region. Fixed once the database exists.',
  },
  source: { env: 'DEPLOY_SOURCE', default: '.', schema: z.string().min(1), doc: 'The directory uploaded as the functions source (the repository root).' },
  sweepSchedule: { env: 'DEPLOY_SWEEP_SCHEDULE', default: '* * * * *', schema: z.string().min(9), doc: 'Cron schedule of the outbox sweeper.' },
  bundleSchedule: { env: 'DEPLOY_BUNDLE_SCHEDULE', default: '*/5 * * * *', schema: z.string().min(9), doc: 'Cron schedule of the bundler.' },
  uploadOrigins: {
    env: 'DEPLOY_UPLOAD_ORIGINS',
    default: '',
    schema: z
      .string()
      .regex(
        /^((\*)|(https?:\/\/[a-z0-9.-]+(:[0-9]+)?)(,https?:\/\/[a-z0-9.-]+(:[0-9]+)?)*)?$/,
        'must be * or comma-separated origins like https://app.example.com',
      ),
    doc: "Origins whose browsers may PUT and GET files in the bucket with signed URLs (the bucket's CORS). Empty: those of PATCHBAY_CORS_ORIGINS.",
  },
  smoke: { env: 'DEPLOY_SMOKE', default: 'on', schema: z.enum(['on', 'off']), doc: 'Whether the deploy ends with the smoke test against `api`.' },
} as const;

export type DeploySettings = { -readonly [K in keyof typeof DEPLOY_TABLE]: string };

/** The secrets: the setting they feed, their Secret Manager id, and where their value comes from. */
export const SECRETS = [
  { env: 'PATCHBAY_JWT_SECRET', id: 'patchbay-jwt-secret', generate: true, optional: false, why: 'HMAC key of the tokens patchbay issues' },
  { env: 'UPSTASH_REDIS_REST_URL', id: 'patchbay-upstash-url', generate: false, optional: false, why: 'Upstash Redis REST URL (hot cache, limits)' },
  { env: 'UPSTASH_REDIS_REST_TOKEN', id: 'patchbay-upstash-token', generate: false, optional: false, why: 'Upstash Redis REST token (hot cache, limits)' },
  // The mirror's Postgres (issue 10) is external: only its connection URL (with its password) is kept here.
  { env: 'PATCHBAY_MIRROR_URL', id: 'patchbay-mirror-url', generate: false, optional: true, why: 'connection URL of the Postgres of the queryable mirror' },
] as const;

/**
 * The secrets a deployment has: every one that is not optional, and an optional one (the mirror's
 * Postgres) only when the env file gives its value; without it that feature is off.
 */
export const secretsOf = (cfg: Pick<DeployConfig, 'secretValues'>) => SECRETS.filter((s) => !s.optional || cfg.secretValues[s.env] !== undefined);

/** Settings the deployer decides itself; the env file may not set them. */
const DECIDED = ['PATCHBAY_MODE', 'PATCHBAY_GCP_PROJECT', 'PORT', 'PATCHBAY_HOST', 'PATCHBAY_DATA_DIR'];
/** Local-development settings that must never reach a deployment. */
const LOCAL_ONLY = ['FIRESTORE_EMULATOR_HOST', 'PUBSUB_EMULATOR_HOST', 'STORAGE_EMULATOR_HOST', 'FIREBASE_AUTH_EMULATOR_HOST', 'PATCHBAY_OIDC_CERTS_URL'];

export interface Target {
  project: string;
  region: string;
}

export interface DeployConfig extends Target {
  deploy: DeploySettings;
  /** The functions' environment: the file's runtime settings plus the ones the deployer decides. */
  env: Record<string, string>;
  /** Secret values the file gives (by setting name); the others are generated when missing. */
  secretValues: Record<string, string>;
  /** The runtime configuration as an instance will load it (secrets filled with placeholders). */
  config: Config;
  /** Service-account emails, by role. */
  accounts: { api: string; bundler: string; invoker: string };
  /** Base URL of the functions (`https://REGION-PROJECT.cloudfunctions.net`). */
  functionsBase: string;
}

export class SettingsError extends Error {}

const PROJECT = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;
const REGION = /^[a-z]+-[a-z]+[0-9]+$/;

/** Reads an env file (KEY=VALUE lines, # comments, optional quotes). */
export function readEnvFile(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SettingsError(`cannot read the env file ${path}: ${(err as Error).message}`);
  }
  return parseEnv(text) as Record<string, string>;
}

export const account = (id: string, project: string): string => `${id}@${project}.iam.gserviceaccount.com`;

/** Checks the target and the file, and works out everything the model needs. */
export function deployConfig(target: Target, file: Record<string, string>): DeployConfig {
  const problems: string[] = [];
  if (!PROJECT.test(target.project)) problems.push(`--project ${JSON.stringify(target.project)} is not a project id`);
  if (!REGION.test(target.region)) problems.push(`--region ${JSON.stringify(target.region)} is not a region like europe-west1`);
  const runtimeNames = new Set(Object.values(CONFIG_TABLE).map((s) => s.env));
  const deploy = {} as DeploySettings;
  for (const [key, s] of Object.entries(DEPLOY_TABLE) as Array<[keyof DeploySettings, (typeof DEPLOY_TABLE)[keyof DeploySettings]]>) {
    const raw = file[s.env] ?? s.default;
    const parsed = (s.schema as z.ZodType<string>).safeParse(raw);
    if (parsed.success) deploy[key] = parsed.data;
    else problems.push(`${s.env}=${JSON.stringify(raw)}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  }
  const secretNames = new Set<string>(SECRETS.map((s) => s.env));
  const env: Record<string, string> = {};
  const secretValues: Record<string, string> = {};
  for (const [name, value] of Object.entries(file)) {
    if (name.startsWith('DEPLOY_')) {
      if (!Object.values(DEPLOY_TABLE).some((s) => s.env === name)) problems.push(`${name} is not a deploy setting (see docs/deploy.md)`);
    } else if (secretNames.has(name)) {
      if (value !== '') secretValues[name] = value;
    } else if (DECIDED.includes(name)) problems.push(`${name} is set by the deployer; remove it from the env file`);
    else if (LOCAL_ONLY.includes(name)) problems.push(`${name} is for local development only; remove it from the env file`);
    else if (runtimeNames.has(name)) env[name] = value;
    else problems.push(`${name} is not a setting of shared/config.ts (a typo?)`);
  }
  const accounts = {
    api: account('patchbay-api', target.project),
    bundler: account('patchbay-bundler', target.project),
    invoker: account('patchbay-invoker', target.project),
  };
  const functionsBase = `https://${target.region}-${target.project}.cloudfunctions.net`;
  env.PATCHBAY_MODE = 'google';
  env.PATCHBAY_GCP_PROJECT = target.project;
  env.PATCHBAY_BUCKET ??= `${target.project}-patchbay`;
  env.PATCHBAY_OIDC_AUDIENCE ??= functionsBase;
  env.PATCHBAY_OIDC_EMAILS ??= accounts.invoker;
  let config: Config | undefined;
  try {
    // Absent values of secrets that exist already are fine (the deploy keeps them): a stand-in checks the rest.
    const standIn: Record<string, string> = { UPSTASH_REDIS_REST_URL: 'https://stand-in.upstash.io', PATCHBAY_MIRROR_URL: '' };
    const placeholders = Object.fromEntries(SECRETS.map((s) => [s.env, secretValues[s.env] ?? standIn[s.env] ?? 'x'.repeat(48)]));
    config = loadConfig({ ...env, ...placeholders });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(
      ...err.message
        .split('\n')
        .slice(1)
        .map((l) => l.trim()),
    );
  }
  if (problems.length > 0 || config === undefined) throw new SettingsError(`invalid deploy configuration:\n  ${[...new Set(problems)].join('\n  ')}`);
  return { ...target, deploy, env, secretValues, config, accounts, functionsBase };
}
