#!/usr/bin/env node
/**
 * Regenerates the committed `gcloud <command> --help` texts the deploy tests validate generated
 * commands against (test/fixtures/gcloud-help/): one file per command listed in its index.json,
 * plus the gcloud version they came from. Only the sections the flag check reads are kept (NAME,
 * SYNOPSIS, GCLOUD WIDE FLAGS; see help.mjs). Run it after changing the commands the deployer uses
 * or after upgrading gcloud: `node test/helpers/fake-gcloud/refresh-help.mjs` (about a second per
 * command; gcloud prints help offline).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keptSections, plain } from './help.mjs';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/gcloud-help');
const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
const env = { ...process.env, TERM: 'dumb', CLOUDSDK_CORE_DISABLE_PROMPTS: '1' };

index.version = execFileSync('gcloud', ['--version'], { env, encoding: 'utf8' }).split('\n')[0].trim();
for (const command of index.commands) {
  const text = keptSections(plain(execFileSync('gcloud', [...command.split(' '), '--help'], { env, encoding: 'utf8' })));
  writeFileSync(join(dir, `${command.replaceAll(' ', '_')}.txt`), text);
  process.stderr.write(`${command}\n`);
}
writeFileSync(join(dir, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
