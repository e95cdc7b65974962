/**
 * Kind `bucket`: the Cloud Storage bucket of cold storage (bundles, snapshots) and uploads, with
 * uniform bucket-level access, public access prevented, lifecycle rules, the CORS browser uploads
 * need (the origins of PATCHBAY_CORS_ORIGINS), and patchbay's label. Its location cannot change in
 * place; it is never deleted by `--prune` (it holds every bundled patch: guarantee 6).
 *
 * Read with `gcloud storage buckets describe --format=json`, which prints snake_case keys
 * (`lifecycle_config`, `cors_config`, `uniform_bucket_level_access`, `public_access_prevention`).
 */
import type { Command } from '../gcloud.js';
import { compareProps, type Kind, LABEL } from '../model.js';

export interface LifecycleRule {
  action: { type: string; storageClass?: string };
  condition: Record<string, unknown>;
}

export interface CorsRule {
  origin: string[];
  method: string[];
  responseHeader: string[];
  maxAgeSeconds: number;
}

export interface BucketProps {
  location: string;
  uniformAccess: boolean;
  publicAccessPrevention: 'enforced';
  lifecycle: LifecycleRule[];
  cors: CorsRule[];
  labels: Record<string, string>;
}

interface Live {
  location?: string;
  uniform_bucket_level_access?: boolean;
  public_access_prevention?: string;
  lifecycle_config?: { rule?: LifecycleRule[] };
  cors_config?: CorsRule[];
  labels?: Record<string, string>;
}

/** The settings `buckets update` can change: one command, so a partial failure is just "differs". */
function updateCommand(name: string, p: BucketProps): Command {
  return {
    args: [
      'storage',
      'buckets',
      'update',
      `gs://${name}`,
      '--uniform-bucket-level-access',
      '--public-access-prevention',
      '--lifecycle-file={file:lifecycle.json}',
      p.cors.length > 0 ? '--cors-file={file:cors.json}' : '--clear-cors',
      `--update-labels=${LABEL.key}=${LABEL.value}`,
    ],
    files: { 'lifecycle.json': JSON.stringify({ rule: p.lifecycle }), 'cors.json': JSON.stringify(p.cors) },
  };
}

export const bucket: Kind<BucketProps> = {
  kind: 'bucket',
  async observe({ gcloud }, wanted) {
    const out = new Map<string, BucketProps>();
    for (const r of wanted) {
      const live = await gcloud.describe<Live>(['storage', 'buckets', 'describe', `gs://${r.name}`]);
      if (!live) continue;
      out.set(r.name, {
        location: (live.location ?? '').toLowerCase(),
        uniformAccess: live.uniform_bucket_level_access === true,
        publicAccessPrevention: live.public_access_prevention as 'enforced',
        lifecycle: live.lifecycle_config?.rule ?? [],
        cors: live.cors_config ?? [],
        labels: { [LABEL.key]: live.labels?.[LABEL.key] as string },
      });
    }
    return out;
  },
  diff: (want, live) => compareProps(want, live, ['location']),
  // `buckets create` takes no labels or CORS: create, then the same update as a drifted bucket.
  create: (_ctx, r) => [
    {
      args: ['storage', 'buckets', 'create', `gs://${r.name}`, `--location=${r.props.location}`, '--uniform-bucket-level-access', '--public-access-prevention'],
    },
    updateCommand(r.name, r.props),
  ],
  update: (_ctx, r) => [updateCommand(r.name, r.props)],
};
