/**
 * `eden evaluate`: judge encoders side by side on a labelled folder (METHOD.md §6) and write
 * report.json, report.md and the plots to an output folder. Same seed, same numbers.
 *
 * Every table carries its floors (the atlas, random initialisation, raw pixels) and every
 * comparison a paired 95% interval (eval/statistics.ts). Finished few-shot runs are appended to
 * fewshot-runs.jsonl as they complete; `resume` reuses those of the same configuration, so a killed
 * evaluation loses at most the run in progress.
 */
import type { RunOrder } from '../data/mask-table.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { EvaluateConfig } from '../config/evaluate.js';
import { writeFileAtomic } from '../engine/tensor-file.js';
import { processMemoryBytes } from '../data/cache-plan.js';
import { VERSION } from '../version.js';
import { EdenError } from '../core/errors.js';
import { compareFewShot, fewShotSegmentation, loadSegmentationData, summarise, type FewShotComparison, type FewShotRun, type FewShotSummaryRow, type SegmentationData } from './fewshot.js';
import { kde, mean, std } from './metrics.js';
import type { ModelSource } from './models.js';
import { compositionality, landmarks, LANDMARKS, locality, rawPixelCompositionality, rawPixelLocality, type CompositionResult, type LocalityResult } from './probes.js';
import { fineTuneClassifier, linearProbe, loadClassificationData, pairedAucDifference, PIXEL_FLOOR_SIDE, probeSplitSeed, rawPixelProbe, type ClassificationScores } from './classify.js';
import { plotDensity, plotFewShot, plotScatter, reportMarkdown, PROBE_SIDE } from './report.js';
import { pairedBootstrap, type PairedDifference } from './statistics.js';
import { deriveSeed } from '../core/rng.js';

export const TASKS = ['fewshot-seg', 'locality', 'compositionality', 'classify'] as const;
export type Task = (typeof TASKS)[number];
/** The no-network floor's name in the locality, compositionality and classification tables. */
export const RAW_PIXELS = 'raw pixels (no network)';
/** `--task all` on a segmentation folder; classification needs labels and is asked for by name. */
export const SEGMENTATION_FOLDER_TASKS: Task[] = ['fewshot-seg', 'locality', 'compositionality'];

/**
 * The shot counts a segmentation folder can give (k training images drawn from its train pool,
 * the test split held out); the rest are left out with a warning, or, none left, an error.
 */
function feasibleShots(shots: number[], data: SegmentationData, log: (line: string) => void): number[] {
  const pool = data.trainPool.length;
  const feasible = shots.filter((k) => k <= pool);
  const why = `${data.samples.length} labelled images leave ${pool} to draw shots from (${data.test.length} held out for testing)`;
  if (!feasible.length) throw new EdenError('data', `${shots.join(', ')} shots: ${why}; give --shots ${pool} or fewer, or label more images`);
  if (feasible.length < shots.length) log(`warning: ${shots.filter((k) => k > pool).join(', ')} shots left out: ${why}; evaluating ${feasible.join(', ')} shots`);
  return feasible;
}

export interface EvaluateOptions {
  data: string;
  /** The masks' folder, when not `data`/masks (then `data` is the images' folder): scan.ts ScanOptions.masks. */
  masks?: string;
  /** How a masks table's runs number the pixels, and the condition its rows must meet (scan.ts ScanOptions.rleOrder, maskRows). */
  rleOrder?: RunOrder;
  maskRows?: string;
  /** Segmentation tasks: use at most this many of the folder's labelled images (drawn with the seed). */
  maxImages?: number;
  /** Segmentation tasks: refuse, before decoding, images that would take more memory (default half of this machine's). */
  memoryBytes?: number;
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
  /** Reuse finished few-shot runs of the same configuration from `out`/fewshot-runs*.jsonl. */
  resume?: boolean;
  /**
   * Be one of `count` workers: run only this share of the few-shot model runs, append them to
   * fewshot-runs-w<index>.jsonl, and write no report (the parent merges the shares by resuming).
   */
  shard?: { index: number; count: number };
  onLog?: (line: string) => void;
}

