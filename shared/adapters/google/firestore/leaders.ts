/**
 * The Firestore ledger's scope leaders (shared/ports/leaders.ts): the write lease and the inbox.
 *
 * The lease has its own document (<root>/~leaders/leases/{id}: holder, expires, epoch), so a
 * renewal never touches the head; the head keeps only the lease's epoch (`wepoch`), written when a
 * new holder takes the lease, in the same atomic write as the lease document (a batch conditional
 * on both documents' versions as read: see `acquire`). A commit
 * fenced by an epoch checks `wepoch` (./commit-transaction.ts reads it in its transaction;
 * ./commit-direct.ts builds only on a head version at that epoch, and the batch's version
 * precondition fails once a takeover wrote the head): so once a new holder has the lease, the old
 * one can commit nothing, whether it knows it lost the lease or not.
 *
 * The inbox (<root>/{id}/inbox/{key}): a request document {req, user, domain, from, at, done:
 * false, claimed: 0, retriable, replyTo?}. The leader's listener (a query on `done == false`) claims each new
 * request that is not retriable (no (session, si)) for its epoch, in one batch, and hands them over; `answer` sets {done: true, outcome} in one batch.
 * A sender listens, per scope, to the answered requests it sent (`from == instance`, `done ==
 * true`: two equality filters, which Firestore serves from its single-field indexes), and deletes
 * each request document once it has read its outcome.
 */
import { randomUUID } from 'node:crypto';
import type { DocumentReference, QueryDocumentSnapshot, Timestamp, WriteBatch, WriteResult } from '@google-cloud/firestore';
import { PatchbayError } from '../../../errors.js';
import type { HandedOutcome, HandedRequest, InboxRequest, LeaseAnswer, ScopeLeaders } from '../../../ports/leaders.js';
import { ABORTED, ALREADY_EXISTS, DELETED, FAILED_PRECONDITION, hasCode, isLive, notFound, num, WEPOCH } from './codec.js';
import type { Layout } from './layout.js';

/** How long a sender's per-scope answer listener stays open after its last request was answered. */
const ANSWER_LINGER_MS = 10_000;

interface Waiter {
  resolve: (outcome: HandedOutcome) => void;
}

/** A sender's listener to the answers of the requests it sent to one scope. */
interface AnswerListener {
  waiters: Map<string, Waiter>;
  stop: () => void;
  linger?: NodeJS.Timeout;
  ready: Promise<void>;
}

export class FirestoreLeaders implements ScopeLeaders {
  private readonly answers = new Map<string, AnswerListener>();
  /** The update time of each claim this instance wrote and has not answered or given back (`scope/key`). */
  private readonly claims = new Map<string, Timestamp>();
  /**
   * Request documents to create, grouped per scope: the requests a scope's writers send while the
   * previous group is being written go out together in one batch (like the leader's claims and
   * answers), so a hot scope costs the inbox a few writes per group instead of one per request.
   */
  private readonly creates = new WriteGroups<{ key: string; data: Record<string, unknown> }>(
    (id, items) => this.writeEach(items, (batch, { key, data }) => batch.create(this.docs.inbox(id).doc(key), data)),
    ({ data }) => (data.req as string).length + 512,
  );
  /** Answered request documents to delete, grouped per scope the same way. */
  private readonly deletes = new WriteGroups<string>((id, keys) => this.writeEach(keys, (batch, key) => batch.delete(this.docs.inbox(id).doc(key))));

  constructor(
    private readonly docs: Layout,
    /** This instance's name in `from` (unique per process). */
    private readonly instance: string,
    private readonly maxAttempts: number,
    /** Told before a takeover writes the head: its version changes (./commit-direct.ts must read it again). */
    private readonly onHeadWrite: (id: string) => void,
  ) {}

