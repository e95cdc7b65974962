/**
 * The deploy bootstrap's domains on the embedded stack (the shared contract,
 * test/contract/deploy-bootstrap.ts; on the Google stack in google.emulator.test.ts), its apply
 * delivered in-process.
 */
import { deployBootstrapContract } from './contract/deploy-bootstrap.js';
import { startServer } from './helpers/server.js';

deployBootstrapContract('embedded', async () => {
  const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true, mirror: null });
  return { srv, close: () => srv.close() };
});
