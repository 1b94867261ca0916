/**
 * Few-shot segmentation (METHOD.md §6), in the modes of train/segmenter.ts (finetune, frozen,
 * linear) beside an atlas floor (the thresholded mean of the k training masks: no network).
 * For each (shots, seed): k training images and a validation split for early stopping are drawn
 * from the train pool; every model and mode gets the same images, seeds and augmentation draws, and
 * is tested on one fixed test split of the same folder (never overlapping; all listed in the
 * report). Per test image and structure, Dice and the 95% Hausdorff distance are kept, so that
 * models can be compared pairwise (eval/statistics.ts).
 */
import { EdenError } from '../core/errors.js';
import { deriveSeed, Rng } from '../core/rng.js';
import type { EvaluateConfig } from '../config/evaluate.js';
import { loadSegmentationData, type SegmentationData } from '../data/segmentation-data.js';
import { DEFAULT_PAIRED_AUGMENT } from '../data/paired-transforms.js';

export { loadSegmentationData, type SegmentationData };
import { trainSegmenter, type SegmentationMode } from '../train/segmenter.js';
import { dice, mean, std, surfaceDistance } from './metrics.js';
import type { ModelSource } from './models.js';
import { pairedBootstrap, type PairedDifference } from './statistics.js';

export interface FewShotRun {
  model: string;
  /** 'atlas' for the no-network floor. */
  mode: SegmentationMode | 'atlas';
  shots: number;
  seed: number;
  train: string[];
  val: string[];
  /** Mean over the test split, per structure. */
  dice: Record<string, number>;
  /** Per test image (in the order of the report's testImages), per structure. */
  perImage: Record<string, { dice: number[]; hd95: number[] }>;
  steps: number;
  bestStep: number;
  valDice: number;
  seconds: number;
}

/** Dice and HD95 of per-structure probabilities against the test masks. */
function score(data: SegmentationData, probs: Float32Array[][]): Pick<FewShotRun, 'dice' | 'perImage'> {
  const size = Math.round(Math.sqrt(data.samples[0]!.image.length));
  const perImage: FewShotRun['perImage'] = Object.fromEntries(data.structures.map((s) => [s, { dice: [], hd95: [] }]));
  data.test.forEach((idx, j) => {
    data.structures.forEach((s, k) => {
      const truth = data.samples[idx]!.masks[k]!;
      perImage[s]!.dice.push(dice(probs[j]![k]!, truth));
      perImage[s]!.hd95.push(surfaceDistance(probs[j]![k]!, truth, size).hd95);
    });
  });
  return { dice: Object.fromEntries(data.structures.map((s) => [s, mean(perImage[s]!.dice)])), perImage };
}

/** The atlas floor: each structure's mean training mask, thresholded at 0.5, predicted for every image. */
export function atlasPrediction(data: SegmentationData, train: number[]): Float32Array[] {
  return data.structures.map((_, k) => {
    const px = data.samples[0]!.image.length;
    const m = new Float32Array(px);
    for (const i of train) {
      const mask = data.samples[i]!.masks[k]!;
      for (let p = 0; p < px; p++) m[p]! += mask[p]! / train.length;
    }
    return m.map((v) => (v >= 0.5 ? 1 : 0));
  });
}

/** Train one encoder in one mode on `train`, early-stop on `val`, and score the test split. */
export async function fineTuneAndTest(source: ModelSource, data: SegmentationData, split: { train: number[]; val: number[] }, cfg: EvaluateConfig['segmentation'], seed: number, mode: SegmentationMode = 'finetune', onNotice?: (message: string) => void): Promise<Omit<FewShotRun, 'model' | 'mode' | 'shots' | 'seed' | 'train' | 'val' | 'seconds'>> {
  const backbone = await source.create();
  const labelled = (i: number): { image: Float32Array; masks: Float32Array[] } => data.samples[i]!;
  try {
    const trained = await trainSegmenter(backbone, split.train.map(labelled), split.val.map(labelled), {
      mode,
      size: cfg.size,
      batchSize: cfg.batchSize,
      lr: cfg.lr,
      encoderLrMultiplier: cfg.encoderLrMultiplier,
      linearLr: cfg.linearLr,
      maxSteps: mode === 'linear' ? cfg.linearSteps : cfg.steps,
      evalEvery: cfg.evalEvery,
      patience: cfg.patience,
      bnBatches: cfg.bnBatches,
      augment: DEFAULT_PAIRED_AUGMENT,
      seed,
      onNotice,
    });
    try {
      const probs = await trained.predict(data.test.map((i) => data.samples[i]!.image));
      return { ...score(data, probs), steps: trained.steps, bestStep: trained.bestStep, valDice: trained.valDice };
    } finally {
      trained.dispose();
    }
  } finally {
    backbone.dispose();
  }
}