  /**
   * Writes `items` in one batch; when the batch fails, each alone, so one item's failure (e.g. its
   * document is gone) fails only its own caller. Settles with each item's result, in order.
   */
  private async writeEach<T>(items: T[], add: (batch: WriteBatch, item: T) => void): Promise<Array<PromiseSettledResult<unknown>>> {
    const batch = this.docs.db.batch();
    for (const item of items) add(batch, item);
    try {
      const results = await batch.commit();
      return results.map((value) => ({ status: 'fulfilled', value }));
    } catch (err) {
      if (items.length === 1) return [{ status: 'rejected', reason: err }];
      // The batch may have been applied though its answer failed (UNAVAILABLE, DEADLINE_EXCEEDED):
      // a create then finds its document there. Its key is a fresh random id, so it is ours: done.
      return Promise.allSettled(
        items.map((item) => {
          const one = this.docs.db.batch();
          add(one, item);
          return one.commit().catch((err: unknown) => (hasCode(err, ALREADY_EXISTS) ? [] : Promise.reject(err)));
        }),
      );
    }
  }

  /**
   * Optimistic, without a transaction: reads the lease and the head, then writes both in one batch
   * conditional on neither having changed since (the lease created if it never existed); a batch
   * refused for that means another instance moved first, so it looks again. Instances that find
   * a fresh scope's lease free at once then settle it in one round (one batch wins, the others
   * read the winner) instead of deadlocking on the two documents' locks: on the emulator, which
   * locks pessimistically, K transactions taking one lease took 3-10 s before this.
   */
  async acquire(id: string, holder: string, ttlMs: number, now = Date.now()): Promise<LeaseAnswer> {
    const ref = this.docs.writeLease(id);
    const headRef = this.docs.head(id);
    // A refusal while the lease stayed as read means only the head moved (a lapsed leader's last
    // commit, a rename): not a rival taker, so it does not use up an attempt (up to a bound), or a
    // busy head could starve the takeover and fail every request meanwhile.
    let leaseSeen: Timestamp | undefined;
    let headOnly = 0;
    for (let attempt = 1; ; attempt++) {
      const [lease] = await this.docs.db.getAll(ref);
      if (leaseSeen !== undefined && lease?.updateTime?.isEqual(leaseSeen) && headOnly++ < HEAD_MOVES) attempt--;
      leaseSeen = lease?.updateTime;
      const current = { holder: lease?.get('holder') as string | undefined, expires: num(lease?.get('expires')), epoch: num(lease?.get('epoch')) };
      const expires = now + ttlMs;
      // Held by another: answered without reading the head, which its leader is writing.
      if (current.holder !== undefined && current.holder !== holder && current.expires > now)
        return { mine: false, holder: current.holder, expires: current.expires };
      const [head] = await this.docs.db.getAll(headRef, { fieldMask: [WEPOCH, DELETED] });
      if (!isLive(head)) throw notFound(id);
      const wepoch = num(head.get(WEPOCH));
      const batch = this.docs.db.batch();
      let answer: LeaseAnswer;
      if (lease?.exists && current.holder === holder && current.epoch === wepoch && current.expires > now) {
        batch.update(ref, { expires }, { lastUpdateTime: lease.updateTime });
        answer = { mine: true, epoch: current.epoch, expires };
      } else {
        // A new holder (or ours again after it lapsed or was released): a new epoch, on the head too.
        const epoch = Math.max(current.epoch, wepoch) + 1;
        const data = { id, holder, expires, epoch };
        if (lease?.exists) batch.update(ref, data, { lastUpdateTime: lease.updateTime });
        else batch.create(ref, data);
        batch.update(headRef, { [WEPOCH]: epoch }, { lastUpdateTime: head.updateTime });
        this.onHeadWrite(id);
        answer = { mine: true, epoch, expires };
      }
      try {
        await batch.commit();
        return answer;
      } catch (err) {
        // Another instance took or renewed the lease, or the head moved (a commit, a takeover): look again.
        const moved = hasCode(err, FAILED_PRECONDITION) || hasCode(err, ALREADY_EXISTS) || hasCode(err, ABORTED);
        if (!moved || attempt >= this.maxAttempts) throw err;
      }
    }
  }

