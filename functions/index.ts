/**
 * Cloud Functions entry points. Thin: each builds the app once per instance (cold start) and
 * hands every request to a shared handler.
 *   api:   the v1 HTTP API.
 *   push:  Pub/Sub push deliveries for the registered consumers (`POST /push/<consumer>`).
 * push, sweep and bundle are internal: with PATCHBAY_OIDC on (the default in google mode) each
 * checks the caller's Google-signed OIDC token (shared/http/internal-auth.ts).
 *   sweep: for Cloud Scheduler (every minute): republishes committed patches whose publish never
 *          happened, finishes the purges of deleted scopes, checks pending domain claims, closes
 *          timed-out sessions (their guarantees and close hooks) and expires unfinished uploads;
 *          answers `{published, deleted, claims, sessions, uploads}`.
 *   bundle: the cold-storage bundler, for Cloud Scheduler (every few minutes): bundles, snapshots
 *          and trims every scope with work, within PATCHBAY_BUNDLE_BUDGET_MS, and answers its
 *          report (`?scope=<id>` works on that scope alone). Set the function's timeout above the
 *          budget; a run cut short is harmless (leases expire, the next run goes on).
 */
import * as functions from '@google-cloud/functions-framework';
import { type App, createApp } from '../shared/app.js';
import { loadConfig } from '../shared/config.js';
import { refusalFields } from '../shared/http/internal-auth.js';
import { begin, logRequest, sendError } from '../shared/http/respond.js';
import { consumers } from './consumers.js';

// Read at cold start, so a bad or missing setting fails the instance at once, naming the
// variable, instead of answering 500 to every request. No timers in a function instance: Cloud
// Scheduler calls `sweep` and `bundle`.
const config = loadConfig();
const app: Promise<App> = createApp(config, { sweeper: false, bundler: false, consumers });
app.catch(() => {}); // a failure is reported to the first request that awaits it
const instance = (): Promise<App> => app;

// Best effort: the Functions Framework exits on SIGTERM without waiting for this, so an instance's
// SSE subscription may instead be left to expire (Pub/Sub's minimum expiry is one day).
process.once('SIGTERM', () => {
  void app.then((a) => a.close());
});

functions.http('api', async (req, res) => {
  await (await instance()).handler(req, res);
});

functions.http('push', async (req, res) => {
  await (await instance()).push(req, res);
});

/**
 * A scheduled function: the caller check (an OIDC token for `<PATCHBAY_OIDC_AUDIENCE>/<route>`,
 * shared/http/internal-auth.ts), then its answer, or the error response, and its request log line.
 */
function scheduled(route: string, run: (req: functions.Request) => Promise<{ status: number; body: unknown }>): functions.HttpFunction {
  return async (req, res) => {
    const { logger, internal } = await instance();
    const x = begin(req, res, config, logger);
    let status: number | undefined;
    let refusal = {};
    try {
      await internal.check(req, route);
      const answer = await run(req);
      res.status(answer.status).json(answer.body);
    } catch (err) {
      status = await sendError(x, err, { route });
      refusal = refusalFields(err);
    } finally {
      logRequest(x, status ?? res.statusCode, { route, ...refusal });
    }
  };
}

functions.http(
  'sweep',
  scheduled('sweep', async () => ({ status: 200, body: await (await instance()).sweep() })),
);

functions.http(
  'bundle',
  scheduled('bundle', async (req) => {
    const { bundler } = await instance();
    const scope = typeof req.query.scope === 'string' && req.query.scope !== '' ? req.query.scope : undefined;
    if (scope !== undefined) return { status: 200, body: await bundler.bundleScope(scope) };
    const report = await bundler.run();
    // Some scope failed: a 500 makes Cloud Scheduler log the run as failed (the others are done).
    return { status: report.failed.length > 0 ? 500 : 200, body: report };
  }),
);
