/**
 * `npm run dev:cloud` (dist/infra/dev-cloud.js): starts every local stand-in on the ports in
 * firebase.json, serves the v1 API with the Google adapters (checked with a write and a live SSE
 * event that travels through the Pub/Sub emulator), and on Ctrl-C (SIGINT) stops everything it
 * started: afterwards nothing listens on any of those ports.
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, listening, skipWithout } from './helpers/proc.js';
import { newClient, tempDir } from './helpers/server.js';
import { openSse, patchIndices } from './helpers/sse.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

describe.skipIf(skip)('npm run dev:cloud', () => {
  it('serves the API on the local Google stack and stops every stand-in on Ctrl-C', async () => {
    const cwd = tempDir('patchbay-devcloud-');
    const [firestore, pubsub, storage, redis, upstash] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const ports = { firestore, pubsub, storage, redis, upstash };
    writeFileSync(
      `${cwd}/firebase.json`,
      JSON.stringify({ emulators: Object.fromEntries(Object.entries(ports).map(([k, port]) => [k, { host: '127.0.0.1', port }])) }),
    );
    const child = spawn(process.execPath, [resolve('dist/infra/dev-cloud.js')], {
      cwd,
      env: { ...process.env, PORT: '0', PATCHBAY_HOST: '127.0.0.1', PATCHBAY_DATA_DIR: `${cwd}/data`, PATCHBAY_LOG: 'error' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const url = await new Promise<string>((ok, fail) => {
        const timer = setInterval(() => {
          const m = /"port":(\d+)/.exec(out);
          if (m) {
            clearInterval(timer);
            ok(`http://127.0.0.1:${m[1]}`);
          } else if (child.exitCode !== null) {
            clearInterval(timer);
            fail(new Error(`dev:cloud exited: ${out}`));
          }
        }, 100);
      });
      for (const port of Object.values(ports)) expect(await listening(port)).toBe(true);
      const alice = await newClient(url);
      const { id } = (await alice.request('POST', '/v1/scopes', { body: { state: { n: 0 } } })).json;
      const sse = openSse(`${url}/v1/scopes/${id}/events`, alice.token);
      try {
        await sse.waitFor((ev) => ev.length >= 1);
        expect((await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { ii: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] } })).json).toEqual({
          id,
          ii: 1,
        });
        await sse.waitFor((ev) => patchIndices(ev).length >= 1, 30_000);
        expect(patchIndices(sse.events)).toEqual([1]);
      } finally {
        sse.close();
      }
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      for (const [name, port] of Object.entries(ports)) expect(await listening(port), `${name} still listens on ${port}`).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 120_000);
});
