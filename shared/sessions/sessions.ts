/**
 * Sessions (issue 15, items 7 and 8): a client's connection as the server knows it. A session is
 * opened (`open`), kept alive by heartbeats or an SSE stream naming it (`keepAlive`), and closed
 * explicitly (`close`, with a reason and info) or by the sweep once it has been silent for
 * PATCHBAY_SESSION_TIMEOUT_MS (reason `timeout`). docs/uploads-and-sessions.md is the reference.
 *
 * Records (the RecordStore, every change a compare-and-set): kind `session`, key the id, the
 * session with its guarantees and the scopes it is present in; kind `session-user`, key
 * `<user>/<id>`, one per session not yet closed, which counts a user's open sessions
 * (PATCHBAY_SESSION_MAX_PER_USER); kind `session-due`, key `<ms, 15 digits>/<id>`: when the sweep
 * should look at the session next (open: its expiry as of the last look; closing: its close lease;
 * closed: when its record is to be deleted).
 *
 * Close exactly once: open → closing is one compare-and-set, so of a racing close, heartbeat and
 * sweep exactly one closes, and only that one runs the close work, holding a lease on it
 * (`lease`, CLOSE_LEASE_MS). The work, in order: the guarantees, the presence leaves, the close
 * hooks; recorded as it goes in the same record: each guarantee run (`ran`), each close hook
 * delivered (`hooksDone`). If the closer dies after the
 * compare-and-set, or a hook fails, the record stays `closing` and a later sweep (on any
 * instance: Cloud Scheduler's `sweep` on Google, the timer embedded) takes the lapsed lease and
 * finishes the rest; then closing → closed. So:
 * - a guarantee runs once: it is submitted as the owner with a retry key (session `g.<gid>`, si 1),
 *   so a re-run after a crash between the commit and its record is a duplicate, not a second patch;
 * - a close hook is delivered at least once, with the same `webhook-id` (`session:<id>`) each
 *   time, so a receiver that drops duplicates by it sees it once; a hook that keeps failing is
 *   given up after PATCHBAY_WEBHOOK_MAX_ATTEMPTS (its error stays on the record).
 * Closed records are kept PATCHBAY_SESSION_CLOSED_KEEP_MS (a late heartbeat learns `session_closed`), then deleted;
 * on Firestore they also expire a day later, a backstop should no sweep get to them (PutOptions).
 *
 * Cost: the sweep reads only the due entries up to now, in time order, and each one's session:
 * an open session is looked at about once per PATCHBAY_SESSION_TIMEOUT_MS however often the
 * sweep runs, and a heartbeat writes only the session record (the sweep moves a due entry the
 * heartbeats made stale). Opening writes one due entry; each step of a close writes the next.
 * A full pass gives every record its due entry every INDEX_PASS_MS (6 h; a marker record says
 * when it last ran): records from before the index existed, and sessions an older revision opened
 * during a deploy.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { SessionsConfig, WebhooksConfig } from '../config.js';
import type { Engine } from '../engine/engine.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import { RECORD_TTL_GRACE_MS, type RecordStore, type StoredRecord } from '../ports/records.js';
import type { PatchRequest } from '../protocol.js';

type Patch = PatchRequest['patch'];

import type { CloseHooks } from './close-hooks.js';
import type { Presence } from './presence.js';

/** A session id: `sess_` and 32 hex digits. Only a write whose `session` has this form is tied to a session (see `checkWriter`). */
export const SESSION_ID = /^sess_[0-9a-f]{32}$/;
export const isSessionId = (s: string | undefined): s is string => s !== undefined && SESSION_ID.test(s);
/** How long a closer holds the close work before a sweep may take it over. */
export const CLOSE_LEASE_MS = 30_000;
/** A reason is a short word: it travels to the close hooks (the info's cap is PATCHBAY_SESSION_MAX_INFO_BYTES). */
export const MAX_REASON = 128;

