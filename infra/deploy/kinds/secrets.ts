/**
 * Kind `secret`: a Secret Manager secret a function reads as an environment variable. Created
 * when missing, with the value the env file gives or, for generated secrets (the JWT key), 48
 * random bytes. A value the env file gives is compared by hash with the live latest version and
 * added as a new version when it differs; a generated secret is never rotated by a deploy. Values
 * go to gcloud on stdin (`--data-file=-`) and are never printed: the plan shows only "value".
 */
import { createHash, randomBytes } from 'node:crypto';
import { compareProps, type Kind, LABEL, last } from '../model.js';
import { SettingsError } from '../settings.js';

export interface SecretProps {
  labels: Record<string, string>;
  /** sha256 of the value the env file gives; absent for a generated secret. */
  value?: string;
  /** The setting it feeds, whose value the env file may give. Not compared. */
  setting: string;
  /** Whether a missing secret without a given value gets a random one. Not compared. */
  generate: boolean;
}

export const hashValue = (v: string): string => `sha256:${createHash('sha256').update(v).digest('hex').slice(0, 16)}`;

interface Live {
  name: string;
  labels?: Record<string, string>;
}

const label = `${LABEL.key}=${LABEL.value}`;

/** The value to store for `r` (only ever held in memory). */
function valueFor(values: Record<string, string>, r: { name: string; props: SecretProps }): string {
  const given = values[r.props.setting];
  if (given !== undefined) return given;
  if (r.props.generate) return randomBytes(48).toString('base64url');
  throw new SettingsError(`secret ${r.name} does not exist yet: set ${r.props.setting} in the env file`);
}

export const secrets: Kind<SecretProps> = {
  kind: 'secret',
  async observe({ gcloud }, wanted) {
    const out = new Map<string, SecretProps>();
    for (const s of await gcloud.json<Live[]>(['secrets', 'list'])) {
      const name = last(s.name);
      const want = wanted.find((r) => r.name === name);
      const props: SecretProps = { labels: { [LABEL.key]: s.labels?.[LABEL.key] as string }, setting: want?.props.setting ?? '', generate: false };
      if (want?.props.value !== undefined) {
        const value = await gcloud.text(['secrets', 'versions', 'access', 'latest', `--secret=${name}`]);
        if (value !== null) props.value = hashValue(value);
      }
      out.set(name, props);
    }
    return out;
  },
  diff: (want, live) =>
    compareProps({ labels: want.labels, value: want.value }, { labels: live.labels, value: live.value }).map((d) =>
      d.field === 'value' ? { ...d, want: 'the env file value', live: 'another value' } : d,
    ),
  create: (ctx, r) => {
    return [
      { args: ['secrets', 'create', r.name, '--replication-policy=automatic', `--labels=${label}`, '--data-file=-'], input: valueFor(ctx.cfg.secretValues, r) },
    ];
  },
  update: (ctx, r, _live, diffs) => [
    ...(diffs.some((d) => d.field === 'labels') ? [{ args: ['secrets', 'update', r.name, `--update-labels=${label}`] }] : []),
    ...(diffs.some((d) => d.field === 'value')
      ? [{ args: ['secrets', 'versions', 'add', r.name, '--data-file=-'], input: valueFor(ctx.cfg.secretValues, r) }]
      : []),
  ],
  ours: (_ctx, _name, live) => live.labels[LABEL.key] === LABEL.value,
  remove: (_ctx, name) => [{ args: ['secrets', 'delete', name] }],
};
