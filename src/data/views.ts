/**
 * The two views of an anchor (METHOD.md §2), on single-channel float images in [0, 1]:
 *   random resized crop to S x S (area scale [0.2, 1], aspect [3/4, 4/3]);
 *   intensity jitter with p = 0.8 (brightness 0.4, contrast 0.4, in random order);
 *   Gaussian blur, sigma in [0.1, 2], p = 0.5;
 *   rotation within +-30 degrees (bilinear, zero fill);
 *   normalisation (x - mean) / std.
 * No horizontal flip: left and right anatomy differ, and laterality is part of what Adam learns.
 * Every draw comes from the Rng passed in, so views are reproducible from a seed.
 */
import type { Rng } from '../core/rng.js';
import { resizeGrey } from './resize.js';
import type { ViewOptions } from '../config/views.js';

export { DEFAULT_VIEW_OPTIONS, type ViewOptions } from '../config/views.js';

/** A region of a row-major image. */
export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}

export function extractRegion(image: Float32Array, imageWidth: number, r: Region): Float32Array {
  const out = new Float32Array(r.width * r.height);
  for (let y = 0; y < r.height; y++) out.set(image.subarray((r.y + y) * imageWidth + r.x, (r.y + y) * imageWidth + r.x + r.width), y * r.width);
  return out;
}

/** torchvision's RandomResizedCrop box inside a width x height region (10 tries, then centre crop). */
export function randomResizedCropBox(width: number, height: number, scale: [number, number], ratio: [number, number], rng: Rng): Region {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { x: rng.int(width - w + 1), y: rng.int(height - h + 1), width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), width: w, height: h };
}

function jitter(img: Float32Array, options: ViewOptions, rng: Rng): void {
  const b = rng.uniform(Math.max(0, 1 - options.brightness), 1 + options.brightness);
  const c = rng.uniform(Math.max(0, 1 - options.contrast), 1 + options.contrast);
  const brightnessFirst = rng.next() < 0.5;
  const apply = (kind: 'b' | 'c'): void => {
    if (kind === 'b') {
      for (let i = 0; i < img.length; i++) img[i] = Math.min(1, Math.max(0, img[i]! * b));
    } else {
      let mean = 0;
      for (let i = 0; i < img.length; i++) mean += img[i]!;
      mean /= img.length;
      for (let i = 0; i < img.length; i++) img[i] = Math.min(1, Math.max(0, (img[i]! - mean) * c + mean));
    }
  };
  apply(brightnessFirst ? 'b' : 'c');
  apply(brightnessFirst ? 'c' : 'b');
}

/** Separable Gaussian blur, radius ceil(3 sigma), edges replicated. */
export function gaussianBlur(img: Float32Array, size: number, sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float32Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) sum += kernel[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < kernel.length; i++) kernel[i]! /= sum;
  const tmp = new Float32Array(img.length);
  const out = new Float32Array(img.length);
  const clamp = (v: number): number => (v < 0 ? 0 : v >= size ? size - 1 : v);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++) s += img[y * size + clamp(x + k)]! * kernel[k + radius]!;
      tmp[y * size + x] = s;
    }
  }
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++) s += tmp[clamp(y + k) * size + x]! * kernel[k + radius]!;
      out[y * size + x] = s;
    }
  }
  return out;
}

/** Rotate a square image about its centre by `degrees` (bilinear, zero outside). */
export function rotate(img: Float32Array, size: number, degrees: number): Float32Array {
  const out = new Float32Array(img.length);
  const t = (degrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const c = (size - 1) / 2;
  // A source pixel, 0 outside the image. (Hoisted: this runs for every output pixel.)
  const at = (xx: number, yy: number): number => (xx < 0 || yy < 0 || xx >= size || yy >= size ? 0 : img[yy * size + xx]!);
  for (let y = 0; y < size; y++) {
    const dy = y - c;
    for (let x = 0; x < size; x++) {
      // Inverse map: output pixel -> source position.
      const dx = x - c;
      const sx = cos * dx + sin * dy + c;
      const sy = -sin * dx + cos * dy + c;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      if (x0 < -1 || y0 < -1 || x0 >= size || y0 >= size) continue;
      const fx = sx - x0;
      const fy = sy - y0;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < size && y0 + 1 < size) {
        // Interior: no bounds checks.
        const i = y0 * size + x0;
        out[y * size + x] = (1 - fy) * ((1 - fx) * img[i]! + fx * img[i + 1]!) + fy * ((1 - fx) * img[i + size]! + fx * img[i + size + 1]!);
      } else {
        out[y * size + x] = (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
      }
    }
  }
  return out;
}

/**
 * One augmented view of `region` of an image: [size * size], normalised. `rng` is consumed in a
 * fixed order, so the same seed always gives the same view.
 */
export function makeView(image: Float32Array, imageWidth: number, region: Region, options: ViewOptions, rng: Rng): Float32Array {
  const box = randomResizedCropBox(region.width, region.height, options.cropScale, options.cropAspect, rng);
  const crop = extractRegion(image, imageWidth, { x: region.x + box.x, y: region.y + box.y, width: box.width, height: box.height });
  let view = resizeGrey(crop, box.width, box.height, options.size, options.size);
  // Draw every random number whether or not its transform applies, so that one option's
  // probability does not shift the others' draws.
  const doJitter = rng.next() < options.jitterProbability;
  const jitterRng = rng.fork();
  const doBlur = rng.next() < options.blurProbability;
  const sigma = rng.uniform(options.blurSigma[0], options.blurSigma[1]);
  const angle = rng.uniform(-options.rotationDegrees, options.rotationDegrees);
  if (doJitter) jitter(view, options, jitterRng);
  if (doBlur) view = gaussianBlur(view, options.size, sigma);
  if (options.rotationDegrees > 0) view = rotate(view, options.size, angle);
  for (let i = 0; i < view.length; i++) view[i] = (view[i]! - options.mean) / options.std;
  return view;
}
