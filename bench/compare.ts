/**
 * Side by side: the same entries of several results files (e.g. two full runs, to see how far
 * apart runs on this machine are), as a Markdown table of values and ratios.
 *   node dist/bench/compare.js bench/results/latest.json /tmp/run2/latest.json
 */
import { readFileSync } from 'node:fs';
import type { Entry, Results } from './report.js';

const files = process.argv.slice(2);
if (files.length === 0) throw new Error('usage: compare.js RESULTS.json...');
const runs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Results);
const key = (e: Entry) => `${e.name}${e.variant ? ` [${e.variant}]` : ''}${e.source ? ` (${e.source})` : ''} | ${e.mode} | ${e.metric} | ${e.baseline.name}`;
const keys = [...new Set(runs.flatMap((r) => r.workloads.map(key)))];
const fmt = (x: number | undefined) => (x === undefined ? '–' : x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2));
const runLabels = runs.map((_r, i) => `run ${i + 1}`);
console.log(
  `| workload | mode | metric | baseline | ${runLabels.map((l) => `${l} value / baseline`).join(' | ')} | ${runLabels.map((l) => `${l} ratio`).join(' | ')} |`,
);
console.log(`|---|---|---|---|${runLabels.map(() => '---:|').join('')}${runLabels.map(() => '---:|').join('')}`);
for (const k of keys) {
  const es = runs.map((r) => r.workloads.find((e) => key(e) === k));
  console.log(
    `| ${k} | ${es.map((e) => (e ? `${fmt(e.value)} / ${fmt(e.baseline.value)}` : '–')).join(' | ')} | ${es.map((e) => (e ? `${fmt(e.ratio)}×` : '–')).join(' | ')} |`,
  );
}
console.log('');
runs.forEach((r, i) => {
  console.log(
    `run ${i + 1}: ${r.meta.date}, commit ${r.meta.commit}, load average ${r.meta.loadavgStart.map((x) => x.toFixed(1)).join('/')} at start, ${r.meta.loadavgEnd.map((x) => x.toFixed(1)).join('/')} at end`,
  );
});
