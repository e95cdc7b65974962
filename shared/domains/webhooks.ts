/**
 * Webhooks after commit (issue 13, part 5): the handler of the built-in `webhooks` consumer, and
 * what the domain's admin sees of the deliveries. docs/domains.md (`## Webhooks`) is the reference.
 *
 * Guarantee 4 for webhooks: each webhook receives the committed patches of each scope it matches
 * in index order, at least once. The consumer (shared/engine/consumer.ts) keeps one cursor per
 * scope and hands this handler each patch in order; the handler POSTs the patch to every matching
 * webhook of the scope's domain (its active configuration, read at delivery) and returns only
 * when each of them is done with it: delivered (2xx), or dead-lettered after
 * PATCHBAY_WEBHOOK_MAX_ATTEMPTS failures. While one fails, the handler throws, the cursor stays,
 * and the patch is delivered again later (Pub/Sub redelivery on Google, LocalDelivery's backoff
 * embedded); webhooks already done with it are not sent it again (their `webhook-attempts`
 * record says `done`). So a failing webhook holds back the other webhooks of the same scope for
 * at most its N attempts, never the other scopes, and never reorders anything.
 *
 * Which patches: those committed (`at`) from the webhook's creation (`since`, its secret's) on, of
 * the scopes of its domain whose type is in its `types` and whose name matches one of its `names`
 * globs (each: every scope when absent). A scope with no matching webhook costs one head read (its
 * meta cached for PATCHBAY_DOMAIN_CACHE_MS) and no write: the consumer skips it without touching
 * its cursor (Consumer `wants`). Platform scopes (`sys:`) are never sent.
 *
 * Each delivery: `POST url` with `{type: 'patch.committed', timestamp, data: {scope, ii, patch,
 * at, by, domain, scopeType, name}}`, signed per Standard Webhooks (webhook-post.ts); its
 * `webhook-id` is `<scope>:<ii>`, the same on every retry, so a receiver drops duplicates by it.
 *
 * Write-back: a 2xx answer whose body is `{"patches": [{"scope", "patch", "ii"?}, ...]}` (at most
 * 100) has those patches applied as the domain's service identity, user `domain:<domain>`, which
 * writes every scope of its domain (shared/engine/access.ts) and no other. Each carries a
 * (session, si) derived from the webhook and the event, so a redelivered event's write-back is
 * recognised as a duplicate, not applied twice. A refused write-back (another domain's scope, a
 * patch that fails, a body that is not that shape) does not fail the delivery: it is recorded in
 * the webhook's state (`lastWriteBack.error`).
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import type { ServerConfig, WebhooksConfig } from '../config.js';
import type { Engine } from '../engine/engine.js';
import { PatchbayError } from '../errors.js';
import type { RecordStore } from '../ports/records.js';
import { type PatchEvent, patchSchema, SCOPE_ID } from '../protocol.js';
import type { ActiveConfigs } from './active.js';
import { SYSTEM_SCOPE_PREFIX } from './apply.js';
import type { Webhook } from './config-schema.js';
import { postWebhook, signedHeaders } from './webhook-post.js';
import { type Attempts, type DeadLetter, type DeliveryError, WebhookRecords, type WebhookSecret, type WebhookState } from './webhook-records.js';

/** The name of the built-in consumer (and of its push subscription's endpoint, `/push/webhooks`). */
export const WEBHOOKS_CONSUMER = 'webhooks';
/** Most patches one webhook response may ask to apply. */
export const MAX_WRITE_BACK = 100;

/** The user a domain's write-backs are made as (its service identity). */
export const serviceUser = (domain: string): string => `domain:${domain}`;

/** Whether the webhooks consumer looks at a scope at all (platform scopes: never). */
export const webhookScope = (scope: string): boolean => !scope.startsWith(SYSTEM_SCOPE_PREFIX);

const writeBackSchema = z.object({
  patches: z.array(z.strictObject({ scope: z.string().regex(SCOPE_ID), patch: patchSchema, ii: z.number().int().min(1).optional() })).max(MAX_WRITE_BACK),
});