  renew(id: string, holder: string, epoch: number, ttlMs: number, now = Date.now()): Promise<boolean> {
    return this.onLease(id, holder, epoch, (ref, update) => update(ref, { expires: now + ttlMs }));
  }

  async release(id: string, holder: string, epoch: number): Promise<void> {
    // The epoch stays: the next holder takes epoch + 1.
    await this.onLease(id, holder, epoch, (ref, update) => update(ref, { expires: 0 }));
  }

  /** One transaction on the lease document: `write` runs only while `holder` holds it at `epoch`. */
  private onLease(
    id: string,
    holder: string,
    epoch: number,
    write: (ref: DocumentReference, update: (ref: DocumentReference, data: Record<string, unknown>) => void) => void,
  ): Promise<boolean> {
    const ref = this.docs.writeLease(id);
    return this.docs.db.runTransaction(
      async (tx) => {
        const [lease] = await tx.getAll(ref);
        if (!lease?.exists || lease.get('holder') !== holder || num(lease.get('epoch')) !== epoch) return false;
        write(ref, (r, data) => tx.update(r, data));
        return true;
      },
      { maxAttempts: this.maxAttempts },
    );
  }

  async send(id: string, request: HandedRequest, waitMs: number, key?: string): Promise<{ key: string; outcome: HandedOutcome | null }> {
    const listener = this.answerListener(id);
    const k = key ?? request.key ?? randomUUID();
    const answered = new Promise<HandedOutcome>((resolve) => listener.waiters.set(k, { resolve }));
    await listener.ready;
    if (key === undefined) {
      try {
        await this.creates.add(id, {
          key: k,
          data: {
            req: request.req,
            user: request.user,
            domain: request.domain,
            retriable: request.retriable,
            ...(request.replyTo === undefined ? {} : { replyTo: request.replyTo }),
            from: this.instance,
            at: Date.now(),
            done: false,
            claimed: 0,
          },
        });
      } catch (err) {
        // Not created: nobody will answer it, so its waiter goes (and the answer listener with the last one).
        listener.waiters.delete(k);
        this.maybeStop(id, listener);
        throw err;
      }
    } else {
      // Waiting again: the answer may have come while nobody waited (the listener then dropped it).
      const [snap] = await this.docs.db.getAll(this.docs.inbox(id).doc(k));
      if (snap?.get('done') === true) this.settle(id, k, snap.get('outcome') as string);
    }
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([answered, new Promise<null>((r) => (timer = setTimeout(() => r(null), waitMs)))]);
    clearTimeout(timer);
    if (outcome === null) listener.waiters.delete(k);
    this.maybeStop(id, listener);
    return { key: k, outcome };
  }

  private settle(id: string, key: string, text: string): void {
    const w = this.answers.get(id)?.waiters.get(key);
    if (!w) return;
    this.answers.get(id)?.waiters.delete(key);
    w.resolve(JSON.parse(text) as HandedOutcome);
    // Read: the request document has done its job (a lost delete leaves an answered document behind, which nothing reads).
    this.deletes.add(id, key).catch(() => {});
  }

  private answerListener(id: string): AnswerListener {
    const existing = this.answers.get(id);
    if (existing) {
      clearTimeout(existing.linger);
      existing.linger = undefined;
      return existing;
    }
    let ready!: () => void;
    const l: AnswerListener = { waiters: new Map(), stop: () => {}, ready: new Promise<void>((r) => (ready = r)) };
    l.stop = this.docs
      .inbox(id)
      .where('from', '==', this.instance)
      .where('done', '==', true)
      .onSnapshot(
        (snap) => {
          ready();
          for (const c of snap.docChanges()) if (c.type !== 'removed') this.settle(id, c.doc.id, c.doc.get('outcome') as string);
        },
        () => {
          // The listener broke (the stream's own retries gave up): waiters time out and wait again.
          ready();
          if (this.answers.get(id) === l) this.answers.delete(id);
        },
      );
    this.answers.set(id, l);
    return l;
  }

