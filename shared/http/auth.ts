/**
 * Tokens and users. Two kinds of bearer token are accepted, told apart by their unverified issuer
 * (`iss`) before anything is verified:
 * - patchbay's own HS256 JWTs (issuer `patchbay`, audience `patchbay`), from
 *   `POST /v1/auth/anonymous`, each issued for one domain (claim `dom`);
 * - Firebase ID tokens (issuer `https://securetoken.google.com/<project>`), when
 *   PATCHBAY_FIREBASE_PROJECT is set, verified by an IdentityProvider adapter
 *   (shared/adapters/google/firebase-identity.ts, which also holds the emulator safety rules).
 * Any other issuer, or a Firebase token of another project, is 401 without further work.
 * Service tokens are patchbay JWTs too (`kind: service`, user `domain:<d>`, `jti` = the token's
 * id), minted by a domain's admins (shared/domains/service-tokens.ts). Their signature is cached
 * like any other, but each request that carries one also asks the ServiceTokenCheck whether the
 * token is still live (not revoked; the check keeps its own short cache), so anonymous and
 * Firebase tokens pay nothing for it. The `domain:` user-id prefix is reserved to them: any other
 * token naming such a user is refused, and Firebase users are `firebase:<uid>`.
 * Browsers, whose EventSource cannot send headers, exchange a token for a stream ticket: a JWT
 * with audience `patchbay:stream`, bound to one scope and valid for `ticketTtlSeconds` (60 s by
 * default), which is the only credential ever accepted in a URL.
 * The domain a request acts in is decided in shared/http/domain.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, jwtVerify, SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';
import type { AuthConfig, Config } from '../config.js';
import { ConfigError } from '../config.js';
import { SERVICE_USER_PREFIX, serviceUser } from '../engine/access.js';
import { DEFAULT_DOMAIN } from '../engine/decide.js';
import { PatchbayError } from '../errors.js';
import type { IdentityProvider, Profile } from '../ports/identity.js';
import { type RequestDomain, resolveDomain } from './domain.js';

export type { Profile } from '../ports/identity.js';

/** `anonymous`: patchbay's own anonymous users; `firebase`: Firebase Authentication; `service`: workers and the platform. */
export type UserKind = 'anonymous' | 'firebase' | 'service';

export interface User {
  /** Stable: `anon:<uuid>`, `firebase:<uid>`. */
  id: string;
  kind: UserKind;
  /** The domain (the app) this request acts in. */
  domain: string;
  /** What the identity provider says about the user (Firebase tokens only). */
  profile?: Profile;
  /** A service token's id (its `jti`), checked for revocation on every use. */
  tokenId?: string;
  /**
   * A service token whose record carries `config: true` (the deploy's own): it may use its
   * domain's configuration routes (shared/http/context.ts `domainAdmin`), nothing else.
   */
  config?: true;
}

/** A service token while it is live, with its record's flags; null once revoked or expired (shared/domains/service-tokens.ts `ServiceTokens.live`). */
export interface ServiceTokenCheck {
  live(domain: string, id: string): Promise<{ config: boolean } | null>;
}

/** Whether the user signed in anonymously (patchbay's anonymous users, or Firebase's `anonymous` provider). */
export function isAnonymous(u: User): boolean {
  return u.kind === 'anonymous' || u.profile?.provider === 'anonymous';
}

/** A user as the API shows it (`/v1/auth/anonymous`, `/v1/me`). */
export function userJson(u: User): { id: string; kind: UserKind; domain: string; anonymous: boolean; profile?: Profile } {
  return { id: u.id, kind: u.kind, domain: u.domain, anonymous: isAnonymous(u), ...(u.profile ? { profile: u.profile } : {}) };
}

const ISSUER = 'patchbay';
const FIREBASE_ISSUER = 'https://securetoken.google.com/';
/**
 * Verified tokens remembered (least recently used out first), bounded by count and by the bytes
 * of their keys and profiles: only tokens that verified get in (patchbay's a few hundred bytes,
 * Firebase's 1-2 KB with the profile), so at most VERIFIED_BYTES.
 */
const VERIFIED_MAX = 10_000;
const VERIFIED_BYTES = 16 * 1024 * 1024;
const AUD_USER = 'patchbay';
const AUD_STREAM = 'patchbay:stream';
const NO_DOMAIN: RequestDomain = { origin: null, named: null };

