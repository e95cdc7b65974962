/**
 * `npm run dev:cloud`, the script as written in package.json, through npm: starts every local
 * stand-in on the ports in firebase.json (here a copy with free ports, given with --config), serves
 * the v1 API with the Google adapters (checked with a write and a live SSE event that travels
 * through the Pub/Sub emulator, and a Firebase ID token from the Auth emulator it started), and stops everything it started, whether SIGINT goes to npm alone
 * (a supervisor) or to the whole process group (Ctrl-C, which the server gets twice: from the
 * terminal and forwarded by npm): afterwards nothing listens on any of those ports, every process
 * below npm has exited, and npm exits 0. The operator CLI reaches the same stack through the
 * cli.env that dev:cloud writes.
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alive, type NpmRun, npmRun, until } from './helpers/npm.js';
import { freePort, listening, skipWithout } from './helpers/proc.js';
import { newClient, request, tempDir } from './helpers/server.js';
import { openSse, patchIndices } from './helpers/sse.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

/** Starts `npm run dev:cloud` on free ports; resolves once the API listens. */
async function devCloud(cwd: string): Promise<{ run: NpmRun; url: string; ports: Record<string, number> }> {
  const [firestore, pubsub, storage, redis, upstash, auth] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const ports = { firestore, pubsub, storage, redis, upstash, auth };
  writeFileSync(
    `${cwd}/firebase.json`,
    JSON.stringify({ emulators: Object.fromEntries(Object.entries(ports).map(([k, port]) => [k, { host: '127.0.0.1', port }])) }),
  );
  const run = npmRun('dev:cloud', { PORT: '0', PATCHBAY_HOST: '127.0.0.1', PATCHBAY_DATA_DIR: `${cwd}/data`, PATCHBAY_LOG: 'error' }, [
    '--config',
    `${cwd}/firebase.json`,
  ]);
  let url = '';
  try {
    await until(
      () => {
        if (run.child.exitCode !== null) throw new Error(`dev:cloud exited: ${run.output()}`);
        url = `http://127.0.0.1:${/"port":(\d+)/.exec(run.output())?.[1]}`;
        return !url.endsWith('undefined');
      },
      'dev:cloud to listen',
      90_000,
    );
  } catch (err) {
    run.kill();
    throw err;
  }
  return { run, url, ports };
}

/** Sends SIGINT to npm alone or to its process group, and checks that everything stopped. */
async function stop(run: NpmRun, ports: Record<string, number>, to: 'npm' | 'group'): Promise<void> {
  const below = run.descendants();
  const pid = run.child.pid as number;
  process.kill(to === 'npm' ? pid : -pid, 'SIGINT');
  expect(await Promise.race([run.exited, new Promise((r) => setTimeout(() => r('npm still running after 30 s'), 30_000))]), run.output()).toBe(0);
  for (const [name, port] of Object.entries(ports)) expect(await listening(port), `${name} still listens on ${port}`).toBe(false);
  await until(() => below.every((p) => !alive(p)), `processes ${below.join(', ')} to exit`, 5000);
}

describe.skipIf(skip)('npm run dev:cloud', () => {
  it('serves the API on the local Google stack and stops every stand-in on SIGINT to npm', async () => {
    const cwd = tempDir('patchbay-devcloud-');
    const { run, url, ports } = await devCloud(cwd);
    try {
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
      // a Firebase user of the Auth emulator dev:cloud started is accepted
      const signUp = await fetch(`http://127.0.0.1:${ports.auth}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'dev@example.com', password: 'secret-1', displayName: 'Dev', returnSecureToken: true }),
      }).then((r) => r.json() as Promise<{ idToken: string; localId: string }>);
      const me = await request(url, 'GET', '/v1/me', { token: signUp.idToken });
      expect(me.json).toMatchObject({ id: `firebase:${signUp.localId}`, kind: 'firebase', profile: { name: 'Dev', email: 'dev@example.com' } });
      // the operator CLI against this stack, as README says: with the cli.env dev:cloud writes
      const cli = spawnSync('bash', ['-c', `set -a; . '${cwd}/data/cloud/cli.env'; exec node dist/functions/cli.js rebuild --check`], { encoding: 'utf8' });
      expect(cli.status, cli.stderr).toBe(0);
      expect(JSON.parse(cli.stdout.trim().split('\n').at(-1) as string)).toMatchObject({ command: 'rebuild', check: true, scopes: 1, ok: 1, failed: 0 });
      await stop(run, ports, 'npm');
    } finally {
      run.kill();
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 120_000);

  it('stops every stand-in on Ctrl-C (SIGINT to the process group)', async () => {
    const cwd = tempDir('patchbay-devcloud-');
    const { run, ports } = await devCloud(cwd);
    try {
      await stop(run, ports, 'group');
    } finally {
      run.kill();
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 120_000);
});