/** The k training images and the validation split of one (shots, seed), the same for every model. */
export function drawSplit(data: SegmentationData, shots: number, seed: number, valImages: number): { train: number[]; val: number[] } {
  if (shots > data.trainPool.length) throw new EdenError('data', `${shots} shots need ${shots} training images; the train pool has ${data.trainPool.length}`);
  const order = new Rng(seed).shuffle([...data.trainPool]);
  const train = order.slice(0, shots).sort((a, b) => a - b);
  const val = order.slice(shots, shots + valImages).sort((a, b) => a - b);
  return { train, val };
}

export interface FewShotHooks {
  /** Run only the model runs whose index (in the fixed order of all runs) is `index` mod `count`: one worker's share. */
  shard?: { index: number; count: number };
  /** A finished run of the same configuration to use instead of running it again (resume). */
  reuse?: (key: Pick<FewShotRun, 'model' | 'mode' | 'shots' | 'seed'>) => FewShotRun | undefined;
  /** Messages from training worth telling the user (e.g. a batch split to fit the wasm heap). */
  onNotice?: (message: string) => void;
  /** Each run as it finishes (for progress, and for saving partial results). */
  onRun?: (run: FewShotRun, done: number, total: number, reused: boolean) => void | Promise<void>;
}

/** Every (shots, seed) x model x mode run, plus the atlas per (shots, seed). */
export async function fewShotSegmentation(sources: ModelSource[], data: SegmentationData, config: EvaluateConfig, hooks: FewShotHooks = {}): Promise<FewShotRun[]> {
  const cfg = config.segmentation;
  const runs: FewShotRun[] = [];
  const total = cfg.shots.length * cfg.seeds * (1 + sources.length * cfg.modes.length);
  const names = (idx: number[]): string[] => idx.map((i) => data.samples[i]!.file);
  const record = async (run: FewShotRun, reused: boolean): Promise<void> => {
    runs.push(run);
    await hooks.onRun?.(run, runs.length, total, reused);
  };
  let task = -1;
  for (const shots of cfg.shots) {
    for (let s = 0; s < cfg.seeds; s++) {
      const seed = deriveSeed(config.seed, 41, shots, s);
      const split = drawSplit(data, shots, seed, cfg.valImages);
      const common = { shots, seed: s, train: names(split.train), val: names(split.val) };
      const t0 = Date.now();
      const atlas = atlasPrediction(data, split.train);
      await record({ model: 'atlas', mode: 'atlas', ...common, ...score(data, data.test.map(() => atlas)), steps: 0, bestStep: 0, valDice: NaN, seconds: (Date.now() - t0) / 1000 }, false);
      for (const source of sources) {
        for (const mode of cfg.modes) {
          task++;
          if (hooks.shard && task % hooks.shard.count !== hooks.shard.index) continue;
          const previous = hooks.reuse?.({ model: source.name, mode, shots, seed: s });
          if (previous) {
            await record(previous, true);
            continue;
          }
          const t1 = Date.now();
          const r = await fineTuneAndTest(source, data, split, cfg, seed, mode, hooks.onNotice);
          await record({ model: source.name, mode, ...common, ...r, seconds: (Date.now() - t1) / 1000 }, false);
        }
      }
    }
  }
  return runs;
}