/** The signing secret: configured, or generated once into the data directory (embedded mode only). */
export function loadSecret(config: Pick<Config, 'jwtSecret' | 'dataDir' | 'mode'>): Uint8Array {
  if (config.jwtSecret !== '') return new TextEncoder().encode(config.jwtSecret);
  if (config.mode !== 'embedded') throw new ConfigError('PATCHBAY_JWT_SECRET must be set outside embedded mode');
  const file = join(config.dataDir, 'jwt-secret');
  mkdirSync(config.dataDir, { recursive: true });
  try {
    writeFileSync(file, randomBytes(48).toString('base64url'), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return new TextEncoder().encode(readFileSync(file, 'utf8').trim());
}

/** What a verified token says, before the request decides its domain. */
interface Verified {
  id: string;
  kind: UserKind;
  /** The domain a patchbay token was issued for; none for a Firebase token. */
  domain?: string;
  profile?: Profile;
  /** A ticket's scope. */
  scope?: unknown;
  /** A service token's id. */
  tokenId?: string;
  /** Expiry, seconds since the epoch (Infinity: none). */
  exp: number;
}

export class Auth {
  /**
   * Tokens already verified, by audience and exact token text. A client sends the same token with
   * every request, and verifying an HS256 signature through WebCrypto cost ~0.35 ms of CPU per
   * request, the largest single cost of a patch before this (bench/results/NOTES.md); a Firebase
   * token costs an RSA verification (and, on the emulator, a round trip). A hit is the very string
   * whose signature, issuer and audience were checked, by the same verifier; only the clock can
   * change the verdict, so the expiry is checked again on every hit. (A Firebase session revoked
   * meanwhile stays valid until its token expires, at most an hour: Firebase's own default.)
   */
  private readonly verified = new LRUCache<string, Verified>({
    max: VERIFIED_MAX,
    maxSize: VERIFIED_BYTES,
    sizeCalculation: (v, key) => 2 * key.length + 200 + (v.profile ? 2 * JSON.stringify(v.profile).length : 0),
  });
  /** Verifications in flight, so concurrent requests with one new token verify it once. */
  private readonly inflight = new Map<string, Promise<Verified>>();

  constructor(
    private readonly secret: Uint8Array,
    private readonly config: AuthConfig,
    /** Firebase ID tokens, when PATCHBAY_FIREBASE_PROJECT is set. */
    private readonly firebase?: IdentityProvider,
    /** Whether a service token is still live; without it every service token is refused. */
    private readonly services?: ServiceTokenCheck,
  ) {}

  /**
   * The token of service token `id` of `domain`, expiring at `expires` (ms since epoch; whole
   * seconds in the token). Its record must exist already (shared/domains/service-tokens.ts):
   * the token is accepted only while it does.
   */
  issueService(domain: string, id: string, expires: number): Promise<string> {
    return new SignJWT({ kind: 'service', dom: domain })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(serviceUser(domain))
      .setJti(id)
      .setIssuer(ISSUER)
      .setAudience(AUD_USER)
      .setIssuedAt()
      .setExpirationTime(Math.floor(expires / 1000))
      .sign(this.secret);
  }

  /** A token for a new anonymous user of `domain`. */
  async issueAnonymous(domain: string = DEFAULT_DOMAIN): Promise<{ token: string; user: ReturnType<typeof userJson> }> {
    if (!this.config.anonymousAuth) throw new PatchbayError('forbidden', 'anonymous sign-in is disabled');
    const user: User = { id: `anon:${randomUUID()}`, kind: 'anonymous', domain };
    const token = await new SignJWT({ anon: true, dom: domain })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUD_USER)
      .setIssuedAt()
      .setExpirationTime(`${this.config.tokenTtlSeconds}s`)
      .sign(this.secret);
    return { token, user: userJson(user) };
  }

  /**
   * The user of an `Authorization: Bearer` header, acting in the domain the request and its token
   * agree on (shared/http/domain.ts); throws `unauthorized`, or `forbidden` for a domain mismatch.
   */
  async fromHeader(header: string | undefined, rd: RequestDomain = NO_DOMAIN): Promise<User> {
    const m = header === undefined ? null : /^Bearer +([A-Za-z0-9_.-]+)$/i.exec(header.trim());
    if (!m) throw new PatchbayError('unauthorized', 'send Authorization: Bearer <token>');
    const v = await this.verify(m[1] as string, AUD_USER);
    const service = v.kind === 'service' ? await this.checkService(v) : null;
    return {
      id: v.id,
      kind: v.kind,
      domain: resolveDomain(rd, v.domain),
      ...(v.profile ? { profile: v.profile } : {}),
      ...(v.tokenId ? { tokenId: v.tokenId } : {}),
      ...(service?.config ? { config: true as const } : {}),
    };
  }

  async issueTicket(user: User, scope: string): Promise<{ ticket: string; expiresIn: number }> {
    // A service user's ticket names its token, which is checked again when the ticket is used.
    const ticket = await new SignJWT({ scope, kind: user.kind, dom: user.domain, ...(user.tokenId ? { jti: user.tokenId } : {}) })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUD_STREAM)
      .setIssuedAt()
      .setExpirationTime(`${this.config.ticketTtlSeconds}s`)
      .sign(this.secret);
    return { ticket, expiresIn: this.config.ticketTtlSeconds };
  }

  /** The user of a stream ticket for `scope`; `graceSeconds` accepts a ticket that expired that recently. */
  async fromTicket(ticket: string, scope: string, graceSeconds = 0): Promise<User> {
    const v = await this.verify(ticket, AUD_STREAM, graceSeconds);
    if (v.scope !== scope) throw new PatchbayError('unauthorized', 'invalid credential: ticket is for another scope');
    if (v.kind === 'service') await this.checkService(v);
    return { id: v.id, kind: v.kind, domain: v.domain ?? DEFAULT_DOMAIN, ...(v.tokenId ? { tokenId: v.tokenId } : {}) };
  }

  close(): Promise<void> {
    return this.firebase?.close() ?? Promise.resolve();
  }

  /** The flags of the service token `v`; throws `unauthorized` unless it is still live (its record exists, unexpired). */
  private async checkService(v: Verified): Promise<{ config: boolean }> {
    const live = this.services && v.domain !== undefined && v.tokenId !== undefined ? await this.services.live(v.domain, v.tokenId) : null;
    if (live) return live;
    throw new PatchbayError('unauthorized', 'invalid credential: this service token was revoked');
  }

  private async verify(token: string, audience: string, graceSeconds = 0): Promise<Verified> {
    const key = `${audience} ${token}`;
    const now = Math.floor(Date.now() / 1000);
    const known = this.verified.get(key);
    // jose's rule: a token is expired once now - tolerance >= exp.
    if (known && known.exp > now - graceSeconds) return known;
    const flight = `${key} ${graceSeconds}`;
    let pending = this.inflight.get(flight);
    if (!pending) {
      pending = this.verifyNew(token, audience, graceSeconds).finally(() => this.inflight.delete(flight));
      this.inflight.set(flight, pending);
    }
    try {
      const v = await pending;
      this.verified.set(key, v);
      return v;
    } catch (err) {
      if (err instanceof PatchbayError && err.code === 'unavailable') throw err;
      throw new PatchbayError('unauthorized', `invalid credential: ${err instanceof Error ? err.message : 'rejected'}`);
    }
  }

  private async verifyNew(token: string, audience: string, graceSeconds: number): Promise<Verified> {
    const iss = decodeJwt(token).iss; // unverified: only picks the verifier
    if (iss === ISSUER) return this.verifyOwn(token, audience, graceSeconds);
    if (audience !== AUD_USER) throw new Error('not a stream ticket');
    if (this.firebase && iss === this.firebase.issuer) {
      const { uid, exp, profile } = await this.firebase.verify(token);
      return { id: `firebase:${uid}`, kind: 'firebase', profile, exp };
    }
    if (typeof iss === 'string' && iss.startsWith(FIREBASE_ISSUER)) {
      throw new Error(
        this.firebase ? 'a Firebase ID token of another project' : 'Firebase ID tokens are not accepted here (PATCHBAY_FIREBASE_PROJECT is unset)',
      );
    }
    throw new Error('unknown token issuer');
  }

  private async verifyOwn(token: string, audience: string, graceSeconds: number): Promise<Verified> {
    const { payload } = await jwtVerify(token, this.secret, { issuer: ISSUER, audience, algorithms: ['HS256'], clockTolerance: graceSeconds });
    if (typeof payload.sub !== 'string') throw new Error('no subject');
    const exp = typeof payload.exp === 'number' ? payload.exp : Number.POSITIVE_INFINITY;
    // Tokens issued before domains existed carry no `dom`: they belong to the default domain.
    const domain = typeof payload.dom === 'string' ? payload.dom : DEFAULT_DOMAIN;
    const kind: UserKind = payload.kind === 'firebase' || payload.kind === 'service' ? payload.kind : 'anonymous';
    // `domain:<d>` is the service identity's alone (shared/engine/access.ts): a service token names
    // exactly its domain's, with its id; no other token may name one.
    if (kind === 'service') {
      if (typeof payload.dom !== 'string' || payload.sub !== serviceUser(payload.dom) || typeof payload.jti !== 'string')
        throw new Error('malformed service token');
      return { id: payload.sub, kind, domain, scope: payload.scope, exp, tokenId: payload.jti };
    }
    if (payload.sub.startsWith(SERVICE_USER_PREFIX)) throw new Error('a reserved user id');
    return { id: payload.sub, kind, domain, scope: payload.scope, exp };
  }
}
