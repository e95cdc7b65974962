/**
 * Kind `function`: a Cloud Function (2nd gen, HTTP trigger) built from the repository (Cloud
 * Build runs the `gcp-build` script). `gcloud functions deploy` both creates and updates, so a
 * difference in any property redeploys. Compared: runtime, entry point, memory, timeout, the
 * environment (the configuration table's settings; Cloud Functions' own LOG_EXECUTION_ID is
 * ignored), the secrets, the runtime service account, the instance cap, and the `patchbay-source`
 * label: a hash of the source files, so changed code redeploys and unchanged code does not.
 * Who may invoke a function is a binding on its Cloud Run service (kinds/bindings.ts), not a
 * deploy flag, so it is compared like any other binding.
 */
import type { Command } from '../gcloud.js';
import { type Context, compareProps, type Kind, LABEL } from '../model.js';

export interface FunctionProps {
  runtime: string;
  entryPoint: string;
  memory: string;
  timeoutSeconds: number;
  env: Record<string, string>;
  /** Environment variable → `secret-id:version`. */
  secrets: Record<string, string>;
  serviceAccount: string;
  maxInstances: number;
  labels: Record<string, string>;
  /** The deployed URL (live only; not compared). */
  url?: string;
}

/** Every function patchbay deploys has one of these names (functions/index.ts); `--prune` looks at them. */
export const FUNCTION_NAMES = ['api', 'push', 'sweep', 'bundle'] as const;

interface Live {
  url?: string;
  labels?: Record<string, string>;
  buildConfig?: { runtime?: string; entryPoint?: string };
  serviceConfig?: {
    uri?: string;
    availableMemory?: string;
    timeoutSeconds?: number;
    environmentVariables?: Record<string, string>;
    secretEnvironmentVariables?: Array<{ key: string; secret: string; version: string }>;
    serviceAccountEmail?: string;
    maxInstanceCount?: number;
  };
}

/** Set by Cloud Functions itself on every gen2 function. */
const PLATFORM_ENV = new Set(['LOG_EXECUTION_ID']);

function normalize(f: Live): FunctionProps {
  const s = f.serviceConfig ?? {};
  return {
    runtime: f.buildConfig?.runtime ?? '',
    entryPoint: f.buildConfig?.entryPoint ?? '',
    memory: s.availableMemory ?? '',
    timeoutSeconds: s.timeoutSeconds ?? 0,
    env: Object.fromEntries(Object.entries(s.environmentVariables ?? {}).filter(([k]) => !PLATFORM_ENV.has(k))),
    secrets: Object.fromEntries((s.secretEnvironmentVariables ?? []).map((v) => [v.key, `${v.secret}:${v.version}`])),
    serviceAccount: s.serviceAccountEmail ?? '',
    maxInstances: s.maxInstanceCount ?? 0,
    labels: { [LABEL.key]: f.labels?.[LABEL.key] as string, 'patchbay-source': f.labels?.['patchbay-source'] as string },
    url: s.uri ?? f.url,
  };
}

function deploy(ctx: Context, name: string, p: FunctionProps): Command {
  return {
    args: [
      'functions',
      'deploy',
      name,
      '--gen2',
      `--region=${ctx.cfg.region}`,
      `--runtime=${p.runtime}`,
      `--source=${ctx.cfg.deploy.source}`,
      `--entry-point=${p.entryPoint}`,
      '--trigger-http',
      `--memory=${p.memory}`,
      `--timeout=${p.timeoutSeconds}s`,
      `--max-instances=${p.maxInstances}`,
      `--service-account=${p.serviceAccount}`,
      // A file, not --set-env-vars: values may hold commas (lists of origins and emails).
      // JSON is YAML, and the file replaces the whole environment, so removed settings go too.
      '--env-vars-file={file:env.yaml}',
      `--set-secrets=${Object.entries(p.secrets)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
      `--update-labels=${Object.entries(p.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
    ],
    files: { 'env.yaml': JSON.stringify(p.env) },
  };
}

export const functions: Kind<FunctionProps> = {
  kind: 'function',
  async observe({ gcloud, cfg }) {
    const out = new Map<string, FunctionProps>();
    for (const name of FUNCTION_NAMES) {
      const live = await gcloud.describe<Live>(['functions', 'describe', name, `--region=${cfg.region}`, '--v2']);
      if (live) out.set(name, normalize(live));
    }
    return out;
  },
  diff: (want, live) => compareProps({ ...want, url: undefined }, live),
  create: (ctx, r) => [deploy(ctx, r.name, r.props)],
  update: (ctx, r) => [deploy(ctx, r.name, r.props)],
  ours: (_ctx, _name, live) => live.labels[LABEL.key] === LABEL.value,
  remove: (ctx, name) => [{ args: ['functions', 'delete', name, `--region=${ctx.cfg.region}`] }],
};
