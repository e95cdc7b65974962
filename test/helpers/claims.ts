/**
 * A stand-in internet for domain claims: a real HTTP server on 127.0.0.1 that answers
 * `/.well-known/patchbay-challenge` per host name (the `Host` header) with whatever a test puts
 * there, and a table of DNS TXT answers. `probe` is the real NetClaimProbe pointed at them: every
 * host name resolves to 127.0.0.1 (through its injected lookup, with non-public addresses allowed),
 * its URLs are `http://<domain>:<port>/...` instead of https, and its TXT answers come from the table.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NetClaimProbe } from '../../shared/domains/claim-check.js';

/** What the local server answers for one host: a body (200), or a status with an optional Location. */
export type Served = string | { status: number; location?: string; body?: string };

export interface FakeInternet {
  /** What `https://<domain>/.well-known/patchbay-challenge` answers (absent: 404). */
  files: Map<string, Served>;
  /** TXT records by name (absent: no record). */
  txt: Map<string, string[][]>;
  /** Well-known requests received, by host name. */
  hits: Map<string, number>;
  probe: NetClaimProbe;
  close(): Promise<void>;
}

export async function startFakeInternet(opts: { timeoutMs?: number } = {}): Promise<FakeInternet> {
  const files = new Map<string, Served>();
  const txt = new Map<string, string[][]>();
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const host = (req.headers.host ?? '').replace(/:[0-9]+$/, '');
    hits.set(host, (hits.get(host) ?? 0) + 1);
    const served = req.url === '/.well-known/patchbay-challenge' ? files.get(host) : undefined;
    if (served === undefined) {
      res.writeHead(404).end('not here');
      return;
    }
    if (typeof served === 'string') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end(served);
      return;
    }
    res.writeHead(served.status, served.location ? { location: served.location } : {}).end(served.body ?? '');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const probe = new NetClaimProbe({
    timeoutMs: opts.timeoutMs,
    wellKnownUrl: (domain) => `http://${domain}:${port}/.well-known/patchbay-challenge`,
    lookup: async () => [{ address: '127.0.0.1', family: 4 }],
    allowPrivate: true,
    resolveTxt: async (name) => {
      const answer = txt.get(name);
      if (answer) return answer;
      throw Object.assign(new Error(`queryTxt ENODATA ${name}`), { code: 'ENODATA' });
    },
  });
  return {
    files,
    txt,
    hits,
    probe,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
