/**
 * The training curves of a pretraining run, from its metrics.jsonl, as one PNG: the loss (train per
 * step, validation per epoch) against log(K + 1), the loss of logits uniform over the queue; the
 * positive and negative cosines (mean, and the negatives' 99.9th percentile that the pruner's
 * threshold must reach); the key spread (collapse when it nears 0); the pruned fraction; the
 * learning rate; and the held-out retrieval signal against chance.
 */
import { promises as fs } from 'node:fs';
import type { TopLevelSpec } from 'vega-lite';
import { renderVegaLite } from './plot.js';
import { writeFileAtomic } from '../engine/tensor-file.js';

export interface MetricLine {
  type: 'step' | 'epoch';
  stage: number;
  level: number;
  step: number;
  loss?: number;
  lr?: number;
  pruned?: number | null;
  pos?: number | null;
  neg?: number | null;
  neg_p999?: number | null;
  key_spread?: number | null;
  train_loss?: number | null;
  val_loss?: number | null;
  val_retrieval?: number | null;
  retrieval_chance?: number | null;
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

type Point = { step: number; value: number; series: string };

/** Step series thinned to at most ~`max` points (means of consecutive steps), so long runs stay legible. */
function thin(lines: MetricLine[], pick: (l: MetricLine) => number | null | undefined, series: string, max = 600): Point[] {
  const pts = lines.flatMap((l) => {
    const v = pick(l);
    return v === null || v === undefined || !Number.isFinite(v) ? [] : [{ step: l.step, value: v }];
  });
  const every = Math.max(1, Math.ceil(pts.length / max));
  const out: Point[] = [];
  for (let i = 0; i < pts.length; i += every) {
    const chunk = pts.slice(i, i + every);
    out.push({ step: chunk[chunk.length - 1]!.step, value: chunk.reduce((a, p) => a + p.value, 0) / chunk.length, series });
  }
  return out;
}

function panel(title: string, values: Point[], yTitle: string, rule?: { value: number; label: string }): TopLevelSpec['vconcat' & keyof TopLevelSpec] {
  const layers: unknown[] = [
    { data: { values }, mark: { type: 'line', strokeWidth: 1.2 }, encoding: { x: { field: 'step', type: 'quantitative', title: 'step' }, y: { field: 'value', type: 'quantitative', title: yTitle, scale: { zero: false } }, color: { field: 'series', type: 'nominal', title: null } } },
  ];
  if (rule) layers.push({ data: { values: [rule] }, mark: { type: 'rule', strokeDash: [4, 3], color: 'grey' }, encoding: { y: { field: 'value', type: 'quantitative' }, tooltip: { field: 'label' } } });
  return { title, width: 420, height: 160, layer: layers } as never;
}

export async function plotLossCurve(metricsFile: string, outFile: string, o: { title?: string; queueSize?: number } = {}): Promise<void> {
  const lines = await readMetrics(metricsFile);
  const steps = lines.filter((l) => l.type === 'step');
  const epochs = lines.filter((l) => l.type === 'epoch');
  const fromEpochs = (pick: (l: MetricLine) => number | null | undefined, series: string): Point[] => thin(epochs, pick, series, 1e9);
  const loss = [...thin(steps, (l) => l.loss, 'train (step)'), ...fromEpochs((l) => l.val_loss, 'validation (epoch)')];
  const cosines = [...thin(steps, (l) => l.pos, 'positive'), ...thin(steps, (l) => l.neg, 'negatives, mean'), ...thin(steps, (l) => l.neg_p999, 'negatives, 99.9th pct')];
  const chance = epochs.find((l) => l.retrieval_chance != null)?.retrieval_chance ?? undefined;
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: o.title ?? 'Adam pretraining',
    background: 'white',
    resolve: { scale: { color: 'independent' } },
    vconcat: [
      {
        hconcat: [
          panel('InfoNCE loss', loss, 'loss', o.queueSize ? { value: Math.log(o.queueSize + 1), label: 'log(K+1): uniform logits' } : undefined),
          panel('cosine similarity of queries with keys', cosines, 'cosine'),
        ],
      },
      {
        hconcat: [
          panel('key spread (0 = collapsed, ~1 = uniform)', thin(steps, (l) => l.key_spread, 'key spread'), 'spread'),
          panel('held-out retrieval of own key (per epoch)', fromEpochs((l) => l.val_retrieval, 'retrieval'), 'top-1', chance !== undefined ? { value: chance, label: 'chance' } : undefined),
        ],
      },
      {
        hconcat: [panel('pruned fraction of negatives', thin(steps, (l) => l.pruned, 'pruned'), 'fraction'), panel('learning rate', thin(steps, (l) => l.lr, 'lr'), 'lr')],
      },
    ],
  } as TopLevelSpec;
  await writeFileAtomic(outFile, await renderVegaLite(spec));
}
