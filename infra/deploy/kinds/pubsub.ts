/**
 * Pub/Sub, two kinds:
 * - `topic`: the patch topic (every committed patch, ordering key = scope) and the dead-letter
 *   topic where push deliveries end after too many failures. Labelled `managed-by=patchbay`.
 * - `subscription`: one push subscription per consumer the app registers, pushing to
 *   `<functions>/push/<consumer>` with an OIDC token of the invoker account (the audience the
 *   push function checks, shared/http/internal-auth.ts), message ordering (a consumer sees a
 *   scope's patches in order), a dead-letter topic and an exponential retry policy. The topic and
 *   ordering cannot change in place. The SSE instances' own streaming-pull subscriptions carry no
 *   label, so `--prune` never touches them.
 */
import type { Command } from '../gcloud.js';
import { compareProps, type Diff, type Kind, LABEL, last } from '../model.js';

const label = `${LABEL.key}=${LABEL.value}`;

export interface TopicProps {
  labels: Record<string, string>;
}

interface LiveTopic {
  name: string;
  labels?: Record<string, string>;
}

/** Only patchbay's own label is compared: labels others add are left alone. */
const ourLabel = (labels: Record<string, string> | undefined): Record<string, string> => ({ [LABEL.key]: labels?.[LABEL.key] as string });

export const topics: Kind<TopicProps> = {
  kind: 'topic',
  async observe({ gcloud }) {
    const list = await gcloud.json<LiveTopic[]>(['pubsub', 'topics', 'list']);
    return new Map(list.map((t) => [last(t.name), { labels: ourLabel(t.labels) }]));
  },
  create: (_ctx, r) => [{ args: ['pubsub', 'topics', 'create', r.name, `--labels=${label}`] }],
  update: (_ctx, r) => [{ args: ['pubsub', 'topics', 'update', r.name, `--update-labels=${label}`] }],
  ours: (_ctx, _name, live) => live.labels[LABEL.key] === LABEL.value,
  remove: (_ctx, name) => [{ args: ['pubsub', 'topics', 'delete', name] }],
};

export interface SubscriptionProps {
  topic: string;
  pushEndpoint: string;
  serviceAccount: string;
  audience: string;
  ordering: boolean;
  /** The subscription's message filter ('' for none); like ordering, fixed at creation. */
  filter: string;
  deadLetterTopic: string;
  maxDeliveryAttempts: number;
  minRetryDelay: string;
  maxRetryDelay: string;
  ackDeadline: number;
  labels: Record<string, string>;
}

interface LiveSubscription {
  name: string;
  topic: string;
  pushConfig?: { pushEndpoint?: string; oidcToken?: { serviceAccountEmail?: string; audience?: string } };
  enableMessageOrdering?: boolean;
  filter?: string;
  deadLetterPolicy?: { deadLetterTopic?: string; maxDeliveryAttempts?: number };
  retryPolicy?: { minimumBackoff?: string; maximumBackoff?: string };
  ackDeadlineSeconds?: number;
  labels?: Record<string, string>;
}

function normalize(s: LiveSubscription): SubscriptionProps {
  return {
    topic: last(s.topic),
    pushEndpoint: s.pushConfig?.pushEndpoint ?? '',
    serviceAccount: s.pushConfig?.oidcToken?.serviceAccountEmail ?? '',
    audience: s.pushConfig?.oidcToken?.audience ?? '',
    ordering: s.enableMessageOrdering === true,
    filter: s.filter ?? '',
    deadLetterTopic: last(s.deadLetterPolicy?.deadLetterTopic),
    maxDeliveryAttempts: s.deadLetterPolicy?.maxDeliveryAttempts ?? 0,
    minRetryDelay: s.retryPolicy?.minimumBackoff ?? '',
    maxRetryDelay: s.retryPolicy?.maximumBackoff ?? '',
    ackDeadline: s.ackDeadlineSeconds ?? 10,
    labels: ourLabel(s.labels),
  };
}

/** The flags update and create share. */
function settable(p: SubscriptionProps): string[] {
  return [
    `--push-endpoint=${p.pushEndpoint}`,
    `--push-auth-service-account=${p.serviceAccount}`,
    `--push-auth-token-audience=${p.audience}`,
    `--dead-letter-topic=${p.deadLetterTopic}`,
    `--max-delivery-attempts=${p.maxDeliveryAttempts}`,
    `--min-retry-delay=${p.minRetryDelay}`,
    `--max-retry-delay=${p.maxRetryDelay}`,
    `--ack-deadline=${p.ackDeadline}`,
  ];
}

export const subscriptions: Kind<SubscriptionProps> = {
  kind: 'subscription',
  async observe({ gcloud }) {
    const list = await gcloud.json<LiveSubscription[]>(['pubsub', 'subscriptions', 'list']);
    return new Map(list.map((s) => [last(s.name), normalize(s)]));
  },
  diff: (want, live): Diff[] => compareProps(want, live, ['topic', 'ordering', 'filter']),
  create: (_ctx, r): Command[] => [
    {
      args: [
        'pubsub',
        'subscriptions',
        'create',
        r.name,
        `--topic=${r.props.topic}`,
        ...(r.props.ordering ? ['--enable-message-ordering'] : []),
        ...(r.props.filter ? [`--message-filter=${r.props.filter}`] : []),
        ...settable(r.props),
        `--labels=${label}`,
      ],
    },
  ],
  update: (_ctx, r) => [{ args: ['pubsub', 'subscriptions', 'update', r.name, ...settable(r.props), `--update-labels=${label}`] }],
  ours: (_ctx, _name, live) => live.labels[LABEL.key] === LABEL.value,
  remove: (_ctx, name) => [{ args: ['pubsub', 'subscriptions', 'delete', name] }],
};
