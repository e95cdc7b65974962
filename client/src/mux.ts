/**
 * All of a client's scopes on one connection: the multiplexed stream (`GET /v1/events`), with
 * scopes added and removed while it is open (`POST /v1/events/{stream}`), and long polling of
 * history (`GET /v1/scopes/{id}/patches?wait=`) when streaming does not get through.
 *
 * Loss: none. Every (re)open sends each scope's position (the last index it applied, from
 * `StreamHandlers.lastId`), polling asks for the patches after it, and a scope drops what it
 * already has by index; so a drop, a switch between streaming and polling, or a change that was
 * lost while reconnecting costs repeats, never a patch.
 *
 * Reconnects wait a random delay under a doubling cap (full jitter, `backoff`), so a deployment
 * restart or the platform's stream timeout does not bring every client back in the same second.
 *
 * Buffering proxies: a proxy that holds a stream's body back until it ends shows as a stream where
 * nothing (not even the server's heartbeat) arrives for `heartbeatTimeoutMs`. The client then
 * drops the stream and long-polls each scope's history instead, trying the stream again after
 * `streamRetryMs`. Polling opens one request per scope: in a browser limited to six connections
 * per origin, many scopes then take turns.
 *
 * Presence (`watchPresence`): the stream also carries the presence of the scopes watched
 * (`presence=a,b` on open, `presence: true`/`false` in a change), a scope watched only for its
 * presence riding the stream like any other (its patches' index kept so a reopen resumes after
 * them). Polling carries no presence: watchers hear again (a new `sync`) once the stream is back.
 *
 * Live queries (`watchQuery`) ride the same stream: each watch gets a key (`q1`, `q2`…), is sent
 * in a change (`watch`) as soon as the stream is open and again after every reopen (results are
 * not resumable: each (re)start sends the current result, which a watcher may see twice), and
 * its `result` events go to its watcher. While polling, each watched query is run every
 * `queryPollMs` instead, and a result is passed on when it differs from the last one.
 */
import { createParser } from 'eventsource-parser';
import { errorFrom, errorOf, PatchbayClientError, type ServerError } from './errors.js';
import type { Transport } from './http.js';
import { backoff, type StreamHandlers } from './stream.js';

export interface MuxOptions {
  /** A stream on which nothing arrives this long is given up for long polling (default 45 000 ms: three server heartbeats). */
  heartbeatTimeoutMs?: number;
  /** `wait` of each long poll (default 25 000 ms; the server cuts it to PATCHBAY_HISTORY_WAIT_MAX_MS). */
  pollWaitMs?: number;
  /** After falling back to polling, try the stream again after this long (default 60 000 ms; 0: never). */
  streamRetryMs?: number;
  /** While polling, run each watched query this often (default 5 000 ms). */
  queryPollMs?: number;
}

/** A live query's watcher on the shared connection. */
export interface QueryWatcher {
  /** A `result` event's data: `{query, columns, rows, truncated}`. */
  onResult(data: string): void;
  /** The watch is over: the query was refused or a run failed. */
  onFatal(err: PatchbayClientError): void;
}

/** A watched query: what a `watch` change sends, and its watcher. */
interface WatchedQuery {
  spec: { query: string; domain: string; name: string; params?: unknown };
  w: QueryWatcher;
  /** Set while it is polled (polling mode). */
  poll?: AbortController;
}

/** How the scopes' events arrive now: `stream` (one multiplexed stream), `polling` (history with `wait`), `idle` (no scope). */
export type MuxMode = 'idle' | 'stream' | 'polling';

export interface Subscription {
  close(): void;
}

interface Entry {
  id: string;
  on: StreamHandlers;
  /** Set while a poll of this scope runs (polling mode). */
  poll?: AbortController;
}

/** A scope's presence watchers, and the last index its stream brought when no scope subscription keeps it. */
interface Watched {
  watchers: Set<PresenceWatcher>;
  last?: number;
}

export interface PresenceWatcher {
  /** A `presence` event's data (with its `scope`). */
  onPresence(data: string): void;
  onFatal(err: PatchbayClientError): void;
}