interface Target {
  domain: string;
  type: string | null;
  name: string | null;
  hooks: Webhook[];
}

type Outcome =
  | { kind: 'skipped' }
  | { kind: 'delivered'; rev: number }
  | { kind: 'done'; rev: number } // done before (a retry of the event)
  | { kind: 'dead'; rev: number }
  | { kind: 'failed'; name: string; message: string };

const globs = new WeakMap<Webhook, RegExp[]>();

/** Whether a scope of this type and name is one the webhook wants. */
export function matches(hook: Webhook, type: string | null, name: string | null): boolean {
  if (hook.events && !hook.events.includes('patch')) return false; // a close hook only (shared/sessions/close-hooks.ts)
  if (hook.types && (type === null || !hook.types.includes(type))) return false;
  if (!hook.names) return true;
  if (name === null) return false;
  let res = globs.get(hook);
  if (!res) {
    res = hook.names.map((g) => new RegExp(`^${g.split('*').map(escapeRegExp).join('.*')}$`, 's'));
    globs.set(hook, res);
  }
  return res.some((r) => r.test(name));
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** What the admin sees of one webhook (GET /v1/domains/{domain}/webhooks). */
export interface WebhookView {
  name: string;
  url: string;
  types: string[] | null;
  names: string[] | null;
  /** The signing secret (`whsec_...`), null until the configuration's apply made it. */
  secret: string | null;
  since: number | null;
  state: WebhookState;
  /** Deliveries failing now (the first 20): their scope, index, attempts and last error. */
  failing: Array<{ scope: string; ii: number; attempts: number; lastError: DeliveryError | null }>;
}

export class Webhooks {
  readonly records: WebhookRecords;
  private readonly metas: LRUCache<string, { domain: string; type: string | null; name: string | null }> | null;

  constructor(
    records: RecordStore,
    private readonly engine: Engine,
    private readonly configs: ActiveConfigs,
    private readonly config: WebhooksConfig & Pick<ServerConfig, 'mode'> & { domainCacheMs: number },
  ) {
    this.records = new WebhookRecords(records);
    this.metas = config.domainCacheMs > 0 ? new LRUCache({ max: 10_000, ttl: config.domainCacheMs }) : null;
  }

  /** The consumer's `wants`: whether any webhook of the scope's domain matches it (else it is skipped, no cursor written). */
  async wants(event: PatchEvent): Promise<boolean> {
    return ((await this.target(event.scope))?.hooks.length ?? 0) > 0;
  }

  /** The consumer's handler: delivers one patch to every matching webhook; throws while one of them fails (see the top of this file). */
  async handle(event: PatchEvent): Promise<void> {
    const target = await this.target(event.scope);
    if (!target || target.hooks.length === 0) return;
    const outcomes = await Promise.all(target.hooks.map((h) => this.deliverTo(target, h, event)));
    const failed = outcomes.filter((o): o is Extract<Outcome, { kind: 'failed' }> => o.kind === 'failed');
    if (failed.length > 0) {
      // Those that got it now need not get it again when the event is redelivered.
      await Promise.all(
        outcomes.map((o, i) =>
          o.kind === 'delivered'
            ? this.records.putAttempts(
                target.domain,
                (target.hooks[i] as Webhook).name,
                event.scope,
                event.ii,
                { attempts: 0, lastError: null, done: true },
                o.rev,
              )
            : null,
        ),
      );
      throw new PatchbayError(
        'unavailable',
        `webhook delivery of ${event.scope}:${event.ii} failed (${failed.map((f) => `${f.name}: ${f.message}`).join('; ')}); retried`,
      );
    }
    // Done for every webhook: its attempts records (only those a failure left) go.
    await Promise.all(
      outcomes.map((o, i) =>
        'rev' in o && o.rev > 0 ? this.records.dropAttempts(target.domain, (target.hooks[i] as Webhook).name, event.scope, event.ii, o.rev) : null,
      ),
    );
  }

  /** The domain's webhooks (its active configuration's) with their secrets and delivery state, for its admin. */
  async list(domain: string): Promise<WebhookView[]> {
    await this.configs.prepare?.(domain);
    const hooks = this.configs.get(domain)?.config.webhooks ?? [];
    return Promise.all(
      hooks.map(async (h) => {
        const [secret, state, failing] = await Promise.all([
          this.records.secret(domain, h.name),
          this.records.state(domain, h.name),
          this.records.failing(domain, h.name, 20),
        ]);
        return {
          name: h.name,
          url: h.url,
          types: h.types ?? null,
          names: h.names ?? null,
          secret: secret?.secret ?? null,
          since: secret?.since ?? null,
          state,
          failing: failing.filter((f) => !f.done).map(({ scope, ii, attempts, lastError }) => ({ scope, ii, attempts, lastError })),
        };
      }),
    );
  }

  /** Makes the secrets of a configuration's webhooks that have none (the apply's `webhooks` step; at start for file configurations). */
  async ensureSecrets(domain: string, hooks: readonly Webhook[]): Promise<void> {
    for (const h of hooks) await this.records.ensureSecret(domain, h.name);
  }

  /** The scope's domain, type, name and matching webhooks; null for a platform scope. */
  private async target(scope: string): Promise<Target | null> {
    if (!webhookScope(scope)) return null;
    let meta = this.metas?.get(scope);
    if (!meta) {
      const head = await this.engine.head(scope);
      meta = { domain: head.meta.domain, type: head.meta.type, name: head.meta.name };
      this.metas?.set(scope, meta);
    }
    await this.configs.prepare?.(meta.domain);
    const hooks = this.configs.get(meta.domain)?.config.webhooks ?? [];
    return { ...meta, hooks: hooks.filter((h) => matches(h, meta.type, meta.name)) };
  }

  private async deliverTo(t: Target, hook: Webhook, event: PatchEvent): Promise<Outcome> {
    // A secret not made by an apply (it was removed, or the configuration came another way): made now, from this patch on.
    const secret = await this.records.ensureSecret(t.domain, hook.name, event.at);
    if (event.at < secret.since) return { kind: 'skipped' };
    const rec = await this.records.attempts(t.domain, hook.name, event.scope, event.ii);
    const prior = rec?.value as unknown as Attempts | undefined;
    const rev = rec?.rev ?? 0;
    if (prior?.done) return { kind: 'done', rev };
    const failure = await this.post(t, hook, event, secret);
    if (failure === null) return { kind: 'delivered', rev };
    const attempts = (prior?.attempts ?? 0) + 1;
    const id = `${event.scope}:${event.ii}`;
    if (attempts >= this.config.webhookMaxAttempts) {
      const letter: DeadLetter = { scope: event.scope, ii: event.ii, id, attempts, lastError: failure, deadAt: Date.now() };
      const wrote = await this.records.putDead(t.domain, hook.name, letter);
      if (!(await this.records.putAttempts(t.domain, hook.name, event.scope, event.ii, { attempts, lastError: failure, done: true }, rev))) {
        return { kind: 'failed', name: hook.name, message: 'its attempts moved concurrently' };
      }
      await this.state(t.domain, hook.name, (s) => ({ ...s, lastError: failure, failures: s.failures + 1, deadLetters: s.deadLetters + (wrote ? 1 : 0) }));
      return { kind: 'dead', rev: rev + 1 };
    }
    await this.records.putAttempts(t.domain, hook.name, event.scope, event.ii, { attempts, lastError: failure, done: false }, rev);
    await this.state(t.domain, hook.name, (s) => ({ ...s, lastError: failure, failures: s.failures + 1 }));
    return { kind: 'failed', name: hook.name, message: failure.status === undefined ? failure.message : `HTTP ${failure.status}` };
  }

  /** One attempt; null when delivered, else what went wrong. */
  private async post(t: Target, hook: Webhook, event: PatchEvent, secret: WebhookSecret): Promise<DeliveryError | null> {
    const id = `${event.scope}:${event.ii}`;
    const payload = JSON.stringify({
      type: 'patch.committed',
      timestamp: new Date(event.at).toISOString(),
      data: { scope: event.scope, ii: event.ii, patch: event.patch, at: event.at, by: event.by, domain: t.domain, scopeType: t.type, name: t.name },
    });
    const opts = {
      timeoutMs: this.config.webhookTimeoutMs,
      maxResponseBytes: this.config.webhookMaxResponseBytes,
      refusePrivate: this.config.webhookPrivateAddresses === 'refuse' || (this.config.webhookPrivateAddresses === 'auto' && this.config.mode === 'google'),
    };
    const failed = (message: string, status?: number): DeliveryError => ({
      scope: event.scope,
      ii: event.ii,
      at: Date.now(),
      ...(status === undefined ? {} : { status }),
      message,
    });
    let res: Awaited<ReturnType<typeof postWebhook>>;
    try {
      res = await postWebhook(hook.url, payload, signedHeaders(secret.secret, id, payload, new Date()), opts);
    } catch (err) {
      return failed(err instanceof Error ? err.message : String(err));
    }
    if (res.status < 200 || res.status >= 300) return failed(`answered ${res.status}`, res.status);
    const deliveredAt = Date.now();
    const writeBack = await this.writeBack(t.domain, hook.name, event, res.body, res.truncated);
    await this.state(t.domain, hook.name, (s) => ({
      ...s,
      delivered: s.delivered + 1,
      lastDelivered: { scope: event.scope, ii: event.ii, committedAt: event.at, deliveredAt, lagMs: deliveredAt - event.at },
      ...(writeBack ? { lastWriteBack: writeBack } : {}),
    }));
    return null;
  }

  /** Applies the patches a 2xx answer asks for (see the top of this file); what happened, or null when it asked for nothing. */
  private async writeBack(domain: string, hook: string, event: PatchEvent, body: Buffer | null, truncated: boolean): Promise<WebhookState['lastWriteBack']> {
    const at = Date.now();
    const result = (applied: number, error?: string) => ({ scope: event.scope, ii: event.ii, at, applied, ...(error ? { error } : {}) });
    if (truncated) return result(0, `the answer is larger than ${this.config.webhookMaxResponseBytes} bytes (PATCHBAY_WEBHOOK_MAX_RESPONSE_BYTES)`);
    const text = body?.toString('utf8').trim() ?? '';
    if (text === '') return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return null; // an answer that is not JSON asks for nothing
    }
    if (parsed === null || typeof parsed !== 'object' || !('patches' in parsed)) return null;
    const ok = writeBackSchema.safeParse(parsed);
    if (!ok.success) return result(0, `the answer's patches are not [{scope, patch, ii?}] (at most ${MAX_WRITE_BACK}): ${ok.error.issues[0]?.message ?? ''}`);
    const session = `wh.${createHash('sha256').update(`${domain}/${hook}/${event.scope}/${event.ii}`).digest('hex').slice(0, 40)}`;
    let applied = 0;
    for (const [i, p] of ok.data.patches.entries()) {
      try {
        // Another domain's scope answers as one that does not exist: the receiver learns nothing it could not see.
        const head = await this.engine.head(p.scope).catch(() => null);
        if (head?.meta.domain !== domain) return result(applied, `patch ${i}: no scope ${p.scope} in domain ${domain}`);
        await this.engine.submit(p.scope, serviceUser(domain), { patch: p.patch, ...(p.ii ? { ii: p.ii } : {}), session, si: i + 1 }, { domain });
        applied += 1;
      } catch (err) {
        return result(applied, `patch ${i} (${p.scope}): ${errorText(err)}`);
      }
    }
    return result(applied);
  }

  private async state(domain: string, name: string, change: (s: WebhookState) => WebhookState): Promise<void> {
    // Best effort (webhook-records.ts): a failed write of the state never fails the delivery.
    await this.records.updateState(domain, name, change).catch(() => {});
  }
}

function errorText(err: unknown): string {
  if (err instanceof PatchbayError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
