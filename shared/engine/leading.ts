/**
 * Scope leaders, the engine's half (the port: shared/ports/leaders.ts). When several instances
 * share one ledger, each scope is committed by one instance at a time, the holder of its write
 * lease; its group queue (./queue.ts) then holds every writer of the scope, whichever instance
 * they reached, and its commits never contend with another instance's.
 *
 * A request for a scope: when this instance leads the scope, or the lease is free (then it takes
 * it), the request goes to the local queue, and its commit is fenced by the lease's epoch; when
 * another instance leads it, the request is handed over and answered with the leader's outcome.
 * Nothing is decided here: the leader's engine decides a handed request exactly as the instance
 * it reached would have (same ack, same error, same retry recognition).
 *
 * The hand-over has two ways. With a bus (PATCHBAY_HANDOVER_BUS, ./handover-bus.ts) the request is
 * first sent on it, and a live leader answers there: two bus messages, no Firestore write. Without
 * an answer within PATCHBAY_HANDOVER_INBOX_AFTER_MS the lease is asked again (its holder may have
 * released it or died: then this instance takes it and commits the request itself) and, while
 * another instance still leads, the request is written to the scope's inbox, the durable way: a
 * document the leader's listener takes and answers, which outlives any instance. The leader
 * decides each request key once while it remembers it (until its outcome is written, or a lease after its decision), whichever way it came (`Led.handled`), writes the outcome of
 * every request that reached it through the inbox to its document, and sends it on the bus to its
 * sender too (`replyTo`); the sender takes the first answer.
 *
 * The lease moves: a leader renews it every third of PATCHBAY_WRITE_LEASE_MS while it writes, and
 * releases it after PATCHBAY_WRITE_LEASE_IDLE_MS without a write, or on close (SIGTERM); a leader
 * that dies stops renewing, and once its lease lapsed the next request takes it. A sender waiting
 * for an inbox answer asks the lease again every quarter of a lease (at least 1 s), and takes it
 * once it is free (a dead leader's requests stay in the inbox, and the new leader answers them). A
 * commit refused by the fence (this instance lost the lease) wrote nothing, and its request is
 * routed again.
 *
 * A request an earlier leader took but never answered (it died between commit and answer), or
 * one sent on the bus and then committed by its sender after the lease came to it, can be
 * committed twice, and its (session, si) recognises the second: a request handed over without one
 * is given one (`retriable` below), so the second commit answers the first's ack. Request documents
 * claimed by an earlier leader without a retry key (written by an earlier version) are answered
 * `unavailable`, as nobody can tell whether they were committed.
 */
import { randomUUID } from 'node:crypto';
import { asPatchbayError, type ErrorCode, isBackendError, PatchbayError } from '../errors.js';
import type { HandedOutcome, InboxRequest, ScopeLeaders } from '../ports/leaders.js';
import { isLeaseLost } from '../ports/leaders.js';
import type { PatchRequest } from '../protocol.js';
import type { Ack, Pending } from './decide.js';
import type { BusRequest, HandoverBus } from './handover-bus.js';

export interface LeadingConfig {
  writeLeaseMs: number;
  writeLeaseIdleMs: number;
  handoverTimeoutMs: number;
  handoverInboxAfterMs: number;
}

/** A scope this instance leads. */
interface Led {
  epoch: number;
  /** When the lease lapses, as of its last renewal (ms, this instance's clock). */
  expires: number;
  /** Last time a request for the scope arrived or was answered. */
  last: number;
  /** Requests of the scope in this instance's queue. */
  inflight: number;
  stopListening: () => Promise<void>;
  timer: NodeJS.Timeout;
  /** Whether a renewal is under way. */
  renewing: boolean;
  /** Answers of handed requests waiting for the next batch. */
  answers: Array<{ key: string; outcome: HandedOutcome }>;
  /**
   * Handed requests this leader took, by key, until their outcome is written to their document:
   * so a request that came both on the bus and through the inbox is decided once.
   */
  handled: Map<string, Handled>;
}

