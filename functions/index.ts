/**
 * Cloud Functions entry points. Thin: each builds the app once per instance (cold start) and
 * hands every request to a shared handler.
 *   api:   the v1 HTTP API.
 *   push:  Pub/Sub push deliveries for the registered consumers (`POST /push/<consumer>`).
 *   sweep: the outbox sweeper, for Cloud Scheduler (every minute): republishes committed patches
 *          whose publish never happened, and answers `{published}`.
 */
import * as functions from '@google-cloud/functions-framework';
import { type App, createApp } from '../shared/app.js';
import { loadConfig } from '../shared/config.js';

let app: Promise<App> | undefined;
const instance = (): Promise<App> => {
  // No timer in a function instance: Cloud Scheduler calls `sweep`.
  app ??= createApp(loadConfig(), { sweeper: false });
  return app;
};

// An instance being shut down closes its Pub/Sub subscription (SSE) instead of leaving it to expire.
process.once('SIGTERM', () => {
  void app?.then((a) => a.close());
});

functions.http('api', async (req, res) => {
  await (await instance()).handler(req, res);
});

functions.http('push', async (req, res) => {
  await (await instance()).push(req, res);
});

functions.http('sweep', async (_req, res) => {
  const published = await (await instance()).engine.sweep();
  res.status(200).json({ published });
});