export const SESSION_KIND = 'session';
const KIND = SESSION_KIND;
const BY_USER = 'session-user';
/** When to look at a session next: key `dueKey(at, id)`, ordered by time. */
export const SESSION_DUE_KIND = 'session-due';
const DUE = SESSION_DUE_KIND;
/** When the last pass that gave every session record its due entry ran (`indexAll`). */
const INDEXED = { kind: 'session-due-indexed', key: 'v1' } as const;
/** How often that pass runs: the longest a session opened without a due entry (by an older revision, during a deploy) goes unswept. */
export const INDEX_PASS_MS = 6 * 3_600_000;
const dueKey = (at: number, id: string): string => `${String(Math.max(0, Math.floor(at))).padStart(15, '0')}/${id}`;

export interface Guarantee {
  id: string;
  scope: string;
  patch: Patch;
  at: number;
}

export interface GuaranteeResult {
  id: string;
  scope: string;
  ok: boolean;
  ii?: number;
  error?: string;
}

export interface SessionValue {
  user: string;
  domain: string;
  opened: number;
  expires: number;
  state: 'open' | 'closing' | 'closed';
  reason: string | null;
  info: Json;
  closed: number | null;
  guarantees: Guarantee[];
  present: string[];
  lease: number;
  ran: GuaranteeResult[];
  hooksDone: string[];
  hookAttempts: number;
  hookError: string | null;
}

/** What the session's owner sees. */
export function sessionView(id: string, v: SessionValue) {
  return {
    id,
    state: v.state,
    opened: v.opened,
    expires: v.expires,
    closed: v.closed,
    reason: v.reason,
    guarantees: v.guarantees.map((g) => ({ id: g.id, scope: g.scope, patch: g.patch, at: g.at })),
    present: v.present,
    ...(v.state === 'open' ? {} : { ran: v.ran, hooksPending: v.state === 'closing', hookError: v.hookError }),
  };
}

type Sink = (e: Record<string, unknown>) => void;

export class Sessions {
  /** Sessions this instance saw open lately, by id: their user (the write check's short cache). */
  private readonly openCache = new LRUCache<string, { user: string; until: number }>({ max: 10_000 });

  constructor(
    private readonly records: RecordStore,
    private readonly engine: Engine,
    readonly presence: Presence,
    private readonly hooks: CloseHooks,
    private readonly config: SessionsConfig & Pick<WebhooksConfig, 'webhookMaxAttempts'>,
    private readonly logError: Sink,
    private readonly now: () => number = Date.now,
  ) {}

  /** PATCHBAY_SESSION_TIMEOUT_MS. */
  get timeoutMs(): number {
    return this.config.sessionTimeoutMs;
  }

  /** PATCHBAY_SESSION_MAX_INFO_BYTES. */
  get maxInfoBytes(): number {
    return this.config.sessionMaxInfoBytes;
  }

  /** PATCHBAY_PRESENCE_MAX_STATUS_BYTES. */
  get maxStatusBytes(): number {
    return this.config.presenceMaxStatusBytes;
  }

  /** Opens a session for `user` in `domain`: `quota_exceeded` past PATCHBAY_SESSION_MAX_PER_USER. */
  async open(user: string, domain: string): Promise<{ id: string; expires: number }> {
    const held = await this.openOf(user);
    if (held >= this.config.sessionMaxPerUser) {
      throw new PatchbayError('quota_exceeded', `a user may hold at most ${this.config.sessionMaxPerUser} open sessions`, {
        quota: 'sessions',
        max: this.config.sessionMaxPerUser,
        actual: held,
      });
    }
    const id = `sess_${randomBytes(16).toString('hex')}`;
    const now = this.now();
    const value: SessionValue = {
      user,
      domain,
      opened: now,
      expires: now + this.config.sessionTimeoutMs,
      state: 'open',
      reason: null,
      info: null,
      closed: null,
      guarantees: [],
      present: [],
      lease: 0,
      ran: [],
      hooksDone: [],
      hookAttempts: 0,
      hookError: null,
    };
    // The indexes first: a crash in between leaves entries without a session, which `openOf` and the sweep drop.
    await this.records.put(BY_USER, `${user}/${id}`, { opened: now }, 0);
    await this.records.put(DUE, dueKey(value.expires, id), {}, 0);
    await this.records.put(KIND, id, value as unknown as Json, 0);
    return { id, expires: value.expires };
  }