/** A request this instance handed over (`Leading.submit`). */
interface Handed {
  /** Its key: its bus message's and, once created, its inbox document's. */
  key: string;
  /** The request as handed over (with its retry key): the same text on every send. */
  text: string;
  /** Whether its inbox document was created. */
  inInbox: boolean;
  /** Its answer on the bus, or null when it was not sent there. */
  fast: Promise<HandedOutcome> | null;
  /** That answer, once it came (also after its wait was over). */
  late?: HandedOutcome;
}

/** A handed request the leader took (see `Led.handled`). */
interface Handled {
  /** Its outcome, once decided. */
  outcome?: HandedOutcome;
  /** Whether its inbox document has reached this leader (its outcome is written there). */
  doc: boolean;
  /** When it was taken, then when it was decided (ms): one decided long ago whose document never came is forgotten. */
  at: number;
}

export class Leading {
  private readonly led = new Map<string, Led>();
  /** Leases another instance holds, until when (ms): requests are handed over without asking. */
  private readonly others = new Map<string, number>();
  /** Lease operations in progress (acquire, release), one per scope at a time; requests wait for them. */
  private readonly busy = new Map<string, Promise<unknown>>();
  /** Answer batches being written. */
  private readonly writing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly leaders: ScopeLeaders,
    /** This instance's name as a lease holder (unique per process). */
    readonly holder: string,
    private readonly config: LeadingConfig,
    /** Submits a request to this instance's queue (its commit is fenced by `fence(id)`). */
    private readonly local: (id: string, p: Pending) => Promise<Ack>,
    /** The hash of a patch request's patch (as ./commit.ts computes it). */
    private readonly hashOf: (req: PatchRequest) => string,
    private readonly logError: (e: Record<string, unknown>) => void,
    private readonly now: () => number = Date.now,
    /** The hand-over's way through the bus, when there is one (./handover-bus.ts). */
    private readonly fast: HandoverBus | null = null,
  ) {}

  /** The epoch to fence a commit of scope `id` with: undefined when this instance does not lead it. */
  fence(id: string): number | undefined {
    return this.led.get(id)?.epoch;
  }

  /** Answers a request for scope `id` with its leader's outcome (see the top of this file). */
  async submit(id: string, p: Pending): Promise<Ack> {
    const deadline = this.now() + this.config.handoverTimeoutMs;
    // Its retry key was ours (see `retriable`): a second commit of it is the first one's ack.
    const finish = (ack: Ack): Ack => {
      if (p.req.session !== undefined || !ack.duplicate) return ack;
      const { duplicate: _, ...original } = ack;
      return original;
    };
    // Set once handed over.
    let handed: Handed | undefined;
    try {
      for (;;) {
        if (this.closed) throw new PatchbayError('unavailable', 'this instance is shutting down; retry');
        let led: Led | null;
        try {
          led = await this.lead(id);
        } catch (err) {
          // Taking the lease failed on the backend (contention between instances taking it at once):
          // nothing was written; ask again shortly, within the request's time.
          if (err instanceof PatchbayError || !isBackendError(err) || this.now() >= deadline) throw err;
          await new Promise((r) => setTimeout(r, 20 + Math.random() * 100));
          continue;
        }
        // The bus's answer came after its wait (a slow leader): it is the outcome.
        if (handed?.late) return finish(fromOutcome(handed.late));
        if (led && !handed?.inInbox) {
          // Ours to commit. Once sent on the bus it goes as sent (with its retry key): a leader
          // that took it from there and committed it before the lease came here is recognised.
          const q: Pending = handed ? { ...p, req: JSON.parse(handed.text) as PatchRequest } : p;
          try {
            return finish(await this.localTracked(id, led, q));
          } catch (err) {
            if (!isLeaseLost(err)) throw err;
            this.drop(id, led); // nothing was written: route it again
            continue;
          }
        }
        // Another instance leads (or this one now does, and its listener answers what it sent earlier).
        const left = deadline - this.now();
        if (left <= 0) throw new PatchbayError('unavailable', `scope ${id}'s leader did not answer in time; retry`, { id });
        // Waiting for an answer in slices: between them the lease is asked again (its holder may have released it).
        const wait = Math.min(left, Math.max(1000, Math.floor(this.config.writeLeaseMs / 4)));
        if (handed === undefined) {
          const key = randomUUID();
          const text = JSON.stringify(retriable(p.req));
          const sent = this.fast ? await this.fast.send(id, { key, from: this.holder, req: text, user: p.user, domain: p.domain }) : null;
          const h: Handed = { key, text, inInbox: false, fast: sent?.answer ?? null };
          handed = h;
          if (h.fast) {
            void h.fast.then((o) => (h.late = o));
            const remaining = deadline - this.now(); // sending may have taken a while (the first subscribe)
            // A live leader answers on the bus well within this. Otherwise the lease is asked again
            // (released, lapsed: then it is ours), and only a request another instance still leads
            // is written to the inbox, the durable way (a dead or cut-off leader, a lost message).
            const early = await within(h.fast, Math.min(remaining, this.config.handoverInboxAfterMs));
            if (early) return finish(fromOutcome(early));
            this.others.delete(id);
            continue;
          }
        }
        const { key, text, fast } = handed;
        const request = { req: text, user: p.user, domain: p.domain, retriable: true, key, ...(fast ? { replyTo: this.holder } : {}) };
        const viaInbox = this.leaders.send(id, request, wait, handed.inInbox ? key : undefined).then(
          (sent) => ({ outcome: sent.outcome }),
          (err: unknown) => ({ failed: err }),
        );
        let first: { outcome: HandedOutcome | null } | { failed: unknown } = await (fast
          ? Promise.race([viaInbox, fast.then((outcome) => ({ outcome }))])
          : viaInbox);
        if ('failed' in first) {
          // Not in the inbox (its create failed): only the bus carries it, if it was sent there.
          if (!fast || handed.inInbox) throw first.failed;
          const late = await within(fast, wait);
          if (!late)
            throw new PatchbayError(
              'unavailable',
              'the request may or may not have been committed (it could not be handed over durably); read the scope before sending it again',
              { id },
            );
          first = { outcome: late };
        } else handed.inInbox = true;
        if (first.outcome) return finish(fromOutcome(first.outcome));
        this.others.delete(id); // no answer within a slice: ask the lease again
      }
    } finally {
      if (handed) this.fast?.forget(handed.key);
    }
  }

  /** This instance's lease on `id` when it holds or can take it; null when another instance holds it. */
  private async lead(id: string): Promise<Led | null> {
    for (;;) {
      const running = this.busy.get(id);
      if (running) {
        await running.catch(() => {});
        continue;
      }
      const led = this.led.get(id);
      if (led) return led;
      const until = this.others.get(id);
      if (until !== undefined && until > this.now()) return null;
      const acquiring = this.acquire(id);
      this.busy.set(id, acquiring);
      try {
        return await acquiring;
      } finally {
        this.busy.delete(id);
      }
    }
  }

  private async acquire(id: string): Promise<Led | null> {
    const answer = await this.leaders.acquire(id, this.holder, this.config.writeLeaseMs, this.now());
    if (!answer.mine) {
      this.others.set(id, answer.expires);
      return null;
    }
    this.others.delete(id);
    const led: Led = {
      epoch: answer.epoch,
      expires: answer.expires,
      last: this.now(),
      inflight: 0,
      renewing: false,
      answers: [],
      handled: new Map(),
      stopListening: async () => {},
      timer: setInterval(() => this.tick(id, led), Math.max(100, Math.floor(this.config.writeLeaseMs / 3))),
    };
    led.timer.unref();
    this.led.set(id, led);
    const stopInbox = this.leaders.listen(
      id,
      led.epoch,
      (requests) => this.handle(id, led, requests),
      (err) => {
        // Without its inbox listener the leader would not see handed requests: let another lead.
        this.logError({ message: `inbox listener of scope ${id} failed; releasing its lease`, error: String(err) });
        this.release(id, led);
      },
    );
    // Requests sent on the bus before this subscription exists reach this leader through the inbox.
    const stopFast = this.fast
      ?.listen(id, (r) => this.handleFast(id, led, r))
      .catch((err: unknown) => {
        this.logError({ message: `hand-over: listening to scope ${id}'s requests on the bus failed; the inbox carries them`, error: String(err) });
        return async () => {};
      });
    led.stopListening = async () => {
      await Promise.all([stopInbox(), stopFast?.then((stop) => stop())]);
    };
    return led;
  }

  private async localTracked(id: string, led: Led, p: Pending): Promise<Ack> {
    led.inflight++;
    led.last = this.now();
    try {
      return await this.local(id, p);
    } finally {
      led.inflight--;
      led.last = this.now();
    }
  }

  /** Handed requests the listener claimed for this leader: each committed here, then answered. */
  private handle(id: string, led: Led, requests: InboxRequest[]): void {
    for (const r of requests) {
      const taken = led.handled.get(r.key);
      if (taken) {
        // Already taken from the bus: its outcome goes to its document (now, or once decided).
        taken.doc = true;
        if (taken.outcome) {
          led.handled.delete(r.key);
          this.queueAnswer(id, led, r.key, taken.outcome);
        }
        continue;
      }
      const req = JSON.parse(r.req) as PatchRequest;
      if (r.claimed > 0 && r.claimed < led.epoch && req.session === undefined) {
        // An earlier leader claimed it and died unanswered: it may have committed it, and nothing recognises it.
        this.queueAnswer(
          id,
          led,
          r.key,
          toOutcome(
            new PatchbayError('unavailable', 'the request may or may not have been committed (its leader stopped); read the scope before sending it again', {
              id,
            }),
          ),
        );
        continue;
      }
      led.handled.set(r.key, { doc: true, at: this.now() });
      this.decide(id, led, r.key, req, r.user, r.domain, r.replyTo);
    }
  }

  /** A request the leader got on the bus: decided here unless its document already brought it. */
  private handleFast(id: string, led: Led, r: BusRequest): void {
    if (this.led.get(id) !== led || this.closed || led.handled.has(r.key)) return;
    let req: PatchRequest;
    try {
      req = JSON.parse(r.req) as PatchRequest;
    } catch {
      return; // not decided here: its document brings it (and the engine answers its fault)
    }
    led.handled.set(r.key, { doc: false, at: this.now() });
    this.decide(id, led, r.key, req, r.user, r.domain, r.from);
  }

  /**
   * Commits a handed request through the local queue; its outcome goes to its sender on the bus
   * (`replyTo`, when it has one) at once, and to its inbox document once that reached this leader.
   */
  private decide(id: string, led: Led, key: string, req: PatchRequest, user: string, domain: string, replyTo: string | undefined): void {
    const settle = (outcome: HandedOutcome) => {
      if (replyTo !== undefined) this.fast?.answer(replyTo, key, outcome);
      const h = led.handled.get(key);
      if (!h) return;
      h.outcome = outcome;
      h.at = this.now(); // remembered from its decision on (see `tick`)
      if (!h.doc) return;
      led.handled.delete(key);
      this.queueAnswer(id, led, key, outcome);
    };
    let p: Pending;
    try {
      p = { req, user, domain, hash: this.hashOf(req) };
    } catch (err) {
      settle(toOutcome(err)); // not a patch request (no patch to hash): answered as the engine's fault
      return;
    }
    this.localTracked(id, led, p).then(
      (ack) => settle({ ack }),
      (err: unknown) => {
        if (isLeaseLost(err)) {
          // Nothing written: the next leader answers it from the inbox (its claim, if any, given back).
          const h = led.handled.get(key);
          led.handled.delete(key);
          if (h?.doc) void this.leaders.unclaim(id, [key]).catch(() => {});
          return;
        }
        settle(toOutcome(err));
      },
    );
  }

  /** Answers go out in batches: a group's answers settle in one turn, and are written together. */
  private queueAnswer(id: string, led: Led, key: string, outcome: HandedOutcome): void {
    led.answers.push({ key, outcome });
    if (led.answers.length > 1) return;
    const written = new Promise<void>((resolve) =>
      setImmediate(() => {
        const answers = led.answers.splice(0);
        this.leaders
          .answer(id, answers)
          .catch((err: unknown) => this.logError({ message: `answering handed requests of scope ${id} failed`, error: String(err) }))
          .finally(resolve);
      }),
    );
    this.writing.add(written);
    void written.finally(() => this.writing.delete(written));
  }

  /** Every third of a lease: renew it while the scope is written, release it once idle. */
  private tick(id: string, led: Led): void {
    if (this.led.get(id) !== led || this.busy.has(id) || led.renewing) return;
    const now = this.now();
    // Taken from the bus and decided, but its document never came (its create failed): forgotten.
    for (const [key, h] of led.handled) if (h.outcome && !h.doc && now - h.at > this.config.writeLeaseMs) led.handled.delete(key);
    if (led.inflight === 0 && led.answers.length === 0 && now - led.last >= this.config.writeLeaseIdleMs) {
      void this.release(id, led);
      return;
    }
    led.renewing = true;
    this.leaders
      .renew(id, this.holder, led.epoch, this.config.writeLeaseMs, now)
      .then(
        (ok) => {
          if (ok) led.expires = now + this.config.writeLeaseMs;
          else this.drop(id, led);
        },
        (err: unknown) => this.logError({ message: `renewing the write lease of scope ${id} failed`, error: String(err) }),
      )
      .finally(() => {
        led.renewing = false;
      });
  }

  /** Stops leading `id` here: the lease passed on (commits would be refused by the fence anyway). */
  private drop(id: string, led: Led): void {
    if (this.led.get(id) !== led) return;
    this.led.delete(id);
    clearInterval(led.timer);
    void led.stopListening();
  }

  /**
   * Gives the lease of `id` back, so another instance can take it at once: first stops listening
   * (claims not yet handed over are given back), lets the scope's requests here finish and their
   * answers go out (still fenced by the lease), then releases it. New requests wait for the release.
   */
  private release(id: string, led: Led): Promise<void> {
    if (this.led.get(id) !== led) return Promise.resolve();
    clearInterval(led.timer);
    const releasing = (async () => {
      await led.stopListening();
      while (led.inflight > 0 || led.answers.length > 0) await new Promise((r) => setTimeout(r, 5));
      await Promise.all([...this.writing]);
      this.led.delete(id);
      await this.leaders.release(id, this.holder, led.epoch);
    })().catch((err: unknown) => {
      this.led.delete(id);
      this.logError({ message: `releasing the write lease of scope ${id} failed`, error: String(err) });
    });
    this.busy.set(id, releasing);
    void releasing.finally(() => this.busy.get(id) === releasing && this.busy.delete(id));
    return releasing;
  }

  /**
   * Shutdown (SIGTERM): takes no more requests, lets `drained` (the local queues) finish, answers
   * what was handed, and releases every lease, so the scopes' next writers lead at once.
   */
  async close(drained: () => Promise<void>): Promise<void> {
    this.closed = true;
    // No more handed requests (claims not handed over are given back); the leases still fence the last commits.
    await Promise.all([...this.led.values()].map((led) => led.stopListening()));
    await drained();
    await Promise.all([...this.busy.values()].map((b) => b.catch(() => {})));
    await Promise.all([...this.led].map(([id, led]) => this.release(id, led)));
    await this.fast?.close();
  }
}

/**
 * A handed request gets a retry key when it has none: `(~h:<uuid>, 1)`, which no client can send
 * (`~` is outside a session id's characters; protocol.ts). So the leader's commit writes the retry
 * record with the patch, in the same atomic write, and a later leader that finds the request
 * unanswered commits it again and is told it was committed (or commits it): no request document
 * is claimed first (one serial write less per handed group), and no request's fate is unknown.
 * The key lives only in the log record (never in an event, an ack or history) and ages out with it.
 */
function retriable(req: PatchRequest): PatchRequest {
  return req.session !== undefined ? req : { ...req, session: `~h:${randomUUID()}`, si: 1 };
}

/** What `p` resolves with within `ms`, or null. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  if (ms <= 0) return null;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function toOutcome(err: unknown): HandedOutcome {
  const e = asPatchbayError(err);
  return { error: { code: e.code, message: e.message, details: e.details } };
}

function fromOutcome(o: HandedOutcome): Ack {
  if ('ack' in o) return o.ack as Ack;
  throw new PatchbayError(o.error.code as ErrorCode, o.error.message, o.error.details);
}
