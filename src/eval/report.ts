/** report.md and the plots of an evaluation (eval/evaluate.ts builds the report itself). */
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '../engine/tensor-file.js';
import { renderVegaLite } from '../report/plot.js';
import type { EvaluationReport, ProbeComparison } from './evaluate.js';
import type { FewShotComparison, FewShotSummaryRow } from './fewshot.js';
import { formatDifference } from './statistics.js';
import { parseDerived } from '../data/derived-structures.js';
import { PROBE_L2_GRID } from './classify.js';

/** A probe's paired differences (points x 100) as a table. */
function probeComparisons(lines: string[], comparisons: ProbeComparison[], measure: string, units: string, replicates: number): void {
  if (!comparisons.length) return;
  lines.push('', `Paired differences in ${measure} (A − B, points x 100; 95% bootstrap over ${units}, ${replicates} replicates; * excludes 0):`, '', `| A − B | ${measure} |`, '|---|---|');
  for (const c of comparisons) lines.push(`| ${c.a} − ${c.b} | ${formatDifference(c.difference)} |`);
}

/** Side of the images the locality and compositionality probes cut their crops from. */
export const PROBE_SIDE = 256;

const MODE_TEXT: Record<string, string> = {
  frozen: 'encoder frozen (batch-norm statistics re-estimated on the training images), U-Net decoder trained',
  finetune: 'U-Net decoder and encoder trained, the encoder at a lower learning rate',
  linear: 'a 1x1 convolution on the frozen encoder\'s multi-scale features (dense linear probe)',
};

export async function plotFewShot(rows: FewShotSummaryRow[], mode: string, file: string): Promise<string> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    data: { values: rows.map((r) => ({ ...r, model: r.mode === 'atlas' ? 'atlas (no network)' : r.model, dice: 100 * r.mean, lo: 100 * (r.mean - r.std), hi: 100 * (r.mean + r.std) })) },
    facet: { column: { field: 'structure', type: 'nominal', title: null } },
    spec: {
      width: 200,
      height: 200,
      layer: [
        { mark: { type: 'line', point: true }, encoding: { x: { field: 'shots', type: 'ordinal' }, y: { field: 'dice', type: 'quantitative', title: 'Dice (%)', scale: { zero: false } }, color: { field: 'model', type: 'nominal' } } },
        { mark: { type: 'errorbar' }, encoding: { x: { field: 'shots', type: 'ordinal' }, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color: { field: 'model', type: 'nominal' } } },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    title: `Few-shot segmentation, ${mode} (mean ± std over seeds)`,
  };
  await writeFileAtomic(file, await renderVegaLite(spec));
  return path.basename(file);
}

export async function plotDensity(values: { model: string; measure: string; cosine: number; density: number }[], file: string): Promise<string> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    title: 'Compositionality: cos(Eve(whole), mean Eve(parts)), raw and centred',
    data: { values },
    facet: { column: { field: 'measure', type: 'nominal', title: null } },
    spec: { width: 360, height: 240, mark: 'line', encoding: { x: { field: 'cosine', type: 'quantitative' }, y: { field: 'density', type: 'quantitative' }, color: { field: 'model', type: 'nominal' } } },
    resolve: { scale: { y: 'independent' } },
  };
  await writeFileAtomic(file, await renderVegaLite(spec));
  return path.basename(file);
}