  /** The caller's session (`session_not_found` for a missing one or another user's). */
  async get(id: string, user: string): Promise<SessionValue> {
    return (await this.owned(id, user)).value as unknown as SessionValue;
  }

  /** Extends the caller's open session by PATCHBAY_SESSION_TIMEOUT_MS (and its presence with it); `session_closed` once closed or expired. */
  async heartbeat(id: string, user: string): Promise<{ id: string; expires: number }> {
    await this.owned(id, user);
    const v = await this.update(id, (s) => {
      this.checkOpen(id, s);
      return { ...s, expires: this.now() + this.config.sessionTimeoutMs };
    });
    this.openCache.set(id, { user, until: this.now() + this.cacheMs() });
    if (v.present.length > 0) await this.presence.touch(v.present, id, v.expires);
    return { id, expires: v.expires };
  }

  /**
   * The caller's open session, for a request that acts in it (presence, an SSE stream naming it):
   * `session_not_found`, or `session_closed` when it is closed or has expired.
   */
  async requireOpen(id: string, user: string): Promise<SessionValue> {
    const value = (await this.owned(id, user)).value as unknown as SessionValue;
    this.checkOpen(id, value);
    return value;
  }

  /**
   * A write naming `session`: when it has the session id form, it must be the writer's open
   * session (`session_not_found` / `session_closed`); any other string is a plain retry key, as
   * before sessions existed. A session seen open lately on this instance is not read again.
   */
  async checkWriter(session: string | undefined, user: string): Promise<void> {
    if (!isSessionId(session)) return;
    const hit = this.openCache.get(session);
    if (hit && hit.user === user && hit.until > this.now()) return;
    await this.requireOpen(session, user);
    this.openCache.set(session, { user, until: this.now() + this.cacheMs() });
  }

  /** Adds a guarantee to the caller's open session: `too_large` past PATCHBAY_SESSION_MAX_GUARANTEES. */
  async addGuarantee(id: string, user: string, scope: string, patch: Patch): Promise<Guarantee> {
    await this.owned(id, user);
    const g: Guarantee = { id: `g_${randomBytes(8).toString('hex')}`, scope, patch, at: this.now() };
    await this.update(id, (s) => {
      this.checkOpen(id, s);
      if (s.guarantees.length >= this.config.sessionMaxGuarantees) {
        throw new PatchbayError('too_large', `a session may hold at most ${this.config.sessionMaxGuarantees} guarantees`, {
          limit: 'sessionMaxGuarantees',
          max: this.config.sessionMaxGuarantees,
        });
      }
      return { ...s, guarantees: [...s.guarantees, g] };
    });
    return g;
  }

  /** Cancels a guarantee of the caller's open session: `not_found` for an id it does not hold. */
  async cancelGuarantee(id: string, user: string, gid: string): Promise<void> {
    await this.owned(id, user);
    await this.update(id, (s) => {
      this.checkOpen(id, s);
      if (!s.guarantees.some((g) => g.id === gid)) throw new PatchbayError('not_found', `session ${id} has no guarantee ${gid}`);
      return { ...s, guarantees: s.guarantees.filter((g) => g.id !== gid) };
    });
  }

  /** Adds a scope to the scopes the session is present in (before its presence entry is written): `too_large` past PATCHBAY_PRESENCE_MAX_SCOPES. */
  async markPresent(id: string, user: string, scope: string): Promise<SessionValue> {
    const v = await this.requireOpen(id, user);
    if (v.present.includes(scope)) return v;
    return this.update(id, (s) => {
      this.checkOpen(id, s);
      if (s.present.includes(scope)) return s;
      if (s.present.length >= this.config.presenceMaxScopes) {
        throw new PatchbayError('too_large', `a session may be present in at most ${this.config.presenceMaxScopes} scopes`, {
          limit: 'presenceMaxScopes',
          max: this.config.presenceMaxScopes,
        });
      }
      return { ...s, present: [...s.present, scope] };
    });
  }

