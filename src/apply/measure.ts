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
import { horizontalExtent, largestComponents } from '../data/masks.js';

export interface CardiothoracicRatio {
  /** Heart width and thoracic width in pixels, and their ratio. */
  heartWidth: number;
  thoraxWidth: number;
  ctr: number;
  heart: { left: number; right: number };
  thorax: { left: number; right: number };
}

export function cardiothoracicRatio(heart: ArrayLike<number>, lungs: ArrayLike<number>, width: number, height: number): CardiothoracicRatio | null {
  const h = horizontalExtent(largestComponents(heart, width, height, 1), width);
  const l = horizontalExtent(largestComponents(lungs, width, height, 2), width);
  if (!h || !l) return null;
  return { heartWidth: h.width, thoraxWidth: l.width, ctr: h.width / l.width, heart: { left: h.left, right: h.right }, thorax: { left: l.left, right: l.right } };
}

/** The lungs mask among named masks: 'lungs', or the union of 'left_lung' and 'right_lung'; undefined otherwise. */
export function lungsOf(masks: Record<string, ArrayLike<number>>): ArrayLike<number> | undefined {
  if (masks['lungs']) return masks['lungs'];
  const [l, r] = [masks['left_lung'], masks['right_lung']];
  if (!l || !r) return undefined;
  const both = new Uint8Array(l.length);
  for (let i = 0; i < both.length; i++) both[i] = l[i]! > 0.5 || r[i]! > 0.5 ? 1 : 0;
  return both;
}

export function area(mask: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]! > 0.5) n++;
  return n;
}
