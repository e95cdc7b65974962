/**
 * One connection for all of an origin's tabs, where the browser offers Web Locks and
 * BroadcastChannel: the tab holding the lock (the leader) runs the multiplexed stream
 * (client/src/mux.ts) for every scope any tab follows, and relays its events over a
 * BroadcastChannel; the other tabs (followers) send it what they follow. When the leader goes
 * (closed, crashed, navigated away), the browser gives the lock to a waiting tab, which becomes
 * the leader, opens the stream itself and asks the others to tell it their scopes again.
 *
 * Tabs share only when they act as the same user (the channel is named by the server URL and the
 * token's `sub`): a tab signed in as someone else keeps its own connection.
 *
 * Loss: none. A follower takes a scope's state itself (`GET /v1/scopes/{id}`) when it has none,
 * then applies the relayed patches; a patch past the next index makes the scope read the gap from
 * history (client/src/scope.ts), and one it has is dropped by index. So a follower that joins late,
 * or misses events while a new leader takes over, catches up from history.
 *
 * Presence (`watchPresence`) is carried the same way: the leader watches a scope's presence on its
 * stream for every tab that asks (`psub`), relays each `presence` event, and keeps the scope's
 * current list so a tab that asks later gets a `sync` of it at once.
 *
 * Live queries (`watchQuery`) too: the leader watches each tab's query on its stream (`qsub`, one
 * watch per tab and query) and relays its results to that tab only; a new leader is told every
 * tab's queries again and starts them afresh (each then sends its current result once more).
 */
import type { ConnectionStatus } from './connection.js';
import { errorFrom, PatchbayClientError } from './errors.js';
import type { Transport } from './http.js';
import { type MuxMode, type MuxOptions, MuxStream, type PresenceWatcher, type QueryWatcher, type Subscription } from './mux.js';
import type { StreamHandlers, StreamStatus } from './stream.js';

/** How this tab gets events: as the leader (`MuxMode` of its stream), or relayed (`shared`). */
export type TabMode = MuxMode | 'shared';

type Message =
  | { t: 'leader'; tab: string }
  | { t: 'sub'; tab: string; scope: string; since?: number }
  | { t: 'unsub'; tab: string; scope: string }
  | { t: 'event'; scope: string; type: string; data: string }
  | { t: 'psub'; tab: string; scope: string }
  | { t: 'punsub'; tab: string; scope: string }
  | { t: 'presence'; scope: string; data: string }
  | { t: 'status'; scope: string; status: StreamStatus }
  /** The leader's connection state (./connection.ts): the followers' own. */
  | { t: 'link'; status: ConnectionStatus }
  | { t: 'qsub'; tab: string; key: string; q: QuerySpec }
  | { t: 'qunsub'; tab: string; key: string }
  | { t: 'qresult'; tab: string; key: string; data: string }
  | { t: 'qfatal'; tab: string; key: string; code: string; message: string; status: number; details: Record<string, unknown> }
  | { t: 'fatal'; scope: string; code: string; message: string; status: number; details: Record<string, unknown> };

