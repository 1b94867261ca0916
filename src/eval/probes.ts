/**
 * Locality and compositionality of Eve (METHOD.md §6).
 *
 * Locality: patches around anatomical landmarks, derived automatically from heart and lung masks
 * (see `landmarks`), embedded; kNN landmark-identity accuracy, silhouette score, and a 2-D t-SNE
 * of the embeddings.
 *
 * Compositionality: random square "wholes" split into 2 (left | right), 3 (three vertical strips)
 * or 4 (2 x 2) parts, each crop resized to the encoder's input size. Three numbers:
 *  - raw cosine (the paper's): cos(Eve(whole), mean Eve(parts)). Pooled ReLU features are
 *    non-negative and share a large common component, so this is near 1 for any encoder, random
 *    ones included;
 *  - centred cosine: the same after subtracting the encoder's mean Eve over random crops of the
 *    same shape (wholes and each part shape have their own mean), so only what distinguishes this
 *    region from any other counts;
 *  - part-to-whole retrieval: each whole's centred, averaged parts ranked against its own centred
 *    whole and M other wholes (top-1 accuracy, mean rank; chance is 1/(M+1) and (M+2)/2).
 *
 * Both probes use every encoder frozen, with its batch-norm statistics re-estimated on random crops
 * of the probe's own scales (models/recalibrate.ts), as the few-shot probes do.
 */
import * as tf from '@tensorflow/tfjs';
import { TSNE } from '@saehrimnir/druidjs';
import { deriveSeed, Rng } from '../core/rng.js';
import { extractRegion } from '../data/views.js';
import { resizeGrey } from '../data/resize.js';
import { recalibrateBatchNorm } from '../models/recalibrate.js';
import type { ResNet } from '../models/resnet.js';
import { cosine, knnHits, mean, silhouette } from './metrics.js';
import { imageBatch } from '../models/input.js';

/** Eve of square crops [size * size each] under `backbone` in evaluation mode. */
export async function embedCrops(backbone: ResNet, crops: Float32Array[], size: number): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let start = 0; start < crops.length; start += 16) {
    const batch = crops.slice(start, start + 16);
    const x = imageBatch(batch, size);
    const y = tf.tidy(() => backbone.forward(x, { training: false }).pooled);
    const data = (await y.data()) as Float32Array;
    const d = y.shape[1];
    for (let i = 0; i < batch.length; i++) out.push(data.slice(i * d, (i + 1) * d));
    tf.dispose([x, y]);
  }
  return out;
}

function crop(image: Float32Array, side: number, x: number, y: number, w: number, h: number, size: number): Float32Array {
  return resizeGrey(extractRegion(image, side, { x, y, width: w, height: h }), w, h, size, size);
}

/** `n` crops of w x h at random positions of random images, resized to `size`. */
function randomCrops(images: Float32Array[], side: number, w: number, h: number, size: number, n: number, rng: Rng): Float32Array[] {
  return Array.from({ length: n }, () => crop(images[rng.int(images.length)]!, side, rng.int(side - w + 1), rng.int(side - h + 1), w, h, size));
}

/**
 * Re-estimate the backbone's batch-norm statistics on random crops of the given shapes (the
 * probe's own inputs), in batches of 16. Every encoder of an evaluation gets the same crops.
 */
export function recalibrateOnCrops(backbone: ResNet, images: Float32Array[], side: number, shapes: [number, number][], size: number, perShape: number, seed: number): void {
  const rng = new Rng(deriveSeed(seed, 57));
  const crops = shapes.flatMap(([w, h]) => randomCrops(images, side, w, h, size, perShape, rng));
  const order = rng.shuffle([...crops.keys()]);
  function* batches(): Generator<tf.Tensor4D> {
    for (let start = 0; start + 2 <= order.length; start += 16) {
      const batch = order.slice(start, start + 16).map((i) => crops[i]!);
      const x = imageBatch(batch, size);
      try {
        yield x;
      } finally {
        x.dispose();
      }
    }
  }
  recalibrateBatchNorm(backbone, batches());
}

function meanVector(vs: Float32Array[]): Float32Array {
  const out = new Float32Array(vs[0]!.length);
  for (const v of vs) for (let k = 0; k < out.length; k++) out[k]! += v[k]! / vs.length;
  return out;
}