export type ScoresSummary = Omit<ClassificationScores, 'probabilities'>;

export interface CompositionSummary {
  raw: { mean: number; std: number; byParts: Record<string, { mean: number; n: number }> };
  centred: { mean: number; std: number; byParts: Record<string, { mean: number; n: number }> };
  retrieval: { top1: number; meanRank: number; candidates: number };
}

export type LocalitySummary = Pick<LocalityResult, 'knnAccuracy' | 'silhouette' | 'patches'>;

/** A − B on a probe's per-unit score (an image's kNN accuracy, a whole's retrieval hit). */
export interface ProbeComparison {
  a: string;
  b: string;
  difference: PairedDifference;
}

/**
 * Every pair of models, in the order given (the floor last), on a per-unit score: the mean
 * difference with a 95% paired bootstrap over the units. The probes are deterministic given the
 * seed, so there is one "seed" and the units are the only source of noise resampled.
 */
function pairwiseOverUnits(scores: [string, number[]][], o: { bootstrap: number; seed: number }, salt: number): ProbeComparison[] {
  const out: ProbeComparison[] = [];
  for (let i = 0; i < scores.length; i++) {
    for (let j = i + 1; j < scores.length; j++) {
      out.push({ a: scores[i]![0], b: scores[j]![0], difference: pairedBootstrap([scores[i]![1]], [scores[j]![1]], { replicates: o.bootstrap, seed: deriveSeed(o.seed, salt, i, j) }) });
    }
  }
  return out;
}

export interface EvaluationReport {
  edenVersion: string;
  command: string;
  createdAt: string;
  config: EvaluateConfig;
  models: { name: string; description: string }[];
  data: string;
  masks?: string;
  /** labelled / images: the folder's labelled images and those --max-images drew (absent when all were used). */
  fewshot?: { structures: string[]; labelled?: number; images?: number; testImages: string[]; trainPool: number; runs: FewShotRun[]; summary: FewShotSummaryRow[]; comparisons: FewShotComparison[]; seconds: number };
  /** comparisons: kNN accuracy, paired over images. */
  locality?: { landmarks: readonly string[]; images: number; results: Record<string, LocalitySummary>; comparisons: ProbeComparison[]; seconds: number } | { skipped: string };
  /** comparisons: retrieval top-1, paired over wholes. */
  compositionality?: { results: Record<string, CompositionSummary>; comparisons: ProbeComparison[]; seconds: number };
  classification?: {
    classes: string[];
    train: number;
    test: number;
    /** linearProbe: one deterministic run; fineTune: one per seed, and their mean. */
    results: Record<string, { linearProbe: ScoresSummary; fineTune: ScoresSummary; fineTuneSeeds: ScoresSummary[] }>;
    /** The no-network floor: the linear probe's regression on the pixels at `side` x `side`. */
    floor: { name: typeof RAW_PIXELS; side: number; linearProbe: ScoresSummary };
    comparisons: { kind: 'linearProbe' | 'fineTune'; a: string; b: string; auc: PairedDifference }[];
    seconds: number;
  };
  plots: string[];
}

const RUNS_FILE = 'fewshot-runs.jsonl';

/**
 * Key of a few-shot run for resuming: the model (by name and what it is), mode, shots and seed.
 * Together with the fingerprint of the data, split and configuration, a finished run is reused only
 * where it would be computed again identically; so models can be added to an evaluation later.
 */
function runKey(r: Pick<FewShotRun, 'model' | 'mode' | 'shots' | 'seed'>, description: string): string {
  return JSON.stringify([r.model, description, r.mode, r.shots, r.seed]);
}

/**
 * What a single run's result depends on, from a fingerprint: the segmentation settings without
 * `modes`, `shots` and `seeds`, which choose which runs exist (each run is keyed by its own mode,
 * shots and seed) but not what any run computes. So a mode, a shot count or seeds can be added to
 * a finished evaluation with --resume. Older records, written with those fields, compare equal.
 */
