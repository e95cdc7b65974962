/**
 * `createClient`: one user's connection to a patchbay server. It owns the transport (token,
 * anonymous sign-in, refresh after 401), the retry session (a random id; every patch gets the next
 * `si`, so `(session, si)` names it across resends), and the live scopes it has opened.
 */
import type { Json } from '../../shared/json.js';
import { SCOPE_ID } from '../../shared/wire.js';
import type { ConnectionChange, ConnectionStatus } from './connection.js';
import { Emitter } from './emitter.js';
import { errorFrom, PatchbayClientError } from './errors.js';
import { type TokenProvider, Transport } from './http.js';
import { type MuxOptions, MuxStream } from './mux.js';
import { OfflineStore, type Restored, type SavedScope } from './offline.js';
import { type PresenceEntry, readPresence, watchPresence } from './presence.js';
import { type QueryParams, type QueryResult, runQuery, watchQuery } from './queries.js';
import { type ComposeLimits, type ConflictEvent, LiveScope, type Ordering } from './scope.js';
import { Session } from './sessions.js';
import type { ClientStorage } from './storage.js';
import type { StreamHandlers, StreamStatus } from './stream.js';
import { canShareTabs, type TabMode, TabShare } from './tabs.js';
import { downloadUrl, type UploadOptions, type UploadState, upload } from './uploads.js';

export interface ClientOptions {
  /** The server's base URL, e.g. `https://patchbay.example.com`. */
  url: string;
  /** A bearer token, or a function giving one (asked again after a 401). Without one: anonymous sign-in. */
  token?: string | TokenProvider;
  /** The domain to act in where no browser `Origin` says it (servers, scripts): `X-Patchbay-Domain`. */
  domain?: string;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
  /**
   * All scopes on one connection (`GET /v1/events`, client/src/mux.ts), with long polling when a
   * proxy buffers the stream: on by default; options tune it; `false` gives each scope its own stream.
   */
  multiplex?: boolean | MuxOptions;
  /**
   * Share the connection with the origin's other tabs (of the same user) where the browser has Web
   * Locks and BroadcastChannel (client/src/tabs.ts): on by default with `multiplex`; `false` keeps
   * one connection per tab.
   */
  shareTabs?: boolean;
  /**
   * Join a scope's patches waiting to be sent into one patch before sending them
   * (client/src/scope.ts, client/README.md "Composed"): one index, ack and log entry for many small
   * patches. By default the patches made in one synchronous run of code (one tick) are joined, as
   * the seed system merged a tick's mutations into one message (`{ join: 'tick' }`); `true` (or
   * `{ join: 'send' }`) joins all those waiting, also across ticks, as ShareDB composes ops;
   * `false`: every `patch()` call is its own entry in the scope's history.
   */
  compose?: boolean | ComposeLimits;
  /**
   * How patches are ordered against other writers' (client/README.md, Consistency model).
   * `predicted` (default): each patch carries the index it predicts and applies only to the state
   * its author saw; when another writer got there first it is rebased and resent. `head`: patches
   * carry no index and the server applies each to its head as it arrives, so writers on one hot
   * scope never refuse each other; a patch that does not apply there is a conflict. For patches
   * that mean the same on any state (appends with `-`, members by key, `test`-guarded changes).
   */
  ordering?: Ordering;
}

export interface OfflineOptions extends ClientOptions {
  /** Where pending patches, the retry session and scopes' last states are kept (./storage.ts). */
  storage: ClientStorage;
  /** Prefix of this client's keys in `storage` (default `patchbay:`): one per app and server sharing a store. */
  storageKey?: string;
}

export interface AccessOptions {
  visibility: 'private' | 'domain' | 'authenticated' | 'public';
  readers?: string[];
  writers?: string[];
}

export interface CreateOptions {
  state?: Json;
  id?: string;
  name?: string;
  type?: string;
  access?: AccessOptions;
}

/**
 * What `client.scope()` opens: a scope id (a bare string is always an id: `[A-Za-z0-9_.:-]{1,128}`),
 * `{ id }`, or `{ name }`: the scope of that name, `owner`'s (default: the caller's) in `domain`
 * (default: the caller's), which must exist (`GET /v1/names/{name}`); with `create`, the
 * caller's own, created from it when there is none (`PUT /v1/names/{name}`).
 */
