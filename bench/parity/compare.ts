/**
 * Training-dynamics parity: Eden's metrics (DIR/run/metrics.jsonl) beside the PyTorch reference's
 * (DIR/torch-metrics.jsonl) on the same batches from the same state. Prints per-metric agreement
 * and writes DIR/parity.png (both curves of every diagnostic) and DIR/parity.json.
 *
 *   node --import tsx bench/parity/compare.ts DIR [--noise DIR2]
 *
 * `--noise DIR2`: a second Eden dump of the same config with another seed; its distance to the
 * first is the run-to-run noise that the Eden-PyTorch distance is judged against.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { TopLevelSpec } from 'vega-lite';
import { readMetrics, type MetricLine } from '../../src/report/loss-curve.js';
import { renderVegaLite } from '../../src/report/plot.js';

export const STEP_METRICS = ['loss', 'pos', 'neg', 'neg_p999', 'pruned', 'key_spread', 'lr'] as const;
export const EPOCH_METRICS = ['val_loss', 'val_retrieval'] as const;

export interface Agreement {
  metric: string;
  n: number;
  /** Largest |eden - torch| relative to max(|torch|, 1e-3), over the first `early` points. */
  earlyMaxRelative: number;
  /** Mean |eden - torch| over all points, and the same over the last quarter. */
  meanAbs: number;
  lateMeanAbs: number;
}

const value = (l: MetricLine, m: string): number | undefined => {
  const v = (l as unknown as Record<string, unknown>)[m];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};

export function agreement(a: MetricLine[], b: MetricLine[], metric: string, type: 'step' | 'epoch', early = 10): Agreement {
  const byStep = new Map(b.filter((l) => l.type === type).map((l) => [l.step, l]));
  const pairs: [number, number][] = [];
  for (const l of a.filter((x) => x.type === type)) {
    const other = byStep.get(l.step);
    const [x, y] = [value(l, metric), other && value(other, metric)];
    if (x !== undefined && y !== undefined) pairs.push([x, y]);
  }
  const rel = pairs.slice(0, early).map(([x, y]) => Math.abs(x - y) / Math.max(Math.abs(y), 1e-3));
  const abs = pairs.map(([x, y]) => Math.abs(x - y));
  const late = abs.slice(Math.floor((3 * abs.length) / 4));
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((s, v) => s + v, 0) / xs.length : NaN);
  return { metric, n: pairs.length, earlyMaxRelative: rel.length ? Math.max(...rel) : NaN, meanAbs: mean(abs), lateMeanAbs: mean(late) };
}

export async function readParity(dir: string): Promise<{ eden: MetricLine[]; torch: MetricLine[] }> {
  return { eden: await readMetrics(path.join(dir, 'run', 'metrics.jsonl')), torch: await readMetrics(path.join(dir, 'torch-metrics.jsonl')) };
}

async function plot(runs: { name: string; lines: MetricLine[] }[], file: string): Promise<void> {
  const values = runs.flatMap(({ name, lines }) =>
    [...STEP_METRICS, ...EPOCH_METRICS].flatMap((metric) =>
      lines.flatMap((l) => {
        const v = value(l, metric);
        return v === undefined ? [] : [{ step: l.step, value: v, metric, run: name }];
      }),
    ),
  );
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    title: 'Training-dynamics parity: Eden vs the PyTorch reference on the same batches',
    data: { values },
    facet: { field: 'metric', type: 'nominal', title: null },
    columns: 3,
    spec: { width: 300, height: 160, mark: { type: 'line', strokeWidth: 1, point: false }, encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'value', type: 'quantitative', scale: { zero: false }, title: null }, color: { field: 'run', type: 'nominal' }, strokeDash: { field: 'run', type: 'nominal' } } },
    resolve: { scale: { y: 'independent' } },
  };
  await fs.writeFile(file, await renderVegaLite(spec));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { noise: { type: 'string' } } });
  const dir = positionals[0]!;
  const { eden, torch } = await readParity(dir);
  const rows = [...STEP_METRICS.map((m) => agreement(eden, torch, m, 'step')), ...EPOCH_METRICS.map((m) => agreement(eden, torch, m, 'epoch', 3))];
  const noise = values.noise ? await readMetrics(path.join(values.noise, 'run', 'metrics.jsonl')) : undefined;
  const noiseRows = noise ? [...STEP_METRICS.map((m) => agreement(noise, eden, m, 'step')), ...EPOCH_METRICS.map((m) => agreement(noise, eden, m, 'epoch', 3))] : [];
  console.log('| metric | points | max relative diff, first 10 | mean abs diff | mean abs diff, last quarter | Eden vs Eden (other seed), mean abs / last quarter |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    const n = noiseRows.find((x) => x.metric === r.metric);
    console.log(`| ${r.metric} | ${r.n} | ${r.earlyMaxRelative.toExponential(2)} | ${r.meanAbs.toExponential(2)} | ${r.lateMeanAbs.toExponential(2)} | ${n ? `${n.meanAbs.toExponential(2)} / ${n.lateMeanAbs.toExponential(2)}` : '—'} |`);
  }
  await fs.writeFile(path.join(dir, 'parity.json'), `${JSON.stringify({ agreement: rows, noise: noiseRows }, null, 2)}\n`);
  await plot([{ name: 'Eden', lines: eden }, { name: 'PyTorch', lines: torch }, ...(noise ? [{ name: 'Eden, other seed', lines: noise }] : [])], path.join(dir, 'parity.png'));
  console.log(`wrote ${path.join(dir, 'parity.png')}`);
}
