/**
 * Domain claims: how a signed-in user becomes the admin of a domain (docs/domains.md, "Claiming a
 * domain"). The user starts a claim and gets a random token; they prove control of the domain by
 * serving the token at https://<domain>/.well-known/patchbay-challenge or in a DNS TXT record of
 * `_patchbay-challenge.<domain>` (shared/domains/claim-check.ts); patchbay checks until the claim
 * succeeds or PATCHBAY_CLAIM_TIMEOUT_MS has passed, and on success adds the user to the domain's
 * admins (shared/domains/domains.ts).
 *
 * Serverless checking, no timer of its own: a claim is checked (i) once when it starts, (ii) each
 * time its claimant starts it again while it is pending (`POST .../claim` again: idempotent, the
 * same token, rate-limited by PATCHBAY_RATE_CLAIM), and (iii) by every `sweep` (Cloud Scheduler's
 * every minute on Google, PATCHBAY_SWEEP_INTERVAL_MS in a long-running process), which also marks
 * expired claims `timeout` and deletes finished claims a day after they finished.
 *
 * The record of truth: one record per (user, domain) in the RecordStore, kind `claim`, key
 * `<user>/<domain>` (so a user's claims are one prefix, for the pending quota; a domain has no `/`,
 * so the key splits at its last one), changed only by compare-and-set. A claim's progress is
 * mirrored into its **report scope**, which the claimant may read and stream but not write: owned
 * by SYSTEM_OWNER, private, the claimant its only listed reader, in the claimed domain. Each report
 * write replaces the whole state with the record's, stamped with the record's revision (`rev`), and
 * is a compare-and-set on the scope's `ii`, skipped when the report already shows that revision or
 * a later one, so the report never goes back to an older state.
 *
 * A success is recorded in this order: the admin first, then the claim. A crash between them leaves
 * a pending claim whose next check succeeds again (adding an admin twice is a no-op).
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import type { Engine } from '../engine/engine.js';
import { asPatchbayError, PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import { type PutOptions, RECORD_TTL_GRACE_MS, type RecordStore, type StoredRecord } from '../ports/records.js';
import { DOMAIN } from '../protocol.js';
import { type ClaimProbe, ProbeFailed, TXT_LABEL, WELL_KNOWN_PATH } from './claim-check.js';
import type { Domains } from './domains.js';

export const CLAIM_KIND = 'claim';
/** The owner of every report scope: no user id has this form (`anon:`, `firebase:`), so none can write them. */
export const SYSTEM_OWNER = 'system:patchbay';
/** The `type` of report scopes. */
export const REPORT_TYPE = 'application/json;type=patchbay-claim-report';
/** A finished claim's record is deleted by the sweep this long after it finished. */
export const KEEP_FINISHED_MS = 24 * 3_600_000;
/** A finished claim is the sweep's to delete after KEEP_FINISHED_MS; on Firestore it also expires a day later (a backstop). */
const expiry = (c: { finished: number | null }): PutOptions => (c.finished === null ? {} : { expireAt: c.finished + KEEP_FINISHED_MS + RECORD_TTL_GRACE_MS });
/** The sweep checks this many pending claims at once, and starts none after SWEEP_BUDGET_MS. */
const SWEEP_CONCURRENCY = 8;
const SWEEP_BUDGET_MS = 30_000;
const SWEEP_PAGE = 100;

export type ClaimStatus = 'pending' | 'success' | 'timeout';
/** How a claim succeeded: the well-known file, the TXT record, a localhost name (dev), or the claimant already was an admin. */
export type ClaimMethod = 'well-known' | 'txt' | 'localhost' | 'admin';

/** The outcome of the last check: when, and why each way found no proof (absent: it was not looked at, or it passed). */
export interface LastCheck {
  at: number;
  errors: { 'well-known'?: string; txt?: string };
}

export interface ClaimRecord {
  domain: string;
  user: string;
  /** 32 random bytes, base64url. Shown only to the claimant; never logged. */
  token: string;
  /** The report scope's id. */
  report: string;
  /** ms since epoch. */
  started: number;
  expires: number;
  /** Checks made so far. */
  attempts: number;
  status: ClaimStatus;
  method: ClaimMethod | null;
  last: LastCheck | null;
  finished: number | null;
}

/** The report scope's state: what the claimant watches. `rev` is the claim record's revision it shows. */
export interface ClaimReport {
  domain: string;
  started: number;
  expires: number;
  attempts: number;
  success: boolean;
  timeout: boolean;
  method: ClaimMethod | null;
  last: LastCheck | null;
  rev: number;
}

export type ClaimsConfig = Pick<Config, 'claimTimeoutMs' | 'claimLocalhost' | 'claimAnonymous' | 'claimMaxPending'>;

