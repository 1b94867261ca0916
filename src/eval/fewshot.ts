/**
 * Few-shot segmentation (METHOD.md §6): a U-Net on each encoder, fine-tuned on k labelled images
 * drawn with a seed from the train split, evaluated by Dice on a fixed test split of the same
 * folder (never overlapping; both saved in the report). One sigmoid output per structure, loss
 * BCE + soft Dice, image and masks augmented together by a seeded transform.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { deriveSeed, Rng } from '../core/rng.js';
import type { EvaluateConfig } from '../config/evaluate.js';
import { ImageDataset, type Sample } from '../data/dataset.js';
import { augmentPair, DEFAULT_PAIRED_AUGMENT } from '../data/paired-transforms.js';
import { scanDataset } from '../data/scan.js';
import { DEFAULT_VIEW_OPTIONS } from '../config/views.js';
import { UNet } from '../models/unet.js';
import { dice, mean, std } from './metrics.js';
import type { ModelSource } from './models.js';

export interface SegmentationData {
  root: string;
  structures: string[];
  /** Samples with every structure's mask, at the evaluation size. */
  samples: { file: string; image: Float32Array; masks: Float32Array[] }[];
  test: number[];
  trainPool: number[];
}

/**
 * Load a segmentation folder: `structures` filters, `combine` unites masks into a new structure
 * (e.g. lungs = left_lung + right_lung). Images lacking any requested mask are left out.
 */
export async function loadSegmentationData(root: string, size: number, o: { structures?: string[]; combine?: Record<string, string[]>; testFraction: number; maxTestImages: number; seed: number; onSkip?: (m: string) => void }): Promise<SegmentationData> {
  const scan = await scanDataset([root]);
  if (scan.layout !== 'segmentation') throw new EdenError('data', `${root}: few-shot segmentation needs the images/ + masks/<structure>/ layout`);
  for (const s of scan.skipped) o.onSkip?.(s.message);
  const combine = o.combine ?? {};
  for (const [name, parts] of Object.entries(combine)) for (const p of parts) if (!scan.structures.includes(p)) throw new EdenError('data', `${root}: --combine ${name}=${parts.join('+')} names '${p}', which is not among ${scan.structures.join(', ')}`);
  const consumed = new Set(Object.values(combine).flat());
  const structures = o.structures ?? [...Object.keys(combine), ...scan.structures.filter((s) => !consumed.has(s))];
  for (const s of structures) if (!scan.structures.includes(s) && !combine[s]) throw new EdenError('data', `${root}: no structure '${s}'; found ${scan.structures.join(', ')}${Object.keys(combine).length ? ` and combined ${Object.keys(combine).join(', ')}` : ''}`);
  const dataset = new ImageDataset(scan.images, { size, cache: 'none', onSkip: (s) => o.onSkip?.(s.message) });
  const samples: SegmentationData['samples'] = [];
  for await (const sample of dataset.iterate()) {
    const masks = structures.map((s) => unite(sample, combine[s] ?? [s]));
    if (masks.some((m) => m === undefined)) {
      o.onSkip?.(`${sample.entry.path}: left out (missing a mask of ${structures.join(', ')})`);
      continue;
    }
    samples.push({ file: sample.entry.path, image: sample.image, masks: masks as Float32Array[] });
  }
  if (samples.length < 2) throw new EdenError('data', `${root}: ${samples.length} usable image(s) with all masks; need at least 2`);
  const order = new Rng(deriveSeed(o.seed, 21)).shuffle([...samples.keys()]);
  const nTest = Math.min(o.maxTestImages, Math.max(1, Math.round(samples.length * o.testFraction)));
  return { root, structures, samples, test: order.slice(0, nTest).sort((a, b) => a - b), trainPool: order.slice(nTest).sort((a, b) => a - b) };
}

function unite(sample: Sample, parts: string[]): Float32Array | undefined {
  const ms = parts.map((p) => sample.masks[p]);
  if (ms.some((m) => !m)) return undefined;
  const out = new Float32Array(ms[0]!.length);
  for (const m of ms) for (let i = 0; i < out.length; i++) if (m![i]! > 0.5) out[i] = 1;
  return out;
}

export interface FewShotRun {
  model: string;
  shots: number;
  seed: number;
  train: string[];
  dice: Record<string, number>;
  seconds: number;
}

function normalise(image: Float32Array): Float32Array {
  return image.map((v) => (v - DEFAULT_VIEW_OPTIONS.mean) / DEFAULT_VIEW_OPTIONS.std);
}

