/**
 * `npm start`: the same handler as the Cloud Function, served by a plain Node HTTP server with
 * the adapters of PATCHBAY_MODE (embedded by default). Stops cleanly on SIGINT / SIGTERM.
 */
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { createApp } from '../shared/app.js';
import { ConfigError, loadConfig } from '../shared/config.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const app = await createApp(config);
  const server = createServer((req, res) => void app.handler(req, res));
  server.keepAliveTimeout = 65_000;
  server.listen(config.port, config.host, () => {
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.port;
    const where = config.mode === 'embedded' ? `, data in ${resolve(config.dataDir)}` : '';
    console.log(
      JSON.stringify({
        severity: 'INFO',
        message: `patchbay listening on http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port} (${config.mode}${where})`,
        port,
      }),
    );
  });
  const stop = async () => {
    server.close();
    server.closeAllConnections();
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((err) => {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