function runDependencies(fingerprint: string): string {
  try {
    const f = JSON.parse(fingerprint) as { config?: { segmentation?: Record<string, unknown> } };
    const seg = f.config?.segmentation;
    if (seg) for (const k of ['modes', 'shots', 'seeds']) delete seg[k];
    return JSON.stringify(f);
  } catch {
    return fingerprint;
  }
}

/** Finished runs of this configuration in `dir`'s fewshot-runs*.jsonl (the main file and every worker's). */
async function previousRuns(dir: string, fingerprint: string): Promise<Map<string, FewShotRun>> {
  const wanted = runDependencies(fingerprint);
  const out = new Map<string, FewShotRun>();
  const files = (await fs.readdir(dir).catch(() => [] as string[])).filter((f) => /^fewshot-runs(-w\d+)?\.jsonl$/.test(f));
  let text = '';
  for (const f of files) text += `${await fs.readFile(path.join(dir, f), 'utf8')}\n`;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const rec = JSON.parse(line) as { fingerprint: string; description?: string; run: FewShotRun };
      // The atlas is recomputed (it costs nothing); model runs are reused.
      if (runDependencies(rec.fingerprint) === wanted && rec.run.mode !== 'atlas') out.set(runKey(rec.run, rec.description ?? ''), rec.run);
    } catch {
      // a line cut off by a kill
    }
  }
  return out;
}

function summariseScores(s: ClassificationScores): ScoresSummary {
  return { aucPerClass: s.aucPerClass, meanAuc: s.meanAuc, accuracy: s.accuracy, ...(s.l2 === undefined ? {} : { l2: s.l2 }) };
}