function minus(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, k) => v - b[k]!);
}

// ---- Compositionality

export interface CompositionResult {
  /** Raw cosines per number of parts (the paper's measure). */
  byParts: Record<string, number[]>;
  /** Centred cosines per number of parts. */
  centredByParts: Record<string, number[]>;
  /** Part-to-whole retrieval among `candidates` wholes (the true one included). */
  retrieval: { top1: number; meanRank: number; candidates: number };
  /** Per whole, 1 where its parts ranked it first (the unit a paired comparison resamples). */
  retrievalHits: number[];
}

/** Parts of a whole (x, y, w, h) for n in {2, 3, 4}. */
export function splitWhole(x: number, y: number, w: number, h: number, n: number): [number, number, number, number][] {
  if (n === 2) return [[x, y, Math.floor(w / 2), h], [x + Math.floor(w / 2), y, w - Math.floor(w / 2), h]];
  if (n === 3) {
    const a = Math.round(w / 3);
    const b = Math.round((2 * w) / 3);
    return [[x, y, a, h], [x + a, y, b - a, h], [x + b, y, w - b, h]];
  }
  const hw = Math.floor(w / 2);
  const hh = Math.floor(h / 2);
  return [[x, y, hw, hh], [x + hw, y, w - hw, hh], [x, y + hh, hw, h - hh], [x + hw, y + hh, w - hw, h - hh]];
}

type CompositionOptions = { wholes: number; size: number; wholeFraction: number; seed: number; retrieval: number; centring: number };

/** The crop shapes of the probe, keyed: the whole, and each part shape (n = 3 parts differ by a pixel at most). */
function compositionShapes(side: number, wholeFraction: number): { w: number; shapeKey: (pw: number, ph: number) => string; shapes: Map<string, [number, number]> } {
  const w = Math.round(side * wholeFraction);
  const shapeKey = (pw: number, ph: number): string => `${Math.round((3 * pw) / w)}x${Math.round((2 * ph) / w)}`;
  const shapes = new Map<string, [number, number]>();
  for (const n of [2, 3, 4]) for (const [, , pw, ph] of [[0, 0, w, w], ...splitWhole(0, 0, w, w, n)]) shapes.set(shapeKey(pw!, ph!), [pw!, ph!]);
  return { w, shapeKey, shapes };
}

export async function compositionality(backbone: ResNet, images: Float32Array[], side: number, o: CompositionOptions): Promise<CompositionResult> {
  const { shapes } = compositionShapes(side, o.wholeFraction);
  recalibrateOnCrops(backbone, images, side, [...shapes.values()], o.size, Math.max(8, Math.ceil(o.centring / 2)), o.seed);
  return compositionOf((crops) => embedCrops(backbone, crops, o.size), images, side, o);
}

/**
 * The no-network floor of compositionality: the same wholes, parts, centring and retrieval with
 * each crop's pixels at 16 x 16, centred on their mean (as the locality floor's patches), in place
 * of Eve. Parts that find their whole by pixel statistics alone (an image's brightness, contrast)
 * set the bar an encoder must clear.
 */
export async function rawPixelCompositionality(images: Float32Array[], side: number, o: CompositionOptions): Promise<CompositionResult> {
  return compositionOf(async (crops) => crops.map(pixelVector(o.size)), images, side, o);
}

/** A crop [size * size] as its pixels at 16 x 16 minus their mean (so cosines are correlations): the probes' and `eden match`'s no-network embedding. */
export function pixelVector(size: number): (crop: Float32Array) => Float32Array {
  return (c) => {
    const small = resizeGrey(c, size, size, 16, 16);
    const m = mean(Array.from(small));
    return small.map((v) => v - m);
  };
}

