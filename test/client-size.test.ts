/**
 * client/README.md's size line stays true: the package built with its npm script, bundled,
 * minified and gzipped as `npm run size:client` does (bench/client-size.ts), is within 10% of the
 * size the README states.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { CLIENT_ENTRY, clientSize } from '../bench/client-size.js';
import { tempDir } from './helpers/server.js';

it("client/README.md states the client's minified+gzipped size (within 10%)", async () => {
  const out = tempDir('patchbay-client-size-');
  const r = spawnSync('npm', ['run', 'build:client', '--silent', '--', '--outDir', join(out, 'client/dist')], { encoding: 'utf8' });
  expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  const size = await clientSize(join(out, CLIENT_ENTRY));
  const stated = /^Size: ([\d.]+) KB minified and gzipped/m.exec(readFileSync('client/README.md', 'utf8'));
  expect(stated, 'client/README.md has no "Size: N KB minified and gzipped" line').not.toBeNull();
  const kb = size.total.gzipped / 1000;
  expect(Math.abs(kb - Number(stated?.[1])) / kb, `measured ${kb.toFixed(1)} KB`).toBeLessThanOrEqual(0.1);
  expect(size.own.gzipped).toBeLessThan(size.total.gzipped);
});