/** Fine-tune one encoder on `train` and return the mean Dice per structure on the test split. */
export async function fineTuneAndTest(source: ModelSource, data: SegmentationData, train: number[], cfg: EvaluateConfig['segmentation'], seed: number): Promise<Record<string, number>> {
  const size = cfg.size;
  const c = data.structures.length;
  const backbone = await source.create();
  const unet = new UNet(backbone, { classes: c, seed });
  const optimizer = tf.train.adam(cfg.lr);
  const rng = new Rng(deriveSeed(seed, 31));
  const px = size * size;
  try {
    let cursor = train.length;
    let order: number[] = [];
    for (let step = 0; step < cfg.steps; step++) {
      const b = Math.min(cfg.batchSize, Math.max(2, train.length));
      const xs = new Float32Array(b * px);
      const ys = new Float32Array(b * px * c);
      for (let j = 0; j < b; j++) {
        if (cursor >= order.length) {
          order = rng.shuffle([...train]);
          cursor = 0;
        }
        const s = data.samples[order[cursor++]!]!;
        const aug = augmentPair(s.image, s.masks, size, DEFAULT_PAIRED_AUGMENT, rng);
        xs.set(normalise(aug.image), j * px);
        for (let i = 0; i < px; i++) for (let k = 0; k < c; k++) ys[(j * px + i) * c + k] = aug.masks[k]![i]!;
      }
      const x = tf.tensor4d(xs, [b, size, size, 1]);
      const y = tf.tensor4d(ys, [b, size, size, c]);
      const cost = optimizer.minimize(() => segmentationLoss(unet.forward(x, { training: true }), y), true, unet.trainable());
      const value = cost ? (await cost.data())[0]! : NaN;
      tf.dispose([x, y, cost!]);
      if (!Number.isFinite(value)) throw new EdenError('non-finite-loss', `segmentation fine-tuning of ${source.name} diverged at step ${step + 1} (loss ${value}); lower the learning rate`);
    }
    // Test: Dice per image and structure, averaged over the test split.
    const scores: number[][] = data.structures.map(() => []);
    for (let start = 0; start < data.test.length; start += 8) {
      const batch = data.test.slice(start, start + 8);
      const x = tf.tensor4d(Float32Array.from(batch.flatMap((i) => Array.from(normalise(data.samples[i]!.image)))), [batch.length, size, size, 1]);
      const prob = tf.tidy(() => tf.sigmoid(unet.forward(x, { training: false })));
      const p = (await prob.data()) as Float32Array;
      tf.dispose([x, prob]);
      batch.forEach((idx, j) => {
        for (let k = 0; k < c; k++) {
          const pred = new Float32Array(px);
          for (let i = 0; i < px; i++) pred[i] = p[(j * px + i) * c + k]!;
          scores[k]!.push(dice(pred, data.samples[idx]!.masks[k]!));
        }
      });
    }
    return Object.fromEntries(data.structures.map((s, k) => [s, mean(scores[k]!)]));
  } finally {
    optimizer.dispose();
    unet.dispose();
    backbone.dispose();
  }
}

/** BCE with logits + soft Dice (per structure, over the batch). */
export function segmentationLoss(logits: tf.Tensor4D, target: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => {
    const bce = tf.losses.sigmoidCrossEntropy(target, logits);
    const p = tf.sigmoid(logits);
    const inter = tf.sum(tf.mul(p, target), [0, 1, 2]);
    const total = tf.add(tf.sum(p, [0, 1, 2]), tf.sum(target, [0, 1, 2]));
    const diceLoss = tf.sub(1, tf.mean(tf.div(tf.add(tf.mul(inter, 2), 1), tf.add(total, 1))));
    return tf.add(bce, diceLoss) as tf.Scalar;
  });
}

export interface FewShotSummaryRow {
  model: string;
  shots: number;
  structure: string;
  mean: number;
  std: number;
  n: number;
}

export function summarise(runs: FewShotRun[], structures: string[]): FewShotSummaryRow[] {
  const rows: FewShotSummaryRow[] = [];
  const keys = [...new Set(runs.map((r) => `${r.model}\u0000${r.shots}`))];
  for (const key of keys) {
    const [model, shots] = key.split('\u0000') as [string, string];
    const group = runs.filter((r) => r.model === model && r.shots === Number(shots));
    for (const s of [...structures, 'mean']) {
      const values = group.map((r) => (s === 'mean' ? mean(structures.map((t) => r.dice[t]!)) : r.dice[s]!));
      rows.push({ model, shots: Number(shots), structure: s, mean: mean(values), std: std(values), n: values.length });
    }
  }
  return rows;
}

/** Every (model, shots, seed) run; the k images of a (shots, seed) are the same for every model. */
export async function fewShotSegmentation(sources: ModelSource[], data: SegmentationData, config: EvaluateConfig, onRun?: (run: FewShotRun, done: number, total: number) => void): Promise<FewShotRun[]> {
  const cfg = config.segmentation;
  const runs: FewShotRun[] = [];
  const total = sources.length * cfg.shots.length * cfg.seeds;
  for (const shots of cfg.shots) {
    if (shots > data.trainPool.length) throw new EdenError('data', `${shots} shots need ${shots} training images; the train split has ${data.trainPool.length}`);
    for (let s = 0; s < cfg.seeds; s++) {
      const seed = deriveSeed(config.seed, 41, shots, s);
      const train = new Rng(seed).shuffle([...data.trainPool]).slice(0, shots).sort((a, b) => a - b);
      for (const source of sources) {
        const t0 = Date.now();
        const d = await fineTuneAndTest(source, data, train, cfg, seed);
        const run: FewShotRun = { model: source.name, shots, seed: s, train: train.map((i) => data.samples[i]!.file), dice: d, seconds: (Date.now() - t0) / 1000 };
        runs.push(run);
        onRun?.(run, runs.length, total);
      }
    }
  }
  return runs;
}
