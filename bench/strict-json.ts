/**
 * Micro-benchmark of the request body parser: `JSON.parse(buf.toString('utf8'))` (what readJson
 * did) against `parseJsonBody` (shared/strict-json.ts: UTF-8 check, JSON.parse, one scan for
 * duplicate names and lone surrogates), on a typical 1 KB patch body, a 500 KB state body and an
 * 80 KB batch of 2,000 one-op patches composed into four (what a composing client sends).
 * Prints the median time per parse of several batches, and the ratio.
 *
 * Run: npm run build && node dist/bench/strict-json.js
 */
import { parseJsonBody } from '../shared/strict-json.js';

/** A patch request of about 1 KB: a dozen ops of the kinds a UI sends. */
function patchBody(): Buffer {
  const patch = [];
  for (let i = 0; i < 6; i++) {
    patch.push({ op: 'replace', path: `/items/${i}/title`, value: `Item ${i}: café "quoted"\n` });
    patch.push({ op: 'add', path: `/items/${i}/tags/-`, value: { id: `t${i}`, at: 1_733_212_800_000 + i, done: i % 2 === 0 } });
  }
  return Buffer.from(JSON.stringify({ ii: 1234, session: 'tab-7f3a9c', si: 42, patch }));
}

/** A scope creation of about 500 KB: an array of records with text, numbers, nesting, escapes. */
function stateBody(): Buffer {
  const items = [];
  for (let i = 0; size(items) < 500_000; i++) {
    items.push({
      id: `item-${i}`,
      title: i % 7 === 0 ? `Größe ${i} — 値 🎉` : `Item number ${i}`,
      note: i % 5 === 0 ? `line one\nline "two"\ttab` : 'plain note',
      price: i * 1.25,
      tags: ['a', 'b', `t${i % 13}`],
      meta: { created: 1_733_212_800_000 + i, owner: { id: `u${i % 17}`, name: 'Ada' }, flags: [true, false, null] },
    });
  }
  return Buffer.from(JSON.stringify({ name: 'bench', type: 'list', state: { items } }));
}

/** A `POST /v1/batch` body of about 80 KB: four patches of 500 small ops each. */
function batchBody(): Buffer {
  const scope = '0b6ad3c4-58a3-4f5e-9a55-2f2f0c6d7e01';
  const patches = Array.from({ length: 4 }, (_, j) => ({
    scope,
    patch: Array.from({ length: 500 }, (_, i) => ({ op: 'replace', path: '/n', value: j * 500 + i })),
    ii: j + 1,
    session: 'tab-7f3a9c',
    si: j + 1,
  }));
  return Buffer.from(JSON.stringify({ patches }));
}

let sized = 0;
function size(items: unknown[]): number {
  // Measure every 100 items only: the estimate only decides when to stop.
  if (items.length % 100 === 0) sized = JSON.stringify(items).length;
  return sized;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/**
 * Microseconds per call of `a` and of `b`: batches of `n` calls, alternating between the two so
 * that a machine whose load changes during the run slows both alike; the median and the minimum
 * batch of each, after a warm-up batch of each.
 */
function compare(a: () => unknown, b: () => unknown, n: number, batches = 21): Array<{ median: number; min: number }> {
  const fs = [a, b];
  const per: number[][] = [[], []];
  for (let round = -1; round < batches; round++) {
    for (let k = 0; k < 2; k++) {
      const f = fs[k] as () => unknown;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) f();
      if (round >= 0) (per[k] as number[]).push(Number(process.hrtime.bigint() - t0) / 1000 / n);
    }
  }
  return per.map((xs) => ({ median: median(xs), min: Math.min(...xs) }));
}

const us = (x: number) => `${x.toFixed(1)} µs`;

// First, in this fresh process and before anything else warms the scan up: batch bodies only, as a
// server that receives them from composing clients sees. Each call's time; the median of the last
// 12 of 24 is the steady state. (The scan once turned, here, from ~1 ms to ~20 ms a call after
// about six calls; see nextStructure in shared/strict-json.ts.)
{
  const times: number[] = [];
  for (let r = 0; r < 24; r++) {
    const buf = Buffer.from(batchBody().toString('utf8').replace('tab-7f3a9c', `tab-${r}`));
    const t0 = process.hrtime.bigint();
    parseJsonBody(buf);
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  console.log(
    `batch body, fresh process, 24 calls: ${times.map((t) => (t / 1000).toFixed(1)).join(' ')} ms; steady (median of the last 12) ${us(median(times.slice(12)))}`,
  );
}

for (const [name, buf, n] of [
  ['patch body', patchBody(), 5_000],
  ['state body', stateBody(), 10],
  ['batch body', batchBody(), 20],
] as const) {
  const [before, after] = compare(
    () => JSON.parse(buf.toString('utf8')),
    () => parseJsonBody(buf),
    n,
  ) as [{ median: number; min: number }, { median: number; min: number }];
  console.log(
    `${name} (${(buf.length / 1024).toFixed(1)} KB): JSON.parse median ${us(before.median)} (min ${us(before.min)}), ` +
      `parseJsonBody median ${us(after.median)} (min ${us(after.min)}): x${(after.median / before.median).toFixed(2)} (min x${(after.min / before.min).toFixed(2)})`,
  );
}
