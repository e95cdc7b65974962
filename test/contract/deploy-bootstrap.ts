/**
 * The deploy bootstrap's domains (infra/deploy/domains.ts, issue 17 item 4) against a real server
 * of either stack, through the deployment's own record store and the deploy's config-capable
 * tokens (minted as the deploy mints them, the JWT key coming from a stand-in for Secret Manager):
 * - a first run makes the listed admins admins (keeping one added by hand), uploads the
 *   configuration and waits until it is applied (latest == active, the report `done`);
 * - a second run changes nothing: no upload (the latest version stays), the admins as they are;
 * - a changed file uploads version 2, applied the same way;
 * - a configuration that does not compile is refused when the file is read, before anything is
 *   touched, naming the coded error and its line;
 * - every token the deploy minted is revoked when it is done (no token record left).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintDeployToken } from '../../infra/deploy/bootstrap.js';
import { bootstrapDomains, loadDomainsFile } from '../../infra/deploy/domains.js';
import { Gcloud } from '../../infra/deploy/gcloud.js';
import { deployConfig } from '../../infra/deploy/settings.js';
import { SERVICE_TOKEN_KIND } from '../../shared/domains/service-tokens.js';
import { loadSecret } from '../../shared/http/auth.js';
import { type TestServer, tempDir } from '../helpers/server.js';
import type { StartDelivering } from './config.js';

const DOMAIN = 'shop.example.com';
const V1 = 'types:\n  order:\n    schema: { type: object, required: [sku] }\n';
const V2 = 'types:\n  order:\n    schema: { type: object, required: [sku, qty] }\n';

export function deployBootstrapContract(stack: string, start: StartDelivering): void {
  describe(`the deploy bootstrap's domains (${stack})`, () => {
    let srv: TestServer;
    let close: () => Promise<void>;
    const dir = tempDir('patchbay-deploy-domains-');
    const file = join(dir, 'domains.yaml');
    const printed: string[] = [];
    let minted = 0;

    beforeAll(async () => {
      ({ srv, close } = await start());
    });
    afterAll(() => close());

    /** One bootstrap run, as main runs it; the lines it printed. */
    async function run(): Promise<{ ok: boolean; lines: string[] }> {
      const key = new TextDecoder().decode(loadSecret(srv.app.config));
      const cfg = deployConfig(
        { project: 'demo-deploy-domains', region: 'europe-west1' },
        { UPSTASH_REDIS_REST_URL: 'https://x.upstash.io', UPSTASH_REDIS_REST_TOKEN: 't' },
      );
      const gcloud = new Gcloud(
        async () => ({ code: 0, stdout: key, stderr: '' }),
        cfg.project,
        (l) => printed.push(l),
      );
      const records = srv.app.adapters.records;
      const lines: string[] = [];
      const ok = await bootstrapDomains(loadDomainsFile(file, srv.app.config), {
        base: srv.url,
        records,
        mint: (domain) => {
          minted++;
          return mintDeployToken(cfg, gcloud, records, 'patchbay-jwt-secret', { domain, name: 'deploy configuration', config: true });
        },
        out: (l) => lines.push(l),
        waitMs: 30_000,
        pollMs: 50,
      });
      return { ok, lines };
    }

    const setFiles = (config: string) => {
      writeFileSync(join(dir, 'shop.yaml'), config);
      writeFileSync(file, `domains:\n  ${DOMAIN}:\n    admins: [firebase:alice, firebase:bob]\n    config: shop.yaml\n`);
    };
    const state = async () => ({
      head: await srv.app.domainConfigs.head(DOMAIN),
      admins: (await srv.app.adapters.records.get('domain', DOMAIN))?.value,
      tokens: await srv.app.adapters.records.list(SERVICE_TOKEN_KIND, { prefix: `${DOMAIN}/`, limit: 100 }),
    });

    it('a first run adds the admins (keeping others), uploads the configuration and waits until it is applied', async () => {
      await srv.app.domains.addAdmin(DOMAIN, 'firebase:carol'); // added by hand: never removed
      setFiles(V1);
      const { ok, lines } = await run();
      expect(ok, lines.join('\n')).toBe(true);
      expect(lines).toEqual([
        `bootstrap: ${DOMAIN}: admins added: firebase:alice, firebase:bob`,
        `bootstrap: ${DOMAIN}: configuration uploaded as version 1 (replacing 0); waiting for its apply`,
        `bootstrap: ${DOMAIN}: configuration version 1 applied`,
      ]);
      const s = await state();
      expect(s.head).toEqual({ latest: 1, active: 1 });
      expect(s.admins).toMatchObject({ admins: ['firebase:carol', 'firebase:alice', 'firebase:bob'] });
      expect(s.tokens).toEqual([]); // the deploy's token was revoked
      const v = await srv.app.domainConfigs.version(DOMAIN, 1);
      expect(v).toMatchObject({ text: V1, uploadedBy: `domain:${DOMAIN}` });
      expect(printed).toEqual([]); // neither the key nor a token is printed
    });

    it('a second run changes nothing and says so', async () => {
      const before = await state();
      const { ok, lines } = await run();
      expect(ok, lines.join('\n')).toBe(true);
      expect(lines).toEqual([
        `bootstrap: ${DOMAIN}: admins as listed (2)`,
        `bootstrap: ${DOMAIN}: configuration up to date (version 1, active); nothing uploaded`,
      ]);
      const after = await state();
      expect(after.head).toEqual(before.head);
      expect(after.admins).toEqual(before.admins); // not even rewritten (same `updated`)
      expect(after.tokens).toEqual([]);
    });

    it('a changed configuration file uploads version 2, applied', async () => {
      setFiles(V2);
      const { ok, lines } = await run();
      expect(ok, lines.join('\n')).toBe(true);
      expect(lines.slice(1)).toEqual([
        `bootstrap: ${DOMAIN}: configuration uploaded as version 2 (replacing 1); waiting for its apply`,
        `bootstrap: ${DOMAIN}: configuration version 2 applied`,
      ]);
      expect((await state()).head).toEqual({ latest: 2, active: 2 });
      expect(await srv.app.domainConfigs.version(DOMAIN, 2)).toMatchObject({ text: V2, replaces: 1 });
    });

    it('a configuration that does not compile is refused when the file is read, naming its line; nothing changes', async () => {
      const before = await state();
      const mintedBefore = minted;
      setFiles('types:\n  order:\n    schema: { type: object }\n    extra: 1\n');
      expect(() => loadDomainsFile(file, srv.app.config)).toThrow(/invalid_config: .*\n +line 4, column 5: types\.order\.extra: /);
      await expect(run()).rejects.toThrow(/invalid_config/);
      expect(minted).toBe(mintedBefore);
      expect(await state()).toEqual(before);
      setFiles(V2);
    });

    it('a domains file that breaks its shape is refused naming where', () => {
      for (const [text, problem] of [
        ['domains:\n  Not_A_Domain:\n    admins: []\n', /Not_A_Domain/],
        [`domains:\n  ${DOMAIN}:\n    admins: [firebase:a]\n    extra: 1\n`, /extra/],
        [`domains:\n  ${DOMAIN}:\n    config: missing.yaml\n`, /cannot read the configuration of shop\.example\.com/],
        ['domains: [a\n', /not YAML/],
      ] as const) {
        writeFileSync(file, text);
        expect(() => loadDomainsFile(file, srv.app.config)).toThrow(problem);
      }
      setFiles(V2);
    });
  });
}
