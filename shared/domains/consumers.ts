/**
 * The push consumers patchbay itself registers (shared/app.ts), by name, with the Pub/Sub
 * subscription filter each one's subscription carries on Google (none: every message). The deploy
 * pipeline (infra/deploy/desired.ts) makes one push subscription per name, with its filter; the
 * app's own `accepts` check stays, so a subscription without its filter still delivers correctly.
 */
import { APPLY_CONSUMER, APPLY_FILTER } from './apply.js';
import { MIRROR_CONSUMER, MIRROR_FILTER } from './mirror-step.js';
import { WEBHOOKS_CONSUMER } from './webhooks.js';

export const BUILT_IN_CONSUMERS: Readonly<Record<string, { filter?: string }>> = {
  [APPLY_CONSUMER]: { filter: APPLY_FILTER },
  [WEBHOOKS_CONSUMER]: {},
  [MIRROR_CONSUMER]: { filter: MIRROR_FILTER },
};
