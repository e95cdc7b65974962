/**
 * Cloud Storage V4 signed URLs, checked as Cloud Storage checks them, for the local GCS stand-in
 * (infra/local/gcs-server.ts): a passing check here means a real bucket would accept the same
 * request. It rebuilds the canonical request from what actually arrived (method, path as sent,
 * every query parameter but the signature, the signed headers' values, `UNSIGNED-PAYLOAD` unless
 * `x-goog-content-sha256` is signed), hashes it into the string to sign with the URL's date and
 * credential scope, and verifies the RSA-SHA256 signature with the public key of the service
 * account the credential names. Refused: an unknown algorithm or signer, a missing signed header,
 * a request before its date or after `X-Goog-Expires` (at most 7 days), and anything that changes
 * the canonical request (another method, content type, path, query parameter or header value).
 *
 * One difference from the real service, on purpose: the `host` value is compared without a port,
 * which is what @google-cloud/storage signs (`hostname`); a real endpoint has no port to compare.
 * Reference: https://cloud.google.com/storage/docs/authentication/signatures
 */
import { createHash, createPublicKey, createVerify, type KeyObject } from 'node:crypto';

export interface SignedUrlRequest {
  method: string;
  /** The request target as sent: path and query, still percent-encoded. */
  target: string;
  /** Header values by lower-case name. */
  headers: Record<string, string | string[] | undefined>;
}

export type Verdict = { ok: true; signer: string } | { ok: false; status: 400 | 403; code: string; message: string };

const SEVEN_DAYS_S = 7 * 24 * 3600;

/** RFC 3986 encoding, as the signer applies to query keys and values. */
const strict = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Whether a request target is a V4 signed-URL request (what the stand-in then checks with `verifySignedUrl`). */
export const isSignedUrl = (target: string): boolean => /[?&]X-Goog-Signature=/.test(target);

function parseDate(v: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v);
  return m ? Date.UTC(+(m[1] as string), +(m[2] as string) - 1, +(m[3] as string), +(m[4] as string), +(m[5] as string), +(m[6] as string)) : null;
}

export class SignedUrlVerifier {
  private readonly keys = new Map<string, KeyObject>();

  /** `signers`: each service account's email and its key (PEM, public or private: the public half is used). */
  constructor(
    signers: Record<string, string>,
    private readonly now: () => number = Date.now,
  ) {
    for (const [email, pem] of Object.entries(signers)) this.keys.set(email, createPublicKey(pem));
  }

  verify(req: SignedUrlRequest): Verdict {
    const bad = (message: string): Verdict => ({ ok: false, status: 400, code: 'AuthenticationRequired', message });
    const mismatch = (message: string): Verdict => ({ ok: false, status: 403, code: 'SignatureDoesNotMatch', message });
    const q = req.target.indexOf('?');
    const path = q < 0 ? req.target : req.target.slice(0, q);
    const pairs = (q < 0 ? '' : req.target.slice(q + 1))
      .split('&')
      .filter((p) => p !== '')
      .map((p) => {
        const i = p.indexOf('=');
        const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
        return i < 0 ? [dec(p), ''] : [dec(p.slice(0, i)), dec(p.slice(i + 1))];
      }) as Array<[string, string]>;
    const param = (k: string): string | undefined => pairs.find(([name]) => name === k)?.[1];
    if (param('X-Goog-Algorithm') !== 'GOOG4-RSA-SHA256') return bad('X-Goog-Algorithm must be GOOG4-RSA-SHA256');
    const credential = param('X-Goog-Credential') ?? '';
    const parts = credential.split('/');
    if (parts.length < 5) return bad('X-Goog-Credential is malformed');
    const scope = parts.slice(-4).join('/');
    const email = parts.slice(0, -4).join('/');
    const key = this.keys.get(email);
    if (!key) return mismatch(`unknown signer ${email}`);
    const dateText = param('X-Goog-Date') ?? '';
    const start = parseDate(dateText);
    if (start === null || parts[parts.length - 4] !== dateText.slice(0, 8) || !scope.endsWith('/auto/storage/goog4_request')) {
      return bad('X-Goog-Date or the credential scope is malformed');
    }
    const expires = Number(param('X-Goog-Expires'));
    if (!Number.isInteger(expires) || expires < 1 || expires > SEVEN_DAYS_S) return bad('X-Goog-Expires must be 1..604800 seconds');
    const now = this.now();
    if (now < start - 60_000) return bad('the request is dated in the future');
    if (now > start + expires * 1000) return { ok: false, status: 400, code: 'ExpiredToken', message: 'Invalid argument: the signed URL has expired' };
    const signedHeaders = (param('X-Goog-SignedHeaders') ?? '').split(';');
    if (!signedHeaders.includes('host')) return bad('host must be a signed header');
    let canonicalHeaders = '';
    for (const name of signedHeaders) {
      const raw = req.headers[name];
      let value = Array.isArray(raw) ? raw.join(',') : raw;
      if (value === undefined) return mismatch(`signed header ${name} is missing`);
      if (name === 'host') value = value.replace(/:\d+$/, '');
      canonicalHeaders += `${name}:${value.trim().replace(/\s{2,}/g, ' ')}\n`;
    }
    const canonicalQuery = pairs
      .filter(([k]) => k !== 'X-Goog-Signature')
      .map(([k, v]) => [strict(k), strict(v)])
      .sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : (a[0] as string) > (b[0] as string) ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const sha = req.headers['x-goog-content-sha256'];
    const payload = signedHeaders.includes('x-goog-content-sha256') && typeof sha === 'string' ? sha : 'UNSIGNED-PAYLOAD';
    const canonical = [req.method, path, canonicalQuery, canonicalHeaders, signedHeaders.join(';'), payload].join('\n');
    const toSign = ['GOOG4-RSA-SHA256', dateText, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const signature = param('X-Goog-Signature') ?? '';
    if (!/^[0-9a-f]+$/.test(signature)) return mismatch('X-Goog-Signature is not hex');
    const ok = createVerify('RSA-SHA256').update(toSign).verify(key, Buffer.from(signature, 'hex'));
    return ok ? { ok: true, signer: email } : mismatch('The request signature we calculated does not match the signature you provided.');
  }
}
