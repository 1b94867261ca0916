/**
 * Measurements from segmentation masks at the image's own size.
 *
 * Area: pixels of the mask; in mm² when the DICOM gives a pixel spacing (Pixel Spacing, else
 * Imager Pixel Spacing, which is at the detector: areas from it include the projection's
 * magnification, ~10-15% for a PA chest).
 *
 * Cardiothoracic ratio (CTR) = the widest horizontal extent of the heart / the widest horizontal
 * extent of the lungs, both in image columns: heart width = rightmost - leftmost heart column + 1;
 * thoracic width = rightmost - leftmost lung column + 1 over both lungs together (from the outer
 * edge of one lung to the outer edge of the other). The usual radiological CTR measures the inner
 * rib margins at their widest; lung fields approximate them. Before measuring, the heart is
 * reduced to its largest connected component and the lungs to their two largest, so that a stray
 * speck of a predicted mask cannot stretch either width. The lungs are the structure named
 * 'lungs', or 'left_lung' and 'right_lung' together.
 */
import { largestComponentsExtent } from '../data/masks.js';

export interface CardiothoracicRatio {
  /** Heart width and thoracic width in pixels, and their ratio. */
  heartWidth: number;
  thoraxWidth: number;
  ctr: number;
  heart: { left: number; right: number };
  thorax: { left: number; right: number };
}

/** `lungs`: one mask of both lungs, or several masks read as their union (left and right lung). */
export function cardiothoracicRatio(heart: ArrayLike<number>, lungs: ArrayLike<number> | ArrayLike<number>[], width: number, height: number): CardiothoracicRatio | null {
  const h = largestComponentsExtent([heart], width, height, 1);
  // A list of masks, not a mask held in a plain array of numbers.
  const list = Array.isArray(lungs) && typeof lungs[0] === 'object';
  const l = largestComponentsExtent(list ? (lungs as ArrayLike<number>[]) : [lungs as ArrayLike<number>], width, height, 2);
  if (!h || !l) return null;
  return { heartWidth: h.width, thoraxWidth: l.width, ctr: h.width / l.width, heart: { left: h.left, right: h.right }, thorax: { left: l.left, right: l.right } };
}

/** The lungs among named masks: 'lungs', or 'left_lung' and 'right_lung' (their union); undefined otherwise. */
export function lungsOf(masks: Record<string, ArrayLike<number>>): ArrayLike<number>[] | undefined {
  if (masks['lungs']) return [masks['lungs']];
  const [l, r] = [masks['left_lung'], masks['right_lung']];
  return l && r ? [l, r] : undefined;
}

export function area(mask: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]! > 0.5) n++;
  return n;
}
