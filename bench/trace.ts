/**
 * The server under test with a stopwatch on every port call: the same app as
 * `functions/serve.ts` (createApp with the mode's adapters), except that each method of the
 * ledger, hot cache and bus is wrapped to record its wall-clock duration, and the handler's whole
 * request time is recorded too. On SIGTERM it prints one JSON line `{"trace": {...}}` (count,
 * mean, p50, p99 and total ms per call) and exits. A CPU profile cannot show where a request waits
 * on the emulators; this can. Driven by `profile.ts --trace`.
 */
import { createServer } from 'node:http';
import { adaptersFor, createApp } from '../shared/app.js';
import { loadConfig } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import type { Adapters } from '../shared/ports/index.js';
import { quantile } from './harness.js';

const times = new Map<string, number[]>();
const note = (name: string, ms: number) => {
  let a = times.get(name);
  if (!a) {
    a = [];
    times.set(name, a);
  }
  a.push(ms);
};

function timed<T extends object>(label: string, target: T): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const out = v.apply(obj, args);
        if (out instanceof Promise) {
          return out.finally(() => note(`${label}.${prop}`, performance.now() - t0));
        }
        note(`${label}.${prop}`, performance.now() - t0);
        return out;
      };
    },
  });
}

const config = loadConfig();
const raw = await adaptersFor(config, createLogger('error'));
const adapters: Adapters = {
  ledger: timed('ledger', raw.ledger),
  cache: timed('cache', raw.cache),
  bus: timed('bus', raw.bus),
  blobs: raw.blobs,
  records: raw.records,
};
const app = await createApp(config, { adapters });
const server = createServer((req, res) => {
  const t0 = performance.now();
  const route = `${req.method} ${(req.url ?? '').replace(/\/v1\/scopes\/[^/?]+/, '/v1/scopes/:id').split('?')[0]}`;
  res.once('finish', () => note(`http ${route}`, performance.now() - t0));
  void app.handler(req, res);
});
server.listen(config.port, config.host, () => {
  const addr = server.address();
  console.log(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 }));
});
process.once('SIGTERM', async () => {
  server.closeAllConnections();
  server.close();
  await app.close();
  const trace = Object.fromEntries(
    [...times.entries()].map(([k, v]) => {
      const total = v.reduce((a, b) => a + b, 0);
      return [k, { count: v.length, mean: total / v.length, p50: quantile(v, 0.5), p99: quantile(v, 0.99), total }];
    }),
  );
  console.log(JSON.stringify({ trace }));
  process.exit(0);
});