export type ScopeRef = string | { id: string } | { name: string; owner?: string; domain?: string; create?: Omit<CreateOptions, 'id' | 'name'> | true };

export interface ClientEvents extends Record<string, unknown> {
  conflict: ConflictEvent & { scope: string };
  error: PatchbayClientError & { scope?: string };
  /** A scope's stream changed state (`connecting`, `online`, `reconnecting`, `closed`). */
  status: { scope: string; status: StreamStatus };
  /** How events arrive now (multiplexed client): `stream`, `polling` (a proxy buffers the stream), `shared` (relayed by another tab), `idle`. */
  transport: TabMode;
  /** The server answers again (a request was answered, or a stream opened) after `connecting`, `reconnecting` or `offline` (./connection.ts). */
  online: ConnectionChange;
  /** The connection was lost (no answer, a gateway error, a dropped stream) and the client is retrying. */
  reconnecting: ConnectionChange;
  /** A retry failed too, or the first attempt did: the server cannot be reached; retries go on and writes queue. */
  offline: ConnectionChange;
}

export class PatchbayClient extends Emitter<ClientEvents> {
  /** This client's retry session: sent with every patch beside its `si`. */
  readonly session: string;
  private si = 0;
  private readonly scopes = new Map<string, LiveScope>();
  private readonly transport: Transport;
  private readonly store: OfflineStore | undefined;
  /** Scopes' records found in storage at open, used when each is first opened. */
  private readonly saved: Map<string, SavedScope>;
  /** The shared connection (this tab's, or this origin's tabs'), unless each scope has its own stream. */
  private readonly mux: MuxStream | TabShare | undefined;
  /** `compose`'s caps for every scope this client opens, when it composes. */
  private readonly compose: ComposeLimits | undefined;
  private readonly ordering: Ordering;

  /** Use `createClient`, or `openClient` for a client with storage. */
  constructor(opts: ClientOptions, restored?: Restored & { store: OfflineStore }) {
    super();
    this.transport = new Transport(opts);
    const compose = opts.compose ?? {};
    this.compose = compose === false ? undefined : compose === true ? { join: 'send' } : { ...compose };
    if (opts.ordering !== undefined && opts.ordering !== 'predicted' && opts.ordering !== 'head') {
      throw new PatchbayClientError('invalid_request', `ordering is 'predicted' or 'head', not ${JSON.stringify(opts.ordering)}`);
    }
    this.ordering = opts.ordering ?? 'predicted';
    this.session = restored?.client?.session ?? randomId();
    // Past every si stored anywhere: a crash can leave a scope's record (holding a patch and its
    // si) written and the client record of the same write pass not yet.
    this.si = Math.max(restored?.client?.si ?? 0, ...[...(restored?.scopes.values() ?? [])].flatMap((s) => s.pending.map((p) => p.si)));
    this.store = restored?.store;
    this.saved = restored?.scopes ?? new Map();
    if (opts.multiplex !== false) {
      const muxOptions = opts.multiplex === true ? {} : opts.multiplex;
      this.mux = opts.shareTabs !== false && canShareTabs() ? new TabShare(this.transport, muxOptions) : new MuxStream(this.transport, muxOptions);
      this.mux.onMode = (mode: TabMode) => this.emit('transport', mode);
    }
    this.transport.conn.on('change', (c) => {
      if (c.status !== 'connecting') this.emit(c.status, c);
    });
    // In a browser: its network events (./connection.ts). Node has none.
    const g = globalThis as { addEventListener?: (type: string, f: () => void) => void; removeEventListener?: (type: string, f: () => void) => void };
    if (typeof g.addEventListener === 'function') {
      const conn = this.transport.conn;
      const online = () => conn.wake();
      const offline = () => conn.lost();
      g.addEventListener('online', online);
      g.addEventListener('offline', offline);
      this.unlisten = () => {
        g.removeEventListener?.('online', online);
        g.removeEventListener?.('offline', offline);
      };
    }
  }

