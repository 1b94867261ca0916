/**
 * Batches of two views per image for one epoch of one stage: the epoch's order, each image's
 * anchor (one uniformly drawn part of the current level, METHOD.md §1) and both views are drawn
 * from seeds derived from (run seed, stage, epoch, image), so any batch can be rebuilt exactly
 * after a resume. Because every draw is seeded per image, the views can be drawn anywhere: on the
 * main thread, or by a ViewWorkerPool (view-workers.ts) while the main thread runs the previous
 * step, with the same result to the bit.
 */
import { deriveSeed, Rng } from '../core/rng.js';
import { sampleAnchor, type AnchorOptions } from '../anatomy/decomposer.js';
import type { ImageDataset } from '../data/dataset.js';
import { makeView, type ViewOptions } from '../data/views.js';
import type { ViewWorkerPool } from './view-workers.js';

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
  /** Draw the views in these worker threads, one batch ahead of the consumer (default: inline). */
  workers?: ViewWorkerPool;
}

/** What the views of an image depend on besides the image and its index. */
export type ViewDraw = Pick<ViewBatchArgs, 'level' | 'views' | 'anchor' | 'seed' | 'stage' | 'epoch'>;

/** A batch's views to draw in a worker thread (view-worker.ts), and its reply. */
export interface ViewJob {
  id: number;
  images: Float32Array[];
  indices: number[];
  side: number;
  draw: ViewDraw;
}
export type ViewJobResult = { id: number; queries: Float32Array; keys: Float32Array } | { id: number; error: string };

export function batchesPerEpoch(images: number, batchSize: number): number {
  return Math.floor(images / batchSize);
}

/** Views of one image: (query, key). */
export function imageViews(image: Float32Array, side: number, index: number, a: ViewDraw): [Float32Array, Float32Array] {
  const anchor = sampleAnchor(side, side, a.level, new Rng(deriveSeed(a.seed, SALT.anchor, a.stage, a.epoch, index)), a.anchor);
  const q = makeView(image, side, anchor, a.views, new Rng(deriveSeed(a.seed, SALT.query, a.stage, a.epoch, index)));
  const k = makeView(image, side, anchor, a.views, new Rng(deriveSeed(a.seed, SALT.key, a.stage, a.epoch, index)));
  return [q, k];
}

/** The views of several images, packed: [n * S * S] queries and keys in the order given. */
export function drawViews(images: readonly Float32Array[], indices: readonly number[], side: number, draw: ViewDraw): { queries: Float32Array; keys: Float32Array } {
  const pixels = draw.views.size * draw.views.size;
  const queries = new Float32Array(images.length * pixels);
  const keys = new Float32Array(images.length * pixels);
  images.forEach((image, slot) => {
    const [q, k] = imageViews(image, side, indices[slot]!, draw);
    queries.set(q, slot * pixels);
    keys.set(k, slot * pixels);
  });
  return { queries, keys };
}

export async function* viewBatches(a: ViewBatchArgs): AsyncGenerator<ViewBatch> {
  const n = batchesPerEpoch(a.order.length, a.batchSize);
  const start = a.startBatch ?? 0;
  const used = a.order.slice(start * a.batchSize, n * a.batchSize);
  const side = a.dataset.options.size;
  const draw: ViewDraw = { level: a.level, views: a.views, anchor: a.anchor, seed: a.seed, stage: a.stage, epoch: a.epoch };
  const make = async (images: Float32Array[], indices: number[]): Promise<ViewBatch> => {
    const views = a.workers ? await a.workers.draw(images, indices, side, draw) : drawViews(images, indices, side, draw);
    return { ...views, indices };
  };
  // With workers, batch b + 1 is being drawn while the consumer runs its step on batch b.
  const ahead = a.workers ? 1 : 0;
  const pending: Promise<ViewBatch>[] = [];
  let images: Float32Array[] = [];
  let indices: number[] = [];
  for await (const sample of a.dataset.iterate(used, a.prefetch ?? 16)) {
    images.push(sample.image);
    indices.push(sample.index);
    if (indices.length < a.batchSize) continue;
    const next = make(images, indices);
    // A consumer that stops early leaves batches in flight: their failures are not its concern.
    next.catch(() => undefined);
    pending.push(next);
    images = [];
    indices = [];
    if (pending.length > ahead) yield await pending.shift()!;
  }
  while (pending.length) yield await pending.shift()!;
}
