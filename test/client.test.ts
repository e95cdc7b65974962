/**
 * The TypeScript client (client/, `@patchbay/client`): its contract against the real embedded
 * server (test/contract/client.ts, and its uploads, sessions and presence in
 * test/contract/client-sessions.ts; the emulator stack runs both), the RFC 6902 fixtures through
 * its local apply with the server's results, and the package's build.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { applyPatch, type Patch } from '../client/src/index.js';
import type { Json } from '../shared/json.js';
import { findProtoKey } from '../shared/json.js';
import { patchSchema } from '../shared/protocol.js';
import { clientContract } from './contract/client.js';
import { clientApiContract } from './contract/client-api.js';
import { clientComposeContract } from './contract/client-compose.js';
import { clientHistoryContract } from './contract/client-history.js';
import { clientOfflineContract } from './contract/client-offline.js';
import { clientOrderingContract } from './contract/client-ordering.js';
import { clientSessionsContract } from './contract/client-sessions.js';
import { startServer } from './helpers/server.js';

clientContract('embedded', (overrides) => startServer(overrides));
clientOfflineContract('embedded', (overrides) => startServer(overrides));
clientHistoryContract('embedded', (overrides) => startServer(overrides));
clientSessionsContract('embedded', (overrides) => startServer(overrides));
clientApiContract('embedded', (overrides) => startServer(overrides));
clientComposeContract('embedded', (overrides) => startServer(overrides));
clientOrderingContract('embedded', (overrides) => startServer(overrides));

describe("the client's local apply runs the RFC 6902 fixtures as the server does", () => {
  interface Case {
    name: string;
    doc: Json;
    patch: unknown[];
    expected?: Json;
    error?: number;
    reject?: number;
  }
  const { cases } = JSON.parse(readFileSync(new URL('./fixtures/rfc6902.json', import.meta.url), 'utf8')) as { cases: Case[] };
  // Cases the server refuses before applying (schema, forbidden segments, limits) are not the apply's to judge.
  for (const c of cases.filter((c) => c.reject === undefined)) {
    it(c.name, () => {
      expect(findProtoKey(c.patch)).toBeNull();
      const patch = patchSchema.parse(c.patch) as Patch;
      const before = JSON.stringify(c.doc);
      if (c.error !== undefined) {
        let err: unknown;
        try {
          applyPatch(c.doc, patch);
        } catch (e) {
          err = e;
        }
        expect(err).toMatchObject({ code: 'patch_failed', details: { op: c.error } });
      } else {
        expect(applyPatch(c.doc, patch)).toEqual(c.expected);
      }
      expect(JSON.stringify(c.doc)).toBe(before); // the input is never changed
    });
  }
});

describe('the package', () => {
  it('builds (npm run build:client: ESM and type declarations) and loads in Node', async () => {
    const { execFileSync } = await import('node:child_process');
    const { existsSync } = await import('node:fs');
    const root = new URL('../', import.meta.url).pathname;
    execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', 'client/tsconfig.json'], { cwd: root, stdio: 'pipe' });
    const pkg = JSON.parse(readFileSync(`${root}client/package.json`, 'utf8')) as { exports: { '.': { types: string; import: string } } };
    expect(existsSync(`${root}client/${pkg.exports['.'].types}`)).toBe(true);
    const built = await import(`${root}client/${pkg.exports['.'].import}`);
    expect(typeof built.createClient).toBe('function');
    expect(built.applyPatch({ a: 1 }, [{ op: 'replace', path: '/a', value: 2 }])).toEqual({ a: 2 });
  }, 120_000);
});
