/**
 * A session (docs/uploads-and-sessions.md): the server's record of this client being here, which
 * the client keeps alive and closes. Opened with `POST /v1/sessions`; while it is open the client
 * sends a heartbeat every third of the server's timeout (`timeoutMs` in the open's answer), so a
 * dropped connection gets the rest of a timeout to come back; `close({reason, info})` ends it
 * (`DELETE`, the info reaching the domain's `session.closed` hooks), and then its guarantees run
 * and its presence leaves every scope. `join(scope, status)` makes it present in a scope
 * (`PUT /v1/scopes/{id}/presence`); `guarantee(scope, patch)` registers a patch to apply when it
 * ends, whatever the reason. A heartbeat answered `session_closed` or `session_not_found` (the
 * sweep closed it after a long absence) ends it here too: a `closed` event with that error.
 */
import type { Json } from '../../shared/json.js';
import type { Patch } from '../../shared/wire.js';
import { Emitter } from './emitter.js';
import { errorFrom, type PatchbayClientError } from './errors.js';
import type { Transport } from './http.js';
import type { PresenceEntry } from './presence.js';

export interface SessionEvents extends Record<string, unknown> {
  /** It ended: by `close()` (no error), or found closed by the server (the heartbeat's error). */
  closed: { error?: PatchbayClientError };
  /** A heartbeat failed for a reason that may pass (the network, a 5xx): it is tried again at the next interval. */
  error: PatchbayClientError;
}

/** The session as the server shows its owner (`GET`, or the answer of `close`). */
export interface SessionView {
  id: string;
  state: 'open' | 'closing' | 'closed';
  opened: number;
  expires: number;
  closed: number | null;
  reason: string | null;
  guarantees: Array<{ id: string; scope: string; patch: Patch; at: number }>;
  [key: string]: unknown;
}

export class Session extends Emitter<SessionEvents> {
  /** `sess_` and 32 hex digits: also usable as the `session` of writes and stream URLs. */
  readonly id: string;
  /** The server's timeout: the session closes this long after the last heartbeat. */
  readonly timeoutMs: number;
  /** When the server will close it without another heartbeat (ms since the epoch). */
  expires: number;
  /** Whether this client still holds it open. */
  open = true;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly path: string;

  /** Use `client.openSession()`. */
  constructor(
    private readonly transport: Transport,
    opened: { id: string; expires: number; timeoutMs: number },
    private readonly onEnd: (s: Session) => void,
  ) {
    super();
    this.id = opened.id;
    this.timeoutMs = opened.timeoutMs;
    this.expires = opened.expires;
    this.path = `/v1/sessions/${encodeURIComponent(opened.id)}`;
    this.timer = setInterval(() => void this.heartbeat().catch(() => {}), Math.max(250, Math.floor(opened.timeoutMs / 3)));
  }

  /** Keeps it open a timeout longer now (the client does this on its own every third of the timeout). */
  async heartbeat(): Promise<void> {
    try {
      this.expires = (await this.transport.json<{ expires: number }>('POST', `${this.path}/heartbeat`)).expires;
    } catch (err) {
      const e = err as PatchbayClientError;
      if (e.code === 'session_closed' || e.code === 'session_not_found') this.end(e);
      else this.emit('error', e);
      throw e;
    }
  }

  /** Makes this session present in a scope the user may read, or updates its status there (any JSON, 1 KiB by default). */
  join(scope: string, status: Json = null): Promise<{ joined: boolean; entry: PresenceEntry }> {
    return this.transport.json('PUT', `/v1/scopes/${encodeURIComponent(scope)}/presence`, { session: this.id, status });
  }

  /** A patch to apply to `scope` as this user when the session ends (checked for writing then). Resolves with its id. */
  async guarantee(scope: string, patch: Patch): Promise<string> {
    return (await this.transport.json<{ id: string }>('POST', `${this.path}/guarantees`, { scope, patch })).id;
  }

  /** Cancels a guarantee while the session is open. */
  async cancelGuarantee(id: string): Promise<void> {
    const res = await this.transport.send('DELETE', `${this.path}/guarantees/${encodeURIComponent(id)}`);
    if (!res.ok) throw await errorFrom(res);
  }

  /** The session as the server holds it (after its close: what each guarantee did). */
  get(): Promise<SessionView> {
    return this.transport.json<SessionView>('GET', this.path);
  }

  /** Closes it (its guarantees run, its presence leaves, close hooks get `reason` and `info`); resolves with what the server did. */
  async close(opts: { reason?: string; info?: Json } = {}): Promise<SessionView> {
    this.end();
    return this.transport.json<SessionView>('DELETE', this.path, opts);
  }

  private end(error?: PatchbayClientError): void {
    if (!this.open) return;
    this.open = false;
    clearInterval(this.timer);
    this.onEnd(this);
    this.emit('closed', error ? { error } : {});
  }
}
