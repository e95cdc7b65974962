/**
 * Re-renders latest.md and chart.svg from a results directory's latest.json (after a change to
 * the report's layout, without running the benchmarks again): node dist/bench/render.js [DIR].
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Results, writeResults } from './report.js';

const dir = process.argv[2] ?? 'bench/results';
const results = JSON.parse(readFileSync(join(dir, 'latest.json'), 'utf8')) as Results;
results.meta.serverEnv ??= {};
writeResults(dir, results);
console.log(`rendered ${dir}/latest.md and ${dir}/chart.svg`);
