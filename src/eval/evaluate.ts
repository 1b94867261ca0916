/**
 * `eden evaluate`: judge encoders side by side on a labelled folder (METHOD.md §6) and write
 * report.json, report.md and the plots to an output folder. Same seed, same numbers.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import type { EvaluateConfig } from '../config/evaluate.js';
import { writeFileAtomic } from '../engine/tensor-file.js';
import { renderVegaLite } from '../report/plot.js';
import { VERSION } from '../version.js';
import { fewShotSegmentation, loadSegmentationData, summarise, type FewShotRun, type FewShotSummaryRow } from './fewshot.js';
import { kde, mean, std } from './metrics.js';
import type { ModelSource } from './models.js';
import { compositionality, landmarks, LANDMARKS, locality, type LocalityResult } from './probes.js';
import { fineTuneClassifier, linearProbe, loadClassificationData, type ClassificationScores } from './classify.js';

export const TASKS = ['fewshot-seg', 'locality', 'compositionality', 'classify'] as const;
export type Task = (typeof TASKS)[number];
/** `--task all` on a segmentation folder; classification needs labels and is asked for by name. */
export const SEGMENTATION_FOLDER_TASKS: Task[] = ['fewshot-seg', 'locality', 'compositionality'];

export interface EvaluateOptions {
  data: string;
  tasks: Task[];
  sources: ModelSource[];
  config: EvaluateConfig;
  out: string;
  command: string;
  structures?: string[];
  combine?: Record<string, string[]>;
  /** Classification: CSV manifest and its label column (folders), or a .npz as `data`. */
  labels?: string;
  labelColumn?: string;
  onLog?: (line: string) => void;
}

export interface EvaluationReport {
  edenVersion: string;
  command: string;
  createdAt: string;
  config: EvaluateConfig;
  models: { name: string; description: string }[];
  data: string;
  fewshot?: { structures: string[]; testImages: string[]; trainPool: number; runs: FewShotRun[]; summary: FewShotSummaryRow[]; seconds: number };
  locality?: { landmarks: readonly string[]; images: number; results: Record<string, Omit<LocalityResult, 'embedding2d' | 'labels'>>; seconds: number } | { skipped: string };
  compositionality?: { results: Record<string, { mean: number; std: number; byParts: Record<string, { mean: number; n: number }> }>; seconds: number };
  classification?: { classes: string[]; train: number; test: number; results: Record<string, { linearProbe: ClassificationScores; fineTune: ClassificationScores }>; seconds: number };
  plots: string[];
}

const PROBE_SIDE = 256;

