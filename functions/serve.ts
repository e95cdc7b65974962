/**
 * `npm start`: the same handler as the Cloud Function, served by a plain Node HTTP server with
 * the adapters of PATCHBAY_MODE (embedded by default). Stops cleanly on SIGINT / SIGTERM.
 */
import { resolve } from 'node:path';
import { createApp } from '../shared/app.js';
import { ConfigError, loadConfig } from '../shared/config.js';
import { exitOnSignal, listen } from '../shared/http/listen.js';

async function main(): Promise<void> {
  // `npm start` serves the API only, no internal endpoint, so it needs no OIDC settings (PATCHBAY_OIDC).
  const config = loadConfig(process.env, { oidc: 'off' });
  const app = await createApp(config);
  const http = await listen(app.handler, config.port, config.host, config);
  const where = config.mode === 'embedded' ? `, data in ${resolve(config.dataDir)}` : '';
  const host = config.host === '0.0.0.0' ? 'localhost' : config.host;
  console.log(JSON.stringify({ severity: 'INFO', message: `patchbay listening on http://${host}:${http.port} (${config.mode}${where})`, port: http.port }));
  exitOnSignal(async () => {
    await http.close();
    await app.close();
  });
}

main().catch((err) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