  /** Stops listening to the browser's network events (set when there are any). */
  private readonly unlisten: (() => void) | undefined;

  /** The connection as a whole (./connection.ts): `connecting`, `online`, `reconnecting` or `offline`; each change but the first is an event of that name. */
  get status(): ConnectionStatus {
    return this.transport.conn.status;
  }

  /** How events arrive now: `stream`, `polling`, `shared` (relayed by another tab), or `idle` (no scope open, or each scope on its own stream). */
  get transportMode(): TabMode {
    if (this.mux instanceof TabShare) return this.mux.mode;
    return this.mux?.currentMode ?? 'idle';
  }

  /** Creates a scope (`POST /v1/scopes`) and opens it live, already `ready` with the created state. */
  async create(opts: CreateOptions = {}): Promise<LiveScope> {
    const body = await this.transport.json<{ id: string; ii: number; state: Json }>('POST', '/v1/scopes', opts);
    return this.open(body.id, { ii: body.ii, state: body.state });
  }

  /**
   * The caller's scope of this name in its domain, created from `opts` when there is none:
   * `scope({ name, create: opts })` (kept for existing callers).
   */
  named(name: string, opts: Omit<CreateOptions, 'id' | 'name'> = {}): Promise<LiveScope> {
    return this.scope({ name, create: opts });
  }

  /**
   * A live scope (one per id while open). By id (a bare string, or `{ id }`): returned at once,
   * its stream opens now; an id the server could not accept throws `invalid_request`. By name
   * (`{ name, owner?, domain? }`, or `{ name, create }`; see ScopeRef): a promise, resolved once
   * the name is (the scope then already `ready`), rejected with `scope_not_found` when no scope of
   * that name is readable (nothing stays open: a later call resolves afresh), or with `closed`
   * when the client was closed meanwhile (the resolved scope is not opened).
   *
   * @example
   * const doc = client.scope(id);
   * const prefs = await client.scope({ name: 'prefs', create: { state: { theme: 'dark' } } });
   */
  scope(ref: string | { id: string }): LiveScope;
  scope(ref: { name: string; owner?: string; domain?: string; create?: Omit<CreateOptions, 'id' | 'name'> | true }): Promise<LiveScope>;
  scope(ref: ScopeRef): LiveScope | Promise<LiveScope>;
  scope(ref: ScopeRef): LiveScope | Promise<LiveScope> {
    if (typeof ref !== 'string' && 'name' in ref) return this.byName(ref);
    const id = typeof ref === 'string' ? ref : ref.id;
    if (typeof id !== 'string' || !SCOPE_ID.test(id)) {
      // Refused here: sent on the shared stream, it would fail every scope of it.
      throw new PatchbayClientError('invalid_request', `not a scope id: ${JSON.stringify(id)} (open a scope by name with { name })`, 0, { id });
    }
    return this.open(id);
  }

  /** Bumped by close(): a name resolved after it is not opened. */
  private epoch = 0;

  private async byName(ref: { name: string; owner?: string; domain?: string; create?: Omit<CreateOptions, 'id' | 'name'> | true }): Promise<LiveScope> {
    const epoch = this.epoch;
    const path = `/v1/names/${encodeURIComponent(ref.name)}`;
    let body: { id: string; ii: number; state: Json };
    if (ref.create !== undefined) {
      if (ref.owner !== undefined || ref.domain !== undefined) {
        throw new PatchbayClientError('invalid_request', 'create makes the caller’s own scope in its domain: give no owner or domain with it', 0);
      }
      body = await this.transport.json('PUT', path, ref.create === true ? {} : ref.create);
    } else {
      const q = new URLSearchParams();
      if (ref.owner !== undefined) q.set('owner', ref.owner);
      if (ref.domain !== undefined) q.set('domain', ref.domain);
      body = await this.transport.json('GET', q.size > 0 ? `${path}?${q}` : path);
    }
    if (epoch !== this.epoch) throw new PatchbayClientError('closed', 'the client was closed while the name was resolved');
    return this.open(body.id, { ii: body.ii, state: body.state });
  }