/** Who is claiming. */
export interface Claimant {
  id: string;
  anonymous: boolean;
}

export interface ClaimSweep {
  /** Pending claims checked. */
  checked: number;
  succeeded: number;
  timedOut: number;
  /** Finished claims whose records were deleted. */
  removed: number;
}

/** Whether `domain` is `localhost` or a subdomain of it, with or without a port. */
export function isLocalhost(domain: string): boolean {
  const host = domain.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host.endsWith('.localhost');
}

function refuse(domain: string, message: string): PatchbayError {
  return new PatchbayError('invalid_request', message, { issues: [{ path: ['domain'], message }], domain });
}

/**
 * Checks that `domain` may be claimed; returns whether it is a localhost name. Refused
 * (`invalid_request`): anything but a lower-case host name; a port (except on localhost names);
 * an IP address, or a name a URL parser reads as one (a last label of digits or `0x...`); a name
 * without a dot (other than localhost). `forbidden`: a localhost name when PATCHBAY_CLAIM_LOCALHOST
 * is off.
 */
export function claimableDomain(domain: string, config: Pick<ClaimsConfig, 'claimLocalhost'>): boolean {
  if (!DOMAIN.test(domain)) throw refuse(domain, 'a domain is a lower-case host name, like app.example.com');
  if (isLocalhost(domain)) {
    if (config.claimLocalhost !== 'on') throw new PatchbayError('forbidden', 'localhost domains cannot be claimed on this deployment', { domain });
    return true;
  }
  if (domain.includes(':')) throw refuse(domain, 'a claimed domain has no port: the check uses https on port 443');
  const labels = domain.split('.');
  const last = labels[labels.length - 1] as string;
  // WHATWG URL parsing turns `127.1`, `0x7f.1` and the like into IPv4 addresses.
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(last)) throw refuse(domain, 'an IP address cannot be claimed, only a domain name');
  if (labels.length < 2) throw refuse(domain, 'a claimed domain has at least two labels, like example.com');
  return false;
}

/** The claim as its claimant sees it (`POST` and `GET /v1/domains/{domain}/claim`). */
export function claimJson(c: ClaimRecord, now: number) {
  return {
    domain: c.domain,
    status: c.status === 'pending' && now >= c.expires ? ('timeout' as const) : c.status,
    token: c.token,
    report: c.report,
    started: c.started,
    expires: c.expires,
    attempts: c.attempts,
    method: c.method,
    last: c.last,
    wellKnown: `https://${c.domain}${WELL_KNOWN_PATH}`,
    txt: `${TXT_LABEL}.${c.domain}`,
  };
}

function reportOf(c: ClaimRecord, rev: number): ClaimReport {
  return {
    domain: c.domain,
    started: c.started,
    expires: c.expires,
    attempts: c.attempts,
    success: c.status === 'success',
    timeout: c.status === 'timeout',
    method: c.method,
    last: c.last,
    rev,
  };
}

const keyOf = (user: string, domain: string): string => `${user}/${domain}`;
const asClaim = (r: StoredRecord): ClaimRecord => r.value as unknown as ClaimRecord;

export class Claims {
  private readonly now: () => number;
  private readonly logError: (e: Record<string, unknown>) => void;

  constructor(
    private readonly records: RecordStore,
    private readonly domains: Domains,
    private readonly engine: Pick<Engine, 'createScope' | 'submit' | 'getScope'>,
    private readonly probe: ClaimProbe,
    private readonly config: ClaimsConfig,
    opts: { now?: () => number; logError?: (e: Record<string, unknown>) => void } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.logError = opts.logError ?? (() => {});
  }

  /** Refuses a domain that cannot be claimed (see `claimableDomain`); cheap, for the route to call before spending a rate token. */
  checkDomain(domain: string): void {
    claimableDomain(domain, this.config);
  }

  /** The claim as its claimant sees it, now. */
  view(c: ClaimRecord): ReturnType<typeof claimJson> {
    return claimJson(c, this.now());
  }

