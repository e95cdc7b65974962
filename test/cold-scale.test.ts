/**
 * History and SSE catch-up across cold storage at scale, embedded (guarantees 4 and 6): a scope
 * with 100,000 patches, committed through the ledger port in big commits, then bundled and
 * trimmed by the real bundler (99,000 patches leave SQLite for 99+ gzip bundles in the data
 * directory), streams every patch in order, in bounded memory, then continues live.
 */
import { Bundler } from '../shared/cold/bundler.js';
import { coldScale, SCALE_HOT } from './contract/cold-scale.js';
import { seed } from './helpers/cold.js';
import { startServer } from './helpers/server.js';

coldScale('embedded', startServer, async (srv, id, n) => {
  const { ledger, blobs } = srv.app.adapters;
  let t0 = performance.now();
  await seed(ledger, id, n, { chunk: 20_000, patch: (ii) => [{ op: 'replace', path: '/n', value: ii }] });
  console.log(`[embedded] committed ${n} patches through the ledger port in ${Math.round(performance.now() - t0)} ms`);
  t0 = performance.now();
  const bundler = new Bundler(ledger, blobs, { ...srv.app.config, retainPatches: SCALE_HOT, retainMinutes: 0, trimChunk: 5000 });
  const r = await bundler.bundleScope(id);
  const ms = performance.now() - t0;
  console.log(`[embedded] bundled ${r.patches} patches (${r.bundles} bundles, ${r.snapshots} snapshots) and trimmed ${r.trimmed} in ${Math.round(ms)} ms`);
});
