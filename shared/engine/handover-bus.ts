/**
 * The hand-over's way through the bus (./leading.ts has the whole hand-over): a request handed to
 * a scope's leader is sent on the bus, and the leader's outcome comes back on it, so a live leader
 * and a live sender meet in two bus messages and no Firestore write (measured in
 * bench/results/NOTES.md, 4 Dec, afternoon). A request not answered in time is written to the
 * scope's inbox, the durable way, by ./leading.ts.
 *
 * Both are `control` signals (shared/ports/bus.ts), on keys no scope can have (`~` is outside a
 * scope id's characters): requests on `~inbox:<scope>` (its leader listens while it leads), the
 * answers to one sending instance on `~answers:<holder>`, each batched per turn of the event loop
 * and published without the bus's per-key order (they carry their own keys; requests of one
 * sender in different turns may therefore reach the leader in another order, as requests reaching
 * different instances always could).
 *
 * Signed: a request carries a user's write authority, and an answer is what a client is told, so
 * every message is `<HMAC-SHA256>.<JSON>` under a key derived from PATCHBAY_JWT_SECRET (which every
 * instance of a deployment shares); one that does not verify is dropped, logged without its
 * content. So publishing to the topic, or reading it, is not enough to commit as a user or to
 * answer a request. A replayed request carries its retry key and is recognised.
 *
 * Nothing here is needed for correctness: a lost, late or doubled message costs time, never a
 * patch, because every handed request carries a retry key (a second commit answers the first's
 * ack), the leader decides a key once while it remembers it (./leading.ts `handled`), and a
 * request without an answer goes to the inbox or to its sender's own commit once the lease is free.
 *
 * Sizes are counted in bytes as the bus sends them (the message's text escaped once more inside
 * the signal's JSON): a push consumer (shared/http/push.ts) receives every message of the topic,
 * base64-encoded inside a body capped at PATCHBAY_MAX_BODY_BYTES (1 MiB), so a message stays
 * under MESSAGE_MAX_BYTES, and a larger request goes through the inbox alone.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Bus } from '../ports/bus.js';
import type { HandedOutcome, HandedRequest } from '../ports/leaders.js';

/** A request as it travels on the bus. */
export interface BusRequest extends Omit<HandedRequest, 'retriable'> {
  key: string;
  /** The sending instance's holder name: where the answer goes. */
  from: string;
}

/**
 * The most one message carries (see the top of this file): base64 makes 4/3 of it, so a push
 * body stays near a third of a MiB, well under PATCHBAY_MAX_BODY_BYTES's 1 MiB default.
 */
export const MESSAGE_MAX_BYTES = 256 * 1024;
/** A request larger than this (as sent) goes through the inbox alone: a few fit in one message. */
export const FAST_MAX_BYTES = 64 * 1024;

/** Bytes a text takes in a signal's JSON (escaped once more), as the bus sends it. */
const sentBytes = (text: string) => Buffer.byteLength(JSON.stringify(text));

/** Items to one bus key waiting for the end of the turn (see `enqueue`). */
interface Batch {
  /** Each item's JSON text. */
  items: string[];
  bytes: number;
  /** Settles when the message carrying them was published, or failed. */
  sent: Promise<void>;
}

const inboxKey = (scope: string) => `~inbox:${scope}`;
const answersKey = (holder: string) => `~answers:${holder}`;

export class HandoverBus {
  /** Senders waiting for the answer to a request key. */
  private readonly waiting = new Map<string, (outcome: HandedOutcome) => void>();
  /** This instance's subscription to its answers, opened on the first hand-over. */
  private listening: Promise<() => Promise<void>> | null = null;
  /** Requests (per scope) and answers (per receiving instance) to send at the end of this turn, by bus key. */
  private readonly batches = new Map<string, Batch>();

  private readonly key: Buffer;
  private closed = false;

  constructor(
    private readonly bus: Bus,
    /** This instance's holder name (./leading.ts). */
    private readonly holder: string,
    /** The deployment's shared secret (PATCHBAY_JWT_SECRET): messages are signed with a key derived from it. */
    secret: string,
    private readonly logError: (e: Record<string, unknown>) => void,
  ) {
    this.key = createHmac('sha256', secret).update('patchbay hand-over v1').digest();
  }

  private sign(text: string): string {
    return `${createHmac('sha256', this.key).update(text).digest('base64url')}.${text}`;
  }

  /** The text of a signed message, or undefined (logged, without its content) when it does not verify. */
  private verified(data: string, what: string): string | undefined {
    const dot = data.indexOf('.');
    const got = Buffer.from(dot > 0 ? data.slice(0, dot) : '', 'base64url');
    const text = data.slice(dot + 1);
    const want = createHmac('sha256', this.key).update(text).digest();
    if (dot > 0 && got.length === want.length && timingSafeEqual(got, want)) return text;
    this.logError({ message: `hand-over: ${what} on the bus with a bad signature; dropped`, bytes: data.length });
    return undefined;
  }

