/** Evaluation metrics as pure functions (MONAI-style: compute, then aggregate). */
import { quantileSorted } from './statistics.js';
import { boundary, distanceTransformSquared, thresholdMask } from '../data/masks.js';

/** Dice of two binary masks: 2|P & G| / (|P| + |G|); 1 when both are empty. */
export function dice(pred: ArrayLike<number>, truth: ArrayLike<number>, threshold = 0.5): number {
  let inter = 0;
  let p = 0;
  let g = 0;
  for (let i = 0; i < truth.length; i++) {
    const a = pred[i]! > threshold ? 1 : 0;
    const b = truth[i]! > 0.5 ? 1 : 0;
    inter += a & b;
    p += a;
    g += b;
  }
  return p + g === 0 ? 1 : (2 * inter) / (p + g);
}

export function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** Sample standard deviation (n - 1); 0 for a single value. */
export function std(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.max(Math.sqrt(aa * bb), 1e-12);
}

/** Leave-one-out k-nearest-neighbour accuracy under cosine similarity (majority vote, ties to the nearest). */
export function knnAccuracy(points: Float32Array[], labels: number[], k = 5): number {
  return mean(knnHits(points, labels, k));
}

/** knnAccuracy per point: 1 where its leave-one-out neighbours vote for its own label, else 0. */
export function knnHits(points: Float32Array[], labels: number[], k = 5): number[] {
  const hits: number[] = [];
  for (let i = 0; i < points.length; i++) {
    const sims = points.map((p, j) => [j === i ? -Infinity : cosine(points[i]!, p), j] as const).sort((x, y) => y[0] - x[0]).slice(0, k);
    const votes = new Map<number, number>();
    for (const [, j] of sims) votes.set(labels[j]!, (votes.get(labels[j]!) ?? 0) + 1);
    const best = Math.max(...votes.values());
    const winner = sims.find(([, j]) => votes.get(labels[j]!) === best)!;
    hits.push(labels[winner[1]] === labels[i] ? 1 : 0);
  }
  return hits;
}

/** Mean silhouette coefficient with cosine distance (1 - cosine), in [-1, 1]. */
export function silhouette(points: Float32Array[], labels: number[]): number {
  const n = points.length;
  const dist = (i: number, j: number): number => 1 - cosine(points[i]!, points[j]!);
  const classes = [...new Set(labels)];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const byClass = new Map<number, { sum: number; count: number }>();
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const e = byClass.get(labels[j]!) ?? { sum: 0, count: 0 };
      e.sum += dist(i, j);
      e.count++;
      byClass.set(labels[j]!, e);
    }
    const own = byClass.get(labels[i]!);
    if (!own || own.count === 0) continue; // singleton cluster: s = 0
    const a = own.sum / own.count;
    let b = Infinity;
    for (const c of classes) if (c !== labels[i]) b = Math.min(b, byClass.get(c) ? byClass.get(c)!.sum / byClass.get(c)!.count : Infinity);
    total += b === Infinity ? 0 : (b - a) / Math.max(a, b);
  }
  return total / n;
}

/** ROC AUC by the rank-sum (Mann-Whitney U) statistic, ties counted half. */
export function rocAuc(scores: number[], labels: number[]): number {
  const order = scores.map((s, i) => [s, labels[i]!] as const).sort((a, b) => a[0] - b[0]);
  let rankSum = 0;
  let positives = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j < order.length && order[j]![0] === order[i]![0]) j++;
    const rank = (i + j + 1) / 2; // average rank of the tie group (1-based)
    for (let k = i; k < j; k++) if (order[k]![1] === 1) {
      rankSum += rank;
      positives++;
    }
    i = j;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Gaussian kernel density estimate on a grid (Silverman's bandwidth). */
export function kde(values: number[], grid: number[]): number[] {
  const n = values.length;
  const s = std(values) || 1e-3;
  const h = 1.06 * s * n ** -0.2;
  return grid.map((x) => values.reduce((acc, v) => acc + Math.exp(-0.5 * ((x - v) / h) ** 2), 0) / (n * h * Math.sqrt(2 * Math.PI)));
}

/**
 * Symmetric surface distances between two binary masks [side * side], in pixels: HD95 is the
 * larger of the two directed 95th percentiles of boundary-to-boundary distances (MONAI's
 * `compute_hausdorff_distance(percentile=95)`), the mean surface distance averages both directions.
 * Both masks empty: 0. Exactly one empty: NaN (no surface to measure; reports count it as the
 * image diagonal, the worst possible value).
 */
export function surfaceDistance(pred: ArrayLike<number>, truth: ArrayLike<number>, side: number, threshold = 0.5): { hd95: number; mean: number } {
  const p = thresholdMask(pred, threshold);
  const t = thresholdMask(truth, 0.5);
  const bp = boundary(p, side);
  const bt = boundary(t, side);
  const np = bp.reduce((a, b) => a + b, 0);
  const nt = bt.reduce((a, b) => a + b, 0);
  if (np === 0 && nt === 0) return { hd95: 0, mean: 0 };
  if (np === 0 || nt === 0) return { hd95: NaN, mean: NaN };
  const toT = distanceTransformSquared(bt, side);
  const toP = distanceTransformSquared(bp, side);
  const dPT: number[] = [];
  const dTP: number[] = [];
  for (let i = 0; i < bp.length; i++) {
    if (bp[i]) dPT.push(Math.sqrt(toT[i]!));
    if (bt[i]) dTP.push(Math.sqrt(toP[i]!));
  }
  const q95 = (xs: number[]): number => quantileSorted(xs.sort((a, b) => a - b), 0.95);
  return { hd95: Math.max(q95(dPT), q95(dTP)), mean: (dPT.reduce((a, b) => a + b, 0) + dTP.reduce((a, b) => a + b, 0)) / (dPT.length + dTP.length) };
}
