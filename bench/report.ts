/**
 * Results: `latest.json` (the issue's format, plus rounds, spread and targets), `latest.md` (a
 * table a person reads) and `chart.svg` (each subject's advantage over its baseline on a log
 * scale, right = better, with the target marked).
 *
 * `ratio` is always value / baseline.value. For throughputs higher is better; for latencies
 * lower is better, so the chart plots the ratio for throughputs and 1 / ratio for latencies.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type Mode = 'embedded' | 'emulator';

export interface Target {
  /** What the target constrains: the ratio to the baseline, or the value itself. */
  on: 'ratio' | 'value';
  op: '>=' | '<=';
  threshold: number;
  /** As the issue states it, e.g. "≥ 0.7× transport floor". */
  text: string;
}

export interface Entry {
  name: string;
  /** An experimental variant of the server under test (run.ts --variant), absent for patchbay as it is. */
  variant?: string;
  mode: Mode;
  metric: string;
  unit: string;
  value: number;
  baseline: { name: string; value: number };
  ratio: number;
  better: 'higher' | 'lower';
  /** Per-round values of the subject and of the baseline (value and baseline are their medians). */
  rounds: number[];
  baselineRounds: number[];
  /** (max - min) / median over the rounds, subject and baseline. */
  spread: number;
  baselineSpread: number;
  target?: Target;
  /** Whether the target is met (absent when there is none). */
  met?: boolean;
  /** What one round did, e.g. "32 writers × 100 patches, 3 rounds (full run)" (absent in results before it was recorded). */
  size?: string;
  /** Where the data came from when it matters (e.g. rebuild and catch-up read the hot log). */
  source?: string;
  note?: string;
}

export interface Meta {
  date: string;
  quick: boolean;
  commit: string;
  node: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  loadavgStart: number[];
  loadavgEnd: number[];
  pinning: string;
  durationSeconds: number;
  sizes: Record<string, unknown>;
  /** Extra environment of the server under test (experiments only; empty for a normal run). */
  serverEnv: Record<string, string>;
  /** PATCHBAY_LIMITS of the servers under test (`off` unless --server-env PATCHBAY_LIMITS=on). */
  limits?: string;
  notes: string[];
}

export interface Results {
  meta: Meta;
  workloads: Entry[];
}

export function judge(e: Omit<Entry, 'met'>): Entry {
  if (!e.target) return e;
  const x = e.target.on === 'ratio' ? e.ratio : e.value;
  const met = e.target.op === '>=' ? x >= e.target.threshold : x <= e.target.threshold;
  return { ...e, met };
}

const fmt = (x: number): string => {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 10_000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
};

const pct = (x: number) => `${Math.round(x * 100)}%`;