function meanScores(all: ClassificationScores[]): ScoresSummary {
  const classes = Object.keys(all[0]!.aucPerClass);
  return { aucPerClass: Object.fromEntries(classes.map((k) => [k, mean(all.map((s) => s.aucPerClass[k]!))])), meanAuc: mean(all.map((s) => s.meanAuc)), accuracy: mean(all.map((s) => s.accuracy)) };
}

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
    ...(o.masks && { masks: o.masks }),
    plots: [],
  };

  // Every segmentation task holds its images decoded: at most --max-images of them, within memory.
  const limits = {
    rleOrder: o.rleOrder,
    maskRows: o.maskRows,
    maxImages: o.maxImages,
    memory: { bytes: o.memoryBytes ?? processMemoryBytes() / 2, remedy: (fits: number) => `evaluate on --max-images ${fits} of them (drawn with the seed), or at a smaller --size` },
    onSkip: (m: string) => log(`skipped ${m}`),
    onWarning: (m: string) => log(`warning: ${m}`),
    onLog: log,
  };
  const drawnFrom = (data: { labelled?: number }): string => (data.labelled ? ` (drawn by --max-images from ${data.labelled} labelled)` : '');

  if (o.tasks.includes('fewshot-seg')) {
    const t0 = Date.now();
    const asked = o.config.segmentation;
    const data = await loadSegmentationData(o.data, asked.size, { ...limits, masks: o.masks, structures: o.structures, combine: o.combine, testFraction: asked.testFraction, maxTestImages: asked.maxTestImages, seed: o.config.seed });
    // Shot counts the labelled images cannot give are left out before any run, not found wanting after hours.
    const cfg = { ...asked, shots: feasibleShots(asked.shots, data, log) };
    const config = cfg.shots.length === asked.shots.length ? o.config : { ...o.config, segmentation: cfg };
    report.config = config;
    log(`few-shot segmentation: ${data.samples.length} images${drawnFrom(data)}, test split ${data.test.length}, structures ${data.structures.join(', ')}; modes ${cfg.modes.join(', ')} and the atlas`);
    const runsFile = path.join(o.out, o.shard ? `fewshot-runs-w${o.shard.index}.jsonl` : RUNS_FILE);
    // What a few-shot run depends on: data, split, structures, the base seed and the segmentation
    // settings (not the other tasks' settings, so that changing those keeps finished runs).
    const fingerprint = JSON.stringify({ data: path.resolve(o.data), ...(o.masks && { masks: path.resolve(o.masks) }), ...(o.rleOrder && { rleOrder: o.rleOrder }), ...(o.maskRows !== undefined && { maskRows: o.maskRows }), ...(data.labelled && { maxImages: o.maxImages, labelled: data.labelled }), structures: data.structures, test: data.test, config: { seed: o.config.seed, segmentation: config.segmentation } });
    const describe = (model: string): string => (model === 'atlas' ? 'atlas' : (o.sources.find((s) => s.name === model)?.description ?? ''));
    const done = o.resume ? await previousRuns(o.out, fingerprint) : new Map<string, FewShotRun>();
    if (!o.resume) await fs.writeFile(runsFile, '');
    else if (done.size) log(`resuming: ${done.size} finished run(s) found in ${o.out}`);
    const runs = await fewShotSegmentation(o.sources, data, config, {
      shard: o.shard,
      onNotice: (m) => log(m),
      reuse: (key) => done.get(runKey(key, describe(key.model))),
      onRun: async (r, n, total, reused) => {
        if (!reused) await fs.appendFile(runsFile, `${JSON.stringify({ fingerprint, description: describe(r.model), run: r })}\n`);
        log(`[${n}/${total}] ${r.model}${r.mode === 'atlas' ? '' : ` (${r.mode})`}, ${r.shots} shots, seed ${r.seed}: ${Object.entries(r.dice).map(([s, d]) => `${s} ${(100 * d).toFixed(1)}`).join(', ')}${r.mode === 'atlas' ? '' : `; best step ${r.bestStep}/${r.steps}`} (${reused ? 'reused' : `${r.seconds.toFixed(0)} s`})`);
      },
    });
    if (o.shard) return report; // a worker: its runs are in its file; the parent writes the report
    const summary = summarise(runs, data.structures, cfg.size);
    const comparisons = compareFewShot(runs, data.structures, cfg.size, { replicates: o.config.bootstrap, seed: o.config.seed });
    report.fewshot = { structures: data.structures, ...(data.labelled && { labelled: data.labelled, images: data.samples.length }), testImages: data.test.map((i) => data.samples[i]!.file), trainPool: data.trainPool.length, runs, summary, comparisons, seconds: (Date.now() - t0) / 1000 };
    for (const mode of cfg.modes) report.plots.push(await plotFewShot(summary.filter((r) => r.mode === mode || r.mode === 'atlas'), mode, path.join(o.out, `fewshot-${mode}.png`)));
  }

  if (o.tasks.includes('classify')) {
    const t0 = Date.now();
    const cfg = o.config.classification;
    const data = await loadClassificationData(o.data, cfg.size, { labels: o.labels, labelColumn: o.labelColumn, seed: o.config.seed, maxTrain: cfg.maxTrain, maxTest: cfg.maxTest, onSkip: (m) => log(`skipped ${m}`), onWarning: (m) => log(`warning: ${m}`) });
    log(`classification: classes ${data.classes.join(', ')}; ${data.train.length} training and ${data.test.length} test images at ${cfg.size} px`);
    const results: NonNullable<EvaluationReport['classification']>['results'] = {};
    const probes = new Map<string, ClassificationScores>();
    const tuned = new Map<string, ClassificationScores[]>();
    // One validation split (of the training images) for every probe's penalty, the floor's too.
    const probeSeed = probeSplitSeed(o.config.seed);
    for (const s of o.sources) {
      const probe = await linearProbe(s, data, cfg, probeSeed);
      const seeds: ClassificationScores[] = [];
      for (let k = 0; k < cfg.seeds; k++) seeds.push(await fineTuneClassifier(s, data, cfg, deriveSeed(o.config.seed, 83, k)));
      probes.set(s.name, probe);
      tuned.set(s.name, seeds);
      results[s.name] = { linearProbe: summariseScores(probe), fineTune: meanScores(seeds), fineTuneSeeds: seeds.map(summariseScores) };
      log(`classification, ${s.name}: linear probe AUC ${probe.meanAuc.toFixed(3)} (accuracy ${(100 * probe.accuracy).toFixed(1)}%, L2 ${probe.l2}), fine-tuned AUC ${mean(seeds.map((x) => x.meanAuc)).toFixed(3)} ± ${std(seeds.map((x) => x.meanAuc)).toFixed(3)} over ${seeds.length} seed(s)`);
    }
    const floor = await rawPixelProbe(data, cfg, probeSeed);
    log(`classification, ${RAW_PIXELS}: linear probe AUC ${floor.meanAuc.toFixed(3)} (accuracy ${(100 * floor.accuracy).toFixed(1)}%, L2 ${floor.l2}) on the pixels at ${PIXEL_FLOOR_SIDE} x ${PIXEL_FLOOR_SIDE}`);
    const labels = data.test.map((x) => x.label);
    const comparisons: NonNullable<EvaluationReport['classification']>['comparisons'] = [];
    const names = o.sources.map((s) => s.name);
    const bootstrap = (a: ClassificationScores[], b: ClassificationScores[], seed: number): PairedDifference =>
      pairedAucDifference(a.map((x) => x.probabilities!), b.map((x) => x.probabilities!), labels, data.classes, { replicates: o.config.bootstrap, seed });
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const [a, b] = [names[i]!, names[j]!];
        const seed = deriveSeed(o.config.seed, 97, i, j);
        comparisons.push({ kind: 'linearProbe', a, b, auc: bootstrap([probes.get(a)!], [probes.get(b)!], seed) });
        comparisons.push({ kind: 'fineTune', a, b, auc: bootstrap(tuned.get(a)!, tuned.get(b)!, seed) });
      }
      // Every encoder against the floor, probed and fine-tuned: the floor is the classifier one gets
      // without a network, the same for every seed (deterministic), so each seed is paired with it.
      const [a, seed] = [names[i]!, deriveSeed(o.config.seed, 97, i, names.length)];
      comparisons.push({ kind: 'linearProbe', a, b: RAW_PIXELS, auc: bootstrap([probes.get(a)!], [floor], seed) });
      comparisons.push({ kind: 'fineTune', a, b: RAW_PIXELS, auc: bootstrap(tuned.get(a)!, tuned.get(a)!.map(() => floor), seed) });
    }
    report.classification = { classes: data.classes, train: data.train.length, test: data.test.length, results, floor: { name: RAW_PIXELS, side: PIXEL_FLOOR_SIDE, linearProbe: summariseScores(floor) }, comparisons, seconds: (Date.now() - t0) / 1000 };
  }

  const probes = o.tasks.filter((t) => t === 'locality' || t === 'compositionality');
  if (probes.length) {
    // The folder's structures and the combined ones (--combine heart=labels:3 names a label map's heart for locality).
    const data = await loadSegmentationData(o.data, PROBE_SIDE, { ...limits, masks: o.masks, combine: o.combine, keepCombined: true, testFraction: 0, maxTestImages: 0, seed: o.config.seed });
    if (data.labelled) log(`probes: ${data.samples.length} images${drawnFrom(data)}`);
    if (probes.includes('compositionality')) {
      const t0 = Date.now();
      const results: Record<string, CompositionSummary> = {};
      const curves: { model: string; measure: string; cosine: number; density: number }[] = [];
      const grid = Array.from({ length: 121 }, (_, i) => -1 + (2.2 * i) / 120);
      const summary = (byParts: Record<string, number[]>): CompositionSummary['raw'] => {
        const all = Object.values(byParts).flat();
        return { mean: mean(all), std: std(all), byParts: Object.fromEntries(Object.entries(byParts).map(([k, v]) => [k, { mean: mean(v), n: v.length }])) };
      };
      const record = (name: string, r: CompositionResult): void => {
        results[name] = { raw: summary(r.byParts), centred: summary(r.centredByParts), retrieval: r.retrieval };
        for (const [measure, byParts] of [['raw cosine', r.byParts], ['centred cosine', r.centredByParts]] as const) {
          kde(Object.values(byParts).flat(), grid).forEach((d, i) => curves.push({ model: name, measure, cosine: grid[i]!, density: d }));
        }
        const c = results[name]!;
        log(`compositionality, ${name}: raw cosine ${c.raw.mean.toFixed(3)}, centred cosine ${c.centred.mean.toFixed(3)}, retrieval top-1 ${(100 * r.retrieval.top1).toFixed(1)}% (mean rank ${r.retrieval.meanRank.toFixed(1)} of ${r.retrieval.candidates})`);
      };
      const images = data.samples.map((x) => x.image);
      const options = { ...o.config.compositionality, seed: o.config.seed };
      const floor = await rawPixelCompositionality(images, PROBE_SIDE, options);
      record(RAW_PIXELS, floor);
      const hits: [string, number[]][] = [];
      for (const s of o.sources) {
        const backbone = await s.create();
        const r = await compositionality(backbone, images, PROBE_SIDE, options);
        backbone.dispose();
        record(s.name, r);
        hits.push([s.name, r.retrievalHits]);
      }
      hits.push([RAW_PIXELS, floor.retrievalHits]);
      report.compositionality = { results, comparisons: pairwiseOverUnits(hits, o.config, 101), seconds: (Date.now() - t0) / 1000 };
      report.plots.push(await plotDensity(curves, path.join(o.out, 'compositionality.png')));
    }
    if (probes.includes('locality')) {
      // The probe data (loaded once, above) hold every structure's mask; locality needs three.
      const names = ['right_lung', 'left_lung', 'heart'];
      const at = names.map((n) => data.structures.indexOf(n));
      if (at.some((i) => i < 0)) {
        const why = `locality needs heart, left_lung and right_lung masks: ${o.data} has ${data.structures.join(', ')} (masks named otherwise can be named with --combine, e.g. heart=cardiac, or heart=labels:3 for a label map's value)`;
        // Asked for alone, a skipped task is a failed run (an empty report and exit 0 said nothing); among others, a note.
        if (o.tasks.length === 1) throw new EdenError('data', why);
        report.locality = { skipped: why };
        log(`locality skipped: ${report.locality.skipped}`);
      } else {
        const t0 = Date.now();
        const items = data.samples
          .map((x) => ({ image: x.image, points: landmarks(x.masks[at[0]!]!, x.masks[at[1]!]!, x.masks[at[2]!]!, PROBE_SIDE) }))
          .filter((x): x is { image: Float32Array; points: [number, number][] } => x.points !== null)
          .slice(0, o.config.locality.images);
        const results: Record<string, LocalitySummary> = {};
        const floor = rawPixelLocality(items, PROBE_SIDE, o.config.locality);
        results[RAW_PIXELS] = { knnAccuracy: floor.knnAccuracy, silhouette: floor.silhouette, patches: floor.patches };
        const perImage: [string, number[]][] = [];
        log(`locality, ${RAW_PIXELS}: kNN landmark accuracy ${(100 * floor.knnAccuracy).toFixed(1)}%, silhouette ${floor.silhouette.toFixed(3)}`);
        const scatter: { model: string; x: number; y: number; landmark: string }[] = [];
        for (const s of o.sources) {
          const backbone = await s.create();
          const r = await locality(backbone, items, PROBE_SIDE, { ...o.config.locality, seed: o.config.seed });
          backbone.dispose();
          results[s.name] = { knnAccuracy: r.knnAccuracy, silhouette: r.silhouette, patches: r.patches };
          perImage.push([s.name, r.perImage]);
          r.embedding2d.forEach(([x, y], i) => scatter.push({ model: s.name, x, y, landmark: LANDMARKS[r.labels[i]!]! }));
          log(`locality, ${s.name}: kNN landmark accuracy ${(100 * r.knnAccuracy).toFixed(1)}%, silhouette ${r.silhouette.toFixed(3)} (${r.patches} patches)`);
        }
        perImage.push([RAW_PIXELS, floor.perImage]);
        report.locality = { landmarks: LANDMARKS, images: items.length, results, comparisons: pairwiseOverUnits(perImage, o.config, 103), seconds: (Date.now() - t0) / 1000 };
        report.plots.push(await plotScatter(scatter, path.join(o.out, 'locality-tsne.png')));
      }
    }
  }
  await writeFileAtomic(path.join(o.out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(path.join(o.out, 'report.md'), reportMarkdown(report));
  return report;
}