  /** Resolves when every open scope's local patches are acknowledged. */
  async synced(): Promise<void> {
    await Promise.all([...this.scopes.values()].map((s) => s.synced()));
  }

  /** Closes every open scope (their streams; unacknowledged patches are given up). */
  close(): void {
    this.unlisten?.();
    this.epoch++;
    for (const s of [...this.scopes.values()]) s.close();
    this.closeWatches();
  }

  /** A call of the HTTP API with this client's credentials; resolves with the JSON answer, rejects with a PatchbayClientError. */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.transport.json<T>(method, path, body);
  }

  /** The token this client signed in with anonymously (kept in storage, so a restart is the same user). */
  anonymousToken: string | undefined;

  /** @internal A storage adapter failed: an `error` event (the write goes on; it is not stored). */
  storageFailed(err: PatchbayClientError): void {
    this.emit('error', err);
  }

  /** @internal Stores the client record (session, last si, anonymous token) with the next write. */
  remember(): void {
    this.store?.client(() => ({ session: this.session, si: this.si, token: this.anonymousToken }));
  }

  private open(id: string, fresh?: { ii: number; state: Json }): LiveScope {
    const existing = this.scopes.get(id);
    if (existing) return existing;
    // From storage: the last confirmed state and the patches still to send (fresh from the server: nothing was pending on it).
    const initial = fresh ?? this.saved.get(id);
    this.saved.delete(id);
    const scope = new LiveScope(
      id,
      {
        transport: this.transport,
        session: this.session,
        nextSi: () => {
          const si = ++this.si;
          this.remember();
          return si;
        },
        store: this.store,
        ...(this.compose ? { compose: this.compose } : {}),
        ...(this.ordering === 'head' ? { ordering: this.ordering } : {}),
        onClose: (s) => {
          if (this.scopes.get(s.id) === s) this.scopes.delete(s.id);
        },
        ...(this.mux ? { subscribe: (sid: string, handlers: StreamHandlers) => (this.mux as MuxStream | TabShare).subscribe(sid, handlers) } : {}),
      },
      initial,
    );
    scope.on('conflict', (e) => this.emit('conflict', { ...e, scope: id }));
    scope.on('error', (e) => this.emit('error', Object.assign(e, { scope: id })));
    scope.on('status', (status) => this.emit('status', { scope: id, status }));
    this.scopes.set(id, scope);
    return scope;
  }

  // Named queries, uploads, sessions and presence: thin calls of their endpoints (./queries.ts,
  // ./uploads.ts, ./sessions.ts, ./presence.ts). What `close()` also ends: live queries, presence
  // watches, and open sessions (closed on the server, not awaited: `await session.close()` first to wait).
  private readonly watches = new Set<() => void>();
  private readonly sessions = new Set<Session>();

  /** Runs a domain's named query (`$REQUESTER` and `$DOMAIN` are bound by the server). */
  query(domain: string, name: string, params?: QueryParams): Promise<QueryResult> {
    return runQuery(this.transport, domain, name, params);
  }

  /**
   * A live query: `callback` with its result at once and whenever a change gives a new one
   * (again after a reconnect), on the shared connection when multiplexed. A refusal, or a later run that fails, ends it and goes to `onError`
   * (default: the client's `error` event). Returns the function that ends it.
   */
  watchQuery(
    domain: string,
    name: string,
    params: QueryParams | undefined,
    callback: (result: QueryResult) => void,
    onError?: (err: PatchbayClientError) => void,
  ): () => void {
    return this.watching((stop) => watchQuery(this.transport, domain, name, params, callback, this.failed(stop, onError), this.mux));
  }

  /** Uploads a file through a signed URL; resolves when it is `ready` with the upload scope's id and state. */
  upload(data: Blob | ArrayBuffer | Uint8Array, opts?: UploadOptions): Promise<{ id: string; state: UploadState }> {
    return upload(this.transport, data, opts);
  }

  /** A signed URL to download an upload (short-lived unless the upload is public). */
  downloadUrl(id: string): Promise<string> {
    return downloadUrl(this.transport, id);
  }

  /** Opens a session (./sessions.ts), kept alive by heartbeats until it is closed, or the client is. */
  async openSession(): Promise<Session> {
    const opened = await this.transport.json<{ id: string; expires: number; timeoutMs: number }>('POST', '/v1/sessions');
    const s = new Session(this.transport, opened, (x) => this.sessions.delete(x));
    this.sessions.add(s);
    return s;
  }

  /** Who is present in a scope now (its readers only), oldest first. */
  presence(scope: string): Promise<PresenceEntry[]> {
    return readPresence(this.transport, scope);
  }

  /** Calls `callback` with a scope's presence whenever it changes (on the shared connection when multiplexed, else a stream of its own). Returns the function that stops it. */
  watchPresence(scope: string, callback: (present: PresenceEntry[]) => void, onError?: (err: PatchbayClientError) => void): () => void {
    return this.watching((stop) => watchPresence(this.transport, scope, callback, this.failed(stop, onError), this.mux));
  }

  private watching(start: (stop: () => void) => () => void): () => void {
    let end = () => {};
    const stop = () => {
      this.watches.delete(stop);
      end();
    };
    this.watches.add(stop);
    end = start(stop);
    return stop;
  }

  private failed(stop: () => void, onError?: (err: PatchbayClientError) => void) {
    return (err: PatchbayClientError) => {
      stop();
      if (onError) onError(err);
      else this.emit('error', err);
    };
  }

  private closeWatches(): void {
    for (const stop of [...this.watches]) stop();
    for (const s of [...this.sessions]) void s.close().catch(() => {});
  }
}

