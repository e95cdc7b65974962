/**
 * Live streams of a scope (the engine's read side for SSE).
 *
 * Guarantee 4 (each subscriber sees each patch once, in order): a stream subscribes to the bus
 * before it reads the log, drops what it has already sent and fills gaps from the log. A slow
 * reader's queue is bounded: past `queueMax` the stream stops queueing and reads the log instead.
 * Opening reads the log only between the requested position and the head read after subscribing;
 * what follows comes from the bus.
 *
 * Access: a stream opened for a `reader` checks, on the head it reads after subscribing, that the
 * reader may read the scope (else `scope_not_found`, nothing sent), and again on every `access`
 * signal of the scope (shared/ports/bus.ts), holding back live events until the check is done;
 * a reader who lost access has its stream ended (`sink.revoked`). A signal is sent by the
 * instance that changed the access, after the change committed, so streams on every instance
 * learn of it within the bus's delivery time. Patches committed between the change and the
 * signal's arrival may still reach the stream; a signal lost with its instance leaves the stream
 * to its end (PATCHBAY_SSE_MAX_MS), and a reconnect is refused.
 *
 * Deletion: every stream (with or without a `reader`) re-reads the head on a `deleted` signal,
 * and one that finds the scope gone (`scope_not_found`) ends the same way (`sink.revoked`).
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { Bus, Head } from '../ports/index.js';
import type { PatchEvent, PatchRecord } from '../protocol.js';
import { toEvent } from '../protocol.js';
import { type Caller, canRead, checkRead } from './access.js';

export interface StreamSink {
  state(ii: number, state: Json): void | Promise<void>;
  /**
   * Sends one event. Returning nothing means it was sent and the sink can take the next one at
   * once: a live stream then sends within the bus's dispatch, with no promise per event. A
   * returned promise holds the stream's next event until it settles (back-pressure).
   */
  patch(event: PatchEvent): void | Promise<void>;
  /**
   * The live stream failed (e.g. the log could not be read to fill a gap) and stopped sending.
   * The sink should end the stream: its client resumes from the last id it received.
   */
  failed?(err: unknown): void;
  /** The stream's reader lost access to the scope, or the scope was deleted, and the stream stopped sending: end it. */
  revoked?(): void;
  /** Who is watching the scope changed (a `presence` signal): re-read it. Never holds back patches. */
  presence?(): void;
}

/**
 * Live events a stream holds for a slow reader before it stops queueing them and reads the log
 * instead once the reader catches up: memory per stream stays bounded however slow the client.
 */
const STREAM_QUEUE_MAX = 10_000;

export interface StreamOptions {
  /** Live events held for a slow reader (default STREAM_QUEUE_MAX). */
  queueMax?: number;
  /**
   * Who the stream is for (null: a caller without a token). When given, the stream opens only if
   * they may read the scope, and ends when they no longer may (see the top of this file).
   */
  reader?: Caller | null;
}

/** What a stream needs of the engine. */
export interface StreamDeps {
  bus: Bus;
  head(id: string): Promise<Head>;
  /** `trimmed`, here and in readLog: the head's, as the stream read it (LogReadOptions.trimmed). */
  stateAt(id: string, ii: number, trimmed?: number): Promise<Json>;
  readLog(id: string, from: number, to: number, trimmed?: number): AsyncGenerator<PatchRecord>;
  logError(entry: Record<string, unknown>): void;
}

/**
 * Streams a scope: without `since`, a `state` at head then every later patch; with `since`,
 * every patch after it. Resolves once subscribed and caught up; the returned function stops it.
 */