export function markdown(r: Results): string {
  const m = r.meta;
  const out: string[] = [];
  out.push(`# patchbay benchmarks (${m.quick ? 'quick' : 'full'} run)`);
  out.push('');
  out.push(
    `${m.date}, commit ${m.commit}. Node ${m.node} on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB. Load average at start ${m.loadavgStart.map((x) => x.toFixed(2)).join(' / ')}, at end ${m.loadavgEnd.map((x) => x.toFixed(2)).join(' / ')} (1/5/15 min). ${m.durationSeconds.toFixed(0)} s in all.`,
  );
  out.push('');
  out.push(`Pinning: ${m.pinning}.`);
  out.push('');
  out.push(
    'Every ratio is value / baseline, both measured in this run, in interleaved rounds (a seeded shuffled order per round) (value and baseline are the medians of the rounds; spread = (max - min) / median over the rounds). Targets are reported, never asserted.',
  );
  out.push('');
  out.push('| workload | mode | metric | value | baseline | ratio | target | met | size | spread (subject / baseline) |');
  out.push('|---|---|---|---:|---|---:|---|---|---|---|');
  for (const e of r.workloads) {
    const met = e.met === undefined ? '' : e.met ? 'yes' : '**no**';
    out.push(
      `| ${e.name}${e.variant ? ` [${e.variant}]` : ''}${e.source ? ` (${e.source})` : ''} | ${e.mode} | ${e.metric} | ${fmt(e.value)} ${e.unit} | ${e.baseline.name}: ${fmt(e.baseline.value)} ${e.unit} | ${fmt(e.ratio)}× | ${e.target?.text ?? ''} | ${met} | ${e.size ?? ''} | ${pct(e.spread)} / ${pct(e.baselineSpread)} |`,
    );
  }
  const notes = [...m.notes, ...r.workloads.filter((e) => e.note).map((e) => `${e.name} (${e.mode}, vs ${e.baseline.name}): ${e.note}`)];
  if (notes.length > 0) {
    out.push('');
    out.push('## Notes');
    out.push('');
    for (const n of [...new Set(notes)]) out.push(`- ${n}`);
  }
  out.push('');
  out.push('Sizes: `' + JSON.stringify(m.sizes) + '`');
  out.push('');
  return out.join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A horizontal bar chart of the advantage over each baseline (log scale, 1 = parity). */
export function svg(r: Results): string {
  const rows = r.workloads;
  const labelW = 330;
  const plotW = 520;
  const rowH = 24;
  const top = 76;
  const width = labelW + plotW + 90;
  const height = top + rows.length * rowH + 50;
  const lo = Math.log10(0.01);
  const hi = Math.log10(100);
  const x = (v: number) => Math.round((labelW + ((Math.log10(Math.min(100, Math.max(0.01, v))) - lo) / (hi - lo)) * plotW) * 10) / 10;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  parts.push(
    `<text x="12" y="20" font-size="15" font-weight="bold">patchbay vs baselines (${r.meta.quick ? 'quick' : 'full'} run, ${esc(r.meta.date.slice(0, 10))})</text>`,
  );
  parts.push(
    `<text x="12" y="38" fill="#555">Advantage over each baseline measured in the same run, log scale: right of 1× is better than the baseline.</text>`,
  );
  parts.push(`<text x="12" y="54" fill="#555">Throughput: value / baseline. Latency: baseline / value. The black tick is the target.</text>`);
  for (const t of [0.01, 0.1, 1, 10, 100]) {
    const px = x(t);
    parts.push(
      `<line x1="${px}" y1="${top - 6}" x2="${px}" y2="${top + rows.length * rowH}" stroke="${t === 1 ? '#333' : '#ddd'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`,
    );
    parts.push(`<text x="${px}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555">${t}×</text>`);
  }
  rows.forEach((e, i) => {
    const y = top + i * rowH;
    const adv = e.better === 'higher' ? e.ratio : 1 / e.ratio;
    const color = e.met === undefined ? '#8a9bb0' : e.met ? '#2e9d4f' : '#d0453a';
    const x1 = x(1);
    const x2 = x(adv);
    parts.push(
      `<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(`${e.name}${e.variant ? ` [${e.variant}]` : ''} · ${e.mode} · ${e.metric === 'throughput' ? '' : `${e.metric} · `}vs ${e.baseline.name}`)}</text>`,
    );
    parts.push(`<rect x="${Math.min(x1, x2)}" y="${y + 5}" width="${Math.max(1, Math.abs(x2 - x1))}" height="${rowH - 10}" fill="${color}"/>`);
    parts.push(`<text x="${Math.max(x1, x2) + 4}" y="${y + 16}" fill="#333">${fmt(adv)}×</text>`);
    if (e.target) {
      const tr = e.target.on === 'ratio' ? e.target.threshold : e.target.threshold / e.baseline.value;
      const tAdv = e.better === 'higher' ? tr : 1 / tr;
      const tx = x(tAdv);
      parts.push(
        `<line x1="${tx}" y1="${y + 2}" x2="${tx}" y2="${y + rowH - 2}" stroke="#000" stroke-width="2"><title>target: ${esc(e.target.text)}</title></line>`,
      );
    }
  });
  const ly = height - 14;
  parts.push(`<rect x="12" y="${ly - 9}" width="10" height="10" fill="#2e9d4f"/><text x="26" y="${ly}">target met</text>`);
  parts.push(`<rect x="110" y="${ly - 9}" width="10" height="10" fill="#d0453a"/><text x="124" y="${ly}">target missed</text>`);
  parts.push(`<rect x="222" y="${ly - 9}" width="10" height="10" fill="#8a9bb0"/><text x="236" y="${ly}">no target</text>`);
  parts.push(`<line x1="316" y1="${ly - 10}" x2="316" y2="${ly + 1}" stroke="#000" stroke-width="2"/><text x="322" y="${ly}">target</text>`);
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Writes the three files (each through a .tmp file and a rename, so a crash leaves the old ones). */
export function writeResults(dir: string, r: Results): void {
  mkdirSync(dir, { recursive: true });
  const files: Array<[string, string]> = [
    ['latest.json', `${JSON.stringify(r, null, 2)}\n`],
    ['latest.md', markdown(r)],
    ['chart.svg', svg(r)],
  ];
  for (const [name, text] of files) {
    const tmp = join(dir, `${name}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(dir, name));
  }
}