export async function evaluate(o: EvaluateOptions): Promise<EvaluationReport> {
  await fs.mkdir(o.out, { recursive: true });
  const log = o.onLog ?? (() => undefined);
  const report: EvaluationReport = {
    edenVersion: VERSION,
    command: o.command,
    createdAt: new Date().toISOString(),
    config: o.config,
    models: o.sources.map((s) => ({ name: s.name, description: s.description })),
    data: o.data,
    plots: [],
  };

  if (o.tasks.includes('fewshot-seg')) {
    const t0 = Date.now();
    const data = await loadSegmentationData(o.data, o.config.segmentation.size, { structures: o.structures, combine: o.combine, testFraction: o.config.segmentation.testFraction, maxTestImages: o.config.segmentation.maxTestImages, seed: o.config.seed, onSkip: (m) => log(`skipped ${m}`) });
    log(`few-shot segmentation: ${data.samples.length} images, test split ${data.test.length}, structures ${data.structures.join(', ')}`);
    const runs = await fewShotSegmentation(o.sources, data, o.config, (r, done, total) =>
      log(`[${done}/${total}] ${r.model}, ${r.shots} shots, seed ${r.seed}: ${Object.entries(r.dice).map(([s, d]) => `${s} ${(100 * d).toFixed(1)}`).join(', ')} (${r.seconds.toFixed(0)} s)`),
    );
    const summary = summarise(runs, data.structures);
    report.fewshot = { structures: data.structures, testImages: data.test.map((i) => data.samples[i]!.file), trainPool: data.trainPool.length, runs, summary, seconds: (Date.now() - t0) / 1000 };
    report.plots.push(await plotFewShot(summary, path.join(o.out, 'fewshot.png')));
  }

  if (o.tasks.includes('classify')) {
    const t0 = Date.now();
    const cfg = o.config.classification;
    const data = await loadClassificationData(o.data, cfg.size, { labels: o.labels, labelColumn: o.labelColumn, seed: o.config.seed, maxTrain: cfg.maxTrain, maxTest: cfg.maxTest });
    log(`classification: classes ${data.classes.join(', ')}; ${data.train.length} training and ${data.test.length} test images at ${cfg.size} px`);
    const results: NonNullable<EvaluationReport['classification']>['results'] = {};
    for (const s of o.sources) {
      const linearProbeScores = await linearProbe(s, data, cfg);
      const fineTune = await fineTuneClassifier(s, data, cfg, o.config.seed);
      results[s.name] = { linearProbe: linearProbeScores, fineTune };
      log(`classification, ${s.name}: linear probe AUC ${linearProbeScores.meanAuc.toFixed(3)} (accuracy ${(100 * linearProbeScores.accuracy).toFixed(1)}%), fine-tuned AUC ${fineTune.meanAuc.toFixed(3)} (accuracy ${(100 * fineTune.accuracy).toFixed(1)}%)`);
    }
    report.classification = { classes: data.classes, train: data.train.length, test: data.test.length, results, seconds: (Date.now() - t0) / 1000 };
  }

  const probes = o.tasks.filter((t) => t === 'locality' || t === 'compositionality');
  if (probes.length) {
    const data = await loadSegmentationData(o.data, PROBE_SIDE, { testFraction: 0, maxTestImages: 0, seed: o.config.seed, onSkip: (m) => log(`skipped ${m}`) });
    if (probes.includes('compositionality')) {
      const t0 = Date.now();
      const results: NonNullable<EvaluationReport['compositionality']>['results'] = {};
      const curves: { model: string; cosine: number; density: number }[] = [];
      for (const s of o.sources) {
        const backbone = await s.create();
        const r = await compositionality(backbone, data.samples.map((x) => x.image), PROBE_SIDE, { ...o.config.compositionality, seed: o.config.seed });
        backbone.dispose();
        const all = Object.values(r.byParts).flat();
        results[s.name] = { mean: mean(all), std: std(all), byParts: Object.fromEntries(Object.entries(r.byParts).map(([k, v]) => [k, { mean: mean(v), n: v.length }])) };
        const grid = Array.from({ length: 101 }, (_, i) => -0.2 + (1.2 * i) / 100);
        kde(all, grid).forEach((d, i) => curves.push({ model: s.name, cosine: grid[i]!, density: d }));
        log(`compositionality, ${s.name}: mean cosine ${mean(all).toFixed(3)} +- ${std(all).toFixed(3)}`);
      }
      report.compositionality = { results, seconds: (Date.now() - t0) / 1000 };
      report.plots.push(await plotDensity(curves, path.join(o.out, 'compositionality.png')));
    }
    if (probes.includes('locality')) {
      // The probe data (loaded once, above) hold every structure's mask; locality needs three.
      const names = ['right_lung', 'left_lung', 'heart'];
      const at = names.map((n) => data.structures.indexOf(n));
      if (at.some((i) => i < 0)) {
        report.locality = { skipped: `locality needs heart, left_lung and right_lung masks: ${o.data} has ${data.structures.join(', ')}` };
        log(`locality skipped: ${report.locality.skipped}`);
      } else {
        const t0 = Date.now();
        const items = data.samples
          .map((x) => ({ image: x.image, points: landmarks(x.masks[at[0]!]!, x.masks[at[1]!]!, x.masks[at[2]!]!, PROBE_SIDE) }))
          .filter((x): x is { image: Float32Array; points: [number, number][] } => x.points !== null)
          .slice(0, o.config.locality.images);
        const results: Record<string, Omit<LocalityResult, 'embedding2d' | 'labels'>> = {};
        const scatter: { model: string; x: number; y: number; landmark: string }[] = [];
        for (const s of o.sources) {
          const backbone = await s.create();
          const r = await locality(backbone, items, PROBE_SIDE, { ...o.config.locality, seed: o.config.seed });
          backbone.dispose();
          results[s.name] = { knnAccuracy: r.knnAccuracy, silhouette: r.silhouette, patches: r.patches };
          r.embedding2d.forEach(([x, y], i) => scatter.push({ model: s.name, x, y, landmark: LANDMARKS[r.labels[i]!]! }));
          log(`locality, ${s.name}: kNN landmark accuracy ${(100 * r.knnAccuracy).toFixed(1)}%, silhouette ${r.silhouette.toFixed(3)} (${r.patches} patches)`);
        }
        report.locality = { landmarks: LANDMARKS, images: items.length, results, seconds: (Date.now() - t0) / 1000 };
        report.plots.push(await plotScatter(scatter, path.join(o.out, 'locality-tsne.png')));
      }
    }
  }
  await writeFileAtomic(path.join(o.out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(path.join(o.out, 'report.md'), reportMarkdown(report));
  return report;
}

async function plotFewShot(rows: FewShotSummaryRow[], file: string): Promise<string> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    data: { values: rows.map((r) => ({ ...r, dice: 100 * r.mean, lo: 100 * (r.mean - r.std), hi: 100 * (r.mean + r.std) })) },
    facet: { column: { field: 'structure', type: 'nominal', title: null } },
    spec: {
      width: 220,
      height: 200,
      layer: [
        { mark: { type: 'line', point: true }, encoding: { x: { field: 'shots', type: 'ordinal' }, y: { field: 'dice', type: 'quantitative', title: 'Dice (%)', scale: { zero: false } }, color: { field: 'model', type: 'nominal' } } },
        { mark: { type: 'errorbar' }, encoding: { x: { field: 'shots', type: 'ordinal' }, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color: { field: 'model', type: 'nominal' } } },
      ],
    },
    title: 'Few-shot segmentation (mean +- std over seeds)',
  };
  await writeFileAtomic(file, await renderVegaLite(spec));
  return path.basename(file);
}

