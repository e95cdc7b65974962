/**
 * What a domain's admin reads about its mirror (`GET /v1/domains/{domain}/mirror`): whether the
 * domain has one (its active configuration has `tables` or `queries`), the mirror lag over the
 * last five minutes (p50, p99, max, samples: every process's, shared/mirror/lag.ts) and, per
 * table, the newest row the mirror consumer wrote (scope, `ii`, when). Backfill progress is in
 * the configuration's report (`/mirror`). A domain without a mirror never opens the embedded one.
 */
import { PatchbayError } from '../errors.js';
import { LAG_WINDOW_MS } from '../mirror/lag.js';
import type { Mirror, MirrorStatus } from '../ports/mirror.js';
import type { ActiveConfigs } from './active.js';
import { mirrorTablesOf } from './mirror-step.js';

export type DomainMirrorStatus = { mirror: boolean } & MirrorStatus;

export async function domainMirrorStatus(configs: ActiveConfigs, mirror: Mirror | null, domain: string): Promise<DomainMirrorStatus> {
  await configs.prepare?.(domain);
  const empty: MirrorStatus = { lag: { windowMs: LAG_WINDOW_MS, count: 0, p50: null, p99: null, max: null }, tables: {} };
  if (mirrorTablesOf(configs.get(domain)?.config) === null) return { mirror: false, ...empty };
  if (mirror === null) throw new PatchbayError('unavailable', 'this deployment has no mirror');
  return { mirror: true, ...(await mirror.status(domain, LAG_WINDOW_MS)) };
}
