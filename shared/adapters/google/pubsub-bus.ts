/**
 * The Google bus: Cloud Pub/Sub. Every committed patch is one message on one topic, with
 * orderingKey = scope (so Pub/Sub keeps a scope's patches in publish order), attributes
 * `{scope, ii}` and the PatchEvent as JSON data. Each bus instance (one per server instance) owns
 * one streaming-pull subscription, created on the first subscribe, and hands each message to the
 * local listeners of `attributes.scope`; every message is acked, whether or not anyone listens.
 *
 * A signal (Bus.signal: e.g. a scope's access changed) is a message on the same topic and
 * ordering key (none when it is `unordered`), told apart by its attribute `signal` (the kind);
 * its data is `{scope, signal, data?}`. Push consumers acknowledge and skip it (shared/http/push.ts).
 *
 * Loss guarantee: none needed here. The bus is best-effort fan-out; the engine's streams
 * deduplicate by ii and read gaps from the log, and the outbox sweeper republishes what a failed
 * publish left behind. What this module does owe the engine is order per scope and that a failed
 * publish never wedges a scope: after an error the ordering key is resumed before rethrowing.
 *
 * Why not subscription filters per scope: a subscription per SSE stream would cost a control-plane
 * call per stream, and the emulator ignores filters anyway. Every instance receives the whole
 * topic and drops what nobody local watches.
 *
 * The topic is created when a call finds it missing (NOT_FOUND), so tests and dev:cloud need no
 * setup step, while production, where infra creates it, never pays for the check.
 */
import { randomUUID } from 'node:crypto';
import type { Message, PubSub, Subscription, Topic } from '@google-cloud/pubsub';
import type { Logger } from '../../log.js';
import type { Bus, Listener, ScopeSignal, SignalListener } from '../../ports/index.js';
import type { PatchEvent } from '../../protocol.js';

export interface PubSubBusOptions {
  /** Topic id (not the full resource name). */
  topic: string;
  /** The subscription is `${subscriptionPrefix}-${instanceId}`. */
  subscriptionPrefix: string;
  /** Names this server instance's subscription; a fresh random id by default. */
  instanceId?: string;
  /**
   * How long the publisher waits to batch messages (Pub/Sub's default is 10 ms). Default 0: the
   * engine hands over a scope's whole run in one call, whose messages are queued in one tick, so
   * they still leave as one batch; waiting longer would only delay every event (and, with
   * PATCHBAY_ACK_AFTER=publish, every ack), since a scope's next run is not published before
   * this one completes.
   */
  publishBatchMs?: number;
  /**
   * Bound on one publish, retries included. The engine publishes a scope's commits one run at a
   * time, in order (shared/engine/after-commit.ts), so an unreachable Pub/Sub must fail fast (the
   * outbox sweeper republishes) rather than hold the scope's later events, and its instance's
   * shutdown, for the client library's default of 600 s.
   */
  publishTimeoutMs?: number;
  /** Where failures that reach no caller go (bad messages, listener errors, stream errors). */
  logger?: Pick<Logger, 'error'>;
}

/** One subscription's listeners. */
interface Subscriber {
  event: Listener;
  signal?: SignalListener;
}

/** A message other than a patch event (a signal), ready to publish. */
interface OutMessage {
  scope: string;
  data: Buffer;
  attributes: Record<string, string>;
  /** Published without an ordering key: it does not wait for the key's previous publish (ScopeSignal.unordered). */
  unordered?: boolean;
}

/** gRPC status codes the bus reacts to. */
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;

/**
 * Unused subscriptions are deleted by Pub/Sub after this (its minimum, 1 day): an instance that
 * died without close() leaves nothing behind for long.
 */
const SUBSCRIPTION_TTL_S = 24 * 3600;
/** Unacked messages are kept this long (Pub/Sub's minimum, 10 min); the log is the real store. */
const RETENTION_S = 600;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;

const defaultLogger: Pick<Logger, 'error'> = {
  error: (entry) => console.error(JSON.stringify({ severity: 'ERROR', ...entry })),
};

function codeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export class PubSubBus implements Bus {
  /** The full subscription id this instance creates. */
  readonly subscriptionName: string;
  private readonly topic: Topic;
  private readonly listeners = new Map<string, Set<Subscriber>>();
  private readonly log: Pick<Logger, 'error'>;
  private creatingTopic: Promise<void> | null = null;
  private starting: Promise<void> | null = null;
  private subscription: Subscription | null = null;
  /** Whether this instance's subscription may exist (created or adopted), so close() deletes it. */
  private created = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartDelay = RESTART_MIN_MS;
  private closed = false;

  constructor(
    private readonly pubsub: PubSub,
    private readonly opts: PubSubBusOptions,
  ) {
    this.subscriptionName = `${opts.subscriptionPrefix}-${opts.instanceId ?? randomUUID()}`;
    this.log = opts.logger ?? defaultLogger;
    this.topic = pubsub.topic(opts.topic, {
      messageOrdering: true,
      batching: { maxMilliseconds: opts.publishBatchMs ?? 0 },
      gaxOpts: { timeout: opts.publishTimeoutMs ?? 10_000 },
    });
  }

  async publish(events: PatchEvent[]): Promise<void> {
    if (this.closed) throw new Error('the Pub/Sub bus is closed');
    if (events.length === 0) return;
    try {
      await this.publishOnce(events);
    } catch (err) {
      if (codeOf(err) !== NOT_FOUND) throw err;
      await this.ensureTopic();
      await this.publishOnce(events);
    }
  }

  async signal(signal: ScopeSignal): Promise<void> {
    if (this.closed) throw new Error('the Pub/Sub bus is closed');
    const message = {
      data: Buffer.from(JSON.stringify({ scope: signal.scope, signal: signal.kind, ...(signal.data === undefined ? {} : { data: signal.data }) })),
      scope: signal.scope,
      attributes: { scope: signal.scope, signal: signal.kind },
      ...(signal.unordered ? { unordered: true } : {}),
    };
    try {
      await this.publishOnce([message]);
    } catch (err) {
      if (codeOf(err) !== NOT_FOUND) throw err;
      await this.ensureTopic();
      await this.publishOnce([message]);
    }
  }

  /** Publishes in order; on any failure, resumes the ordering keys involved, then rethrows. */
  private async publishOnce(events: Array<PatchEvent | OutMessage>): Promise<void> {
    const results = await Promise.allSettled(
      events.map((e) =>
        this.topic.publishMessage(
          'data' in e
            ? { data: e.data, ...(e.unordered ? {} : { orderingKey: e.scope }), attributes: e.attributes }
            : { data: Buffer.from(JSON.stringify(e)), orderingKey: e.scope, attributes: { scope: e.scope, ii: String(e.ii) } },
        ),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failed) return;
    // A failed publish pauses its ordering key: by the library's contract every later publish
    // for the scope fails until resumed (5.3 happens to drop a failed queue once it drains, older
    // versions kept it paused for good). The whole batch has settled here, so nothing of it is
    // still queued behind the pause; the caller (the engine) leaves the patches to the sweeper.
    for (const scope of new Set(events.filter((e) => !('unordered' in e && e.unordered)).map((e) => e.scope))) this.topic.resumePublishing(scope);
    throw failed.reason;
  }

  /**
   * Creates the topic; ALREADY_EXISTS (another instance won the race) is success. Concurrent
   * callers share one attempt, but a success is not remembered: the topic can be deleted later.
   */
  private ensureTopic(): Promise<void> {
    this.creatingTopic ??= this.pubsub
      .createTopic(this.opts.topic)
      .then(
        () => undefined,
        (err) => {
          if (codeOf(err) !== ALREADY_EXISTS) throw err;
        },
      )
      .finally(() => {
        this.creatingTopic = null;
      });
    return this.creatingTopic;
  }

  async subscribe(scope: string, listener: Listener, onSignal?: SignalListener): Promise<() => Promise<void>> {
    if (this.closed) throw new Error('the Pub/Sub bus is closed');
    let set = this.listeners.get(scope);
    if (!set) {
      set = new Set();
      this.listeners.set(scope, set);
    }
    const wrapped: Subscriber = { event: listener, signal: onSignal }; // a distinct entry per subscription
    set.add(wrapped);
    const unsubscribe = async () => {
      set.delete(wrapped);
      if (set.size === 0 && this.listeners.get(scope) === set) this.listeners.delete(scope);
    };
    try {
      // Once the subscription exists, Pub/Sub keeps every later message for it, so everything
      // published after this resolves reaches the listener, even if the stream is still opening.
      await this.start();
    } catch (err) {
      await unsubscribe();
      throw err;
    }
    return unsubscribe;
  }

  /** Creates (or adopts) this instance's subscription and opens its stream, once. */
  private start(): Promise<void> {
    this.starting ??= this.open().catch((err) => {
      this.starting = null;
      throw err;
    });
    return this.starting;
  }

  private async open(): Promise<void> {
    const metadata = {
      enableMessageOrdering: true,
      ackDeadlineSeconds: 10,
      messageRetentionDuration: { seconds: RETENTION_S },
      expirationPolicy: { ttl: { seconds: SUBSCRIPTION_TTL_S } },
    };
    const create = () => this.pubsub.createSubscription(this.opts.topic, this.subscriptionName, metadata);
    try {
      await create();
    } catch (err) {
      const code = codeOf(err);
      if (code === NOT_FOUND) {
        await this.ensureTopic();
        await create().catch((e) => {
          if (codeOf(e) !== ALREADY_EXISTS) throw e;
        });
      } else if (code !== ALREADY_EXISTS) {
        throw err; // ALREADY_EXISTS: this instance id's own subscription, left by an earlier run
      }
    }
    this.created = true;
    if (this.closed) throw new Error('the Pub/Sub bus is closed'); // close() deletes it
    const sub = this.pubsub.subscription(this.subscriptionName);
    sub.on('message', (m: Message) => this.dispatch(m));
    sub.on('error', (err: unknown) => this.log.error({ message: 'pubsub stream error', subscription: this.subscriptionName, err: String(err) }));
    sub.on('close', () => {
      if (this.subscription !== sub || this.closed) return;
      // The stream ended on its own (a non-retryable error, e.g. the subscription was deleted).
      // Open it again while anyone listens; what was missed in between the engine reads from the log.
      this.subscription = null;
      this.starting = null;
      this.scheduleRestart();
    });
    this.subscription = sub;
    this.restartDelay = RESTART_MIN_MS;
  }

  private scheduleRestart(): void {
    if (this.closed || this.restartTimer || this.listeners.size === 0) return;
    const delay = this.restartDelay;
    this.restartDelay = Math.min(this.restartDelay * 2, RESTART_MAX_MS);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.closed || this.starting) return;
      this.start().catch((err) => {
        this.log.error({ message: 'pubsub subscription restart failed', subscription: this.subscriptionName, err: String(err) });
        this.scheduleRestart();
      });
    }, delay);
    this.restartTimer.unref();
  }

  /** Acks first (delivery is best-effort; a redelivery would only be deduplicated), then fans out. */
  private dispatch(m: Message): void {
    m.ack();
    const scope = m.attributes.scope;
    const set = scope === undefined ? undefined : this.listeners.get(scope);
    if (!set || scope === undefined) return;
    const kind = m.attributes.signal;
    if (kind !== undefined) {
      if (kind === 'access' || kind === 'deleted' || kind === 'presence') this.fanOut(scope, set, (l) => l.signal?.({ scope, kind }));
      else if (kind === 'control') {
        const data = controlData(m.data);
        if (data === undefined) this.log.error({ message: 'pubsub control signal without data; dropped', scope, messageId: m.id });
        else this.fanOut(scope, set, (l) => l.signal?.({ scope, kind, data }));
      } else this.log.error({ message: 'pubsub signal of an unknown kind; dropped', scope, kind, messageId: m.id });
      return;
    }
    let event: PatchEvent;
    try {
      event = JSON.parse(m.data.toString('utf8')) as PatchEvent;
    } catch (err) {
      this.log.error({ message: 'pubsub message is not JSON; dropped', scope, messageId: m.id, err: String(err) });
      return;
    }
    if (event?.scope !== scope || !Number.isSafeInteger(event.ii)) {
      this.log.error({ message: 'pubsub message is not a patch event of its scope; dropped', scope, messageId: m.id });
      return;
    }
    this.fanOut(scope, set, (l) => l.event(event));
  }

  private fanOut(scope: string, set: Set<Subscriber>, call: (l: Subscriber) => void): void {
    for (const l of [...set]) {
      try {
        call(l);
      } catch (err) {
        this.log.error({ message: 'bus listener threw', scope, err: String(err) });
      }
    }
  }

  private async deleteSubscription(): Promise<void> {
    try {
      await this.pubsub.subscription(this.subscriptionName).delete();
    } catch (err) {
      if (codeOf(err) !== NOT_FOUND) throw err;
    }
  }

  /**
   * Stops delivery, flushes pending publishes, closes the stream and deletes the subscription
   * this instance created. The PubSub client is the caller's and stays open.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    await this.starting?.catch(() => {}); // open() sees `closed` and cleans up after itself
    const sub = this.subscription;
    this.subscription = null;
    await this.topic.flush().catch((err) => this.log.error({ message: 'pubsub flush on close failed', err: String(err) }));
    if (sub) await sub.close().catch((err) => this.log.error({ message: 'pubsub stream close failed', err: String(err) }));
    if (this.created) await this.deleteSubscription();
  }
}

/** The content of a `control` signal's message (`{scope, signal, data}`), or undefined when it has none. */
function controlData(raw: Buffer): string | undefined {
  try {
    const data = (JSON.parse(raw.toString('utf8')) as { data?: unknown }).data;
    return typeof data === 'string' ? data : undefined;
  } catch {
    return undefined;
  }
}