async function plotDensity(values: { model: string; cosine: number; density: number }[], file: string): Promise<string> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    width: 480,
    height: 260,
    title: 'Compositionality: cos(Eve(whole), mean Eve(parts))',
    data: { values },
    mark: 'line',
    encoding: { x: { field: 'cosine', type: 'quantitative' }, y: { field: 'density', type: 'quantitative' }, color: { field: 'model', type: 'nominal' } },
  };
  await writeFileAtomic(file, await renderVegaLite(spec));
  return path.basename(file);
}

async function plotScatter(values: { model: string; x: number; y: number; landmark: string }[], file: string): Promise<string> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    title: 'Locality: t-SNE of Eve around anatomical landmarks',
    data: { values },
    facet: { column: { field: 'model', type: 'nominal', title: null } },
    spec: { width: 260, height: 260, mark: { type: 'circle', size: 18 }, encoding: { x: { field: 'x', type: 'quantitative', axis: null }, y: { field: 'y', type: 'quantitative', axis: null }, color: { field: 'landmark', type: 'nominal', scale: { scheme: 'category10' } } } },
    resolve: { scale: { x: 'independent', y: 'independent' } },
  };
  await writeFileAtomic(file, await renderVegaLite(spec));
  return path.basename(file);
}

const pct = (m: number, s: number): string => `${(100 * m).toFixed(1)} ± ${(100 * s).toFixed(1)}`;

