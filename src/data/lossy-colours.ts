/**
 * The colours a lossy-compressed colour mask was drawn in. A red heart saved as JPEG decodes to
 * hundreds of reds and near-blacks (quantisation, chroma subsampling at the edges), so its colours
 * cannot be read one by one as the labels of a lossless mask are: (0, 1, 0) in the background would
 * be a structure, (254, 0, 1) another. Each pixel is moved to the nearest of the mask's main
 * colours: the most frequent colours, each at least MIN_SHARE of the pixels and more than
 * SEPARATION from every more frequent one (JPEG keeps a flat area's colour exactly in most of its
 * pixels; the colours of edges and ringing are many, each rare).
 */

/** Share of the pixels a colour must hold exactly to be one of the mask's colours (a 16 x 16 structure in a 512 x 512 mask holds 0.1%). */
const MIN_SHARE = 0.0005;

/** Largest per-channel difference between a main colour and a more frequent one for it to count as the same colour (JPEG's error in a flat area at quality 50 stays well under it). */
const SEPARATION = 48;

/** Largest difference between a grey colour's channels after compression (a grey mask saved in RGB). */
const GREY_SPREAD = 16;

/**
 * `data` (8-bit samples, `channels` per pixel, RGB first) with each pixel's RGB set to its nearest
 * main colour, other channels untouched; undefined when no main colour is chromatic (a grey mask
 * saved in RGB, read as any grey mask: its label values 0 / 1 would be one colour here).
 */
export function snapToMainColours(data: Uint8Array, pixels: number, channels: number): Uint8Array | undefined {
  const counts = new Map<number, number>();
  for (let at = 0; at < pixels * channels; at += channels) {
    const c = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  const least = Math.max(8, MIN_SHARE * pixels);
  const main: number[][] = [];
  for (const [c, n] of [...counts].sort((a, b) => b[1] - a[1])) {
    if (n < least) break;
    const rgb = [c >> 16, (c >> 8) & 255, c & 255];
    if (main.every((m) => Math.max(Math.abs(m[0]! - rgb[0]!), Math.abs(m[1]! - rgb[1]!), Math.abs(m[2]! - rgb[2]!)) > SEPARATION)) main.push(rgb);
  }
  if (!main.some((m) => Math.max(...m) - Math.min(...m) > GREY_SPREAD)) return undefined;
  const nearest = new Map<number, number[]>();
  for (const c of counts.keys()) {
    const [r, g, b] = [c >> 16, (c >> 8) & 255, c & 255];
    let best = main[0]!;
    let bestDistance = Infinity;
    for (const m of main) {
      const d = (m[0]! - r) ** 2 + (m[1]! - g) ** 2 + (m[2]! - b) ** 2;
      if (d < bestDistance) [best, bestDistance] = [m, d];
    }
    nearest.set(c, best);
  }
  const out = Uint8Array.from(data);
  for (let at = 0; at < pixels * channels; at += channels) {
    const m = nearest.get((data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!)!;
    [out[at], out[at + 1], out[at + 2]] = [m[0]!, m[1]!, m[2]!];
  }
  return out;
}
