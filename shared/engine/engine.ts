/**
 * The engine: one facade over the write path, the read path, the outbox and live streams, all
 * written against the ports only. Each guarantee is stated where it is enforced:
 * - the commit decision (guarantees 1, 3, 7; the `CommitRules` seam): shared/engine/decide.ts
 * - queues, ledger transactions, acks and the work after a commit: shared/engine/commit.ts
 * - state at an index and the whole log (guarantees 2, 6): shared/engine/read.ts
 * - publishing and the outbox sweeper (guarantee 5): shared/engine/sweeper.ts
 * - live streams (guarantee 4): shared/engine/stream.ts
 * - the purge of deleted scopes and the end of their retention: shared/engine/deleter.ts
 * - who may read and write (the rules; writes are checked in the commit decision): shared/engine/access.ts
 * Here: creating a scope (its initial state and access held to the limits before anything is
 * written, guarantees 3 and 7), named scopes (create-or-resolve, rename: the ledger keeps names
 * unique per (domain, owner)), changing its access, deleting it, and the wiring.
 */
import { randomUUID } from 'node:crypto';
import { ColdStore } from '../cold/store.js';
import type { EngineConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { CheckedPatch } from '../patch.js';
import { type Adapters, type Head, type ListPage, type ListQuery, nameTaken } from '../ports/index.js';
import type {
  AccessRequest,
  CreateNamedRequest,
  CreateScopeRequest,
  Patch,
  PatchEvent,
  PatchRecord,
  PatchRequest,
  ScopeAccess,
  ScopeMeta,
} from '../protocol.js';
import { TAG_SCOPE_TYPE } from '../protocol.js';
import { accessOf, type Caller, checkOwner, NEW_SCOPE_ACCESS, normalizeAccess, notFound } from './access.js';
import { Writer } from './commit.js';
import { type Ack, type Chain, type CommitRules, checkState, DEFAULT_DOMAIN, DEFAULT_RULES, runRule } from './decide.js';
import { Deleter } from './deleter.js';
import { NearCache } from './near-cache.js';
import { type Logger, Reader } from './read.js';
import { openStream, type StreamOptions, type StreamSink } from './stream.js';
import { Outbox } from './sweeper.js';

export type { Ack, Chain, CommitRules, CreateContext, Pending } from './decide.js';
export type { StreamSink } from './stream.js';

/** The ports the engine runs on (not the control plane's records). */
export type EnginePorts = Pick<Adapters, 'ledger' | 'cache' | 'bus' | 'blobs' | 'leaders'>;

export interface ScopeView {
  id: string;
  ii: number;
  state: Json;
  meta: ScopeMeta;
}

export interface EngineOptions {
  /** Clock for commit times and the sweeper (ms since epoch). */
  now?: () => number;
  logError?: Logger;
  /** Told, after each commit, how much the state of a scope of `owner` grew (quotas). */
  onStored?: (owner: string, delta: number) => void;
  /** Per-request authorization and validation (default: owner-only writes from the scope's domain, no validation). */
  rules?: CommitRules;
  /** Told of every run of records handed to the bus, after it took them (embedded consumers: shared/engine/local-delivery.ts). */
  onPublished?: (events: PatchEvent[]) => void;
  /** More to delete when a deleted scope is purged (an upload's file); must be repeatable (shared/engine/deleter.ts). */
  onPurge?: (id: string) => Promise<void>;
  /**
   * Told after a scope changed without a patch, so without an event on the bus: created (with
   * its initial state), its access replaced, renamed. Not awaited, and not retried: what it
   * starts must not hold up the request (the mirror, shared/mirror/consumer.ts `touch`).
   */
  onChanged?: (id: string, domain: string) => void;
}

export class Engine {
  readonly config: EngineConfig;
  /** Bundles and snapshots of every scope (read side). */
  readonly cold: ColdStore;
  private readonly ports: EnginePorts;
  private readonly reader: Reader;
  private readonly writer: Writer;
  private readonly outbox: Outbox;
  private readonly near: NearCache;
  private readonly deleter: Deleter;
  private readonly now: () => number;
  private readonly logError: Logger;
  private readonly rules: CommitRules;
  private readonly changed: (id: string, domain: string) => void;

  constructor(ports: EnginePorts, config: EngineConfig, opts: EngineOptions = {}) {
    this.ports = ports;
    this.config = config;
    this.cold = new ColdStore(ports.blobs);
    this.now = opts.now ?? Date.now;
    this.logError = opts.logError ?? ((e) => console.error(JSON.stringify({ severity: 'ERROR', ...e })));
    const near = new NearCache(config.nearCacheBytes);
    this.near = near;
    this.deleter = new Deleter(ports.ledger, ports.cache, this.cold, config, this.logError, opts.onPurge);
    this.reader = new Reader(ports, this.cold, near, config, this.logError);
    this.outbox = new Outbox(ports, config, (id, from, to) => this.readLog(id, from, to), this.logError, opts.onPublished);
    this.rules = opts.rules ?? DEFAULT_RULES;
    this.changed = opts.onChanged ?? (() => {});
    this.writer = new Writer(ports, config, this.reader, near, this.outbox, this.rules, this.now, opts.onStored, this.logError);
  }

  /**
   * Creates a scope owned by `owner`, in `opts.domain` (default DEFAULT_DOMAIN). With a name,
   * `name_taken` when the owner has a scope of that name in that domain (Ledger.resolveName, which
   * also registers a name held by a scope stored before names were unique, so it is refused too).
   * Its state is held to the limits, then to the rules' `create` (a domain's schema for its type),
   * before anything is written (guarantee 3).
   */
  async createScope(owner: string, req: CreateScopeRequest, opts: { domain?: string } = {}): Promise<ScopeView> {
    const view = await this.newScope(owner, req, opts.domain ?? DEFAULT_DOMAIN);
    const { domain, name } = view.meta;
    if (name !== null && (await this.ports.ledger.resolveName(domain, owner, name)) !== null) throw nameTaken(domain, name);
    await this.ports.ledger.createScope({ id: view.id, meta: view.meta, initial: view.state });
    this.changed(view.id, view.meta.domain);
    return view;
  }

  /** A new scope as `req` asks for it, held to the limits and the rules' `create` (nothing is written yet: guarantees 3 and 7). */
  private async newScope(owner: string, req: CreateScopeRequest, domain: string): Promise<ScopeView> {
    const state: Json = req.state === undefined ? {} : req.state;
    const size = checkState(state, this.config);
    const access: ScopeAccess = req.access ? { ...normalizeAccess(req.access, owner, this.config), rev: 0 } : { ...NEW_SCOPE_ACCESS };
    const now = this.now();
    const meta: ScopeMeta = { owner, domain, name: req.name ?? null, type: req.type ?? null, created: now, updated: now, size, access };
    const id = req.id ?? randomUUID();
    await this.rules.prepare?.(domain);
    const { create } = this.rules;
    if (create) runRule(() => create.call(this.rules, { id, meta, state }));
    return { id, ii: 0, state, meta };
  }

  /** The id of `owner`'s scope named `name` in `domain`, or null (Ledger.resolveName). Checks no access: the caller does. */
  resolveName(domain: string, owner: string, name: string): Promise<string | null> {
    return this.ports.ledger.resolveName(domain, owner, name);
  }

  /**
   * Create-or-resolve: `owner`'s scope named `name` in `opts.domain` as it is at head (`created:
   * false`), or, when there is none, a new scope with that name made from `req` (`created: true`).
   * `req` is held to the limits first either way, so bad input is refused whether or not the name
   * exists. `opts.beforeCreate` runs once, only when a scope is about to be created (the route's
   * create rate and quotas). Of concurrent calls for one name exactly one creates, and the others
   * resolve to its id: a create that loses the race (`name_taken`) resolves again. `opts.id`:
   * the id a created scope gets (default: a random UUID).
   */
  async createOrResolve(
    owner: string,
    name: string,
    req: CreateNamedRequest,
    opts: { domain?: string; beforeCreate?: () => Promise<void>; id?: string } = {},
  ): Promise<{ view: ScopeView; created: boolean }> {
    const domain = opts.domain ?? DEFAULT_DOMAIN;
    const fresh = await this.newScope(owner, { ...req, name, id: opts.id }, domain);
    let checked = false;
    for (let attempt = 0; attempt < 10; attempt++) {
      const held = await this.ports.ledger.resolveName(domain, owner, name);
      if (held !== null) return { view: await this.getScope(held), created: false };
      if (!checked) await opts.beforeCreate?.();
      checked = true;
      try {
        await this.ports.ledger.createScope({ id: fresh.id, meta: fresh.meta, initial: fresh.state });
        this.changed(fresh.id, fresh.meta.domain);
        return { view: fresh, created: true };
      } catch (err) {
        // Another request took the name first: resolve again. (A renamed-away winner frees it again: try again.)
        if (!(err instanceof PatchbayError && err.code === 'name_taken')) throw err;
      }
    }
    throw new PatchbayError('unavailable', `the name ${JSON.stringify(name)} keeps changing; retry`);
  }

  /**
   * Renames the scope (null: unnamed, freeing its name) for its owner: `scope_not_found` for a
   * caller who may not read it, `forbidden` for any other non-owner, `name_taken` when the owner
   * has another scope of that name in the scope's domain; each changes nothing (Ledger.rename).
   */
  async rename(id: string, caller: Caller, name: string | null): Promise<ScopeMeta> {
    const { meta } = await this.head(id);
    checkOwner(id, meta, caller, 'rename it');
    // A tag's name is what makes it one per (tagger, target, tag type): shared/domains/tags.ts.
    if (meta.type === TAG_SCOPE_TYPE) throw new PatchbayError('forbidden', 'a tag is not renamed', { id });
    if (name !== null && meta.name !== name) {
      const held = await this.ports.ledger.resolveName(meta.domain, meta.owner, name); // registers a name from before names were unique
      if (held !== null && held !== id) throw nameTaken(meta.domain, name);
    }
    await this.ports.ledger.rename(id, name);
    this.changed(id, meta.domain);
    return { ...meta, name };
  }

  head(id: string): Promise<Head> {
    return this.reader.head(id);
  }

  /**
   * Replaces the scope's access with `req` (the whole object) for its owner: `scope_not_found`
   * for a caller who may not read the scope, `forbidden` for any other non-owner, `too_large`
   * past PATCHBAY_MAX_ACCESS_USERS, each changing nothing. Idempotent: the access it already has
   * writes nothing. Once changed, the scope's streams are signalled (on every instance), and each
   * ends if its reader lost access (shared/engine/stream.ts); writes are checked against the new
   * access from the moment it is stored (Ledger.setAccess).
   */
  async setAccess(id: string, caller: Caller, req: AccessRequest): Promise<ScopeAccess> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const { meta } = await this.head(id);
      checkOwner(id, meta, caller);
      const next = normalizeAccess(req, meta.owner, this.config);
      const current = accessOf(meta);
      if (meta.access && sameAccess(current, next)) return current;
      const stored = await this.ports.ledger.setAccess(id, next, current.rev);
      if (!stored) continue; // changed meanwhile (another request of the owner): decide again
      this.changed(id, meta.domain);
      await this.ports.bus.signal({ scope: id, kind: 'access' }).catch((err: unknown) =>
        // Committed all the same: streams of this scope end at their length at the latest, and reconnects are checked.
        this.logError({ message: 'access signal failed', scope: id, err: String(err) }),
      );
      return stored;
    }
    throw new PatchbayError('unavailable', `the access of ${id} keeps changing; retry`);
  }

  /**
   * Deletes the scope, for its owner: `scope_not_found` for a caller who may not read it (and for
   * a scope deleted already), `forbidden` for any other non-owner, each changing nothing. Writes
   * the tombstone first (Ledger.deleteScope: from then on the scope is gone for every read and
   * write, and its id stays reserved for PATCHBAY_DELETE_RETENTION_MS), then forgets it in the
   * caches, signals its streams on every instance to end (shared/engine/stream.ts), and purges
   * what it stored, best effort: a purge cut short (a crash, a backend error) is finished by the
   * next `sweepDeleted`. Returns the meta it had (its owner and size: the quotas give them back).
   */
  async deleteScope(id: string, caller: Caller): Promise<ScopeMeta> {
    const { meta } = await this.head(id);
    checkOwner(id, meta, caller, 'delete it');
    const head = await this.ports.ledger.deleteScope(id, this.now());
    if (!head) throw notFound(id); // deleted meanwhile (the owner's other request)
    this.near.delete(id);
    const log = (message: string) => (err: unknown) => this.logError({ message, scope: id, err: String(err) });
    // A cache entry is only a shortcut and the scope is unreadable now; dropped all the same (and again when the id is freed).
    await this.ports.cache.delete(id).catch(log('cache delete after scope delete failed'));
    // The scope's streams end at their length at the latest, and reconnects are refused.
    await this.ports.bus.signal({ scope: id, kind: 'deleted' }).catch(log('delete signal failed'));
    await this.deleter.purge(id, { maxChunks: 25 }).catch(log('purge after delete failed; the sweeper finishes it'));
    return head.meta;
  }

  /**
   * The deleted scopes' sweeper (shared/engine/deleter.ts): finishes unfinished purges and frees
   * the ids whose retention is over. Returns how many tombstones it worked on.
   */
  sweepDeleted(now = this.now()): Promise<number> {
    return this.deleter.sweep(now);
  }

  /** A page of the scopes `caller` owns or is listed in (Ledger.listFor); the route shows each as `metaFor` the caller. */
  listScopes(caller: Caller, query: ListQuery): Promise<ListPage> {
    return this.ports.ledger.listFor(caller.id, query);
  }

  /** The scope at its current head. */
  async getScope(id: string): Promise<ScopeView> {
    const head = await this.head(id);
    const state = await this.stateAt(id, head.ii, { trimmed: head.trimmed });
    return { id, ii: head.ii, state, meta: head.meta };
  }

  /**
   * Queues a patch for the scope from `user`, acting in `opts.domain` (default DEFAULT_DOMAIN),
   * and resolves with its ack once it is committed (and, with PATCHBAY_ACK_AFTER=publish,
   * published). Requests to one scope are committed in groups, in arrival order; the cache put and
   * the publish follow the commit (shared/engine/commit.ts). `opts.checked`: what `check` answered
   * for this patch, if called (it is then not checked again). `opts.chain`: the batch sequence
   * it belongs to (POST /v1/batch; shared/engine/decide.ts `Chain`).
   */
  submit(id: string, user: string, req: PatchRequest, opts: { domain?: string; checked?: CheckedPatch; chain?: Chain } = {}): Promise<Ack> {
    return this.writer.submit(id, user, req, opts.domain ?? DEFAULT_DOMAIN, opts.checked, opts.chain);
  }

  /**
   * Checks a patch against the limits (413 `too_large`, 400 for a forbidden segment) and returns
   * it with its JSON size: for a caller that must refuse an oversize patch before spending on it
   * (rate tokens), and then passes the answer to `submit`, which does not check again.
   */
  check(patch: Patch): CheckedPatch {
    return this.writer.check(patch);
  }

  /** The state at exactly `ii` (not past head); must not be mutated (shared/engine/read.ts). */
  stateAt(id: string, ii: number, opts: { cache?: boolean; trimmed?: number } = {}): Promise<Json> {
    return this.reader.stateAt(id, ii, opts);
  }

  /**
   * Records from..to (inclusive) in order, from cold storage and the hot log, page by page.
   * `trimmed`: the head's, when the caller has read it (see LogReadOptions.trimmed).
   */
  readLog(id: string, from: number, to: number, trimmed?: number): AsyncGenerator<PatchRecord> {
    return this.reader.readLog(id, from, to, trimmed);
  }

  /** History from..to, clamped to 1..head. */
  history(id: string, from: number, to: number | undefined): Promise<AsyncGenerator<PatchRecord>> {
    return this.reader.history(id, from, to);
  }

  /** The outbox sweeper: republishes committed patches that were never marked published. */
  sweep(now = this.now()): Promise<number> {
    return this.outbox.sweep(now);
  }

  /**
   * Streams a scope: without `since`, a `state` at head then every later patch; with `since`,
   * every patch after it. Resolves once subscribed and caught up; the returned function stops it.
   */
  /**
   * Sends `data` to the multiplexed stream listening on `key` (`mux/<id>`), on whichever instance
   * serves it: a bus `control` signal, best-effort (shared/ports/bus.ts).
   */
  control(key: string, data: string): Promise<void> {
    return this.ports.bus.signal({ scope: key, kind: 'control', data });
  }

  /** Calls `onData` with each control message sent to `key` after this call; returns the unsubscribe. */
  onControl(key: string, onData: (data: string) => void): Promise<() => Promise<void>> {
    return this.ports.bus.subscribe(
      key,
      () => {},
      (s) => {
        if (s.kind === 'control' && s.data !== undefined) onData(s.data);
      },
    );
  }

  openStream(id: string, since: number | undefined, sink: StreamSink, opts: StreamOptions = {}): Promise<() => Promise<void>> {
    return openStream(
      {
        bus: this.ports.bus,
        head: (i) => this.head(i),
        stateAt: (i, ii, trimmed) => this.stateAt(i, ii, { trimmed }),
        readLog: (i, f, t, trimmed) => this.readLog(i, f, t, trimmed),
        logError: this.logError,
      },
      id,
      since,
      sink,
      opts,
    );
  }

  /**
   * Resolves once every patch acknowledged so far has been put in the cache and handed to the bus
   * (or left to the sweeper, when the bus failed).
   */
  async settled(): Promise<void> {
    await this.writer.settled();
  }

  async close(): Promise<void> {
    await this.writer.close();
    await this.outbox.flush();
  }
}

function sameAccess(a: Omit<ScopeAccess, 'rev'>, b: Omit<ScopeAccess, 'rev'>): boolean {
  const same = (x: string[], y: string[]) => x.length === y.length && x.every((u, i) => u === y[i]);
  return a.visibility === b.visibility && same(a.readers, b.readers) && same(a.writers, b.writers);
}
