/**
 * The push consumers the Cloud Functions register, by name: each is served by the `push`
 * function at `/push/<name>` and gets its own Pub/Sub push subscription from the deploy pipeline
 * (infra/deploy/desired.ts reads the names from here). The mirror (#10) and webhooks (#11) add
 * theirs here.
 */
import type { PatchHandler } from '../shared/engine/consumer.js';

export const consumers: Record<string, PatchHandler> = {};
