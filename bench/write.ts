/**
 * Write-path throughput over HTTP against `npm start`'s entry (a separate process), embedded mode:
 *   write-single: one writer, sequential patches with ii;
 *   write-hot:    32 concurrent writers appending to one scope.
 * Usage: node dist/bench/write.js [--n 2000]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};

async function startServer(env: Record<string, string>) {
  const dataDir = mkdtempSync(join(tmpdir(), 'patchbay-bench-'));
  const child = spawn(process.execPath, ['dist/functions/serve.js'], {
    env: { ...process.env, PORT: '0', PATCHBAY_HOST: '127.0.0.1', PATCHBAY_LOG: 'off', PATCHBAY_DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"port":(\d+)/.exec(out);
      if (m) resolve(`http://127.0.0.1:${m[1]}`);
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  return {
    url,
    stop: () => {
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function post(url: string, token: string, body: unknown) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status >= 300) throw new Error(`${res.status} ${JSON.stringify(json)}`);
  return json as { id: string; ii: number; token: string };
}

export async function writeSingle(url: string, token: string, n: number): Promise<number> {
  const { id } = await post(`${url}/v1/scopes`, token, { state: { n: 0 } });
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) await post(`${url}/v1/scopes/${id}/patches`, token, { ii: i, patch: [{ op: 'replace', path: '/n', value: i }] });
  return n / ((performance.now() - t0) / 1000);
}

export async function writeHot(url: string, token: string, writers: number, perWriter: number): Promise<number> {
  const { id } = await post(`${url}/v1/scopes`, token, { state: { list: [] } });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < perWriter; i++) await post(`${url}/v1/scopes/${id}/patches`, token, { patch: [{ op: 'add', path: '/list/-', value: w }] });
    }),
  );
  return (writers * perWriter) / ((performance.now() - t0) / 1000);
}

async function main() {
  const n = arg('n', 2000);
  for (const sync of ['full', 'normal']) {
    const srv = await startServer({ PATCHBAY_SQLITE_SYNC: sync });
    try {
      const { token } = await post(`${srv.url}/v1/auth/anonymous`, '', {});
      await writeSingle(srv.url, token, 200); // warm-up
      const single = await writeSingle(srv.url, token, n);
      const hot = await writeHot(srv.url, token, 32, Math.ceil(n / 32));
      console.log(JSON.stringify({ sqliteSync: sync, writeSingle: Math.round(single), writeHot32: Math.round(hot) }));
    } finally {
      srv.stop();
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