/** A client of `opts.url`. */
export function createClient(opts: ClientOptions): PatchbayClient {
  return new PatchbayClient(opts);
}

/**
 * A client whose writes survive a reload or a restart (./offline.ts): it reads `opts.storage`
 * first, keeps its retry session and `si` from there, and opens at once every scope with patches
 * still to send, which are resent with their original `(session, si)` (the server acknowledges one
 * it already committed as a duplicate). A scope opened later starts from its stored state, so it
 * is `ready` (and writable) without the network. Without `token`, the anonymous token it signs in
 * with is stored too.
 *
 * @example
 * const client = await openClient({ url, storage: indexedDbStorage() });
 */
export async function openClient(opts: OfflineOptions): Promise<PatchbayClient> {
  let client: PatchbayClient | undefined;
  const store = new OfflineStore(opts.storage, opts.storageKey ?? 'patchbay:', (err) =>
    client?.storageFailed(new PatchbayClientError('storage_error', `storage: ${err instanceof Error ? err.message : String(err)}`)),
  );
  const restored = await store.load();
  let stored = restored.client?.token;
  const token: string | TokenProvider | undefined =
    opts.token ??
    (async () => {
      if (stored !== undefined) {
        const t = stored;
        stored = undefined; // asked again (after a 401): it expired, sign in afresh
        return t;
      }
      const t = await signInAnonymously(opts);
      const c = client as PatchbayClient;
      c.anonymousToken = t;
      c.remember();
      await store.durable();
      return t;
    });
  client = new PatchbayClient({ ...opts, token }, { ...restored, store });
  client.anonymousToken = opts.token === undefined ? restored.client?.token : undefined;
  for (const [id, s] of restored.scopes) if (s.pending.length > 0) client.scope(id);
  return client;
}

async function signInAnonymously(opts: ClientOptions): Promise<string> {
  const f = opts.fetch ?? fetch;
  const headers: Record<string, string> = {};
  if (opts.domain !== undefined) {
    headers['x-patchbay-domain'] = opts.domain;
    headers['content-type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await f(`${opts.url.replace(/\/+$/, '')}/v1/auth/anonymous`, {
      method: 'POST',
      headers,
      body: opts.domain === undefined ? undefined : JSON.stringify({ domain: opts.domain }),
    });
  } catch (err) {
    throw new PatchbayClientError('network_error', `POST /v1/auth/anonymous: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!res.ok) throw await errorFrom(res);
  return ((await res.json()) as { token: string }).token;
}

/** 128 random bits, hex (crypto.getRandomValues exists in browsers, secure or not, and in Node 20). */
function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
