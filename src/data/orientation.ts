/**
 * EXIF orientation. Eden reads every raster file as it displays — as browsers, image viewers,
 * annotation tools and OpenCV's imread show it — so a phone photograph of a film, stored sideways
 * with Orientation 6, reaches the model upright, and `eden segment` and the explorer (whose browser
 * decode applies the tag) see the same pixels. PIL and torchvision ignore the tag, so masks made in
 * Python are often drawn on the stored pixels: a mask whose shape fits its image only before the
 * image's rotation by 90 degrees is turned the same way (orientMaskLike). The flips and the
 * half-turn (2-4) keep the shape; there such a mask is read as it displays, like every file.
 */
import type { GreyImage } from './grey-image.js';

/** Orientations 5-8 exchange width and height. */
export function swapsAxes(orientation: number | undefined): boolean {
  return orientation !== undefined && orientation >= 5 && orientation <= 8;
}

/**
 * The pixels of a stored width x height image as it displays under EXIF `orientation` (1-8):
 * 2 mirrored, 3 turned 180 degrees, 4 flipped, 5 transposed, 6 turned 90 degrees clockwise,
 * 7 transversed, 8 turned 90 degrees anticlockwise.
 */
export function applyOrientation(data: Float32Array, width: number, height: number, orientation: number): { data: Float32Array; width: number; height: number } {
  if (!Number.isInteger(orientation) || orientation < 1 || orientation > 8) throw new Error(`EXIF orientation must be 1-8, got ${orientation}`);
  if (orientation === 1) return { data, width, height };
  const [outW, outH] = swapsAxes(orientation) ? [height, width] : [width, height];
  const out = new Float32Array(data.length);
  // For each displayed pixel (x, y): the stored one it shows, as (x0 + x * dx + y * dy) with the
  // strides of a step right (dx) and down (dy) in the displayed image.
  const [last, lastRow] = [width - 1, (height - 1) * width];
  const strides: Record<number, [number, number, number]> = {
    2: [last, -1, width],
    3: [lastRow + last, -1, -width],
    4: [lastRow, 1, -width],
    5: [0, width, 1],
    6: [lastRow, -width, 1],
    7: [lastRow + last, -width, -1],
    8: [last, width, -1],
  };
  const [start, dx, dy] = strides[orientation]!;
  let i = 0;
  for (let y = 0; y < outH; y++) {
    let at = start + y * dy;
    for (let x = 0; x < outW; x++, at += dx) out[i++] = data[at]!;
  }
  return { data: out, width: outW, height: outH };
}

/**
 * A mask as its image is read: a mask without an orientation of its own whose shape fits its
 * image only before the image's 90-degree EXIF rotation (it was drawn on the stored pixels) is
 * turned with it. Any other mask is returned as it is; the size check judges it.
 */
export function orientMaskLike(mask: GreyImage, image: GreyImage, sameShape: (a: Size, b: Size) => boolean): GreyImage {
  if (!swapsAxes(image.orientation) || mask.orientation) return mask;
  const stored = { width: image.height, height: image.width };
  if (sameShape(mask, image) || !sameShape(mask, stored)) return mask;
  const turn = (values: Float32Array): ReturnType<typeof applyOrientation> => applyOrientation(values, mask.width, mask.height, image.orientation!);
  // A SEG's segments (segmentMasks) turn with its label values.
  const segmentMasks = mask.segmentMasks && Object.fromEntries(Object.entries(mask.segmentMasks).map(([k, m]) => [k, Uint8Array.from(turn(Float32Array.from(m)).data)]));
  return { ...mask, ...turn(mask.data), ...(segmentMasks && { segmentMasks }) };
}

interface Size {
  width: number;
  height: number;
}
