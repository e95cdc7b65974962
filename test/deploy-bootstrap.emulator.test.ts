/**
 * The deploy's bootstrap token (infra/deploy/bootstrap.ts) on the Firestore emulator, through the
 * record store a real deploy uses (`deploymentRecords`: the deployment's project, database and
 * root): the token it mints is accepted by the app's own checks (a service identity of the default
 * domain, its record in `<root>/~records/service-token`), and refused once revoked. The key comes
 * from Secret Manager through gcloud (a runner standing in for it here); the token is never printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploymentRecords, mintDeployToken } from '../infra/deploy/bootstrap.js';
import { Gcloud } from '../infra/deploy/gcloud.js';
import { deployConfig } from '../infra/deploy/settings.js';
import { FirestoreRecords } from '../shared/adapters/google/firestore/records.js';
import { SERVICE_TOKEN_KIND, ServiceTokens } from '../shared/domains/service-tokens.js';
import { Auth } from '../shared/http/auth.js';
import { type FirestoreEmulator, startFirestoreEmulator } from './helpers/firestore-emulator.js';
import { skipWithout } from './helpers/proc.js';

const PROJECT = 'demo-deploy-bootstrap';
const KEY = 'the-deployment-jwt-key-0123456789abcdef0123456789';

describe.skipIf(skipWithout('gcloud', 'the Firestore emulator'))('the deploy bootstrap token on the Firestore emulator', () => {
  let emu: FirestoreEmulator;
  const saved = process.env.FIRESTORE_EMULATOR_HOST;

  beforeAll(async () => {
    emu = await startFirestoreEmulator(PROJECT);
    process.env.FIRESTORE_EMULATOR_HOST = emu.host; // what the deploy's own Firestore client reads
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.FIRESTORE_EMULATOR_HOST;
    else process.env.FIRESTORE_EMULATOR_HOST = saved;
    await emu?.stop();
  });

  it('mints a service token of the default domain the app accepts, with its record in the deployment root, and revokes it', async () => {
    const cfg = deployConfig(
      { project: PROJECT, region: 'europe-west1' },
      { UPSTASH_REDIS_REST_URL: 'https://x.upstash.io', UPSTASH_REDIS_REST_TOKEN: 't', PATCHBAY_FIRESTORE_ROOT: 'deployroot' },
    );
    const asked: string[][] = [];
    const printed: string[] = [];
    const gcloud = new Gcloud(
      async (args) => {
        asked.push(args);
        return { code: 0, stdout: KEY, stderr: '' };
      },
      PROJECT,
      (l) => printed.push(l),
    );
    const access = deploymentRecords(cfg);
    try {
      const minted = await mintDeployToken(cfg, gcloud, access.records, 'patchbay-jwt-secret');
      expect(asked).toEqual([['secrets', 'versions', 'access', 'latest', '--secret=patchbay-jwt-secret', `--project=${PROJECT}`]]);
      expect(printed).toEqual([]);
      // The record is where the app looks for it: the deployment's root.
      const records = new FirestoreRecords(emu.firestore(), 'deployroot');
      const stored = await records.list(SERVICE_TOKEN_KIND, { prefix: 'default/', limit: 10 });
      expect(stored).toHaveLength(1);
      expect(stored[0]?.value).toMatchObject({ domain: 'default', name: 'deploy smoke test', creator: 'patchbay deploy' });
      // The app's checks, as an instance runs them, accept it as the default domain's service identity.
      const tokens = new ServiceTokens(records, { checkMs: 0, maxLive: 10, maxTtlSeconds: 3600 });
      const auth = new Auth(new TextEncoder().encode(KEY), cfg.config, undefined, tokens);
      expect(await auth.fromHeader(`Bearer ${minted.token}`)).toMatchObject({ id: 'domain:default', kind: 'service', domain: 'default' });
      await minted.revoke();
      expect(await records.list(SERVICE_TOKEN_KIND, { prefix: 'default/', limit: 10 })).toEqual([]);
      await expect(auth.fromHeader(`Bearer ${minted.token}`)).rejects.toMatchObject({ code: 'unauthorized' });
    } finally {
      await access.close();
    }
  });
});
