/**
 * Intensity normalisation to [0, 1], per image. Real radiographs differ wildly in exposure and
 * storage (wingspan_ctr is nearly black, DICOMs carry 12-16 bit values), so one global scale does
 * not work. Modes:
 *  - 'auto' (default): the DICOM VOI window when the file has one, else 'percentile';
 *  - 'percentile': the 1st..99th percentile window (robust to burned-in markers and collimation);
 *  - 'minmax': the full value range;
 *  - 'none': value / (2^bitDepth - 1), no windowing (e.g. pixel / 255), for comparisons with
 *    other frameworks; real-valued samples (float TIFF) as they are, clipped to [0, 1].
 * MONOCHROME1 images are inverted so that bone is bright in every mode.
 */
import type { GreyImage } from './grey-image.js';

export const INTENSITY_MODES = ['auto', 'percentile', 'minmax', 'none'] as const;
export type IntensityMode = (typeof INTENSITY_MODES)[number];

export interface IntensityOptions {
  mode?: IntensityMode;
  /** Percentiles for the 'percentile' window, default [1, 99]. */
  percentiles?: [number, number];
}

/**
 * Percentiles of the values, from a deterministic subsample of at most 2^20 values: linear
 * interpolation between the order statistics around each rank (numpy's default). Stored images
 * hold integers (8-16 bit PNG, JPEG, DICOM), whose order statistics a histogram gives exactly and
 * in linear time; anything else (fractional, NaN, a range wider than COUNTING_RANGE) is sorted
 * (sortedPercentiles). Both give the same numbers; counting was 23-29x faster (bench/data/loading.ts).
 */
export function percentiles(data: Float32Array, ps: number[]): number[] {
  const stride = subsampleStride(data.length);
  const select = integerOrderStatistics(data, stride);
  return select ? interpolate(Math.ceil(data.length / stride), ps, select) : sortedPercentiles(data, ps);
}

/** The same percentiles from a sorted copy of the subsample (NaN last, where sort puts it). */
export function sortedPercentiles(data: Float32Array, ps: number[]): number[] {
  const stride = subsampleStride(data.length);
  const sample = new Float32Array(Math.ceil(data.length / stride));
  for (let i = 0, j = 0; i < data.length; i += stride, j++) sample[j] = data[i]!;
  sample.sort();
  return interpolate(sample.length, ps, (k) => sample[k]!);
}

/** Every stride-th value, so that at most 2^20 are ranked. */
function subsampleStride(length: number): number {
  return Math.max(1, Math.floor(length / (1 << 20)));
}

/** Each percentile of n values, given their k-th smallest (0-based). */
function interpolate(n: number, ps: number[], select: (k: number) => number): number[] {
  return ps.map((p) => {
    const pos = (p / 100) * (n - 1);
    const lo = Math.floor(pos);
    const [a, b] = [select(lo), select(Math.min(lo + 1, n - 1))];
    return a + (b - a) * (pos - lo);
  });
}

/** Histograms up to this many bins (a 16-bit image's range; 256 KiB of counts). */
const COUNTING_RANGE = 1 << 16;

/** The k-th smallest of data[0], data[stride], ..., by counting; undefined unless all are integers in a small range. */
function integerOrderStatistics(data: Float32Array, stride: number): ((k: number) => number) | undefined {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i += stride) {
    const v = data[i]!;
    if (!Number.isInteger(v)) return undefined;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!(max - min < COUNTING_RANGE)) return undefined;
  const counts = new Int32Array(max - min + 1);
  for (let i = 0; i < data.length; i += stride) counts[data[i]! - min]!++;
  // Cumulative counts: the k-th smallest (0-based) is the first value whose cumulative count exceeds k.
  for (let v = 1; v < counts.length; v++) counts[v]! += counts[v - 1]!;
  return (k) => {
    let [lo, hi] = [0, counts.length - 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (counts[mid]! > k) hi = mid;
      else lo = mid + 1;
    }
    return min + lo;
  };
}

/** The [low, high] value window that maps to [0, 1]. */
export function intensityWindow(image: GreyImage, options: IntensityOptions = {}): [number, number] {
  const mode = options.mode ?? 'auto';
  if (mode === 'none') return [0, image.floatingPoint ? 1 : 2 ** image.bitDepth - 1];
  if (mode === 'auto' && image.window) {
    // DICOM PS3.3 C.11.2.1.2 linear VOI: [c - 0.5 - (w - 1)/2, c - 0.5 + (w - 1)/2].
    const { center: c, width: w } = image.window;
    return [c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2];
  }
  const [lo, hi] = mode === 'minmax' ? [0, 100] : (options.percentiles ?? [1, 99]);
  const [a, b] = percentiles(image.data, [lo, hi]);
  return [a!, b!];
}

/**
 * The image windowed, clipped to [0, 1], and inverted for MONOCHROME1: into a new Float32Array, or
 * into `out` (which may be image.data itself, when the raw values are not needed again: a
 * full-resolution radiograph's array is tens of megabytes of fresh memory spared).
 */
export function normalizeIntensity(image: GreyImage, options: IntensityOptions = {}, out: Float32Array = new Float32Array(image.data.length)): Float32Array {
  const [lo, hi] = intensityWindow(image, options);
  const data = image.data;
  const span = hi - lo;
  if (!(span > 0)) {
    // A constant image (or window): map to 0 rather than dividing by zero.
    return out.fill(0);
  }
  const invert = image.inverted === true;
  for (let i = 0; i < data.length; i++) {
    let v = (data[i]! - lo) / span;
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    out[i] = invert ? 1 - v : v;
  }
  return out;
}