  private maybeStop(id: string, l: AnswerListener): void {
    if (l.waiters.size > 0 || l.linger) return;
    l.linger = setTimeout(() => {
      if (l.waiters.size > 0 || this.answers.get(id) !== l) return;
      this.answers.delete(id);
      l.stop();
    }, ANSWER_LINGER_MS);
    l.linger.unref();
  }

  listen(id: string, epoch: number, onRequests: (requests: InboxRequest[]) => void, onError: (err: unknown) => void): () => Promise<void> {
    const seen = new Set<string>();
    const claiming = new Set<Promise<void>>();
    let stopped = false;
    const stop = this.docs
      .inbox(id)
      .where('done', '==', false)
      .onSnapshot(
        (snap) => {
          for (const c of snap.docChanges()) if (c.type === 'removed') seen.delete(c.doc.id); // answered: never pending again
          const fresh = snap.docs.filter((d) => !seen.has(d.id));
          if (fresh.length === 0 || stopped) return;
          for (const d of fresh) seen.add(d.id);
          fresh.sort((a, b) => num(a.get('at')) - num(b.get('at')) || a.createTime.toMillis() - b.createTime.toMillis());
          const claimed = this.claim(id, fresh, epoch).then(
            async (requests) => {
              // Stopped meanwhile: nothing was done with them, so the claims are given back.
              if (stopped)
                await this.unclaim(
                  id,
                  requests.map((r) => r.key),
                );
              else if (requests.length > 0) onRequests(requests);
            },
            (err) => onError(err),
          );
          claiming.add(claimed);
          void claimed.finally(() => claiming.delete(claimed));
        },
        (err) => onError(err),
      );
    return async () => {
      stopped = true;
      stop();
      await Promise.all([...claiming]);
    };
  }

  async unclaim(id: string, keys: string[]): Promise<void> {
    await Promise.all(
      keys.map(async (key) => {
        const at = this.claims.get(`${id}/${key}`);
        this.claims.delete(`${id}/${key}`);
        if (!at) return;
        // Only while nobody touched it since our claim (a later leader's claim wins).
        await this.docs
          .inbox(id)
          .doc(key)
          .update({ claimed: 0 }, { lastUpdateTime: at })
          .catch(() => {});
      }),
    );
  }

  /**
   * Claims the requests that are not retriable for `epoch` (one batch; one at a time when a sender
   * deleted its request meanwhile, and those are dropped); the retriable ones pass as they are.
   */
  private async claim(id: string, docs: QueryDocumentSnapshot[], epoch: number): Promise<InboxRequest[]> {
    const as = (d: QueryDocumentSnapshot): InboxRequest => ({
      key: d.id,
      req: d.get('req') as string,
      user: d.get('user') as string,
      domain: d.get('domain') as string,
      retriable: d.get('retriable') === true,
      claimed: num(d.get('claimed')),
      ...(typeof d.get('replyTo') === 'string' ? { replyTo: d.get('replyTo') as string } : {}),
    });
    const toClaim = docs.filter((d) => d.get('retriable') !== true);
    if (toClaim.length === 0) return docs.map(as);
    const batch = this.docs.db.batch();
    for (const d of toClaim) batch.update(d.ref, { claimed: epoch });
    const remember = (d: QueryDocumentSnapshot, r: PromiseSettledResult<WriteResult> | WriteResult | undefined) => {
      const w = r && 'status' in r ? (r.status === 'fulfilled' ? r.value : undefined) : r;
      if (w) this.claims.set(`${id}/${d.id}`, w.writeTime);
      return w !== undefined;
    };
    try {
      const results = await batch.commit();
      for (const [i, d] of toClaim.entries()) remember(d, results[i]);
      return docs.map(as);
    } catch {
      const each = await Promise.allSettled(toClaim.map((d) => d.ref.update({ claimed: epoch })));
      const lost = new Set(toClaim.filter((d, i) => !remember(d, each[i])).map((d) => d.id));
      return docs.filter((d) => !lost.has(d.id)).map(as);
    }
  }