/** Compositionality of any embedding of crops; the wholes and parts drawn depend on the seed only. */
async function compositionOf(embed: (crops: Float32Array[]) => Promise<Float32Array[]>, images: Float32Array[], side: number, o: CompositionOptions): Promise<CompositionResult> {
  const { w, shapeKey, shapes } = compositionShapes(side, o.wholeFraction);
  // Centring: the mean embedding of random crops of each shape.
  const rngCentre = new Rng(deriveSeed(o.seed, 52));
  const centre = new Map<string, Float32Array>();
  for (const [key, [pw, ph]] of shapes) centre.set(key, meanVector(await embed(randomCrops(images, side, pw, ph, o.size, o.centring, rngCentre))));

  const rng = new Rng(deriveSeed(o.seed, 51));
  const byParts: Record<string, number[]> = { '2': [], '3': [], '4': [] };
  const centredByParts: Record<string, number[]> = { '2': [], '3': [], '4': [] };
  const wholesCentred: Float32Array[] = [];
  const partsCentred: Float32Array[] = [];
  for (let i = 0; i < o.wholes; i++) {
    const img = images[rng.int(images.length)]!;
    const x = rng.int(side - w + 1);
    const y = rng.int(side - w + 1);
    const n = 2 + (i % 3);
    const parts = splitWhole(x, y, w, w, n);
    const crops = [crop(img, side, x, y, w, w, o.size), ...parts.map(([px, py, pw, ph]) => crop(img, side, px, py, pw, ph, o.size))];
    const e = await embed(crops);
    byParts[String(n)]!.push(cosine(e[0]!, meanVector(e.slice(1))));
    const whole = minus(e[0]!, centre.get(shapeKey(w, w))!);
    const agg = meanVector(e.slice(1).map((p, j) => minus(p, centre.get(shapeKey(parts[j]![2], parts[j]![3]))!)));
    centredByParts[String(n)]!.push(cosine(whole, agg));
    wholesCentred.push(whole);
    partsCentred.push(agg);
  }

  // Retrieval: each whole's parts against its own whole and M others (seeded draw).
  const m = Math.min(o.retrieval, o.wholes - 1);
  const rngRetrieval = new Rng(deriveSeed(o.seed, 53));
  let rankSum = 0;
  const retrievalHits: number[] = [];
  for (let i = 0; i < o.wholes; i++) {
    const others = rngRetrieval.shuffle([...Array(o.wholes).keys()].filter((j) => j !== i)).slice(0, m);
    const own = cosine(partsCentred[i]!, wholesCentred[i]!);
    const rank = 1 + others.filter((j) => cosine(partsCentred[i]!, wholesCentred[j]!) >= own).length;
    retrievalHits.push(rank === 1 ? 1 : 0);
    rankSum += rank;
  }
  return { byParts, centredByParts, retrieval: { top1: mean(retrievalHits), meanRank: rankSum / o.wholes, candidates: m + 1 }, retrievalHits };
}

// ---- Locality

export const LANDMARKS = [
  'right lung apex',
  'left lung apex',
  'right costophrenic angle',
  'left costophrenic angle',
  'right lung centroid',
  'left lung centroid',
  'right hilum',
  'left hilum',
  'heart centroid',
  'heart apex',
] as const;

/**
 * Ten landmarks from binary masks [side * side] of the patient's right lung (image left), left
 * lung (image right) and heart:
 *  apex = topmost pixel of each lung (mean x of that row);
 *  costophrenic angle = the lung pixel furthest down and outwards (max y - x on the image left,
 *    max y + x on the image right);
 *  centroid = mean position; hilum = the medial edge of each lung on its centroid's row;
 *  heart apex = the heart pixel furthest down and to the image right (max y + x).
 * Returns null when a mask is empty.
 */
export function landmarks(rightLung: Float32Array, leftLung: Float32Array, heart: Float32Array, side: number): [number, number][] | null {
  const pts = (m: Float32Array): [number, number][] => {
    const out: [number, number][] = [];
    for (let i = 0; i < m.length; i++) if (m[i]! > 0.5) out.push([i % side, Math.floor(i / side)]);
    return out;
  };
  const [r, l, h] = [pts(rightLung), pts(leftLung), pts(heart)];
  if (!r.length || !l.length || !h.length) return null;
  const centroid = (p: [number, number][]): [number, number] => [p.reduce((s, q) => s + q[0], 0) / p.length, p.reduce((s, q) => s + q[1], 0) / p.length];
  const apex = (p: [number, number][]): [number, number] => {
    const top = Math.min(...p.map((q) => q[1]));
    const row = p.filter((q) => q[1] === top);
    return [row.reduce((s, q) => s + q[0], 0) / row.length, top];
  };
  const argmax = (p: [number, number][], f: (q: [number, number]) => number): [number, number] => p.reduce((best, q) => (f(q) > f(best) ? q : best), p[0]!);
  const hilum = (p: [number, number][], medialIsRight: boolean): [number, number] => {
    const [, cy] = centroid(p);
    const row = p.filter((q) => q[1] === Math.round(cy));
    const use = row.length ? row : p;
    return argmax(use, (q) => (medialIsRight ? q[0] : -q[0]));
  };
  return [
    apex(r),
    apex(l),
    argmax(r, (q) => q[1] - q[0]),
    argmax(l, (q) => q[1] + q[0]),
    centroid(r),
    centroid(l),
    hilum(r, true),
    hilum(l, false),
    centroid(h),
    argmax(h, (q) => q[1] + q[0]),
  ];
}

