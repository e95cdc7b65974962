/** The v1 API's route table: every route group, in one list (docs/openapi.yaml lists the same). */
import type { Ctx } from '../context.js';
import type { Route } from '../router.js';
import { accessRoutes } from './access.js';
import { authRoutes } from './auth.js';
import { batchRoutes } from './batch.js';
import { claimRoutes } from './claims.js';
import { configRoutes } from './config.js';
import { domainRoutes } from './domains.js';
import { eventRoutes } from './events.js';
import { fileRoutes } from './files.js';
import { healthRoutes } from './health.js';
import { historyRoutes } from './history.js';
import { meRoutes } from './me.js';
import { muxRoutes } from './mux.js';
import { nameRoutes } from './names.js';
import { patchRoutes } from './patches.js';
import { presenceRoutes } from './presence.js';
import { queryRoutes } from './queries.js';
import { scopeRoutes } from './scopes.js';
import { sessionRoutes } from './sessions.js';
import { tagRoutes } from './tags.js';
import { uploadRoutes } from './uploads.js';
import { webhookRoutes } from './webhooks.js';

export const ROUTES: readonly Route<Ctx>[] = [
  ...authRoutes,
  ...meRoutes,
  ...scopeRoutes,
  ...accessRoutes,
  ...nameRoutes,
  ...tagRoutes,
  ...patchRoutes,
  ...batchRoutes,
  ...historyRoutes,
  ...eventRoutes,
  ...muxRoutes,
  ...presenceRoutes,
  ...sessionRoutes,
  ...configRoutes,
  ...claimRoutes,
  ...domainRoutes,
  ...webhookRoutes,
  ...queryRoutes,
  ...uploadRoutes,
  ...fileRoutes,
  ...healthRoutes,
];
