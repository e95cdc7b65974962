/**
 * Kind `binding`: one IAM role granted to one member on one resource (the project, a service
 * account, a topic, a subscription, the bucket, a secret, a function's Cloud Run service). A
 * binding is its identity: it exists or it does not. Each target's policy is read once.
 *
 * `--prune` removes project-level bindings of patchbay's own service accounts that the model no
 * longer grants; bindings on patchbay's other resources go when those resources are deleted.
 */
import type { Command } from '../gcloud.js';
import type { Context, Kind, Resource } from '../model.js';

export type TargetType = 'project' | 'service-account' | 'topic' | 'subscription' | 'bucket' | 'secret' | 'run';

export interface BindingProps {
  target: TargetType;
  /** The resource's id as gcloud takes it (project id, email, topic id, gs://bucket, service name). */
  on: string;
  role: string;
  member: string;
}

/** The gcloud command group of each target. */
const GROUP: Record<TargetType, string[]> = {
  project: ['projects'],
  'service-account': ['iam', 'service-accounts'],
  topic: ['pubsub', 'topics'],
  subscription: ['pubsub', 'subscriptions'],
  bucket: ['storage', 'buckets'],
  secret: ['secrets'],
  run: ['run', 'services'],
};

export const bindingName = (p: BindingProps): string => `${p.target}/${p.on}/${p.role}/${p.member}`;

interface Policy {
  bindings?: Array<{ role: string; members?: string[]; condition?: unknown }>;
}

function command(ctx: Context, verb: 'add-iam-policy-binding' | 'remove-iam-policy-binding', p: BindingProps): Command {
  const args = [...GROUP[p.target], verb, p.on, `--member=${p.member}`, `--role=${p.role}`];
  if (p.target === 'run') args.push(`--region=${ctx.cfg.region}`);
  // Without it gcloud asks which condition to use when the project policy has conditional bindings.
  if (p.target === 'project') args.push('--condition=None');
  return { args };
}

export const bindings: Kind<BindingProps> = {
  kind: 'binding',
  async observe(ctx, wanted: Resource<BindingProps>[]) {
    const targets = new Map<string, { target: TargetType; on: string }>();
    targets.set(`project/${ctx.cfg.project}`, { target: 'project', on: ctx.cfg.project });
    for (const r of wanted) targets.set(`${r.props.target}/${r.props.on}`, r.props);
    const ours = new Set(Object.values(ctx.cfg.accounts).map((e) => `serviceAccount:${e}`));
    const live = new Map<string, BindingProps>();
    for (const { target, on } of targets.values()) {
      const args = [...GROUP[target], 'get-iam-policy', on];
      if (target === 'run') args.push(`--region=${ctx.cfg.region}`);
      const policy = (await ctx.gcloud.describe<Policy>(args)) ?? {};
      for (const b of policy.bindings ?? []) {
        if (b.condition !== undefined) continue; // conditional grants are not patchbay's
        for (const member of b.members ?? []) {
          const p = { target, on, role: b.role, member };
          // Project bindings: those of patchbay's accounts (prune candidates); elsewhere only the wanted.
          if ((target === 'project' && ours.has(member)) || wanted.some((r) => r.name === bindingName(p))) live.set(bindingName(p), p);
        }
      }
    }
    return live;
  },
  diff: () => [],
  create: (ctx, r) => [command(ctx, 'add-iam-policy-binding', r.props)],
  ours: (_ctx, _name, live) => live.target === 'project',
  remove: (ctx, _name, live) => [command(ctx, 'remove-iam-policy-binding', live)],
};
