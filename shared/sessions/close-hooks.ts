/**
 * Close hooks (issue 15, item 8): when a session closes, each webhook of its domain's active
 * configuration whose `events` include `session.closed` receives one signed POST (Standard
 * Webhooks, the same secret and wire as its patch deliveries: shared/domains/webhook-post.ts):
 * `{type: 'session.closed', timestamp, data: {session, user, domain, reason, opened, closed, info}}`
 * with `webhook-id` `session:<id>`, the same on every retry, so a receiver drops duplicates by it.
 *
 * `deliver` tries each webhook not yet done once and answers which are now done; the session's
 * closer (shared/sessions/sessions.ts) records them and retries the others later, up to
 * PATCHBAY_WEBHOOK_MAX_ATTEMPTS in all. Nothing of the payload or the secret is logged.
 */
import type { WebhooksConfig } from '../config.js';
import type { ActiveConfigs } from '../domains/active.js';
import type { Webhook } from '../domains/config-schema.js';
import { postWebhook, signedHeaders } from '../domains/webhook-post.js';
import type { WebhookRecords } from '../domains/webhook-records.js';
import type { Json } from '../json.js';

export const SESSION_CLOSED = 'session.closed';

export interface ClosedSession {
  session: string;
  user: string;
  domain: string;
  reason: string;
  opened: number;
  closed: number;
  info: Json;
}

/** Whether a webhook takes this kind of event (`events` absent: patches only). */
export const wantsEvent = (hook: Webhook, event: 'patch' | typeof SESSION_CLOSED): boolean => (hook.events ?? ['patch']).includes(event);

export class CloseHooks {
  constructor(
    private readonly records: WebhookRecords,
    private readonly configs: ActiveConfigs,
    private readonly config: WebhooksConfig & { mode: 'embedded' | 'google' },
  ) {}

  /** The names of the domain's webhooks that take session closes. */
  async hooks(domain: string): Promise<Webhook[]> {
    await this.configs.prepare?.(domain);
    return (this.configs.get(domain)?.config.webhooks ?? []).filter((h) => wantsEvent(h, SESSION_CLOSED));
  }

  /** One attempt at each of the domain's close hooks not in `done`; answers those delivered now, and the first failure's text. */
  async deliver(closed: ClosedSession, done: readonly string[]): Promise<{ delivered: string[]; pending: string[]; error: string | null }> {
    const hooks = (await this.hooks(closed.domain)).filter((h) => !done.includes(h.name));
    const id = `session:${closed.session}`;
    const payload = JSON.stringify({ type: SESSION_CLOSED, timestamp: new Date(closed.closed).toISOString(), data: closed });
    const refusePrivate = this.config.webhookPrivateAddresses === 'refuse' || (this.config.webhookPrivateAddresses === 'auto' && this.config.mode === 'google');
    const outcomes = await Promise.all(
      hooks.map(async (h) => {
        try {
          const secret = await this.records.ensureSecret(closed.domain, h.name);
          const res = await postWebhook(h.url, payload, signedHeaders(secret.secret, id, payload, new Date()), {
            timeoutMs: this.config.webhookTimeoutMs,
            maxResponseBytes: this.config.webhookMaxResponseBytes,
            refusePrivate,
          });
          return res.status >= 200 && res.status < 300 ? null : `${h.name}: answered ${res.status}`;
        } catch (err) {
          return `${h.name}: ${err instanceof Error ? err.message : String(err)}`;
        }
      }),
    );
    const delivered = hooks.filter((_, i) => outcomes[i] === null).map((h) => h.name);
    const pending = hooks.filter((_, i) => outcomes[i] !== null).map((h) => h.name);
    return { delivered, pending, error: outcomes.find((o) => o !== null) ?? null };
  }
}
