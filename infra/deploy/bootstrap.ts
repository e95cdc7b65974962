/**
 * The deploy's identity inside the app, for the bootstrap after the infrastructure: a short-lived
 * service token of the default domain, minted the way `POST /v1/domains/{domain}/tokens` mints
 * one (its record in the deployment's record store, shared/domains/service-tokens.ts; the JWT
 * signed with the deployment's own key, read from Secret Manager), used by the smoke test, and
 * revoked when the deploy is done with it. Neither the key nor the token is ever printed or
 * written anywhere: both live only in this process's memory.
 *
 * The record store is the deployment's Firestore, reached with the operator's Application Default
 * Credentials (`gcloud auth application-default login`); tests give another store (io.records).
 */
import { Firestore } from '@google-cloud/firestore';
import { FirestoreRecords } from '../../shared/adapters/google/firestore/records.js';
import { ServiceTokens } from '../../shared/domains/service-tokens.js';
import { Auth, loadSecret } from '../../shared/http/auth.js';
import type { RecordStore } from '../../shared/ports/records.js';
import { DEFAULT_DOMAIN } from '../../shared/protocol.js';
import type { Gcloud } from './gcloud.js';
import type { DeployConfig } from './settings.js';

/** How long the smoke test's token lives (it is revoked at once after; this bounds a crash). */
export const SMOKE_TOKEN_TTL_S = 600;

export interface RecordAccess {
  records: RecordStore;
  close(): Promise<void>;
}

/** The deployment's record store: its Firestore database and root, with the operator's credentials. */
export function deploymentRecords(cfg: DeployConfig): RecordAccess {
  const db = new Firestore({ projectId: cfg.project, databaseId: cfg.config.firestoreDatabase });
  return { records: new FirestoreRecords(db, cfg.config.firestoreRoot), close: () => db.terminate() };
}

export interface MintedToken {
  /** The bearer token (never print it). */
  token: string;
  domain: string;
  revoke(): Promise<void>;
}

/** Mints a service token of the default domain for the deploy; `jwtSecretId` is the Secret Manager secret of PATCHBAY_JWT_SECRET. */
export async function mintDeployToken(cfg: DeployConfig, gcloud: Gcloud, records: RecordStore, jwtSecretId: string): Promise<MintedToken> {
  const key = await gcloud.text(['secrets', 'versions', 'access', 'latest', `--secret=${jwtSecretId}`]);
  if (key === null || key === '') throw new Error(`secret ${jwtSecretId} has no value`);
  const tokens = new ServiceTokens(records, {
    checkMs: cfg.config.serviceTokenCheckMs,
    maxLive: cfg.config.maxServiceTokens,
    maxTtlSeconds: cfg.config.serviceTokenMaxTtlSeconds,
  });
  const domain = DEFAULT_DOMAIN;
  const record = await tokens.create(domain, 'patchbay deploy', {
    name: 'deploy smoke test',
    ttlSeconds: Math.min(SMOKE_TOKEN_TTL_S, cfg.config.serviceTokenMaxTtlSeconds),
  });
  const auth = new Auth(loadSecret({ jwtSecret: key, dataDir: '.', mode: 'google' }), cfg.config);
  const token = await auth.issueService(domain, record.id, record.expires);
  return {
    token,
    domain,
    revoke: async () => {
      await tokens.revoke(domain, record.id);
    },
  };
}