export function reportMarkdown(r: EvaluationReport): string {
  const lines: string[] = [`# Eden evaluation`, '', `- command: \`${r.command}\``, `- data: ${r.data}`, `- Eden ${r.edenVersion}, ${r.createdAt}, preset ${r.config.preset}, seed ${r.config.seed}`, '', '## Models', ''];
  for (const m of r.models) lines.push(`- **${m.name}**: ${m.description}`);
  if (r.fewshot) {
    const f = r.fewshot;
    const cfg = r.config.segmentation;
    lines.push('', '## Few-shot segmentation (Dice %, mean ± std over seeds)', '', `U-Net on each encoder, ${cfg.steps} steps of Adam (lr ${cfg.lr}, batch ${cfg.batchSize}) at ${cfg.size} px; test split: ${f.testImages.length} images (listed in report.json), train pool ${f.trainPool}; ${cfg.seeds} seed(s); ${f.seconds.toFixed(0)} s.`, '');
    const models = [...new Set(f.summary.map((x) => x.model))];
    for (const s of [...f.structures, 'mean']) {
      lines.push(`### ${s}`, '', `| model | ${cfg.shots.map((k) => `${k} shots`).join(' | ')} |`, `|---|${cfg.shots.map(() => '---').join('|')}|`);
      for (const m of models) lines.push(`| ${m} | ${cfg.shots.map((k) => { const row = f.summary.find((x) => x.model === m && x.shots === k && x.structure === s); return row ? pct(row.mean, row.std) : '—'; }).join(' | ')} |`);
      lines.push('');
    }
    lines.push('![few-shot](fewshot.png)');
  }
  if (r.locality) {
    lines.push('', '## Locality', '');
    if ('skipped' in r.locality) lines.push(`Skipped: ${r.locality.skipped}`);
    else {
      lines.push(`Patches of ${Math.round(PROBE_SIDE * r.config.locality.patchFraction)} px (of ${PROBE_SIDE}) around ${r.locality.landmarks.length} landmarks (${r.locality.landmarks.join(', ')}) in ${r.locality.images} images.`, '', '| model | kNN landmark accuracy (k=5) | silhouette (cosine) |', '|---|---|---|');
      for (const [m, v] of Object.entries(r.locality.results)) lines.push(`| ${m} | ${(100 * v.knnAccuracy).toFixed(1)}% | ${v.silhouette.toFixed(3)} |`);
      lines.push('', '![locality](locality-tsne.png)');
    }
  }
  if (r.compositionality) {
    lines.push('', '## Compositionality', '', '| model | mean cosine | 2 parts | 3 parts | 4 parts |', '|---|---|---|---|---|');
    for (const [m, v] of Object.entries(r.compositionality.results)) lines.push(`| ${m} | ${v.mean.toFixed(3)} ± ${v.std.toFixed(3)} | ${['2', '3', '4'].map((k) => v.byParts[k]!.mean.toFixed(3)).join(' | ')} |`);
    lines.push('', '![compositionality](compositionality.png)');
  }
  if (r.classification) {
    const c = r.classification;
    lines.push('', '## Classification', '', `Classes: ${c.classes.join(', ')}; ${c.train} training and ${c.test} test images; linear probe = logistic regression on frozen Eve; fine-tuned = encoder + linear head, ${r.config.classification.fineTuneSteps} steps.`, '', '| model | linear probe AUC | linear probe accuracy | fine-tuned AUC | fine-tuned accuracy |', '|---|---|---|---|---|');
    for (const [m, v] of Object.entries(c.results)) lines.push(`| ${m} | ${v.linearProbe.meanAuc.toFixed(3)} | ${(100 * v.linearProbe.accuracy).toFixed(1)}% | ${v.fineTune.meanAuc.toFixed(3)} | ${(100 * v.fineTune.accuracy).toFixed(1)}% |`);
    if (c.classes.length > 2) {
      lines.push('', '| model | ' + c.classes.map((k) => `AUC ${k} (probe / fine-tuned)`).join(' | ') + ' |', '|---|' + c.classes.map(() => '---').join('|') + '|');
      for (const [m, v] of Object.entries(c.results)) lines.push(`| ${m} | ${c.classes.map((k) => `${v.linearProbe.aucPerClass[k]!.toFixed(3)} / ${v.fineTune.aucPerClass[k]!.toFixed(3)}`).join(' | ')} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}