export interface LocalityResult {
  knnAccuracy: number;
  /** kNN accuracy of each image's own patches (the unit a paired comparison resamples). */
  perImage: number[];
  silhouette: number;
  /** 2-D t-SNE coordinates and the landmark index of each patch. */
  embedding2d: [number, number][];
  labels: number[];
  patches: number;
}

/** The landmark patches of `items` (crops of p x p around each point, resized to `size`) and their landmark indices. */
export function landmarkPatches(items: { image: Float32Array; points: [number, number][] }[], side: number, o: { size: number; patchFraction: number }): { crops: Float32Array[]; labels: number[]; patch: number } {
  const p = Math.max(8, Math.round(side * o.patchFraction));
  const crops: Float32Array[] = [];
  const labels: number[] = [];
  for (const item of items) {
    item.points.forEach(([x, y], k) => {
      const x0 = Math.min(side - p, Math.max(0, Math.round(x - p / 2)));
      const y0 = Math.min(side - p, Math.max(0, Math.round(y - p / 2)));
      crops.push(crop(item.image, side, x0, y0, p, p, o.size));
      labels.push(k);
    });
  }
  return { crops, labels, patch: p };
}

/**
 * The no-network floor of locality: each patch's pixels at 16 x 16, centred on their mean (so the
 * cosine is the pixels' correlation). Whatever an encoder adds must beat this.
 */
export function rawPixelLocality(items: { image: Float32Array; points: [number, number][] }[], side: number, o: { size: number; patchFraction: number }): Pick<LocalityResult, 'knnAccuracy' | 'perImage' | 'silhouette' | 'patches'> {
  const { crops, labels } = landmarkPatches(items, side, o);
  const vectors = crops.map(pixelVector(o.size));
  return { ...knnScores(vectors, labels, items), silhouette: silhouette(vectors, labels), patches: vectors.length };
}

/** kNN accuracy over all patches and per image (landmarkPatches lays each item's patches out in a run). */
function knnScores(vectors: Float32Array[], labels: number[], items: { points: unknown[] }[]): Pick<LocalityResult, 'knnAccuracy' | 'perImage'> {
  const hits = knnHits(vectors, labels, 5);
  let at = 0;
  const perImage = items.map((item) => mean(hits.slice(at, (at += item.points.length))));
  return { knnAccuracy: mean(hits), perImage };
}

export async function locality(backbone: ResNet, items: { image: Float32Array; points: [number, number][] }[], side: number, o: { size: number; patchFraction: number; seed: number }): Promise<LocalityResult> {
  const { crops, labels, patch } = landmarkPatches(items, side, o);
  recalibrateOnCrops(backbone, items.map((i) => i.image), side, [[patch, patch]], o.size, Math.min(128, Math.max(32, crops.length)), o.seed);
  const emb = await embedCrops(backbone, crops, o.size);
  const tsne = new TSNE(emb.map((e) => Array.from(e)), { perplexity: Math.min(30, Math.max(5, Math.floor(emb.length / 10))), seed: deriveSeed(o.seed, 61) % 2 ** 31, d: 2 } as never);
  // druidjs returns the 2-D coordinates as an array of [x, y] rows for array input.
  const arr = tsne.transform() as unknown as number[][];
  return { ...knnScores(emb, labels, items), silhouette: silhouette(emb, labels), embedding2d: arr.map((r) => [r[0]!, r[1]!]), labels, patches: emb.length };
}