  /**
   * Sends `request` to the leader of `scope` and returns its answer's promise (`answer`: resolved
   * by the first answer to arrive, never rejected), or null when the bus is not taken (too
   * large, or the bus failed: the inbox still carries the request). Call `forget(key)` when done.
   */
  async send(scope: string, request: BusRequest): Promise<{ answer: Promise<HandedOutcome> } | null> {
    if (this.closed) return null;
    const data = JSON.stringify(request);
    if (sentBytes(data) > FAST_MAX_BYTES) return null;
    try {
      // The answers can only be heard once this instance's subscription exists: open it first.
      this.listening ??= this.bus.subscribe(
        answersKey(this.holder),
        () => {},
        (s) => s.data !== undefined && this.onAnswers(s.data),
      );
      await this.listening;
    } catch (err) {
      this.listening = null;
      this.logError({ message: 'hand-over: subscribing to answers on the bus failed; the inbox alone carries requests', error: String(err) });
      return null;
    }
    const answered = new Promise<HandedOutcome>((resolve) => this.waiting.set(request.key, resolve));
    try {
      await this.enqueue(inboxKey(scope), data);
    } catch (err) {
      this.waiting.delete(request.key);
      this.logError({ message: 'hand-over: publishing a request on the bus failed; the inbox carries it', scope, error: String(err) });
      return null;
    }
    return { answer: answered };
  }

  /**
   * Items sent to one bus key in one turn of the event loop leave in one message (a signed JSON
   * array, under MESSAGE_MAX_BYTES): a group's acks come back together and its writers send their
   * next requests together, and a leader's answers to one instance settle together, so every
   * instance receives fewer messages. Settles when that message was published, or failed.
   */
  private enqueue(busKey: string, text: string): Promise<void> {
    const bytes = sentBytes(text) + 1;
    let batch = this.batches.get(busKey);
    if (!batch || batch.bytes + bytes > MESSAGE_MAX_BYTES) {
      const fresh: Batch = { items: [], bytes: 0, sent: Promise.resolve() };
      fresh.sent = new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          if (this.batches.get(busKey) === fresh) this.batches.delete(busKey);
          this.bus.signal({ scope: busKey, kind: 'control', data: this.sign(`[${fresh.items.join(',')}]`), unordered: true }).then(resolve, reject);
        }),
      );
      this.batches.set(busKey, fresh);
      batch = fresh;
    }
    batch.items.push(text);
    batch.bytes += bytes;
    return batch.sent;
  }

  /** Stops waiting for the answer to `key` (answered another way, or given up). */
  forget(key: string): void {
    this.waiting.delete(key);
  }

  private onAnswers(data: string): void {
    const text = this.verified(data, 'an answers message');
    if (text === undefined) return;
    const answers = parseArray<{ key: string; outcome: HandedOutcome }>(text);
    if (!answers) {
      this.logError({ message: 'hand-over: an answers message on the bus is malformed; dropped', bytes: text.length });
      return;
    }
    for (const a of answers) {
      const resolve = typeof a?.key === 'string' ? this.waiting.get(a.key) : undefined;
      if (!resolve || !isOutcome(a.outcome)) continue;
      this.waiting.delete(a.key);
      resolve(a.outcome);
    }
  }

  /** The leader's side: calls `onRequest` for each request sent to `scope` on the bus from now on. */
  listen(scope: string, onRequest: (r: BusRequest) => void): Promise<() => Promise<void>> {
    return this.bus.subscribe(
      inboxKey(scope),
      () => {},
      (s) => {
        if (s.data === undefined) return;
        const text = this.verified(s.data, 'a requests message');
        if (text === undefined) return;
        const requests = parseArray<BusRequest>(text);
        if (!requests) {
          this.logError({ message: 'hand-over: a requests message on the bus is malformed; dropped', scope, bytes: text.length });
          return;
        }
        for (const r of requests) {
          if (
            typeof r?.key !== 'string' ||
            typeof r.from !== 'string' ||
            typeof r.req !== 'string' ||
            typeof r.user !== 'string' ||
            typeof r.domain !== 'string'
          ) {
            this.logError({ message: 'hand-over: a request on the bus lacks a field; dropped', scope });
            continue;
          }
          onRequest(r);
        }
      },
    );
  }

  /** Sends the outcome of request `key` to instance `to` (with the other answers to it of this turn: `enqueue`). */
  answer(to: string, key: string, outcome: HandedOutcome): void {
    this.enqueue(answersKey(to), JSON.stringify({ key, outcome })).catch((err: unknown) =>
      this.logError({ message: 'hand-over: publishing answers on the bus failed; their senders wait for the inbox', error: String(err) }),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const listening = this.listening;
    this.listening = null;
    this.waiting.clear(); // their senders still have the inbox's answer (or its timeout)
    if (listening) await (await listening.catch(() => async () => {}))();
  }
}

/** The array a JSON text holds, or undefined (not JSON, or not an array). */
function parseArray<T>(text: string): T[] | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? (v as T[]) : undefined;
  } catch {
    return undefined; // V8's message quotes the text: not logged
  }
}

/** Whether a value has the shape of a HandedOutcome (`{ack}` or `{error: {code, message}}`). */
function isOutcome(v: unknown): v is HandedOutcome {
  if (typeof v !== 'object' || v === null) return false;
  if ('ack' in v) return typeof (v as { ack: unknown }).ack === 'object' && (v as { ack: unknown }).ack !== null;
  const e = (v as { error?: unknown }).error as { code?: unknown; message?: unknown } | undefined;
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.message === 'string';
}
