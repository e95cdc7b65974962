/**
 * How patchbay looks for the proof of a domain claim (shared/domains/claims.ts): the two probes,
 * behind the `ClaimProbe` interface so tests answer them from a local HTTP server and a local DNS
 * answer instead of the internet.
 *
 * What a claim can make the server do, and nothing more (SSRF):
 * - one `GET https://<domain>/.well-known/patchbay-challenge`: https only, port 443, the claimed
 *   host name as it was validated (no IP literal, no port: `claimableDomain` in claims.ts); the
 *   name is resolved here and every address that is not public unicast (loopback, private,
 *   link-local, metadata 169.254.169.254, unique-local, multicast...) is dropped before the
 *   connection, which goes to a remaining address (so DNS rebinding cannot reach inside either);
 *   no redirect is followed; at most WELL_KNOWN_MAX_BYTES of the body are read; the whole request
 *   ends after PROBE_TIMEOUT_MS. Nothing of the response reaches the claimant but a short reason
 *   (`HTTP 404`, `does not match the token`), never its body or headers.
 * - one DNS TXT query for `_patchbay-challenge.<domain>` to the system's resolvers.
 * Both run at most once per check, and checks are bounded per claim (claims.ts).
 */
import { lookup as dnsLookup, Resolver } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

/** The path a claimant serves the token at. */
export const WELL_KNOWN_PATH = '/.well-known/patchbay-challenge';
/** The label put before the domain for the TXT record. */
export const TXT_LABEL = '_patchbay-challenge';
/** Bytes of the well-known response read at most (the token is 43 characters). */
export const WELL_KNOWN_MAX_BYTES = 1024;
/** Each probe (resolve, connect, TLS, answer; or the DNS query) ends after this long. */
export const PROBE_TIMEOUT_MS = 5000;

/** A probe that found no proof, with a reason safe to show the claimant. */
export class ProbeFailed extends Error {}

/** The two places a proof can be. Each throws ProbeFailed (or any error: shown as a generic reason). */
export interface ClaimProbe {
  /** The body served at https://<domain>/.well-known/patchbay-challenge (at most WELL_KNOWN_MAX_BYTES). */
  wellKnown(domain: string): Promise<string>;
  /** The TXT records of `name`, each one's strings joined (none: an empty list). */
  txt(name: string): Promise<string[]>;
}

export type Address = { address: string; family: number };

export interface NetProbeOptions {
  timeoutMs?: number;
  /**
   * Tests only: the URL fetched for a domain instead of https://<domain>/.well-known/... (an
   * `http:` URL on a local server). Its host is still resolved by `lookup` and filtered.
   */
  wellKnownUrl?: (domain: string) => string;
  /** Resolves a host name to its addresses (default: the system's, `dns.lookup` with `all`). */
  lookup?: (host: string) => Promise<Address[]>;
  /** The TXT answer for a name (default: node:dns `Resolver.resolveTxt` on the system's servers). */
  resolveTxt?: (name: string) => Promise<string[][]>;
  /** Tests only: let connections go to non-public addresses (the local server is 127.0.0.1). */
  allowPrivate?: boolean;
}

/** Whether an address is one the well-known probe may connect to: public unicast only. */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  return ipaddr.process(address).range() === 'unicast';
}

/** The real probes: an https GET and a DNS TXT query, with the limits at the top of this file. */
export class NetClaimProbe implements ClaimProbe {
  private readonly timeoutMs: number;
  private readonly resolver = new Resolver({ timeout: 2000, tries: 2 });

  constructor(private readonly opts: NetProbeOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? PROBE_TIMEOUT_MS;
  }

  async wellKnown(domain: string): Promise<string> {
    const url = new URL(this.opts.wellKnownUrl ? this.opts.wellKnownUrl(domain) : `https://${domain}${WELL_KNOWN_PATH}`);
    const addresses = await this.addresses(url.hostname);
    const lookup: LookupFunction = (_host, options, callback) => {
      // Node asks for every address (`all`, for happy eyeballs) or for one.
      const cb = callback as (err: NodeJS.ErrnoException | null, address: string | Address[], family?: number) => void;
      if ((options as { all?: boolean }).all) cb(null, addresses);
      else cb(null, (addresses[0] as Address).address, (addresses[0] as Address).family);
    };
    const options: RequestOptions = {
      method: 'GET',
      lookup,
      agent: false,
      timeout: this.timeoutMs,
      headers: { accept: 'text/plain', 'user-agent': 'patchbay-claim-check' },
    };
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => req.destroy(new ProbeFailed(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      const done = (err: Error | null, body?: string) => {
        clearTimeout(timer);
        if (err) reject(err instanceof ProbeFailed ? err : new ProbeFailed(reason(err)));
        else resolve(body as string);
      };
      const req = send(url, options, (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          res.destroy();
          done(new ProbeFailed(status >= 300 && status < 400 ? `HTTP ${status}: redirects are not followed; serve the file itself` : `HTTP ${status}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > WELL_KNOWN_MAX_BYTES) {
            res.destroy();
            done(new ProbeFailed(`the answer is longer than ${WELL_KNOWN_MAX_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => done(null, Buffer.concat(chunks).toString('utf8')));
        res.on('error', (err) => done(err));
      });
      req.on('timeout', () => req.destroy(new ProbeFailed(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => done(err));
      req.end();
    });
  }

  async txt(name: string): Promise<string[]> {
    try {
      const records = await (this.opts.resolveTxt ? this.opts.resolveTxt(name) : this.resolver.resolveTxt(name));
      return records.map((chunks) => chunks.join(''));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENODATA' || code === 'ENOTFOUND') return [];
      throw new ProbeFailed(`DNS lookup failed${code ? ` (${code})` : ''}`);
    }
  }

  /** The host's addresses the probe may connect to; ProbeFailed when none is left. */
  private async addresses(host: string): Promise<Address[]> {
    let all: Address[];
    try {
      all = this.opts.lookup ? await this.opts.lookup(host) : await dnsLookup(host, { all: true, verbatim: true });
    } catch (err) {
      throw new ProbeFailed(reason(err as Error));
    }
    if (all.length === 0) throw new ProbeFailed('the host name does not resolve');
    const allowed = this.opts.allowPrivate ? all : all.filter((a) => isPublicAddress(a.address));
    if (allowed.length === 0) throw new ProbeFailed('the host name resolves only to non-public addresses');
    return allowed;
  }
}

/** A short reason for a network error, without addresses or internals. */
function reason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EAI_AGAIN') return 'the host name does not resolve';
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset';
  if (code === 'ETIMEDOUT' || code === 'ECONNABORTED') return 'timed out';
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO/.test(code)) return `TLS certificate not accepted (${code})`;
  return code ? `could not fetch (${code})` : 'could not fetch';
}
