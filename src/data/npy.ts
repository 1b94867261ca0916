/**
 * NumPy .npy arrays as images and masks: what Python pipelines write with `np.save` (a mask as a
 * uint8 or bool array, an image as uint8, uint16, int16 or float). A 2-D array [H, W] is one grey
 * image; [H, W, C] (C = 1, 3 or 4) and [1, H, W] are read too. Parsed by npyjs, whose float16 it
 * widens to float32; 64-bit integers are refused (their values do not fit a float32 exactly).
 */
import { parse, type NpyArray } from 'npyjs';
import type { RasterSamples } from './grey-image.js';

/** The .npy magic string: \x93NUMPY. */
export function isNpy(bytes: Uint8Array): boolean {
  return bytes.length >= 10 && bytes[0] === 0x93 && String.fromCharCode(...bytes.subarray(1, 6)) === 'NUMPY';
}

/** Bits per sample Eden records for each dtype (masks read full scale by them: a bool's 1 is its top). */
const BITS: Partial<Record<NpyArray['dtype'], number>> = { b1: 1, u1: 8, i1: 8, u2: 16, i2: 16, u4: 32, i4: 32, f2: 32, f4: 32, f8: 32 };

export function decodeNpy(bytes: Uint8Array, maxPixels: number): RasterSamples {
  let a: NpyArray;
  try {
    a = parse(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  } catch (err) {
    throw new Error(`corrupt .npy data (${err instanceof Error ? err.message : String(err)})`);
  }
  const bits = BITS[a.dtype];
  if (!bits) throw new Error(`unsupported .npy dtype '${a.dtype}' (Eden reads bool, 8-, 16- and 32-bit integers and floats)`);
  const shape = a.shape.length === 3 && a.shape[0] === 1 ? a.shape.slice(1) : a.shape;
  const [height, width, channels = 1] = shape as [number, number, number?];
  if (shape.length < 2 || shape.length > 3 || ![1, 3, 4].includes(channels)) throw new Error(`unsupported .npy shape [${a.shape.join(', ')}]: not an image (Eden reads [H, W], [H, W, 1 | 3 | 4] and [1, H, W])`);
  if (width * height > maxPixels) throw new Error(`image too large (${width}x${height}, over ${maxPixels} pixels)`);
  const count = width * height * channels;
  const data = a.data as unknown as ArrayLike<number>;
  if (data.length < count) throw new Error(`truncated image data (.npy of shape [${a.shape.join(', ')}] holds ${data.length} values)`);
  // Fortran order (np.asfortranarray, MATLAB exports) stores columns first: reordered to rows.
  let samples: ArrayLike<number> = data;
  if (a.fortranOrder) {
    const rows = new Float64Array(count);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) rows[(y * width + x) * channels + c] = data[y + height * (x + width * c)]!;
    samples = rows;
  }
  const floatingPoint = a.dtype.startsWith('f');
  return { width, height, channels, samples, bitDepth: bits, floatingPoint, encoding: `npy/${a.dtype}` };
}
