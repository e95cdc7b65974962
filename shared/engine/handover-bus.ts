/**
 * The hand-over's fast path through the bus (./leading.ts has the whole hand-over). A request
 * handed to a scope's leader still becomes a request document in the scope's inbox, the durable
 * path, which outlives any instance; this module sends a copy of it on the bus, and the leader's
 * outcome back on the bus, so a live leader and a live sender meet in two bus hops instead of
 * a Firestore write and a listener each way (measured in bench/results/NOTES.md, 4 Dec).
 *
 * Both are `control` signals (shared/ports/bus.ts), on keys no scope can have (`~` is outside a
 * scope id's characters): requests on `~inbox:<scope>` (its leader listens while it leads), the
 * answers to one sending instance on `~answers:<holder>`, each batched per turn of the event loop
 * and published without the bus's per-key order (they carry their own keys).
 * Nothing here is needed for correctness: a lost, late or doubled message costs time, never a
 * patch, because the leader decides each request key once (./leading.ts `handled`), every handed
 * request carries a retry key, and the inbox document stays until its sender read an answer.
 */
import type { Bus } from '../ports/bus.js';
import type { HandedOutcome, HandedRequest } from '../ports/leaders.js';

/** A request as it travels on the bus. */
export interface BusRequest extends Omit<HandedRequest, 'retriable'> {
  key: string;
  /** The sending instance's holder name: where the answer goes. */
  from: string;
}

/**
 * Requests larger than this go through the inbox alone (Pub/Sub takes 10 MB per message, but a
 * large request is rare and every instance receives every message).
 */
export const FAST_MAX_BYTES = 256 * 1024;

/** Requests of one scope sent in one turn go in one message up to this (each is at most FAST_MAX_BYTES). */
const REQUESTS_MAX_BYTES = 1024 * 1024;

/** Requests to one scope waiting for the end of the turn (see `publishRequest`). */
interface RequestBatch {
  /** Each request's JSON text. */
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
  /** Requests to send, per scope, until the end of this turn. */
  private readonly requests = new Map<string, RequestBatch>();
  /** Answers to send, per receiving instance, until the end of this turn. */
  private readonly outgoing = new Map<string, Array<{ key: string; outcome: HandedOutcome }>>();

  constructor(
    private readonly bus: Bus,
    /** This instance's holder name (./leading.ts). */
    private readonly holder: string,
    private readonly logError: (e: Record<string, unknown>) => void,
  ) {}

  /**
   * Sends `request` to the leader of `scope` and returns its answer's promise (`answer`: resolved
   * by the first answer to arrive, never rejected), or null when the fast path is not taken (too
   * large, or the bus failed: the inbox still carries the request). Call `forget(key)` when done.
   */
  async send(scope: string, request: BusRequest): Promise<{ answer: Promise<HandedOutcome> } | null> {
    const data = JSON.stringify(request);
    if (data.length > FAST_MAX_BYTES) return null;
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
      await this.publishRequest(scope, data);
    } catch (err) {
      this.waiting.delete(request.key);
      this.logError({ message: 'hand-over: publishing a request on the bus failed; the inbox carries it', scope, error: String(err) });
      return null;
    }
    return { answer: answered };
  }

  /**
   * Requests to one scope sent in one turn of the event loop leave in one message (a JSON array
   * of requests, under REQUESTS_MAX_BYTES), as a group's acks come back together and its writers
   * send their next requests together: fewer messages for every instance to receive.
   */
  private publishRequest(scope: string, data: string): Promise<void> {
    let batch = this.requests.get(scope);
    if (!batch || batch.bytes + data.length > REQUESTS_MAX_BYTES) {
      const fresh: RequestBatch = { items: [], bytes: 0, sent: Promise.resolve() };
      fresh.sent = new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          if (this.requests.get(scope) === fresh) this.requests.delete(scope);
          this.bus.signal({ scope: inboxKey(scope), kind: 'control', data: `[${fresh.items.join(',')}]`, unordered: true }).then(resolve, reject);
        }),
      );
      this.requests.set(scope, fresh);
      batch = fresh;
    }
    batch.items.push(data);
    batch.bytes += data.length + 1;
    return batch.sent;
  }

  /** Stops waiting for the answer to `key` (answered another way, or given up). */
  forget(key: string): void {
    this.waiting.delete(key);
  }

  private onAnswers(data: string): void {
    let answers: Array<{ key: string; outcome: HandedOutcome }>;
    try {
      answers = JSON.parse(data) as typeof answers;
      if (!Array.isArray(answers)) throw new Error('not an array');
    } catch (err) {
      this.logError({ message: 'hand-over: an answers message on the bus is malformed; dropped', error: String(err) });
      return;
    }
    for (const a of answers) {
      const resolve = typeof a?.key === 'string' ? this.waiting.get(a.key) : undefined;
      if (!resolve || a.outcome === undefined) continue;
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
        let requests: BusRequest[];
        try {
          requests = JSON.parse(s.data) as BusRequest[];
          if (!Array.isArray(requests)) throw new Error('not an array');
        } catch (err) {
          this.logError({ message: 'hand-over: a requests message on the bus is malformed; dropped', scope, error: String(err) });
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

  /** Sends the outcome of request `key` to instance `to` (answers to one instance in one turn go together). */
  answer(to: string, key: string, outcome: HandedOutcome): void {
    let list = this.outgoing.get(to);
    if (!list) {
      list = [];
      this.outgoing.set(to, list);
      setImmediate(() => {
        const answers = this.outgoing.get(to) ?? [];
        this.outgoing.delete(to);
        this.bus
          .signal({ scope: answersKey(to), kind: 'control', data: JSON.stringify(answers), unordered: true })
          .catch((err: unknown) => this.logError({ message: 'hand-over: publishing answers on the bus failed; the inbox carries them', error: String(err) }));
      });
    }
    list.push({ key, outcome });
  }

  async close(): Promise<void> {
    const listening = this.listening;
    this.listening = null;
    this.waiting.clear(); // their senders still have the inbox's answer (or its timeout)
    if (listening) await (await listening.catch(() => async () => {}))();
  }
}
