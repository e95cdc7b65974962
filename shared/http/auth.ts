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
import type { Config } from '../config.js';
import { ConfigError } from '../config.js';
import { PatchbayError } from '../errors.js';

export interface User {
  id: string;
  anonymous: boolean;
}

const ISSUER = 'patchbay';
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

export class Auth {
  constructor(
    private readonly secret: Uint8Array,
    private readonly config: Pick<Config, 'tokenTtlSeconds' | 'ticketTtlSeconds' | 'anonymousAuth'>,
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
      const { payload } = await jwtVerify(token, this.secret, { issuer: ISSUER, audience, algorithms: ['HS256'], clockTolerance: graceSeconds });
      if (typeof payload.sub !== 'string') throw new Error('no subject');
      if (scope !== undefined && payload.scope !== scope) throw new Error('ticket is for another scope');
      return { id: payload.sub, anonymous: payload.anon === true };
    } catch (err) {
      throw new PatchbayError('unauthorized', `invalid credential: ${err instanceof Error ? err.message : 'rejected'}`);
    }
  }
}