  /**
   * Closes the caller's open session (`session_closed` if it is not open) and runs its close work
   * (guarantees, close hooks, presence leaves). Answers the session as it is after that work: `closed`,
   * or `closing` while a close hook is still failing (the sweep retries it).
   */
  async close(id: string, user: string, reason: string, info: Json): Promise<SessionValue> {
    await this.owned(id, user);
    const now = this.now();
    const closing = await this.update(id, (s) => {
      if (s.state !== 'open') throw new PatchbayError('session_closed', `session ${id} is ${s.state}`, { state: s.state });
      return { ...s, state: 'closing', reason, info, closed: now, lease: now + CLOSE_LEASE_MS };
    });
    this.openCache.delete(id);
    return this.finish(id, closing);
  }

  /**
   * Closes the sessions that expired (reason `timeout`), finishes the close work of those whose
   * closer's lease lapsed, and deletes the records of sessions closed long ago. Reads the due
   * entries up to now (and, every INDEX_PASS_MS, every record: `indexAll`). Answers counts.
   */
  async sweep(): Promise<{ timedOut: number; finished: number; purged: number }> {
    const out = { timedOut: 0, finished: 0, purged: 0 };
    await this.indexAll();
    const now = this.now();
    let after: string | undefined;
    for (;;) {
      const page = await this.records.list(DUE, { limit: 200, ...(after ? { after } : {}) });
      for (const e of page) {
        if (Number(e.key.slice(0, 15)) > now) return out; // in time order: the rest is not due
        try {
          await this.sweepDue(e, out);
        } catch (err) {
          this.logError({ message: 'session sweep failed', session: e.key.slice(16), err: String(err) }); // the entry stays: the next sweep retries
        }
      }
      if (page.length < 200) return out;
      after = (page[page.length - 1] as StoredRecord).key;
    }
  }

  /**
   * The pass over every session record that gives each its due entry (create-only: one already
   * there is kept), when none ran in the last INDEX_PASS_MS (a marker record says when one did):
   * it indexes the records written before the due index existed, and those an instance of an
   * older revision opened without one during a deploy, within INDEX_PASS_MS. It sweeps nothing
   * itself (the due entries it writes are swept next), and a record it fails on is logged and
   * left for the next pass.
   */
  private async indexAll(): Promise<void> {
    const marker = await this.records.get(INDEXED.kind, INDEXED.key);
    if (marker && (marker.value as { at: number }).at + INDEX_PASS_MS > this.now()) return;
    const started = this.now();
    let after: string | undefined;
    for (;;) {
      const page = await this.records.list(KIND, { limit: 200, ...(after ? { after } : {}) });
      for (const r of page) {
        await this.schedule(r.key, r.value as unknown as SessionValue).catch((err: unknown) =>
          this.logError({ message: 'session indexing failed', session: r.key, err: String(err) }),
        );
      }
      if (page.length < 200) break;
      after = (page[page.length - 1] as StoredRecord).key;
    }
    await this.records.put(INDEXED.kind, INDEXED.key, { at: started }, marker?.rev ?? 0); // lost to a racing pass: theirs counts
  }

  /** One due entry: its session swept, the entry moved to when the session is due next (or dropped with it). */
  private async sweepDue(e: StoredRecord, out: { timedOut: number; finished: number; purged: number }): Promise<void> {
    const id = e.key.slice(16);
    const r = await this.records.get(KIND, id);
    if (r) await this.sweepOne(r, out);
    const next = r ? await this.schedule(id) : null;
    if (next !== e.key) await this.records.delete(DUE, e.key, e.rev);
  }

  /** Writes the due entry of session `id` as it is now (create-only: one already there is kept); its key, or null when the record is gone. */
  private async schedule(id: string, value?: SessionValue): Promise<string | null> {
    const v = value ?? ((await this.records.get(KIND, id))?.value as unknown as SessionValue | undefined);
    if (!v) return null;
    const at = v.state === 'open' ? v.expires : v.state === 'closing' ? v.lease : (v.closed ?? this.now()) + this.config.sessionClosedKeepMs;
    const key = dueKey(at, id);
    await this.records.put(DUE, key, {}, 0);
    return key;
  }

