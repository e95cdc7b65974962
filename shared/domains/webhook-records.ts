/**
 * What patchbay keeps about a domain's webhooks, in the record store (one kind per job):
 * - `webhook-secret` `<domain>/<name>`: the signing secret (`whsec_` + base64 of 32 random
 *   bytes, the Standard Webhooks form) and `since`, when it was made: the webhook receives the
 *   patches committed from then on. Made once, by the configuration apply's `webhooks` step (or
 *   at start for configurations read from files), never changed; kept when the webhook leaves the
 *   configuration, so a webhook that comes back keeps its secret.
 * - `webhook-attempts` `<domain>/<name>/<scope>/<ii>`: the failed attempts at one delivery (and
 *   `done` once a retry of the event need not send it again). Exists only while the
 *   delivery is failing: removed when the event is done for every webhook; on Firestore they also
 *   expire ATTEMPTS_EXPIRE_MS after the last attempt (an event Pub/Sub gave up on leaves them).
 * - `webhook-dead` `<domain>/<name>/<scope>/<ii>`: a dead letter, a patch given up after
 *   PATCHBAY_WEBHOOK_MAX_ATTEMPTS failures. Kept; the admin lists them.
 * - `webhook-state` `<domain>/<name>`: the delivery state the admin sees (last delivered patch
 *   and its lag, last error, counts). Written best-effort after each outcome: a write that loses
 *   a race to a concurrent delivery's is dropped, since the newer one says as much.
 *
 * Keys hold user input (domain, scope id) within the record store's 512-character key limit:
 * domains are at most 253, names 63, scope ids 128, indices 16.
 */
import { randomBytes } from 'node:crypto';
import type { Json } from '../json.js';
import type { RecordStore, StoredRecord } from '../ports/records.js';

export const SECRET_KIND = 'webhook-secret';
export const ATTEMPTS_KIND = 'webhook-attempts';
export const DEAD_KIND = 'webhook-dead';
export const STATE_KIND = 'webhook-state';
/** Failed attempts expire (Firestore TTL) this long after the last: longer than Pub/Sub redelivers a message (7 days). */
export const ATTEMPTS_EXPIRE_MS = 8 * 24 * 3_600_000;

export interface WebhookSecret {
  secret: string;
  /** Milliseconds since the epoch: patches committed before this are not sent to the webhook. */
  since: number;
}

export interface DeliveryError {
  scope: string;
  ii: number;
  /** When the attempt failed. */
  at: number;
  /** The HTTP status, when the webhook answered. */
  status?: number;
  message: string;
}

export interface Attempts {
  attempts: number;
  lastError: DeliveryError | null;
  /** This webhook is done with the event (delivered, or dead-lettered) while another webhook of the event still fails. */
  done: boolean;
}

export interface DeadLetter {
  scope: string;
  ii: number;
  /** The `webhook-id` it was sent with. */
  id: string;
  attempts: number;
  lastError: DeliveryError | null;
  /** When it was given up. */
  deadAt: number;
}

export interface WebhookState {
  /** The last patch delivered, when, and its lag (delivered minus committed, ms). */
  lastDelivered: { scope: string; ii: number; committedAt: number; deliveredAt: number; lagMs: number } | null;
  lastError: DeliveryError | null;
  /** Of the last write-back (patches a response asked to apply): when, how many, or what refused them. */
  lastWriteBack: { scope: string; ii: number; at: number; applied: number; error?: string } | null;
  delivered: number;
  failures: number;
  deadLetters: number;
}

export const EMPTY_STATE: WebhookState = { lastDelivered: null, lastError: null, lastWriteBack: null, delivered: 0, failures: 0, deadLetters: 0 };

const hookKey = (domain: string, name: string) => `${domain}/${name}`;
/** Per event: the index zero-padded, so a webhook's records list in index order per scope. */
export const eventKey = (domain: string, name: string, scope: string, ii: number) => `${domain}/${name}/${scope}/${String(ii).padStart(16, '0')}`;