export async function plotScatter(values: { model: string; x: number; y: number; landmark: string }[], file: string): Promise<string> {
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

function fewShotSection(r: EvaluationReport, lines: string[]): void {
  const f = r.fewshot!;
  const cfg = r.config.segmentation;
  // The mean over structures is a row of its own only when there are several.
  const structures = f.structures.length > 1 ? [...f.structures, 'mean'] : f.structures;
  lines.push(
    '',
    '## Few-shot segmentation',
    '',
    `For each number of shots k and each of ${cfg.seeds} seeds, k training images and ${cfg.valImages} validation images (early stopping) are drawn from the train pool (${f.trainPool} images${f.labelled ? `; ${f.images} of the folder's ${f.labelled} labelled images were drawn by --max-images` : ''}); every model and mode gets the same images, seeds and augmentation draws, and is tested on the same ${f.testImages.length} test images (listed in report.json) at ${cfg.size} px. ` +
      `U-Net modes: at most ${cfg.steps} Adam steps (lr ${cfg.lr}, batch ${cfg.batchSize}; encoder lr x ${cfg.encoderLrMultiplier} in finetune), validation Dice every ${cfg.evalEvery} steps, patience ${cfg.patience}; linear: at most ${cfg.linearSteps} steps at lr ${cfg.linearLr}. ` +
      `**atlas** is the no-network floor: the mean of the k training masks, thresholded at 0.5. ${f.seconds.toFixed(0)} s.`,
    '',
    `Paired differences: Dice points of A − B averaged over seeds and test images, with a 95% two-way percentile bootstrap interval (${r.config.bootstrap} replicates resampling seeds and, crossed with them, test images); **\\*** marks an interval that excludes 0.`,
  );
  for (const mode of cfg.modes) {
    lines.push('', `### ${mode}: ${MODE_TEXT[mode] ?? ''}`, '');
    const rows = f.summary.filter((x) => x.mode === mode || x.mode === 'atlas');
    const models = [...new Set(rows.map((x) => (x.mode === 'atlas' ? 'atlas' : x.model)))];
    const cell = (m: string, k: number, s: string, pick: (row: FewShotSummaryRow) => string): string => {
      const row = rows.find((x) => (m === 'atlas' ? x.mode === 'atlas' : x.model === m && x.mode === mode) && x.shots === k && x.structure === s);
      return row ? pick(row) : '—';
    };
    for (const s of structures) {
      lines.push(`**${s}** — Dice %, mean ± std over seeds`, '', `| model | ${cfg.shots.map((k) => `${k} shots`).join(' | ')} |`, `|---|${cfg.shots.map(() => '---').join('|')}|`);
      for (const m of models) lines.push(`| ${m === 'atlas' ? 'atlas (no network)' : m} | ${cfg.shots.map((k) => cell(m, k, s, (row) => pct(row.mean, row.std))).join(' | ')} |`);
      const pairs = f.comparisons.filter((c) => c.mode === mode && c.structure === s);
      const keys = [...new Set(pairs.map((c) => `${c.a}\u0000${c.b}`))];
      if (keys.length) {
        lines.push('', `| A − B (Dice points) | ${cfg.shots.map((k) => `${k} shots`).join(' | ')} |`, `|---|${cfg.shots.map(() => '---').join('|')}|`);
        for (const key of keys) {
          const [a, b] = key.split('\u0000') as [string, string];
          const at = (k: number): FewShotComparison | undefined => pairs.find((c) => c.a === a && c.b === b && c.shots === k);
          lines.push(`| ${a} − ${b} | ${cfg.shots.map((k) => (at(k) ? formatDifference(at(k)!.dice) : '—')).join(' | ')} |`);
        }
      }
      if (parseDerived(s)) {
        lines.push('', `HD95 of ${s} (pixels at ${cfg.size} px; an empty prediction counts as the diagonal), mean over seeds and images:`, '', `| model | ${cfg.shots.map((k) => `${k} shots`).join(' | ')} |`, `|---|${cfg.shots.map(() => '---').join('|')}|`);
        for (const m of models) lines.push(`| ${m === 'atlas' ? 'atlas (no network)' : m} | ${cfg.shots.map((k) => cell(m, k, s, (row) => row.hd95.toFixed(1))).join(' | ')} |`);
      }
      lines.push('');
    }
    lines.push(`![few-shot ${mode}](fewshot-${mode}.png)`);
  }
}

export function reportMarkdown(r: EvaluationReport): string {
  const lines: string[] = [`# Eden evaluation`, '', `- command: \`${r.command}\``, `- data: ${r.data}${r.masks ? ` (masks: ${r.masks})` : ''}`, `- Eden ${r.edenVersion}, ${r.createdAt}, preset ${r.config.preset}, seed ${r.config.seed}`, '', '## Models', ''];
  for (const m of r.models) lines.push(`- **${m.name}**: ${m.description}`);
  if (r.fewshot) fewShotSection(r, lines);
  if (r.locality) {
    lines.push('', '## Locality', '');
    if ('skipped' in r.locality) lines.push(`Skipped: ${r.locality.skipped}`);
    else {
      lines.push(
        `Patches of ${Math.round(PROBE_SIDE * r.config.locality.patchFraction)} px (of ${PROBE_SIDE}) around ${r.locality.landmarks.length} landmarks (${r.locality.landmarks.join(', ')}) in ${r.locality.images} images; encoders frozen with batch-norm statistics re-estimated on random patches. The raw-pixel row (16 x 16 pixels, mean-centred) is the floor.`,
        '',
        '| model | kNN landmark accuracy (k=5) | silhouette (cosine) |',
        '|---|---|---|',
      );
      for (const [m, v] of Object.entries(r.locality.results)) lines.push(`| ${m} | ${(100 * v.knnAccuracy).toFixed(1)}% | ${v.silhouette.toFixed(3)} |`);
      lines.push('', `Chance kNN accuracy: ${(100 / r.locality.landmarks.length).toFixed(0)}%.`);
      probeComparisons(lines, r.locality.comparisons, 'kNN accuracy', 'images (each image\'s patches together)', r.config.bootstrap);
      lines.push('', '![locality](locality-tsne.png)');
    }
  }
  if (r.compositionality) {
    const any = Object.values(r.compositionality.results)[0];
    lines.push(
      '',
      '## Compositionality',
      '',
      `Random square wholes (${Math.round(r.config.compositionality.wholeFraction * 100)}% of the side) split into 2, 3 or 4 parts. Raw cosine = the paper's cos(Eve(whole), mean Eve(parts)), near 1 for any encoder; centred = the same after subtracting the encoder's mean Eve of random crops of each shape; retrieval = each whole's centred parts ranked against its own whole and ${any ? any.retrieval.candidates - 1 : '?'} other wholes (chance top-1 ${any ? (100 / any.retrieval.candidates).toFixed(1) : '?'}%, chance mean rank ${any ? ((any.retrieval.candidates + 1) / 2).toFixed(1) : '?'}). **raw pixels (no network)**: the same with each crop's pixels at 16 x 16 (centred on their mean) in place of Eve.`,
      '',
      '| model | raw cosine | centred cosine | centred, 2 / 3 / 4 parts | retrieval top-1 | mean rank |',
      '|---|---|---|---|---|---|',
    );
    for (const [m, v] of Object.entries(r.compositionality.results)) {
      lines.push(`| ${m} | ${v.raw.mean.toFixed(3)} ± ${v.raw.std.toFixed(3)} | ${v.centred.mean.toFixed(3)} ± ${v.centred.std.toFixed(3)} | ${['2', '3', '4'].map((k) => v.centred.byParts[k]!.mean.toFixed(3)).join(' / ')} | ${(100 * v.retrieval.top1).toFixed(1)}% | ${v.retrieval.meanRank.toFixed(1)} |`);
    }
    probeComparisons(lines, r.compositionality.comparisons, 'retrieval top-1', 'wholes', r.config.bootstrap);
    lines.push('', '![compositionality](compositionality.png)');
  }
  if (r.classification) {
    const c = r.classification;
    const cfg = r.config.classification;
    lines.push(
      '',
      '## Classification',
      '',
      `Classes: ${c.classes.join(', ')}; ${c.train} training and ${c.test} test images at ${cfg.size} px. Linear probe = logistic regression on frozen, standardised Eve (batch-norm statistics re-estimated on the training images; deterministic, one run), its L2 penalty chosen per model among ${PROBE_L2_GRID.join(', ')} by mean AUC on 20% of the training images held out (the same images for every model), then refitted on all of them; fine-tuned = encoder + linear head, ${cfg.fineTuneSteps} steps, mean over ${cfg.seeds} seed(s). **${c.floor.name}** is the floor: the same logistic regression on each image's pixels at ${c.floor.side} x ${c.floor.side}.`,
      '',
      '| model | linear probe AUC | linear probe accuracy | probe L2 | fine-tuned AUC | fine-tuned accuracy |',
      '|---|---|---|---|---|---|',
    );
    const l2 = (s: { l2?: number }): string => (s.l2 === undefined ? '—' : String(s.l2));
    for (const [m, v] of Object.entries(c.results)) lines.push(`| ${m} | ${v.linearProbe.meanAuc.toFixed(3)} | ${(100 * v.linearProbe.accuracy).toFixed(1)}% | ${l2(v.linearProbe)} | ${v.fineTune.meanAuc.toFixed(3)} | ${(100 * v.fineTune.accuracy).toFixed(1)}% |`);
    lines.push(`| ${c.floor.name} | ${c.floor.linearProbe.meanAuc.toFixed(3)} | ${(100 * c.floor.linearProbe.accuracy).toFixed(1)}% | ${l2(c.floor.linearProbe)} | — | — |`);
    if (c.classes.length > 2) {
      lines.push('', '| model | ' + c.classes.map((k) => `AUC ${k} (probe / fine-tuned)`).join(' | ') + ' |', '|---|' + c.classes.map(() => '---').join('|') + '|');
      for (const [m, v] of Object.entries(c.results)) lines.push(`| ${m} | ${c.classes.map((k) => `${v.linearProbe.aucPerClass[k]!.toFixed(3)} / ${v.fineTune.aucPerClass[k]!.toFixed(3)}`).join(' | ')} |`);
      lines.push(`| ${c.floor.name} | ${c.classes.map((k) => `${c.floor.linearProbe.aucPerClass[k]!.toFixed(3)} / —`).join(' | ')} |`);
    }
    if (c.comparisons.length) {
      lines.push('', `Paired AUC differences (A − B, AUC points x 100, 95% bootstrap over seeds and test images; * excludes 0):`, '', '| A − B | linear probe | fine-tuned |', '|---|---|---|');
      const pairs = [...new Set(c.comparisons.map((x) => `${x.a}\u0000${x.b}`))];
      for (const key of pairs) {
        const [a, b] = key.split('\u0000') as [string, string];
        const of = (kind: string): string => {
          const x = c.comparisons.find((y) => y.a === a && y.b === b && y.kind === kind);
          return x ? formatDifference(x.auc) : '—';
        };
        lines.push(`| ${a} − ${b} | ${of('linearProbe')} | ${of('fineTune')} |`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}