  private async sweepOne(r: StoredRecord, out: { timedOut: number; finished: number; purged: number }): Promise<void> {
    const s = r.value as unknown as SessionValue;
    const now = this.now();
    if (s.state === 'closed') {
      if ((s.closed ?? 0) + this.config.sessionClosedKeepMs < now && (await this.records.delete(KIND, r.key, r.rev))) out.purged++;
      return;
    }
    if (s.state === 'open' && s.expires > now) return;
    if (s.state === 'closing' && s.lease > now) return; // its closer is still at it
    // Take the close (open → closing) or the lapsed lease, by compare-and-set: one sweeper wins.
    const next: SessionValue =
      s.state === 'open'
        ? { ...s, state: 'closing', reason: 'timeout', info: null, closed: s.expires, lease: now + CLOSE_LEASE_MS }
        : { ...s, lease: now + CLOSE_LEASE_MS };
    const taken = await this.records.put(KIND, r.key, next as unknown as Json, r.rev);
    if (!taken) return;
    if (s.state === 'open') out.timedOut++;
    this.openCache.delete(r.key);
    const done = await this.finish(r.key, next);
    if (done.state === 'closed') out.finished++;
  }

  /** The close work, by the holder of the close lease: guarantees, close hooks, presence leaves, then `closed`. */
  private async finish(id: string, s: SessionValue): Promise<SessionValue> {
    let v = s;
    // 1. Guarantees, in order, each recorded as run once it ran (or failed for good).
    for (const g of v.guarantees) {
      if (v.ran.some((r) => r.id === g.id)) continue;
      const result = await this.runGuarantee(v, g);
      if (result === null) return v; // a backend failed: a later sweep goes on from here
      v = await this.update(id, (cur) => ({ ...cur, ran: [...cur.ran.filter((r) => r.id !== g.id), result] }));
    }
    // 2. Presence leaves (before the hooks, which may take retries: a closed session is not shown as watching meanwhile; a repeat is harmless).
    await this.presence.leave(v.present, id).catch((err: unknown) => this.logError({ message: 'presence leave failed', session: id, err: String(err) }));
    // 3. Close hooks: each delivered one recorded; failures retried by the sweep (after the lease), up to the attempts limit.
    const closed = {
      session: id,
      user: v.user,
      domain: v.domain,
      reason: v.reason ?? 'closed',
      opened: v.opened,
      closed: v.closed ?? this.now(),
      info: v.info,
    };
    const sent = await this.hooks.deliver(closed, v.hooksDone).catch((err: unknown) => ({ delivered: [], pending: ['?'], error: String(err) }));
    const attempts = v.hookAttempts + (sent.pending.length > 0 ? 1 : 0);
    const giveUp = sent.pending.length > 0 && attempts >= this.config.webhookMaxAttempts;
    if (sent.pending.length > 0 && !giveUp) {
      // Retried by a sweep once this lapses: the lease is shortened to a backoff that doubles per attempt (1 s .. 60 s);
      // its due entry is written with it (`update`), so the sweep looks then (test/contract/sessions.ts waits the first 1 s).
      const retryAt = this.now() + Math.min(60_000, 1000 * 2 ** (attempts - 1));
      return this.update(id, (cur) => ({
        ...cur,
        hooksDone: [...cur.hooksDone, ...sent.delivered],
        hookAttempts: attempts,
        hookError: sent.error,
        lease: retryAt,
      }));
    }
    // 4. Closed.
    const done = await this.update(id, (cur) => ({
      ...cur,
      state: 'closed',
      hooksDone: [...cur.hooksDone, ...sent.delivered],
      hookAttempts: attempts,
      hookError: giveUp ? `given up after ${attempts} attempts: ${sent.error}` : cur.hookError,
      lease: 0,
    }));
    await this.dropIndex(v.user, id);
    return done;
  }

