/**
 * Kind `bucket-notification`: a Cloud Storage notification configuration, which publishes an
 * event to a Pub/Sub topic for each change of an object in a bucket. patchbay has one: every
 * finished upload (`OBJECT_FINALIZE` under `uploads/`, payload `JSON_API_V1`) goes to the uploads
 * topic, whose push subscription calls `push/uploads` (shared/uploads/notifications.ts).
 *
 * A notification cannot be changed, only deleted and made again, so its name is everything that
 * identifies it (like an index): a changed one is a new resource, and the old one goes with
 * `--prune`. Created with `--skip-topic-setup`: the topic and the Cloud Storage agent's right to
 * publish to it are resources of their own (desired.ts), so gcloud grants nothing behind the plan.
 * Read with `gcloud storage buckets notifications list gs://B --format=json`, which prints
 * `[{"Bucket URL", "Notification Configuration": {id, topic, event_types, payload_format,
 * object_name_prefix}}]` (the JSON API's snake_case notification resource).
 */
import { type Kind, last } from '../model.js';

export interface NotificationProps {
  bucket: string;
  /** The topic's id (in the deployment's project). */
  topic: string;
  eventTypes: string[];
  payloadFormat: 'JSON_API_V1';
  objectPrefix: string;
  /** The live configuration's id (for deleting); not compared. */
  id?: string;
}

export const notificationName = (p: NotificationProps): string =>
  `gs://${p.bucket}/${p.objectPrefix}* ${p.eventTypes.join(',')} -> ${p.topic} (${p.payloadFormat})`;

interface Live {
  'Bucket URL'?: string;
  'Notification Configuration'?: { id?: string; topic?: string; event_types?: string[]; payload_format?: string; object_name_prefix?: string };
}

export const notifications: Kind<NotificationProps> = {
  kind: 'bucket-notification',
  async observe({ gcloud, cfg }, wanted) {
    const out = new Map<string, NotificationProps>();
    // The deployment's bucket always (so `--prune` and `destroy` find patchbay's), and any other wanted.
    for (const bucket of new Set([cfg.config.bucket, ...wanted.map((r) => r.props.bucket)])) {
      const live = await gcloud.describe<Live[]>(['storage', 'buckets', 'notifications', 'list', `gs://${bucket}`]);
      for (const n of live ?? []) {
        const c = n['Notification Configuration'] ?? {};
        const p: NotificationProps = {
          bucket,
          topic: last(c.topic),
          eventTypes: c.event_types ?? [],
          payloadFormat: c.payload_format as 'JSON_API_V1',
          objectPrefix: c.object_name_prefix ?? '',
          id: c.id,
        };
        out.set(notificationName(p), p);
      }
    }
    return out;
  },
  diff: () => [],
  create: (_ctx, r) => [
    {
      args: [
        'storage',
        'buckets',
        'notifications',
        'create',
        `gs://${r.props.bucket}`,
        `--topic=${r.props.topic}`,
        `--event-types=${r.props.eventTypes.join(',')}`,
        '--payload-format=json',
        ...(r.props.objectPrefix ? [`--object-prefix=${r.props.objectPrefix}`] : []),
        '--skip-topic-setup',
      ],
    },
  ],
  // patchbay's: those that publish to its uploads topic.
  ours: (ctx, _name, live) => live.topic === uploadsTopic(ctx.cfg.config.pubsubTopic),
  remove: (_ctx, _name, live) => [
    { args: ['storage', 'buckets', 'notifications', 'delete', `projects/_/buckets/${live.bucket}/notificationConfigs/${live.id}`] },
  ],
};

/** The topic Cloud Storage announces finished uploads on (next to the patch topic). */
export const uploadsTopic = (patchTopic: string): string => `${patchTopic}-uploads`;