export class MuxStream {
  private readonly scopes = new Map<string, Entry>();
  /** The scopes whose presence is watched. */
  private readonly watched = new Map<string, Watched>();
  private mode: MuxMode = 'idle';
  private conn: AbortController | undefined;
  /** The live queries watched, by key. */
  private readonly queries = new Map<string, WatchedQuery>();
  private lastKey = 0;
  /** The open stream's id, the scopes it carries (as opened, then as changed) and the queries it was asked to watch. */
  private stream: { id: string; carries: Set<string>; presence: Set<string>; watching: Set<string> } | undefined;
  private attempt = 0;
  private running = false;
  private readonly heartbeatTimeoutMs: number;
  private readonly pollWaitMs: number;
  private readonly streamRetryMs: number;
  private readonly queryPollMs: number;
  /** Told of each mode change (the client's `transport` event). */
  onMode: (mode: MuxMode) => void = () => {};

  constructor(
    private readonly transport: Transport,
    opts: MuxOptions = {},
  ) {
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 45_000;
    this.pollWaitMs = opts.pollWaitMs ?? 25_000;
    this.streamRetryMs = opts.streamRetryMs ?? 60_000;
    this.queryPollMs = opts.queryPollMs ?? 5_000;
  }

  get currentMode(): MuxMode {
    return this.mode;
  }

  /** Follows scope `id`: its events go to `on`, on the shared connection. */
  subscribe(id: string, on: StreamHandlers): Subscription {
    const entry: Entry = { id, on };
    this.scopes.set(id, entry);
    on.onStatus(this.mode === 'idle' ? 'connecting' : this.mode === 'polling' || this.stream ? 'online' : 'connecting');
    if (this.mode === 'polling') void this.pollScope(entry);
    else if (this.stream) {
      // One carried already (for its presence) is taken out and added back from this subscription's position.
      const add = { ...this.position(id), ...(this.watched.has(id) ? { presence: true } : {}) };
      void this.change(this.stream.carries.has(id) ? { remove: [id], add: [add] } : { add: [add] });
    }
    if (!this.running) void this.run();
    return {
      close: () => {
        if (this.scopes.get(id) !== entry) return;
        this.scopes.delete(id);
        entry.poll?.abort();
        on.onStatus('closed');
        if (this.watched.has(id)) this.keepLast(id, on.lastId());
        else this.leave(id);
      },
    };
  }

  /** Watches scope `id`'s presence on the shared connection: each `presence` event to `w`. */
  watchPresence(id: string, w: PresenceWatcher): Subscription {
    const known = this.watched.get(id);
    const entry = known ?? { watchers: new Set<PresenceWatcher>() };
    entry.watchers.add(w);
    if (!known) {
      this.watched.set(id, entry);
      if (this.stream) void this.change({ add: [{ ...this.position(id), presence: true }] });
      if (!this.running) void this.run();
    }
    return {
      close: () => {
        if (!entry.watchers.delete(w) || entry.watchers.size > 0 || this.watched.get(id) !== entry) return;
        this.watched.delete(id);
        if (this.scopes.has(id)) {
          if (this.stream?.presence.has(id)) void this.change({ add: [{ scope: id, presence: false }] });
        } else this.leave(id);
      },
    };
  }

  /** Watches a named query on the shared connection: each `result` event to `w`. */
  watchQuery(domain: string, name: string, params: unknown, w: QueryWatcher): Subscription {
    const key = `q${++this.lastKey}`;
    const q: WatchedQuery = { spec: { query: key, domain, name, ...(params === undefined ? {} : { params }) }, w };
    this.queries.set(key, q);
    if (this.mode === 'polling') void this.pollQuery(q);
    else if (this.stream) void this.change({ watch: [q.spec] });
    if (!this.running) void this.run();
    return {
      close: () => {
        if (this.queries.get(key) !== q) return;
        this.queries.delete(key);
        q.poll?.abort();
        if (!this.busy) this.conn?.abort();
        else if (this.stream?.watching.has(key)) void this.change({ unwatch: [key] });
      },
    };
  }

  /** Nothing follows `id` any more: the stream stops carrying it (or ends, with nothing left). */
  private leave(id: string): void {
    if (!this.busy)
      this.conn?.abort(); // nothing left to carry: the loop ends
    else if (this.stream?.carries.has(id)) void this.change({ remove: [id] });
  }

  /** Something is followed: a scope, a scope's presence or a query. */
  private get busy(): boolean {
    return this.scopes.size > 0 || this.watched.size > 0 || this.queries.size > 0;
  }

  private queryFatal(key: string, err: PatchbayClientError): void {
    const q = this.queries.get(key);
    if (!q) return;
    this.queries.delete(key);
    this.stream?.watching.delete(key);
    q.poll?.abort();
    q.w.onFatal(err);
  }

