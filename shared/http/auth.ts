/**
 * Tokens. Users get an HS256 JWT (audience `patchbay`) from `POST /v1/auth/anonymous`. Browsers,
 * whose EventSource cannot send headers, exchange that token for a stream ticket: a JWT with
 * audience `patchbay:stream`, bound to one scope and valid for `ticketTtlSeconds` (60 s by
 * default), which is the only credential ever accepted in a URL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jwtVerify, SignJWT } from 'jose';
import type { AuthConfig, Config } from '../config.js';
import { ConfigError } from '../config.js';
import { PatchbayError } from '../errors.js';

export interface User {
  id: string;
  anonymous: boolean;
}

const ISSUER = 'patchbay';
/**
 * Verified tokens remembered (least recently used out first). Bounded by count, not bytes, on
 * purpose: only tokens this server signed get in (a few hundred bytes each), so about 10 MB at most.
 */
const VERIFIED_MAX = 10_000;
const AUD_USER = 'patchbay';
const AUD_STREAM = 'patchbay:stream';

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

interface Claims {
  sub: string;
  anon: boolean;
  scope: unknown;
  /** Expiry, seconds since the epoch (Infinity: none). */
  exp: number;
}

export class Auth {
  /**
   * Tokens already verified, by audience and exact token text. A client sends the same token with
   * every request, and verifying an HS256 signature through WebCrypto cost ~0.35 ms of CPU per
   * request, the largest single cost of a patch before this (bench/results/NOTES.md). A hit is the
   * very string whose signature, issuer and audience were checked, with the same secret; only the
   * clock can change the verdict, so the expiry is checked again on every hit.
   */
  private readonly verified = new Map<string, Claims>();

  constructor(
    private readonly secret: Uint8Array,
    private readonly config: AuthConfig,
  ) {}

  async issueAnonymous(): Promise<{ token: string; user: User }> {
    if (!this.config.anonymousAuth) throw new PatchbayError('forbidden', 'anonymous sign-in is disabled');
    const user: User = { id: `anon:${randomUUID()}`, anonymous: true };
    const token = await new SignJWT({ anon: true })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUD_USER)
      .setIssuedAt()
      .setExpirationTime(`${this.config.tokenTtlSeconds}s`)
      .sign(this.secret);
    return { token, user };
  }

  /** The user of an `Authorization: Bearer` header; throws `unauthorized`. */
  async fromHeader(header: string | undefined): Promise<User> {
    const m = header === undefined ? null : /^Bearer +([A-Za-z0-9_.-]+)$/i.exec(header.trim());
    if (!m) throw new PatchbayError('unauthorized', 'send Authorization: Bearer <token>');
    return this.verify(m[1] as string, AUD_USER);
  }

  async issueTicket(user: User, scope: string): Promise<{ ticket: string; expiresIn: number }> {
    const ticket = await new SignJWT({ scope, anon: user.anonymous })
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
    return this.verify(ticket, AUD_STREAM, scope, graceSeconds);
  }

  private async verify(token: string, audience: string, scope?: string, graceSeconds = 0): Promise<User> {
    try {
      const claims = await this.claims(token, audience, graceSeconds);
      if (scope !== undefined && claims.scope !== scope) throw new Error('ticket is for another scope');
      return { id: claims.sub, anonymous: claims.anon };
    } catch (err) {
      throw new PatchbayError('unauthorized', `invalid credential: ${err instanceof Error ? err.message : 'rejected'}`);
    }
  }

  private async claims(token: string, audience: string, graceSeconds: number): Promise<Claims> {
    const key = `${audience} ${token}`;
    const now = Math.floor(Date.now() / 1000);
    const known = this.verified.get(key);
    // jose's rule: a token is expired once now - tolerance >= exp.
    if (known && known.exp > now - graceSeconds) {
      this.verified.delete(key); // re-insert: Map order is recency order
      this.verified.set(key, known);
      return known;
    }
    const { payload } = await jwtVerify(token, this.secret, { issuer: ISSUER, audience, algorithms: ['HS256'], clockTolerance: graceSeconds });
    if (typeof payload.sub !== 'string') throw new Error('no subject');
    const exp = typeof payload.exp === 'number' ? payload.exp : Number.POSITIVE_INFINITY;
    const claims: Claims = { sub: payload.sub, anon: payload.anon === true, scope: payload.scope, exp };
    this.verified.delete(key);
    this.verified.set(key, claims);
    if (this.verified.size > VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value as string);
    return claims;
  }
}
