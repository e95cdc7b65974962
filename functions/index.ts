/**
 * Cloud Functions entry points. Thin: they build the app once per instance (cold start) and hand
 * every request to the shared handler.
 *   api: the v1 HTTP API (target `api`).
 */
import * as functions from '@google-cloud/functions-framework';
import { type App, createApp } from '../shared/app.js';
import { loadConfig } from '../shared/config.js';

let app: Promise<App> | undefined;
const instance = (): Promise<App> => {
  app ??= createApp(loadConfig());
  return app;
};

functions.http('api', async (req, res) => {
  await (await instance()).handler(req, res);
});
