/**
 * Bright discs on noise, each labelled by its disc: a segmentation task a U-Net learns in a few
 * steps (tests of training loops, not of accuracy). Centres in the middle half, radii side/8 to side/4.
 */
import type { LabelledImage } from '../../src/train/segmenter.js';
import type { Rng } from '../../src/core/rng.js';

export function disc(side: number, rng: Rng): LabelledImage {
  const [cx, cy, r] = [side / 4 + (rng.next() * side) / 2, side / 4 + (rng.next() * side) / 2, side / 8 + (rng.next() * side) / 8];
  const image = new Float32Array(side * side);
  const mask = new Float32Array(side * side);
  for (let i = 0; i < side * side; i++) {
    const inside = ((i % side) - cx) ** 2 + (Math.floor(i / side) - cy) ** 2 < r * r;
    mask[i] = inside ? 1 : 0;
    image[i] = 0.3 * rng.next() + (inside ? 0.6 : 0.1);
  }
  return { image, masks: [mask] };
}
