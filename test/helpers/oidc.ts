/**
 * A stand-in for Google as the signer of OIDC tokens (Pub/Sub push, Cloud Scheduler), for tests:
 * RSA keys generated here, a certificates endpoint on a real socket in Google's PEM format
 * (`{"<kid>": "<PEM>"}`, with `Cache-Control: max-age`), and tokens signed with jose (RS256, a
 * `kid`) carrying the claims Google puts in them. Point PATCHBAY_OIDC_CERTS_URL at `certsUrl`.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';

export const SERVICE_ACCOUNT = 'pusher@demo-patchbay.iam.gserviceaccount.com';

export interface TokenOptions {
  /** Claims to set or (with `undefined`) leave out, over the defaults. */
  claims?: Record<string, unknown>;
  /** The `kid` in the header (default: the published key's). */
  kid?: string;
  /** Sign with a key whose public half is not published (a forged signature). */
  forged?: boolean;
}

export interface OidcIssuer {
  certsUrl: string;
  /** A token for `audience`, from SERVICE_ACCOUNT, valid for an hour, unless `opts` say otherwise. */
  token(audience: string, opts?: TokenOptions): Promise<string>;
  close(): Promise<void>;
}

const KID = 'test-key-1';

export async function startOidcIssuer(): Promise<OidcIssuer> {
  const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key = rsa();
  const forger = rsa();
  const certs = JSON.stringify({ [KID]: key.publicKey.export({ type: 'spki', format: 'pem' }) });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' });
    res.end(certs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const certsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth2/v1/certs`;
  return {
    certsUrl,
    async token(audience, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const claims: Record<string, unknown> = {
        iss: 'https://accounts.google.com',
        aud: audience,
        azp: '1234567890',
        sub: '1234567890',
        email: SERVICE_ACCOUNT,
        email_verified: true,
        iat: now,
        exp: now + 3600,
        ...opts.claims,
      };
      for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k];
      const signing: KeyObject = opts.forged ? forger.privateKey : key.privateKey;
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: opts.kid ?? KID }).sign(signing);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