export interface FewShotSummaryRow {
  model: string;
  mode: FewShotRun['mode'];
  shots: number;
  structure: string;
  /** Mean and std over seeds of the test-split mean Dice. */
  mean: number;
  std: number;
  /** Mean over seeds and images of HD95 in pixels at the evaluation size (empty predictions count as the image diagonal). */
  hd95: number;
  n: number;
}

/** HD95 with the no-surface case (NaN) replaced by the image diagonal, the worst possible value. */
function hd95OrDiagonal(values: number[], size: number): number[] {
  return values.map((v) => (Number.isFinite(v) ? v : Math.SQRT2 * size));
}

/** Per image values of a run for `structure` ('mean' averages the structures per image). */
function perImage(r: FewShotRun, structures: string[], structure: string, metric: 'dice' | 'hd95', size: number): number[] {
  const of = (s: string): number[] => (metric === 'dice' ? r.perImage[s]!.dice : hd95OrDiagonal(r.perImage[s]!.hd95, size));
  if (structure !== 'mean') return of(structure);
  const all = structures.map(of);
  return all[0]!.map((_, i) => mean(all.map((a) => a[i]!)));
}

export function summarise(runs: FewShotRun[], structures: string[], size: number): FewShotSummaryRow[] {
  const rows: FewShotSummaryRow[] = [];
  const keys = [...new Set(runs.map((r) => JSON.stringify([r.mode, r.model, r.shots])))];
  for (const key of keys) {
    const [mode, model, shots] = JSON.parse(key) as [FewShotRun['mode'], string, number];
    const group = runs.filter((r) => r.mode === mode && r.model === model && r.shots === shots);
    for (const s of [...structures, 'mean']) {
      const values = group.map((r) => mean(perImage(r, structures, s, 'dice', size)));
      const hd = group.map((r) => mean(perImage(r, structures, s, 'hd95', size)));
      rows.push({ model, mode, shots, structure: s, mean: mean(values), std: std(values), hd95: mean(hd), n: values.length });
    }
  }
  return rows;
}

export interface FewShotComparison {
  /** The mode of A and B ('atlas' rows compare against the atlas in that mode's table). */
  mode: SegmentationMode;
  shots: number;
  structure: string;
  a: string;
  b: string;
  /** Dice of A minus Dice of B, paired over seeds and test images. */
  dice: PairedDifference;
}

/**
 * Every pair of models within each mode (the atlas joins every mode), per shots and structure
 * (and their mean): the mean paired Dice difference with its 95% two-way bootstrap interval.
 */
export function compareFewShot(runs: FewShotRun[], structures: string[], size: number, o: { replicates?: number; seed?: number } = {}): FewShotComparison[] {
  const out: FewShotComparison[] = [];
  const modes = [...new Set(runs.map((r) => r.mode))].filter((m): m is SegmentationMode => m !== 'atlas');
  const shotsList = [...new Set(runs.map((r) => r.shots))];
  for (const mode of modes) {
    const models = [...new Set(runs.filter((r) => r.mode === mode).map((r) => r.model)), 'atlas'];
    for (const shots of shotsList) {
      const bySeed = (model: string): FewShotRun[] =>
        runs.filter((r) => r.shots === shots && r.model === model && (model === 'atlas' ? r.mode === 'atlas' : r.mode === mode)).sort((x, y) => x.seed - y.seed);
      for (let i = 0; i < models.length; i++) {
        for (let j = i + 1; j < models.length; j++) {
          const ra = bySeed(models[i]!);
          const rb = bySeed(models[j]!);
          if (!ra.length || ra.length !== rb.length) continue;
          for (const s of [...structures, 'mean']) {
            const a = ra.map((r) => perImage(r, structures, s, 'dice', size));
            const b = rb.map((r) => perImage(r, structures, s, 'dice', size));
            out.push({ mode, shots, structure: s, a: models[i]!, b: models[j]!, dice: pairedBootstrap(a, b, { replicates: o.replicates, seed: deriveSeed(o.seed ?? 0, 91, shots, i, j) }) });
          }
        }
      }
    }
  }
  return out;
}