  private keepLast(id: string, last: number | undefined): void {
    const w = this.watched.get(id);
    if (w && typeof last === 'number' && (w.last === undefined || last > w.last)) w.last = last;
  }

  /** Scope `id`'s position: its subscription's, or (watched for presence only) the last index seen. */
  private position(id: string): { scope: string; since?: number } {
    const e = this.scopes.get(id);
    return position(id, e ? e.on.lastId() : this.watched.get(id)?.last);
  }

  /** Every scope carried: subscribed, or watched for presence. */
  private get followed(): Set<string> {
    return new Set([...this.scopes.keys(), ...this.watched.keys()]);
  }

  private setMode(mode: MuxMode): void {
    if (mode === this.mode) return;
    this.mode = mode;
    this.onMode(mode);
  }

  private status(s: 'connecting' | 'online' | 'reconnecting'): void {
    for (const e of this.scopes.values()) e.on.onStatus(s);
  }

  private fatal(id: string, err: PatchbayClientError): void {
    const w = this.watched.get(id);
    this.watched.delete(id);
    for (const watcher of w?.watchers ?? []) watcher.onFatal(err);
    const e = this.scopes.get(id);
    if (!e) return;
    this.scopes.delete(id);
    e.poll?.abort();
    e.on.onStatus('closed');
    e.on.onFatal(err);
  }

