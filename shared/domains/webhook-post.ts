/**
 * One webhook delivery on the wire: a JSON POST signed per the Standard Webhooks specification
 * (the `standardwebhooks` library signs, so receivers verify with any of its implementations),
 * with headers `webhook-id`, `webhook-timestamp` and `webhook-signature`.
 *
 * Bounded and not redirectable: the whole exchange (connect to end of body) must finish within
 * PATCHBAY_WEBHOOK_TIMEOUT_MS; a 3xx is a failure (never followed); the response body is read up
 * to PATCHBAY_WEBHOOK_MAX_RESPONSE_BYTES (past it, `body` is null and `truncated` set).
 *
 * Server-side request forgery: with private addresses refused (PATCHBAY_WEBHOOK_PRIVATE_ADDRESSES,
 * by default in google mode), the check runs on the addresses the connection actually uses (the
 * socket's DNS lookup), so a host name that resolves to a private address, or is rebound to one
 * after a check, is refused all the same. Refused: loopback, private (RFC 1918, unique local),
 * link-local (the metadata server at 169.254.169.254), carrier-grade NAT, unspecified, multicast,
 * reserved.
 *
 * Nothing of the payload or the secret is logged here; errors carry the status or the cause only.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import ipaddr from 'ipaddr.js';
import * as standardwebhooks from 'standardwebhooks';

// standardwebhooks is CommonJS: depending on interop, its exports are the module itself or its `default`.
const { Webhook } = ((standardwebhooks as unknown as { default?: typeof standardwebhooks }).default ?? standardwebhooks) as typeof standardwebhooks;

export interface PostOptions {
  timeoutMs: number;
  maxResponseBytes: number;
  refusePrivate: boolean;
}

export interface PostResult {
  status: number;
  /** The response body, when it was at most maxResponseBytes. */
  body: Buffer | null;
  truncated: boolean;
}

/** Standard Webhooks headers for `payload` sent as message `id` at `now`. */
export function signedHeaders(secret: string, id: string, payload: string, now: Date): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, now, payload),
  };
}

/** Whether an address is one a webhook may not reach when private addresses are refused. */
export function isPrivateAddress(address: string): boolean {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.process(address); // an IPv4-mapped IPv6 address becomes IPv4
  } catch {
    return true; // not an address: refuse
  }
  return ip.range() !== 'unicast';
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A DNS lookup that fails for private addresses (see the top of this file). */
function publicOnlyLookup(hostname: string, options: object, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const list = addresses as LookupAddress[];
    const refused = list.find((a) => isPrivateAddress(a.address));
    if (refused) {
      const e: NodeJS.ErrnoException = new Error(`${hostname} resolves to ${refused.address}, a non-public address (PATCHBAY_WEBHOOK_PRIVATE_ADDRESSES)`);
      e.code = 'EPRIVATEADDRESS';
      return callback(e, []);
    }
    if ((options as { all?: boolean }).all) return callback(null, list);
    const first = list[0] as LookupAddress;
    callback(null, first.address, first.family);
  });
}

/** POSTs `payload` (JSON text) with `headers`; resolves with the answer, rejects on a network error or the timeout. */
export function postWebhook(url: string, payload: string, headers: Record<string, string>, opts: PostOptions): Promise<PostResult> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  if (opts.refusePrivate && ipaddr.isValid(u.hostname.replace(/^\[|\]$/g, '')) && isPrivateAddress(u.hostname.replace(/^\[|\]$/g, ''))) {
    return Promise.reject(new Error(`${u.hostname} is a non-public address (PATCHBAY_WEBHOOK_PRIVATE_ADDRESSES)`));
  }
  return new Promise<PostResult>((resolve, reject) => {
    const req = send(
      u,
      {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), 'user-agent': 'patchbay-webhooks' },
        signal: AbortSignal.timeout(opts.timeoutMs),
        ...(opts.refusePrivate ? { lookup: publicOnlyLookup as never } : {}),
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        res.on('data', (c: Buffer) => {
          if (truncated) return;
          size += c.length;
          if (size > opts.maxResponseBytes) {
            truncated = true;
            chunks.length = 0;
            res.destroy(); // no need to read the rest
            resolve({ status: res.statusCode ?? 0, body: null, truncated: true });
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), truncated: false }));
        res.on('error', (err) => {
          if (!truncated) reject(err);
        });
      },
    );
    req.on('error', (err) => reject(err.name === 'AbortError' ? new Error(`no answer within ${opts.timeoutMs} ms`) : err));
    req.end(payload);
  });
}