/** What is used of Web Locks and BroadcastChannel (typed here: the client also compiles against Node's types, which lack them). */
interface Locks {
  request(name: string, options: { ifAvailable?: boolean }, callback: (lock: unknown) => Promise<void> | undefined): Promise<unknown>;
}
interface Channel {
  onmessage: ((e: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}
const env = globalThis as unknown as { navigator?: { locks?: Locks }; BroadcastChannel?: new (name: string) => Channel };

/**
 * Whether this environment can share a connection among tabs (a browser with Web Locks and
 * BroadcastChannel). Checked by shape: some DOM implementations (happy-dom) define
 * `navigator.locks` as null.
 */
export function canShareTabs(): boolean {
  return typeof env.BroadcastChannel === 'function' && typeof env.navigator?.locks?.request === 'function';
}

/** A live query as a tab asks for it. */
interface QuerySpec {
  domain: string;
  name: string;
  params: unknown;
}

/** A scope the leader carries: the tabs that follow it, and the last index its stream brought. */
interface Carried {
  tabs: Set<string>;
  last: number | undefined;
  sub: Subscription;
}

/** A scope whose presence the leader watches: the tabs that watch it, and its list as last told (by session). */
interface CarriedPresence {
  tabs: Set<string>;
  present: Map<string, unknown> | undefined;
  sub: Subscription;
}

export class TabShare {
  private readonly tab = randomTab();
  /** This tab's scopes, by id. */
  private readonly mine = new Map<string, StreamHandlers>();
  private channel: Channel | undefined;
  private ready: Promise<void>;
  private leader: MuxStream | undefined;
  /** Leader only: the scopes it carries for the tabs. */
  private readonly carried = new Map<string, Carried>();
  /** This tab's presence watchers, by scope. */
  private readonly minePresence = new Map<string, Set<PresenceWatcher>>();
  /** Leader only: the scopes whose presence it watches for the tabs. */
  private readonly carriedPresence = new Map<string, CarriedPresence>();
  /** This tab's live queries, by its own key. */
  private readonly mineQueries = new Map<string, { q: QuerySpec; w: QueryWatcher }>();
  private lastKey = 0;
  /** Leader only: the queries it watches for the tabs, by `<tab>/<key>`. */
  private readonly carriedQueries = new Map<string, Subscription>();
  private closed = false;
  private releaseLock: () => void = () => {};
  onMode: (mode: TabMode) => void = () => {};

  constructor(
    private readonly transport: Transport,
    private readonly muxOptions: MuxOptions = {},
  ) {
    this.ready = this.start();
    this.ready.catch(() => {});
  }

  get mode(): TabMode {
    return this.leader ? this.leader.currentMode : 'shared';
  }

  subscribe(id: string, on: StreamHandlers): Subscription {
    this.mine.set(id, on);
    on.onStatus('connecting');
    void this.ready.then(() => this.follow(id, on));
    return {
      close: () => {
        if (this.mine.get(id) !== on) return;
        this.mine.delete(id);
        on.onStatus('closed');
        void this.ready.then(() => {
          if (this.leader) this.drop(this.tab, id);
          else this.post({ t: 'unsub', tab: this.tab, scope: id });
        });
      },
    };
  }

  watchPresence(id: string, w: PresenceWatcher): Subscription {
    const known = this.minePresence.get(id);
    const watchers = known ?? new Set<PresenceWatcher>();
    watchers.add(w);
    if (!known) {
      this.minePresence.set(id, watchers);
      void this.ready.then(() => this.followPresence(id));
    }
    return {
      close: () => {
        if (!watchers.delete(w) || watchers.size > 0 || this.minePresence.get(id) !== watchers) return;
        this.minePresence.delete(id);
        void this.ready.then(() => {
          if (this.leader) this.dropPresence(this.tab, id);
          else this.post({ t: 'punsub', tab: this.tab, scope: id });
        });
      },
    };
  }

  watchQuery(domain: string, name: string, params: unknown, w: QueryWatcher): Subscription {
    const key = `t${++this.lastKey}`;
    const entry = { q: { domain, name, params }, w };
    this.mineQueries.set(key, entry);
    void this.ready.then(() => this.followQuery(key));
    return {
      close: () => {
        if (this.mineQueries.get(key) !== entry) return;
        this.mineQueries.delete(key);
        void this.ready.then(() => {
          if (this.leader) this.dropQuery(this.tab, key);
          else this.post({ t: 'qunsub', tab: this.tab, key });
        });
      },
    };
  }

  private followQuery(key: string): void {
    const entry = this.mineQueries.get(key);
    if (!entry) return;
    if (this.leader) this.carryQuery(this.tab, key, entry.q);
    else this.post({ t: 'qsub', tab: this.tab, key, q: entry.q });
  }

  /** Leader: watches `tab`'s query `key` on its stream, relaying its results to that tab (one already watched is started afresh). */
  private carryQuery(tab: string, key: string, q: QuerySpec): void {
    const id = `${tab}/${key}`;
    this.carriedQueries.get(id)?.close();
    const sub = (this.leader as MuxStream).watchQuery(q.domain, q.name, q.params, {
      onResult: (data) => {
        if (tab === this.tab) this.mineQueries.get(key)?.w.onResult(data);
        else this.post({ t: 'qresult', tab, key, data });
      },
      onFatal: (err) => {
        if (this.carriedQueries.get(id) === sub) this.carriedQueries.delete(id);
        if (tab === this.tab) this.failQuery(key, err);
        else this.post({ t: 'qfatal', tab, key, code: err.code, message: err.message, status: err.status, details: err.details });
      },
    });
    this.carriedQueries.set(id, sub);
  }

  private dropQuery(tab: string, key: string): void {
    const id = `${tab}/${key}`;
    this.carriedQueries.get(id)?.close();
    this.carriedQueries.delete(id);
  }

  private failQuery(key: string, err: PatchbayClientError): void {
    const entry = this.mineQueries.get(key);
    this.mineQueries.delete(key);
    entry?.w.onFatal(err);
  }

  private followPresence(id: string): void {
    if (!this.minePresence.has(id)) return;
    if (this.leader) this.carryPresence(this.tab, id);
    else this.post({ t: 'psub', tab: this.tab, scope: id });
  }

  /** Leader: `tab` watches scope `id`'s presence; one watched already is told to it at once (a `sync`). */
  private carryPresence(tab: string, id: string): void {
    const known = this.carriedPresence.get(id);
    if (known) {
      known.tabs.add(tab);
      if (known.present) this.relayPresence(id, known, JSON.stringify({ scope: id, action: 'sync', present: [...known.present.values()] }));
      return;
    }
    const c: CarriedPresence = { tabs: new Set([tab]), present: undefined, sub: { close() {} } };
    this.carriedPresence.set(id, c);
    c.sub = (this.leader as MuxStream).watchPresence(id, {
      onPresence: (data) => {
        const e = JSON.parse(data) as { action: string; user: string; session: string; since: number; status: unknown; present?: Array<{ session: string }> };
        if (e.action === 'sync') c.present = new Map((e.present ?? []).map((p) => [p.session, p]));
        else if (e.action === 'leave') c.present?.delete(e.session);
        else c.present?.set(e.session, { user: e.user, session: e.session, since: e.since, status: e.status });
        this.relayPresence(id, c, data);
      },
      onFatal: (err) => {
        this.carriedPresence.delete(id);
        if (c.tabs.has(this.tab)) this.failPresence(id, err);
        this.post({ t: 'fatal', scope: id, code: err.code, message: err.message, status: err.status, details: err.details });
      },
    });
  }

  private relayPresence(id: string, c: CarriedPresence, data: string): void {
    if (c.tabs.has(this.tab)) for (const w of this.minePresence.get(id) ?? []) w.onPresence(data);
    this.post({ t: 'presence', scope: id, data });
  }

  private dropPresence(tab: string, id: string): void {
    release(this.carriedPresence, tab, id);
  }

  private failPresence(id: string, err: PatchbayClientError): void {
    const watchers = this.minePresence.get(id);
    this.minePresence.delete(id);
    for (const w of watchers ?? []) w.onFatal(err);
  }

  /** Leaves the channel and gives up the lead (another tab takes it). */
  close(): void {
    this.closed = true;
    this.releaseLock();
    for (const c of this.carried.values()) c.sub.close();
    this.carried.clear();
    for (const c of this.carriedPresence.values()) c.sub.close();
    this.carriedPresence.clear();
    for (const sub of this.carriedQueries.values()) sub.close();
    this.carriedQueries.clear();
    this.channel?.close();
  }

  private async start(): Promise<void> {
    const token = await this.transport.token();
    const name = `patchbay:${this.transport.base}:${subjectOf(token)}`;
    const channel = new (env.BroadcastChannel as new (name: string) => Channel)(name);
    this.channel = channel;
    channel.onmessage = (e) => this.onMessage(e.data as Message);
    const locks = env.navigator?.locks as Locks;
    /** Leads while it holds the lock: until this tab closes or goes. */
    const hold = (): Promise<void> | undefined => {
      if (this.closed) return undefined;
      this.lead();
      return new Promise<void>((resolve) => {
        this.releaseLock = resolve;
      });
    };
    // Decided before the first scope is followed: lead now if no tab does, else follow and wait in
    // the browser's queue for the lock.
    const leading = await new Promise<boolean>((decided) => {
      void locks.request(name, { ifAvailable: true }, (lock) => {
        decided(lock !== null);
        return lock === null ? undefined : hold();
      });
    });
    if (!leading) void locks.request(name, {}, hold);
  }

  private post(m: Message): void {
    if (!this.closed) this.channel?.postMessage(m);
  }

  /** This tab became the leader: it carries its own scopes and asks the other tabs for theirs. */
  private lead(): void {
    const link = this.transport.conn;
    link.relay('connecting'); // no longer another tab's stream
    link.on('change', ({ status }) => this.post({ t: 'link', status }));
    this.leader = new MuxStream(this.transport, this.muxOptions);
    this.leader.onMode = (m) => this.onMode(m);
    this.onMode(this.leader.currentMode);
    for (const [id, on] of this.mine) this.carry(this.tab, id, on.lastId());
    for (const id of this.minePresence.keys()) this.carryPresence(this.tab, id);
    for (const key of this.mineQueries.keys()) this.followQuery(key);
    this.post({ t: 'leader', tab: this.tab });
  }

  /** A scope of this tab: carried here when leading, else asked of the leader (with its state fetched here when it has none). */
  private follow(id: string, on: StreamHandlers): void {
    if (this.mine.get(id) !== on) return;
    if (this.leader) {
      this.carry(this.tab, id, on.lastId());
      return;
    }
    this.post({ t: 'sub', tab: this.tab, scope: id, ...(on.lastId() === undefined ? {} : { since: on.lastId() }) });
    if (on.lastId() === undefined) void this.fetchState(id, on);
  }

  private async fetchState(id: string, on: StreamHandlers): Promise<void> {
    try {
      const res = await this.transport.send('GET', `/v1/scopes/${encodeURIComponent(id)}`);
      if (!res.ok) throw await errorFrom(res);
      const body = (await res.json()) as { ii: number; state: unknown };
      if (this.mine.get(id) === on) on.onEvent('state', JSON.stringify({ ii: body.ii, state: body.state }));
    } catch (err) {
      const e = err instanceof PatchbayClientError ? err : new PatchbayClientError('network_error', String(err));
      if (e.retryable) setTimeout(() => this.mine.get(id) === on && on.lastId() === undefined && void this.fetchState(id, on), 1000);
      else if (this.mine.get(id) === on) {
        this.mine.delete(id);
        on.onStatus('closed');
        on.onFatal(e);
      }
    }
  }

  private onMessage(m: Message): void {
    if (this.closed) return;
    switch (m.t) {
      case 'leader':
        // A new leader: tell it this tab's scopes again (it does not know them).
        if (this.leader) return;
        for (const [id, on] of this.mine) this.follow(id, on);
        for (const id of this.minePresence.keys()) this.followPresence(id);
        for (const key of this.mineQueries.keys()) this.followQuery(key);
        return;
      case 'qsub':
        if (this.leader) this.carryQuery(m.tab, m.key, m.q);
        return;
      case 'qunsub':
        if (this.leader) this.dropQuery(m.tab, m.key);
        return;
      case 'qresult':
        if (!this.leader && m.tab === this.tab) this.mineQueries.get(m.key)?.w.onResult(m.data);
        return;
      case 'qfatal':
        if (!this.leader && m.tab === this.tab)
          this.failQuery(m.key, new PatchbayClientError(m.code as PatchbayClientError['code'], m.message, m.status, m.details));
        return;
      case 'sub':
        if (!this.leader) return;
        this.carry(m.tab, m.scope, m.since);
        this.post({ t: 'link', status: this.transport.conn.status });
        return;
      case 'unsub':
        if (this.leader) this.drop(m.tab, m.scope);
        return;
      case 'psub':
        if (this.leader) this.carryPresence(m.tab, m.scope);
        return;
      case 'punsub':
        if (this.leader) this.dropPresence(m.tab, m.scope);
        return;
      case 'presence':
        if (!this.leader) for (const w of this.minePresence.get(m.scope) ?? []) w.onPresence(m.data);
        return;
      case 'event':
        if (!this.leader) this.mine.get(m.scope)?.onEvent(m.type, m.data);
        return;
      case 'status':
        if (!this.leader) this.mine.get(m.scope)?.onStatus(m.status);
        return;
      case 'link':
        if (!this.leader) this.transport.conn.relay(m.status);
        return;
      case 'fatal': {
        if (this.leader) return;
        this.failPresence(m.scope, new PatchbayClientError(m.code as PatchbayClientError['code'], m.message, m.status, m.details));
        const on = this.mine.get(m.scope);
        if (!on) return;
        this.mine.delete(m.scope);
        on.onStatus('closed');
        on.onFatal(new PatchbayClientError(m.code as PatchbayClientError['code'], m.message, m.status, m.details));
        return;
      }
    }
  }

  /** Leader: `tab` follows scope `id` (from `since`, for a scope not carried yet). */
  private carry(tab: string, id: string, since: number | undefined): void {
    const c = this.carried.get(id);
    if (c) {
      c.tabs.add(tab);
      if (tab !== this.tab && this.leader?.currentMode !== 'idle') this.post({ t: 'status', scope: id, status: 'online' });
      return;
    }
    const entry: Carried = { tabs: new Set([tab]), last: since, sub: { close() {} } };
    this.carried.set(id, entry);
    entry.sub = (this.leader as MuxStream).subscribe(id, {
      lastId: () => entry.last,
      onEvent: (type, data) => {
        const ii = (JSON.parse(data) as { ii?: number }).ii;
        if (typeof ii === 'number' && (entry.last === undefined || ii > entry.last)) entry.last = ii;
        if (entry.tabs.has(this.tab)) this.mine.get(id)?.onEvent(type, data);
        this.post({ t: 'event', scope: id, type, data });
      },
      onStatus: (status) => {
        if (status === 'closed') return;
        if (entry.tabs.has(this.tab)) this.mine.get(id)?.onStatus(status);
        this.post({ t: 'status', scope: id, status });
      },
      onFatal: (err) => {
        this.carried.delete(id);
        const on = this.mine.get(id);
        if (on && entry.tabs.has(this.tab)) {
          this.mine.delete(id);
          on.onStatus('closed');
          on.onFatal(err);
        }
        this.post({ t: 'fatal', scope: id, code: err.code, message: err.message, status: err.status, details: err.details });
      },
    });
  }

  /** Leader: `tab` no longer follows `id`; the stream stops carrying it when no tab does. */
  private drop(tab: string, id: string): void {
    release(this.carried, tab, id);
  }
}

/** `tab` no longer follows `id` in `carried`; its subscription closes when no tab does. */
function release(carried: Map<string, { tabs: Set<string>; sub: Subscription }>, tab: string, id: string): void {
  const c = carried.get(id);
  if (!c) return;
  c.tabs.delete(tab);
  if (c.tabs.size > 0) return;
  carried.delete(id);
  c.sub.close();
}

/** The token's `sub` when it is a JWT, else the token itself hashed into a short tag (tabs of one user share). */
function subjectOf(token: string): string {
  try {
    const payload = token.split('.')[1] ?? '';
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    if (typeof sub === 'string') return sub;
  } catch {}
  let h = 0;
  for (let i = 0; i < token.length; i++) h = (Math.imul(h, 31) + token.charCodeAt(i)) | 0;
  return `t${(h >>> 0).toString(36)}`;
}

function randomTab(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
}
