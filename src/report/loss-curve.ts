/** The loss curve of a pretraining run, from its metrics.jsonl, as a PNG. */
import { promises as fs } from 'node:fs';
import type { TopLevelSpec } from 'vega-lite';
import { renderVegaLite } from './plot.js';
import { writeFileAtomic } from '../engine/tensor-file.js';

interface MetricLine {
  type: 'step' | 'epoch';
  stage: number;
  level: number;
  step: number;
  loss?: number;
  train_loss?: number | null;
  val_loss?: number | null;
}

export async function readMetrics(file: string): Promise<MetricLine[]> {
  const text = await fs.readFile(file, 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as MetricLine];
      } catch {
        return [];
      }
    });
}

export async function plotLossCurve(metricsFile: string, outFile: string, title = 'Adam pretraining'): Promise<void> {
  const lines = await readMetrics(metricsFile);
  const values = [
    ...lines.filter((l) => l.type === 'step' && Number.isFinite(l.loss)).map((l) => ({ step: l.step, loss: l.loss, series: 'train (step)', stage: `stage ${l.stage} (n=${l.level})` })),
    ...lines.filter((l) => l.type === 'epoch' && l.val_loss != null).map((l) => ({ step: l.step, loss: l.val_loss, series: 'validation (epoch)', stage: `stage ${l.stage} (n=${l.level})` })),
  ];
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 640,
    height: 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: { size: 12 }, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'InfoNCE loss', scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null },
      strokeDash: { field: 'stage', type: 'nominal', title: 'curriculum stage' },
    },
  };
  await writeFileAtomic(outFile, await renderVegaLite(spec));
}