  /**
   * Starts a claim of `domain` for `who`, or answers the one they have. A pending claim is checked
   * again and answered as it is (the same token: a retried request must not invalidate a token the
   * user has already published); a successful claim whose user is still an admin is answered as
   * it is; otherwise (none, timed out, or an admin no more) a new claim starts, with a new token,
   * and is checked once at once. `created` says whether a new claim started.
   * Refusals, each changing nothing: see `claimableDomain`; `forbidden` for an anonymous user
   * (unless PATCHBAY_CLAIM_ANONYMOUS, or a localhost name); `quota_exceeded` past
   * PATCHBAY_CLAIM_MAX_PENDING pending claims.
   */
  async start(domain: string, who: Claimant): Promise<{ claim: ClaimRecord; created: boolean }> {
    const localhost = claimableDomain(domain, this.config);
    if (who.anonymous && !localhost && !this.config.claimAnonymous) {
      throw new PatchbayError('forbidden', 'anonymous users cannot claim domains: sign in with an identity provider', { domain });
    }
    const key = keyOf(who.id, domain);
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await this.records.get(CLAIM_KIND, key);
      const now = this.now();
      if (existing) {
        const c = asClaim(existing);
        if (c.status === 'pending' && now < c.expires) return { claim: await this.checkStored(existing), created: false };
        if (c.status === 'success' && (await this.domains.isAdmin(domain, who.id))) return { claim: c, created: false };
      }
      const admin = await this.domains.isAdmin(domain, who.id);
      if (!admin) await this.checkPending(who.id);
      const report = existing ? asClaim(existing).report : await this.createReport(domain, who.id, now);
      const fresh: ClaimRecord = {
        domain,
        user: who.id,
        token: randomBytes(32).toString('base64url'),
        report,
        started: now,
        expires: now + this.config.claimTimeoutMs,
        attempts: 0,
        status: admin ? 'success' : 'pending',
        method: admin ? 'admin' : null,
        last: null,
        finished: admin ? now : null,
      };
      const stored = await this.records.put(CLAIM_KIND, key, fresh as unknown as Json, existing?.rev ?? 0, expiry(fresh));
      if (!stored) continue; // a concurrent request of the same user moved it: answer from what it stored
      await this.writeReport(stored);
      return { claim: admin ? fresh : await this.checkStored(stored), created: true };
    }
    throw new PatchbayError('unavailable', `the claim of ${domain} keeps changing; retry`);
  }

  /** The caller's claim of `domain`; `claim_not_found` when there is none. */
  async get(domain: string, user: string): Promise<ClaimRecord> {
    if (!DOMAIN.test(domain)) throw refuse(domain, 'a domain is a lower-case host name, like app.example.com');
    const stored = await this.records.get(CLAIM_KIND, keyOf(user, domain));
    if (!stored) throw new PatchbayError('claim_not_found', `you have no claim of ${domain}`, { domain });
    return asClaim(stored);
  }

  /**
   * The sweep: checks every pending claim once (timing out the expired ones) and deletes the
   * records of claims finished more than KEEP_FINISHED_MS ago. Starts no check after
   * SWEEP_BUDGET_MS; the next sweep goes on. A failing claim is logged and skipped.
   */
  async sweep(): Promise<ClaimSweep> {
    const out: ClaimSweep = { checked: 0, succeeded: 0, timedOut: 0, removed: 0 };
    const deadline = this.now() + SWEEP_BUDGET_MS;
    let after: string | undefined;
    for (;;) {
      const page = await this.records.list(CLAIM_KIND, { after, limit: SWEEP_PAGE });
      const pending: StoredRecord[] = [];
      for (const r of page) {
        const c = asClaim(r);
        if (c.status === 'pending') pending.push(r);
        else if (c.finished !== null && this.now() - c.finished > KEEP_FINISHED_MS) {
          if (await this.records.delete(CLAIM_KIND, r.key, r.rev)) out.removed++;
        }
      }
      for (let i = 0; i < pending.length && this.now() < deadline; i += SWEEP_CONCURRENCY) {
        await Promise.all(
          pending.slice(i, i + SWEEP_CONCURRENCY).map(async (r) => {
            try {
              const c = await this.checkStored(r);
              out.checked++;
              if (c.status === 'success') out.succeeded++;
              if (c.status === 'timeout') out.timedOut++;
            } catch (err) {
              this.logError({ message: 'claim check failed', key: r.key, err: String(err) });
            }
          }),
        );
      }
      if (page.length < SWEEP_PAGE || this.now() >= deadline) return out;
      after = (page[page.length - 1] as StoredRecord).key;
    }
  }

  /** Throws `quota_exceeded` when the user has PATCHBAY_CLAIM_MAX_PENDING pending claims. */
  private async checkPending(user: string): Promise<void> {
    const now = this.now();
    let pending = 0;
    let after: string | undefined;
    for (;;) {
      const page = await this.records.list(CLAIM_KIND, { prefix: `${user}/`, after, limit: SWEEP_PAGE });
      for (const r of page) {
        const c = asClaim(r);
        // The prefix also matches users whose id continues with `/`: count only this one's.
        if (c.user === user && c.status === 'pending' && now < c.expires) pending++;
      }
      if (page.length < SWEEP_PAGE) break;
      after = (page[page.length - 1] as StoredRecord).key;
    }
    const max = this.config.claimMaxPending;
    if (pending >= max) {
      throw new PatchbayError('quota_exceeded', `a user may have at most ${max} domain claims pending`, { quota: 'claims', max, actual: pending });
    }
  }

  private async createReport(domain: string, user: string, now: number): Promise<string> {
    const scope = await this.engine.createScope(
      SYSTEM_OWNER,
      {
        // No name: names are unique per (domain, owner), and every claim of this domain (by any user) has a report of the same owner.
        type: REPORT_TYPE,
        state: { domain, started: now, expires: now, attempts: 0, success: false, timeout: false, method: null, last: null, rev: 0 },
        access: { visibility: 'private', readers: [user], writers: [] },
      },
      { domain },
    );
    return scope.id;
  }

  /**
   * Checks a pending claim once: times it out if it expired, else looks for the proof (no probe
   * for a localhost name) and records the attempt, and the success. Answers the claim as stored.
   */
  private async checkStored(stored: StoredRecord): Promise<ClaimRecord> {
    const c = asClaim(stored);
    if (c.status !== 'pending') return c;
    const at = this.now();
    if (at >= c.expires) {
      return this.change(stored.key, (r) => (r.status === 'pending' && r.token === c.token ? { ...r, status: 'timeout', finished: at } : null));
    }
    const found = await this.look(c);
    if (found.method) await this.domains.addAdmin(c.domain, c.user);
    return this.change(stored.key, (r) => {
      if (r.status !== 'pending' || r.token !== c.token) return null;
      const next: ClaimRecord = { ...r, attempts: r.attempts + 1, last: { at, errors: found.errors } };
      return found.method ? { ...next, status: 'success', method: found.method, finished: this.now() } : next;
    });
  }

  /** Looks for the token in both places at once. */
  private async look(c: ClaimRecord): Promise<{ method: ClaimMethod | null; errors: LastCheck['errors'] }> {
    if (isLocalhost(c.domain)) {
      if (this.config.claimLocalhost === 'on') return { method: 'localhost', errors: {} };
      return { method: null, errors: { 'well-known': 'localhost domains cannot be claimed on this deployment' } };
    }
    const [wellKnown, txt] = await Promise.allSettled([this.probe.wellKnown(c.domain), this.probe.txt(`${TXT_LABEL}.${c.domain}`)]);
    const errors: LastCheck['errors'] = {};
    let method: ClaimMethod | null = null;
    if (wellKnown.status === 'fulfilled') {
      if (wellKnown.value.trim() === c.token) method = 'well-known';
      else errors['well-known'] = 'the file does not hold the token';
    } else errors['well-known'] = shown(wellKnown.reason);
    if (txt.status === 'fulfilled') {
      if (txt.value.some((v) => v.trim() === c.token)) method ??= 'txt';
      else errors.txt = txt.value.length === 0 ? 'no TXT record' : 'no TXT record holds the token';
    } else errors.txt = shown(txt.reason);
    return method ? { method, errors: {} } : { method, errors };
  }

  /** Stores `fn(current)` (null: nothing), re-deciding when another writer moved it; mirrors it to the report. */
  private async change(key: string, fn: (current: ClaimRecord) => ClaimRecord | null): Promise<ClaimRecord> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = await this.records.get(CLAIM_KIND, key);
      if (!current) throw new PatchbayError('claim_not_found', 'the claim is gone');
      const next = fn(asClaim(current));
      if (next === null) return asClaim(current);
      const stored = await this.records.put(CLAIM_KIND, key, next as unknown as Json, current.rev, expiry(next));
      if (!stored) continue;
      await this.writeReport(stored);
      return next;
    }
    throw new PatchbayError('unavailable', 'the claim keeps changing; retry');
  }

  /**
   * Writes the report of a stored claim: the whole state replaced, as a compare-and-set on the
   * scope's `ii`, skipped when it already shows this revision or a later one. A failure is logged,
   * not thrown: the claim is stored, and its next change writes the report again.
   */
  private async writeReport(stored: StoredRecord): Promise<void> {
    const c = asClaim(stored);
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        const scope = await this.engine.getScope(c.report);
        const shown = (scope.state as { rev?: unknown } | null)?.rev;
        if (typeof shown === 'number' && shown >= stored.rev) return;
        try {
          await this.engine.submit(
            c.report,
            SYSTEM_OWNER,
            { ii: scope.ii + 1, patch: [{ op: 'replace', path: '', value: reportOf(c, stored.rev) as unknown as Json }] },
            { domain: c.domain },
          );
          return;
        } catch (err) {
          const code = asPatchbayError(err).code;
          if (code !== 'out_of_sync' && code !== 'replay_required') throw err;
        }
      }
      throw new Error('the report keeps changing');
    } catch (err) {
      this.logError({ message: 'claim report not written', report: c.report, err: String(err) });
    }
  }
}

/** A probe failure as the claimant sees it: ProbeFailed's reason, else a generic one. */
function shown(err: unknown): string {
  return err instanceof ProbeFailed ? err.message : 'the check failed';
}