/** A new Standard Webhooks secret. */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export class WebhookRecords {
  private readonly secrets = new Map<string, WebhookSecret>();

  constructor(private readonly records: RecordStore) {}

  /** The webhook's secret, made now (with `since`) if it has none. Idempotent: of racing callers, all get the one stored. */
  async ensureSecret(domain: string, name: string, since = Date.now()): Promise<WebhookSecret> {
    const key = hookKey(domain, name);
    const cached = this.secrets.get(key);
    if (cached) return cached;
    let rec = await this.records.get(SECRET_KIND, key);
    if (!rec) {
      const made: WebhookSecret = { secret: newSecret(), since };
      rec = (await this.records.put(SECRET_KIND, key, made as unknown as Json, 0)) ?? (await this.records.get(SECRET_KIND, key));
    }
    if (!rec) throw new Error(`the secret of webhook ${key} vanished while it was made`);
    const secret = rec.value as unknown as WebhookSecret;
    this.secrets.set(key, secret); // secrets never change, so this needs no expiry (one entry per webhook)
    return secret;
  }

  /** The webhook's secret, or null when none was made yet (for the admin: reading makes nothing). */
  async secret(domain: string, name: string): Promise<WebhookSecret | null> {
    const rec = await this.records.get(SECRET_KIND, hookKey(domain, name));
    return rec ? (rec.value as unknown as WebhookSecret) : null;
  }

  attempts(domain: string, name: string, scope: string, ii: number): Promise<StoredRecord | null> {
    return this.records.get(ATTEMPTS_KIND, eventKey(domain, name, scope, ii));
  }

  /** Stores the attempts of a delivery from revision `rev`; false when another delivery moved them (it is retried). */
  async putAttempts(domain: string, name: string, scope: string, ii: number, value: Attempts, rev: number): Promise<boolean> {
    // A backstop on Firestore: an event Pub/Sub stopped redelivering (it keeps a message 7 days) leaves its attempts behind.
    const expireAt = Date.now() + ATTEMPTS_EXPIRE_MS;
    return (await this.records.put(ATTEMPTS_KIND, eventKey(domain, name, scope, ii), value as unknown as Json, rev, { expireAt })) !== null;
  }

  async dropAttempts(domain: string, name: string, scope: string, ii: number, rev: number): Promise<void> {
    await this.records.delete(ATTEMPTS_KIND, eventKey(domain, name, scope, ii), rev);
  }

  /** Deliveries failing now (at most `limit`). */
  async failing(domain: string, name: string, limit: number): Promise<Array<{ scope: string; ii: number } & Attempts>> {
    const recs = await this.records.list(ATTEMPTS_KIND, { prefix: `${hookKey(domain, name)}/`, limit });
    return recs.map((r) => {
      const [scope, ii] = splitEventKey(r.key);
      return { scope, ii, ...(r.value as unknown as Attempts) };
    });
  }

  /** Writes a dead letter; true when this call wrote it (false: a concurrent delivery did). */
  async putDead(domain: string, name: string, letter: DeadLetter): Promise<boolean> {
    return (await this.records.put(DEAD_KIND, eventKey(domain, name, letter.scope, letter.ii), letter as unknown as Json, 0)) !== null;
  }

  async isDead(domain: string, name: string, scope: string, ii: number): Promise<boolean> {
    return (await this.records.get(DEAD_KIND, eventKey(domain, name, scope, ii))) !== null;
  }

  /** A page of dead letters, by scope then index; `after` is the previous page's `next`. */
  async dead(domain: string, name: string, limit: number, after?: string): Promise<{ letters: DeadLetter[]; next: string | null }> {
    const prefix = `${hookKey(domain, name)}/`;
    const recs = await this.records.list(DEAD_KIND, { prefix, limit, ...(after ? { after: prefix + after } : {}) });
    const last = recs[recs.length - 1];
    return { letters: recs.map((r) => r.value as unknown as DeadLetter), next: recs.length === limit && last ? last.key.slice(prefix.length) : null };
  }

  async state(domain: string, name: string): Promise<WebhookState> {
    const rec = await this.records.get(STATE_KIND, hookKey(domain, name));
    return rec ? { ...EMPTY_STATE, ...(rec.value as unknown as WebhookState) } : EMPTY_STATE;
  }

  /** Changes the state best-effort (see the top of this file): one read, one compare-and-set, a lost race dropped. */
  async updateState(domain: string, name: string, change: (s: WebhookState) => WebhookState): Promise<void> {
    const key = hookKey(domain, name);
    const rec = await this.records.get(STATE_KIND, key);
    const current = rec ? { ...EMPTY_STATE, ...(rec.value as unknown as WebhookState) } : EMPTY_STATE;
    await this.records.put(STATE_KIND, key, change(current) as unknown as Json, rec?.rev ?? 0);
  }
}

/** `<domain>/<name>/<scope>/<ii>` to [scope, ii] (scope ids have no `/`). */
function splitEventKey(key: string): [string, number] {
  const parts = key.split('/');
  return [parts[parts.length - 2] as string, Number(parts[parts.length - 1])];
}
