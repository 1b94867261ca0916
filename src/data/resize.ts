/**
 * Resampling of single-channel float images, [height * width] row-major. Downscaling averages
 * the covered source area (no aliasing from a 2000 px radiograph shrunk to 224 px); upscaling
 * interpolates bilinearly with half-pixel centres (as PyTorch's align_corners=False).
 */

/** 1-D resampling weights: for each output index, (source index, weight) pairs. */
function axisWeights(inSize: number, outSize: number): { index: Int32Array; weight: Float32Array; start: Int32Array } {
  const idx: number[] = [];
  const wts: number[] = [];
  const start = new Int32Array(outSize + 1);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    start[o] = idx.length;
    if (scale > 1) {
      // Area average over [o*scale, (o+1)*scale).
      const a = o * scale;
      const b = a + scale;
      for (let i = Math.floor(a); i < Math.min(Math.ceil(b), inSize); i++) {
        const overlap = Math.min(b, i + 1) - Math.max(a, i);
        if (overlap > 0) {
          idx.push(i);
          wts.push(overlap / scale);
        }
      }
    } else {
      const src = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), inSize - 1);
      const lo = Math.floor(src);
      const hi = Math.min(lo + 1, inSize - 1);
      const t = src - lo;
      idx.push(lo);
      wts.push(1 - t);
      if (hi !== lo) {
        idx.push(hi);
        wts.push(t);
      }
    }
  }
  start[outSize] = idx.length;
  return { index: Int32Array.from(idx), weight: Float32Array.from(wts), start };
}

/** The horizontal pass of a separable resize: [height, width] -> [height, outWidth]. */
function resizeRows(data: Float32Array, width: number, height: number, outWidth: number): Float32Array {
  const wx = axisWeights(width, outWidth);
  const tmp = new Float32Array(height * outWidth);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let o = 0; o < outWidth; o++) {
      let s = 0;
      for (let k = wx.start[o]!; k < wx.start[o + 1]!; k++) s += data[row + wx.index[k]!]! * wx.weight[k]!;
      tmp[y * outWidth + o] = s;
    }
  }
  return tmp;
}

/** Output row `o` of the vertical pass over `tmp` ([height, width]), accumulated into `into` (zeroed), at `at`. */
function resizeColumnsRow(tmp: Float32Array, width: number, wy: ReturnType<typeof axisWeights>, o: number, into: Float32Array, at: number): void {
  for (let k = wy.start[o]!; k < wy.start[o + 1]!; k++) {
    const w = wy.weight[k]!;
    const src = wy.index[k]! * width;
    for (let x = 0; x < width; x++) into[at + x]! += tmp[src + x]! * w;
  }
}

/** Resize a [height, width] image to [outHeight, outWidth] (separable: rows, then columns). */
export function resizeGrey(data: Float32Array, width: number, height: number, outWidth: number, outHeight: number): Float32Array {
  if (width === outWidth && height === outHeight) return data.slice();
  const tmp = resizeRows(data, width, height, outWidth);
  const wy = axisWeights(height, outHeight);
  const out = new Float32Array(outHeight * outWidth);
  for (let o = 0; o < outHeight; o++) resizeColumnsRow(tmp, outWidth, wy, o, out, o * outWidth);
  return out;
}

/**
 * resizeGrey, then 1 where the value is > `threshold`, else 0: the same bits as thresholdMask of
 * resizeGrey, without the float image between them. A mask drawn back over a 16-megapixel image
 * then takes 17 MB instead of 84 MB of fresh memory, and fresh memory is slow to touch.
 */
export function resizeToMask(data: Float32Array, width: number, height: number, outWidth: number, outHeight: number, threshold: number): Uint8Array {
  const out = new Uint8Array(outHeight * outWidth);
  if (width === outWidth && height === outHeight) {
    for (let i = 0; i < out.length; i++) out[i] = data[i]! > threshold ? 1 : 0;
    return out;
  }
  const tmp = resizeRows(data, width, height, outWidth);
  const wy = axisWeights(height, outHeight);
  const row = new Float32Array(outWidth);
  for (let o = 0; o < outHeight; o++) {
    row.fill(0);
    resizeColumnsRow(tmp, outWidth, wy, o, row, 0);
    const at = o * outWidth;
    for (let x = 0; x < outWidth; x++) out[at + x] = row[x]! > threshold ? 1 : 0;
  }
  return out;
}
