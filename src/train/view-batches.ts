/**
 * Batches of two views per image for one epoch of one stage: the epoch's order, each image's
 * anchor (one uniformly drawn part of the current level, METHOD.md §1) and both views are drawn
 * from seeds derived from (run seed, stage, epoch, image), so any batch can be rebuilt exactly
 * after a resume.
 */
import { deriveSeed, Rng } from '../core/rng.js';
import { sampleAnchor, type AnchorOptions } from '../anatomy/decomposer.js';
import type { ImageDataset } from '../data/dataset.js';
import { makeView, type ViewOptions } from '../data/views.js';

export interface ViewBatch {
  /** [B * S * S] each: query and key views, NHWC with one channel. */
  queries: Float32Array;
  keys: Float32Array;
  /** Dataset indices of the images in the batch. */
  indices: number[];
}

/** Salts that keep the streams of one (stage, epoch) apart. */
const SALT = { order: 1, anchor: 2, query: 3, key: 4 } as const;

/** The epoch's order of `indices`: a shuffle seeded by (seed, stage, epoch). */
export function epochOrder(indices: readonly number[], seed: number, stage: number, epoch: number): number[] {
  return new Rng(deriveSeed(seed, SALT.order, stage, epoch)).shuffle([...indices]);
}

export interface ViewBatchArgs {
  dataset: ImageDataset;
  /** Image order for the epoch (see epochOrder); a trailing partial batch is dropped. */
  order: readonly number[];
  batchSize: number;
  level: number;
  views: ViewOptions;
  anchor: AnchorOptions;
  seed: number;
  stage: number;
  epoch: number;
  /** Skip this many batches (resuming mid-epoch). */
  startBatch?: number;
  prefetch?: number;
}

export function batchesPerEpoch(images: number, batchSize: number): number {
  return Math.floor(images / batchSize);
}

/** Views of one image: (query, key). */
export function imageViews(image: Float32Array, side: number, index: number, a: Pick<ViewBatchArgs, 'level' | 'views' | 'anchor' | 'seed' | 'stage' | 'epoch'>): [Float32Array, Float32Array] {
  const anchor = sampleAnchor(side, side, a.level, new Rng(deriveSeed(a.seed, SALT.anchor, a.stage, a.epoch, index)), a.anchor);
  const q = makeView(image, side, anchor, a.views, new Rng(deriveSeed(a.seed, SALT.query, a.stage, a.epoch, index)));
  const k = makeView(image, side, anchor, a.views, new Rng(deriveSeed(a.seed, SALT.key, a.stage, a.epoch, index)));
  return [q, k];
}

export async function* viewBatches(a: ViewBatchArgs): AsyncGenerator<ViewBatch> {
  const n = batchesPerEpoch(a.order.length, a.batchSize);
  const start = a.startBatch ?? 0;
  const used = a.order.slice(start * a.batchSize, n * a.batchSize);
  const side = a.dataset.options.size;
  const pixels = a.views.size * a.views.size;
  let batch: ViewBatch = { queries: new Float32Array(a.batchSize * pixels), keys: new Float32Array(a.batchSize * pixels), indices: [] };
  for await (const sample of a.dataset.iterate(used, a.prefetch ?? 16)) {
    const [q, k] = imageViews(sample.image, side, sample.index, a);
    const slot = batch.indices.length;
    batch.queries.set(q, slot * pixels);
    batch.keys.set(k, slot * pixels);
    batch.indices.push(sample.index);
    if (batch.indices.length === a.batchSize) {
      yield batch;
      batch = { queries: new Float32Array(a.batchSize * pixels), keys: new Float32Array(a.batchSize * pixels), indices: [] };
    }
  }
}