  /** Runs one guarantee as the session's owner; its result, or null when a backend failed (retried later). */
  private async runGuarantee(s: SessionValue, g: Guarantee): Promise<GuaranteeResult | null> {
    try {
      const ack = await this.engine.submit(g.scope, s.user, { patch: g.patch, session: `g.${g.id}`, si: 1 }, { domain: s.domain });
      return { id: g.id, scope: g.scope, ok: true, ii: ack.ii };
    } catch (err) {
      if (err instanceof PatchbayError && err.code !== 'unavailable' && err.code !== 'internal') {
        // Refused for good (the scope is gone, the owner lost write access, the patch no longer applies): recorded, not retried.
        return { id: g.id, scope: g.scope, ok: false, error: `${err.code}: ${err.message}` };
      }
      this.logError({ message: 'guarantee failed; retried by the sweep', scope: g.scope, err: String(err) });
      return null;
    }
  }

  private async dropIndex(user: string, id: string): Promise<void> {
    const key = `${user}/${id}`;
    const r = await this.records.get(BY_USER, key);
    if (r) await this.records.delete(BY_USER, key, r.rev);
  }

  /** How many sessions the user holds open (dropping index entries of sessions that are closed or gone). */
  private async openOf(user: string): Promise<number> {
    const keys = await this.records.list(BY_USER, { prefix: `${user}/`, limit: this.config.sessionMaxPerUser + 50 });
    let n = 0;
    for (const k of keys) {
      const id = k.key.slice(user.length + 1);
      const r = await this.records.get(KIND, id);
      const v = r?.value as unknown as SessionValue | undefined;
      if (v && v.state !== 'closed') {
        if (v.state === 'open' && v.expires > this.now()) n++;
      } else if (!v && (k.value as { opened: number }).opened + 60_000 < this.now()) {
        await this.records.delete(BY_USER, k.key, k.rev); // a crash between the index and the session
      } else if (v?.state === 'closed') await this.records.delete(BY_USER, k.key, k.rev);
    }
    return n;
  }

  private async owned(id: string, user: string): Promise<StoredRecord> {
    const r = SESSION_ID.test(id) ? await this.records.get(KIND, id) : null;
    if (!r || (r.value as unknown as SessionValue).user !== user) throw new PatchbayError('session_not_found', `no session ${id}`);
    return r;
  }

  private checkOpen(id: string, s: SessionValue): void {
    if (s.state !== 'open') throw new PatchbayError('session_closed', `session ${id} is ${s.state}`, { state: s.state });
    if (s.expires <= this.now()) throw new PatchbayError('session_closed', `session ${id} timed out`, { state: 'expired' });
  }

  /** Read-modify-write by compare-and-set, retried when the record moved; `change` may throw to refuse. */
  private async update(id: string, change: (s: SessionValue) => SessionValue): Promise<SessionValue> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = await this.records.get(KIND, id);
      if (!r) throw new PatchbayError('session_not_found', `no session ${id}`);
      const current = r.value as unknown as SessionValue;
      const next = change(current);
      if (next === current) return next;
      // A closed record is the sweep's to delete after PATCHBAY_SESSION_CLOSED_KEEP_MS; a TTL backstop a day later.
      const expireAt = next.state === 'closed' ? (next.closed ?? this.now()) + this.config.sessionClosedKeepMs + RECORD_TTL_GRACE_MS : undefined;
      if (await this.records.put(KIND, id, next as unknown as Json, r.rev, { expireAt })) {
        // A close's steps (closing with a lease, a retry's lease, closed) are rare: each gets its due entry now, so
        // the sweep finds it when its lease lapses. An open session's (heartbeats) is moved by the sweep instead.
        if (next.state !== 'open' && (next.state !== current.state || next.lease !== current.lease)) {
          // The change is made: an entry that fails here leaves the older one (at or before this), which the sweep moves.
          await this.schedule(id, next).catch((err: unknown) => this.logError({ message: 'session due entry failed', session: id, err: String(err) }));
        }
        return next;
      }
    }
    throw new PatchbayError('unavailable', `session ${id} keeps changing; retry`);
  }

  private cacheMs(): number {
    return Math.min(1000, Math.floor(this.config.sessionTimeoutMs / 10));
  }
}