export async function openStream(
  deps: StreamDeps,
  id: string,
  since: number | undefined,
  sink: StreamSink,
  opts: StreamOptions = {},
): Promise<() => Promise<void>> {
  const queueMax = opts.queueMax ?? STREAM_QUEUE_MAX;
  let last = since ?? 0;
  let closed = false;
  let live = false;
  const queue: PatchEvent[] = [];
  /** The newest index seen live but not queued (the queue was full): read from the log. */
  let behind = 0;
  /** The head's `trimmed` when the stream opened (it only grows, so it stays a safe hint). */
  let trimmed = 0;

  const emitRecordsUpTo = async (to: number) => {
    for await (const r of deps.readLog(id, last + 1, to, trimmed)) {
      if (closed) return;
      if (r.ii !== last + 1) throw new PatchbayError('internal', `log of ${id} has a hole at ${last + 1}`);
      await sink.patch(toEvent(r));
      last = r.ii;
    }
  };
  /**
   * Sends what the queue holds, in order. Runs synchronously for as long as the sink takes events
   * synchronously (a live stream with room in its socket buffer: the event is written within the
   * bus's dispatch, with no promise per event); returns a promise only when it must wait, for the
   * sink (back-pressure) or for the log (a gap, or a reader that fell behind the queue).
   */
  const step = (): Promise<void> | undefined => {
    while (!closed) {
      if (behind > last) return emitRecordsUpTo(behind);
      const e = queue.shift();
      if (e === undefined) return undefined;
      if (e.ii <= last) continue; // already sent (bus duplicate, or read from the log)
      // A gap: the log has what the bus skipped.
      if (e.ii > last + 1) return emitRecordsUpTo(e.ii - 1).then(() => (e.ii === last + 1 && !closed ? send(e) : undefined));
      const wait = send(e);
      if (wait) return wait;
    }
    return undefined;
  };
  const send = (e: PatchEvent): Promise<void> | undefined => {
    const wait = sink.patch(e);
    if (isPromise(wait)) {
      return wait.then(() => {
        last = e.ii;
      });
    }
    last = e.ii;
    return undefined;
  };
  /** Set while a step runs or waits: one step at a time keeps the order. */
  let busy = false;
  const fail = (err: unknown) => {
    // Stop rather than skip: the client resumes from its last id and misses nothing.
    busy = false;
    if (closed) return;
    closed = true;
    deps.logError({ message: 'stream failed', scope: id, err: String(err) });
    sink.failed?.(err);
  };
  const run = (): void => {
    let wait: Promise<void> | undefined;
    try {
      wait = step();
    } catch (err) {
      fail(err);
      return;
    }
    if (wait === undefined) busy = false;
    else wait.then(run, fail);
  };
  /** Access checks in flight: live events wait for them. */
  let checking = 0;
  const kick = () => {
    if (!live || busy || closed || checking > 0) return;
    busy = true;
    run();
  };
  const { reader } = opts;
  const revoke = () => {
    if (closed) return;
    closed = true;
    sink.revoked?.();
  };
  const recheck = () => {
    checking++;
    deps.head(id).then(
      (h) => {
        checking--;
        if (closed) return;
        if (reader === undefined || canRead(h.meta, reader)) return kick();
        revoke();
      },
      (err) => {
        checking--;
        // Deleted: ended as for a lost access. Otherwise the client resumes, and its reconnect is checked afresh.
        if (err instanceof PatchbayError && err.code === 'scope_not_found') revoke();
        else fail(err);
      },
    );
  };

  const unsubscribe = await deps.bus.subscribe(
    id,
    (e) => {
      if (closed) return;
      if (queue.length >= queueMax) {
        behind = Math.max(behind, e.ii, ...queue.map((q) => q.ii));
        queue.length = 0;
      } else {
        queue.push(e);
      }
      kick();
    },
    (s) => {
      if (s.kind === 'presence') {
        if (!closed) sink.presence?.();
        return;
      }
      if (reader !== undefined || s.kind === 'deleted') recheck();
    },
  );
  try {
    const head = await deps.head(id);
    if (reader !== undefined) checkRead(id, head.meta, reader);
    trimmed = head.trimmed;
    if (since !== undefined && since > head.ii) {
      throw new PatchbayError('out_of_sync', `position ${since} is past head ${head.ii}`, { head: head.ii });
    }
    if (since === undefined) {
      await sink.state(head.ii, await deps.stateAt(id, head.ii, head.trimmed));
      last = head.ii;
    }
    // Up to the head read above, no further: every later patch was committed after the bus
    // subscription, so it comes through the bus (a gap there is read from the log when the next
    // event shows it). Reading on to the end of the log would cost a range query per stream even
    // at head, and hold the stream's live events behind it: on a Firestore that answers range
    // queries slowly (the emulator, after much traffic), 100 streams opened at once held their
    // first seconds of events behind 100 such queries.
    await emitRecordsUpTo(head.ii);
  } catch (err) {
    closed = true;
    await unsubscribe();
    throw err;
  }
  live = true;
  kick();
  return async () => {
    closed = true;
    await unsubscribe();
  };
}

const isPromise = (x: unknown): x is Promise<void> => typeof (x as { then?: unknown } | undefined)?.then === 'function';
