/**
 * Paired statistics for comparing two models evaluated on the same seeds and the same test images.
 *
 * The interval is a two-way percentile bootstrap: each replicate resamples the seeds and, crossed
 * with them, the test images (both with replacement), and takes the mean paired difference over
 * the resampled grid. It therefore carries both sources of noise a reader cares about: which
 * few-shot draw and initialisation a run got (seeds), and which images happen to be in the test
 * split. When there is one seed it reduces to the ordinary bootstrap over test images.
 */
import { Rng } from '../core/rng.js';

export interface PairedDifference {
  /** Mean of A - B over every (seed, image) pair. */
  mean: number;
  /** 95% percentile-bootstrap interval of that mean. */
  lo: number;
  hi: number;
  /** The interval excludes 0: A and B differ at the 5% level. */
  significant: boolean;
  seeds: number;
  images: number;
}

/**
 * `a[s][i]` and `b[s][i]`: a per-image score of seed s, image i (the same images in every seed).
 * Non-finite entries (e.g. a surface distance of an empty prediction) must be replaced by the
 * caller beforehand; they are not skipped here, so that pairs stay pairs.
 */
export function pairedBootstrap(a: number[][], b: number[][], o: { replicates?: number; seed?: number; level?: number } = {}): PairedDifference {
  const seeds = a.length;
  if (seeds === 0 || seeds !== b.length) throw new Error(`paired bootstrap needs the same seeds for both models (got ${a.length} and ${b.length})`);
  const images = a[0]!.length;
  const d: Float64Array[] = a.map((row, s) => {
    if (row.length !== images || b[s]!.length !== images) throw new Error('paired bootstrap needs the same test images in every seed and model');
    return Float64Array.from(row, (v, i) => v - b[s]![i]!);
  });
  const mean = d.reduce((acc, row) => acc + row.reduce((x, y) => x + y, 0), 0) / (seeds * images);
  const replicates = o.replicates ?? 2000;
  const rng = new Rng(o.seed ?? 0x5eed);
  const means = new Float64Array(replicates);
  const pickSeeds = new Int32Array(seeds);
  const pickImages = new Int32Array(images);
  for (let r = 0; r < replicates; r++) {
    for (let s = 0; s < seeds; s++) pickSeeds[s] = seeds === 1 ? 0 : rng.int(seeds);
    for (let i = 0; i < images; i++) pickImages[i] = rng.int(images);
    let sum = 0;
    for (let s = 0; s < seeds; s++) {
      const row = d[pickSeeds[s]!]!;
      for (let i = 0; i < images; i++) sum += row[pickImages[i]!]!;
    }
    means[r] = sum / (seeds * images);
  }
  means.sort();
  const level = o.level ?? 0.95;
  const lo = quantileSorted(means, (1 - level) / 2);
  const hi = quantileSorted(means, 1 - (1 - level) / 2);
  return { mean, lo, hi, significant: lo > 0 || hi < 0, seeds, images };
}

/** Linear-interpolated quantile of an ascending array. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = Math.min(n - 1, Math.max(0, q * (n - 1)));
  const i = Math.floor(pos);
  const f = pos - i;
  return i + 1 < n ? sorted[i]! * (1 - f) + sorted[i + 1]! * f : sorted[i]!;
}

/** "+3.1 [+1.2, +5.0]*" with values scaled by `scale` (100 for Dice in %); * marks significance. */
export function formatDifference(p: PairedDifference, scale = 100, digits = 1): string {
  const f = (v: number): string => `${v >= 0 ? '+' : ''}${(v * scale).toFixed(digits)}`;
  return `${f(p.mean)} [${f(p.lo)}, ${f(p.hi)}]${p.significant ? '*' : ''}`;
}