  async answer(id: string, answers: Array<{ key: string; outcome: HandedOutcome }>): Promise<void> {
    if (answers.length === 0) return;
    for (const a of answers) this.claims.delete(`${id}/${a.key}`);
    const batch = this.docs.db.batch();
    for (const a of answers) batch.update(this.docs.inbox(id).doc(a.key), { done: true, outcome: JSON.stringify(a.outcome) });
    try {
      await batch.commit();
    } catch (err) {
      // A sender gave up and deleted its request: answer the others one by one.
      const each = await Promise.allSettled(
        answers.map((a) =>
          this.docs
            .inbox(id)
            .doc(a.key)
            .update({ done: true, outcome: JSON.stringify(a.outcome) }),
        ),
      );
      if (each.every((r) => r.status === 'rejected')) throw err instanceof Error ? err : new PatchbayError('unavailable', String(err));
    }
  }
}

/**
 * Writes grouped per scope, one group in flight per scope at a time: what is added while a group
 * is being written waits for it and goes out as the next group (at most MAX_BATCH items, the
 * Firestore batch limit, and under MAX_BATCH_BYTES); what is added while none is in flight waits one turn of the event loop,
 * so the requests of one burst leave together. `write` settles each item's result, in order.
 */
class WriteGroups<T> {
  private readonly waiting = new Map<string, Array<{ item: T; resolve: (v: unknown) => void; reject: (e: unknown) => void }>>();
  private readonly busy = new Set<string>();

  constructor(
    private readonly write: (id: string, items: T[]) => Promise<Array<PromiseSettledResult<unknown>>>,
    /** An item's size in a batch, bytes (a group stays under MAX_BATCH_BYTES; one item alone always goes). */
    private readonly bytes: (item: T) => number = () => 0,
  ) {}

  add(id: string, item: T): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let queue = this.waiting.get(id);
      if (!queue) {
        queue = [];
        this.waiting.set(id, queue);
      }
      queue.push({ item, resolve, reject });
      if (queue.length === 1 && !this.busy.has(id)) setImmediate(() => this.flush(id));
    });
  }

  private flush(id: string): void {
    const queue = this.waiting.get(id);
    if (!queue || queue.length === 0 || this.busy.has(id)) return;
    let n = 0;
    for (let total = 0; n < Math.min(queue.length, MAX_BATCH); n++) {
      total += this.bytes((queue[n] as { item: T }).item);
      if (n > 0 && total > MAX_BATCH_BYTES) break;
    }
    const group = queue.splice(0, n);
    if (queue.length === 0) this.waiting.delete(id);
    this.busy.add(id);
    this.write(
      id,
      group.map((g) => g.item),
    )
      .then(
        (results) => {
          for (const [i, g] of group.entries()) {
            const r = results[i];
            if (r?.status === 'fulfilled') g.resolve(r.value);
            else g.reject(r?.reason);
          }
        },
        (err: unknown) => {
          for (const g of group) g.reject(err);
        },
      )
      .finally(() => {
        this.busy.delete(id);
        this.flush(id);
      });
  }
}

/** Firestore's limit of writes in one batch. */
const MAX_BATCH = 500;
/** Below Firestore's 10 MiB per commit: a group of large requests (patches up to PATCHBAY_MAX_PATCH_BYTES each) is split. */
const MAX_BATCH_BYTES = 9 * 1024 * 1024;
/** Refusals of a takeover caused only by the head moving that do not use up an attempt. */
const HEAD_MOVES = 20;
