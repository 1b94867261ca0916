/**
 * One random geometric transform applied to an image and its masks alike (MONAI's idea: one draw,
 * every field), plus intensity jitter on the image only. For segmentation fine-tuning.
 */
import type { Rng } from '../core/rng.js';
import { randomResizedCropBox, extractRegion, rotate } from './views.js';
import { resizeGrey } from './resize.js';

export interface PairedAugmentOptions {
  /** Area fraction of the random crop (mild for segmentation). */
  cropScale: [number, number];
  cropAspect: [number, number];
  rotationDegrees: number;
  brightness: number;
  contrast: number;
}

export const DEFAULT_PAIRED_AUGMENT: PairedAugmentOptions = { cropScale: [0.7, 1], cropAspect: [0.9, 1.1], rotationDegrees: 10, brightness: 0.2, contrast: 0.2 };

/** Image in [0, 1] and masks (0/1), all [size * size] -> transformed copies of the same size. */
export function augmentPair(image: Float32Array, masks: Float32Array[], size: number, o: PairedAugmentOptions, rng: Rng): { image: Float32Array; masks: Float32Array[] } {
  const box = randomResizedCropBox(size, size, o.cropScale, o.cropAspect, rng);
  const angle = rng.uniform(-o.rotationDegrees, o.rotationDegrees);
  const b = rng.uniform(1 - o.brightness, 1 + o.brightness);
  const c = rng.uniform(1 - o.contrast, 1 + o.contrast);
  const geo = (x: Float32Array): Float32Array => rotate(resizeGrey(extractRegion(x, size, box), box.width, box.height, size, size), size, angle);
  const img = geo(image);
  let m = 0;
  for (let i = 0; i < img.length; i++) m += img[i]!;
  m /= img.length;
  for (let i = 0; i < img.length; i++) img[i] = Math.min(1, Math.max(0, ((img[i]! - m) * c + m) * b));
  return { image: img, masks: masks.map((x) => geo(x).map((v) => (v >= 0.5 ? 1 : 0))) };
}