  /** The connection loop: streams while there are scopes; falls back to polling when nothing gets through. */
  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.busy) {
        this.status(this.attempt === 0 ? 'connecting' : 'reconnecting');
        const outcome = await this.connect().catch((err: unknown) => err);
        if (!this.busy) break;
        if (outcome === 'silent') {
          await this.pollAll();
          this.attempt = 0;
          continue;
        }
        if (outcome instanceof PatchbayClientError) {
          const scope = outcome.details.scope;
          if (typeof scope === 'string' && !outcome.retryable) {
            this.fatal(scope, outcome); // that scope cannot be streamed: reopen without it, at once
            continue;
          }
          if (!outcome.retryable && outcome.code !== 'unauthorized') {
            for (const id of this.followed) this.fatal(id, outcome);
            for (const key of [...this.queries.keys()]) this.queryFatal(key, outcome);
            break;
          }
        }
        this.status('reconnecting');
        await this.transport.conn.pause(backoff(this.attempt++));
      }
    } finally {
      this.running = false;
      this.stream = undefined;
      this.setMode('idle');
    }
  }

  /**
   * One stream: resolves when the server ends it (or it was closed), `'silent'` when nothing
   * arrived for `heartbeatTimeoutMs`; rejects with the error answer or the network failure.
   */
  private async connect(): Promise<'ended' | 'silent'> {
    const conn = new AbortController();
    this.conn = conn;
    const link = this.transport.conn;
    const mark = link.mark();
    let silent = false;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        silent = true;
        conn.abort();
      }, this.heartbeatTimeoutMs);
    };
    const carries = this.followed;
    const presence = new Set(this.watched.keys());
    const query = [...carries].map((id) => this.position(id)).map((p) => (p.since === undefined ? p.scope : `${p.scope}@${p.since}`));
    const withPresence = presence.size > 0 ? `&presence=${[...presence].map(encodeURIComponent).join(',')}` : '';
    arm();
    try {
      const res = await this.transport.send('GET', `/v1/events?scopes=${query.map(encodeURIComponent).join(',')}${withPresence}`, {
        headers: { accept: 'text/event-stream' },
        signal: conn.signal,
      });
      if (!res.ok || !res.body) throw await errorFrom(res);
      const parser = createParser({ onEvent: (e) => this.onEvent(e.event ?? 'message', e.data, carries, presence) });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return 'ended';
          arm();
          parser.feed(value);
        }
      } finally {
        reader.releaseLock();
      }
    } catch (err) {
      link.streamDown(this);
      if (silent) return 'silent';
      if (conn.signal.aborted) return 'ended';
      if (err instanceof PatchbayClientError) throw err; // an answer or a failed request: the transport saw it
      const dropped = new PatchbayClientError('network_error', `stream dropped: ${err instanceof Error ? err.message : String(err)}`);
      link.failed(mark, dropped);
      throw dropped;
    } finally {
      link.streamDown(this);
      clearTimeout(watchdog);
      this.stream = undefined;
      if (this.conn === conn) this.conn = undefined;
    }
  }

  private onEvent(type: string, data: string, carries: Set<string>, presence: Set<string>): void {
    if (type === 'stream') {
      const id = (JSON.parse(data) as { stream: string }).stream;
      this.stream = { id, carries, presence, watching: new Set() };
      this.attempt = 0; // it opened: the next drop starts the backoff afresh
      this.transport.conn.streamUp(this);
      this.setMode('stream');
      this.status('online');
      // Scopes subscribed or closed while it opened: change it now.
      const followed = this.followed;
      const add = [...followed]
        .filter((s) => !carries.has(s) || this.watched.has(s) !== presence.has(s))
        .map((s) =>
          carries.has(s) ? { scope: s, presence: this.watched.has(s) } : { ...this.position(s), ...(this.watched.has(s) ? { presence: true } : {}) },
        );
      const remove = [...carries].filter((s) => !followed.has(s));
      // Every watched query, every time: a new stream carries none.
      const watch = [...this.queries.values()].map((q) => q.spec);
      if (add.length > 0 || remove.length > 0 || watch.length > 0) void this.change({ add, remove, watch });
      return;
    }
    if (type === 'result' || type === 'unwatched') {
      const { query, error } = JSON.parse(data) as { query?: string; error?: ServerError };
      if (query === undefined) return;
      if (type === 'result') this.queries.get(query)?.w.onResult(data);
      else if (error) this.queryFatal(query, queryError(error, query));
      return;
    }
    const scope = (JSON.parse(data) as { scope?: string }).scope;
    if (scope === undefined) return;
    if (type === 'removed') {
      // One this client removed was taken out of `carries` when it asked (it may have been added back since).
      const { error } = JSON.parse(data) as { error?: { code: string; message: string } };
      if (!error) return;
      this.stream?.carries.delete(scope);
      this.fatal(scope, new PatchbayClientError(error.code as PatchbayClientError['code'], error.message, 0, { scope }));
      return;
    }
    if (type === 'added') return;
    if (type === 'presence') {
      for (const w of this.watched.get(scope)?.watchers ?? []) w.onPresence(data);
      return;
    }
    const e = this.scopes.get(scope);
    if (e) e.on.onEvent(type, data);
    else this.keepLast(scope, (JSON.parse(data) as { ii?: number }).ii);
  }

  /** Changes in flight, one at a time: a remove then an add of one scope must reach the stream in that order. */
  private changes: Promise<void> = Promise.resolve();

  /** Changes the open stream; a change that fails is made at the next open instead (every open sends the whole set). */
  private change(body: Change): Promise<void> {
    const stream = this.stream;
    if (!stream) return Promise.resolve();
    for (const s of body.remove ?? []) {
      stream.carries.delete(s);
      stream.presence.delete(s);
    }
    for (const p of body.add ?? []) {
      stream.carries.add(p.scope);
      if (p.presence === true) stream.presence.add(p.scope);
      if (p.presence === false) stream.presence.delete(p.scope);
    }
    for (const key of body.unwatch ?? []) stream.watching.delete(key);
    for (const q of body.watch ?? []) stream.watching.add(q.query);
    this.changes = this.changes.then(() => (this.stream === stream ? this.send(stream, body) : undefined));
    return this.changes;
  }

  private async send(stream: MuxStream['stream'] & {}, body: Change): Promise<void> {
    try {
      const res = await this.transport.send('POST', `/v1/events/${stream.id}`, { body });
      if (res.ok) return;
      const err = await errorFrom(res);
      const { scope, query } = err.details;
      if (typeof scope === 'string' && !err.retryable) this.fatal(scope, err);
      else if (typeof query === 'string' && !err.retryable && err.code !== 'unauthorized') {
        this.queryFatal(query, err);
        // The change's other parts were refused with it: send them again.
        const rest = { ...body, watch: body.watch?.filter((q) => q.query !== query) };
        if ((rest.add?.length ?? 0) + (rest.remove?.length ?? 0) + (rest.watch?.length ?? 0) + (rest.unwatch?.length ?? 0) > 0)
          this.changes = this.changes.then(() => (this.stream === stream ? this.send(stream, rest) : undefined));
      } else this.conn?.abort(); // reopen with the whole set
    } catch {
      this.conn?.abort();
    }
  }

  // --- long polling --------------------------------------------------------------------------

  /** Polls every scope until `streamRetryMs` passes (then the loop tries the stream again) or none is left. */
  private async pollAll(): Promise<void> {
    this.setMode('polling');
    this.status('online');
    for (const e of this.scopes.values()) void this.pollScope(e);
    for (const q of this.queries.values()) void this.pollQuery(q);
    const until = this.streamRetryMs > 0 ? Date.now() + this.streamRetryMs : Number.POSITIVE_INFINITY;
    while (this.busy && Date.now() < until) await sleep(Math.min(250, until - Date.now()));
    for (const e of this.scopes.values()) e.poll?.abort();
    for (const q of this.queries.values()) q.poll?.abort();
  }

  /** One watched query while polling: run every `queryPollMs`, each result that differs from the last passed on. */
  private async pollQuery(q: WatchedQuery): Promise<void> {
    if (q.poll) return;
    const ac = new AbortController();
    q.poll = ac;
    const { query, domain, name, params } = q.spec;
    const path = `/v1/domains/${encodeURIComponent(domain)}/queries/${encodeURIComponent(name)}`;
    let last = '';
    let attempt = 0;
    try {
      while (!ac.signal.aborted && this.queries.get(query) === q) {
        try {
          const res = await this.transport.send('POST', path, { body: params === undefined ? {} : { params }, signal: ac.signal });
          if (!res.ok) throw await errorFrom(res);
          const result = (await res.json()) as Record<string, unknown>;
          const text = JSON.stringify({ query, ...result });
          if (ac.signal.aborted) return;
          if (text !== last) q.w.onResult(text);
          last = text;
          attempt = 0;
          await this.transport.conn.pause(this.queryPollMs, ac.signal);
        } catch (err) {
          if (ac.signal.aborted) return;
          const e = err instanceof PatchbayClientError ? err : new PatchbayClientError('network_error', String(err));
          if (!e.retryable && e.code !== 'unauthorized') {
            this.queryFatal(query, e);
            return;
          }
          await this.transport.conn.pause(backoff(attempt++));
        }
      }
    } finally {
      if (q.poll === ac) q.poll = undefined;
    }
  }

  /** One scope's long polls: its state first when it has none, then history after its last index, each held by the server until a patch comes. */
  private async pollScope(entry: Entry): Promise<void> {
    if (entry.poll) return;
    const ac = new AbortController();
    entry.poll = ac;
    const path = `/v1/scopes/${encodeURIComponent(entry.id)}`;
    let attempt = 0;
    try {
      while (!ac.signal.aborted && this.scopes.get(entry.id) === entry) {
        try {
          const last = entry.on.lastId();
          if (last === undefined) {
            const res = await this.transport.send('GET', path, { signal: ac.signal });
            if (!res.ok) throw await errorFrom(res);
            const body = (await res.json()) as { ii: number; state: unknown };
            entry.on.onEvent('state', JSON.stringify({ ii: body.ii, state: body.state }));
          } else {
            const res = await this.transport.send('GET', `${path}/patches?from=${last + 1}&wait=${this.pollWaitMs}`, { signal: ac.signal });
            if (!res.ok) throw await errorFrom(res);
            const text = await res.text();
            if (ac.signal.aborted) return;
            for (const line of text.split('\n')) if (line.trim() !== '') entry.on.onEvent('patch', line);
          }
          attempt = 0;
        } catch (err) {
          if (ac.signal.aborted) return;
          const e = err instanceof PatchbayClientError ? err : new PatchbayClientError('network_error', String(err));
          if (!e.retryable && e.code !== 'unauthorized') {
            this.fatal(entry.id, e);
            return;
          }
          await this.transport.conn.pause(backoff(attempt++));
        }
      }
    } finally {
      if (entry.poll === ac) entry.poll = undefined;
    }
  }
}

/** A change of the open stream (`POST /v1/events/{stream}`). */
interface Change {
  add?: Array<{ scope: string; since?: number; presence?: boolean }>;
  remove?: string[];
  watch?: Array<WatchedQuery['spec']>;
  unwatch?: string[];
}

/** An `unwatched` event's error as the client's error type (status 0: it came on the stream, as on a query's own stream). */
function queryError(error: ServerError, query: string): PatchbayClientError {
  return errorOf({ ...error, query }, 0);
}

function position(scope: string, since: number | undefined): { scope: string; since?: number } {
  return since === undefined ? { scope } : { scope, since };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
