/**
 * Anatomy decomposer (METHOD.md §1). Level n splits an image into 2^n non-overlapping parts by
 * alternating vertical and horizontal cuts: rows = 2^floor(n/2), cols = 2^ceil(n/2)
 * (n=0 whole, n=1 left|right halves, n=2 2x2, n=3 2x4, n=4 4x4). Part edges are rounded to whole
 * pixels so that the parts tile any image size exactly.
 *
 * Decision (METHOD.md): the paper's 2^n rule, not the reference code's n x n grid (equal only for
 * n in {0, 2, 4}).
 */
import type { Rng } from '../core/rng.js';
import { configError } from '../core/errors.js';

export interface Part {
  /** Index in row-major order, 0 .. 2^n - 1. */
  index: number;
  row: number;
  col: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export function gridShape(level: number): { rows: number; cols: number } {
  if (!Number.isInteger(level) || level < 0 || level > 16) throw configError(`decomposition level must be an integer in [0, 16], got ${level}`);
  return { rows: 2 ** Math.floor(level / 2), cols: 2 ** Math.ceil(level / 2) };
}

/** The 2^level parts of a width x height image, row-major. */
export function decompose(width: number, height: number, level: number): Part[] {
  const { rows, cols } = gridShape(level);
  if (rows > height || cols > width) throw configError(`a ${width}x${height} image is too small for level ${level} (${rows}x${cols} parts)`);
  const edge = (i: number, n: number, size: number): number => Math.round((i * size) / n);
  const parts: Part[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const x = edge(c, cols, width);
      const y = edge(r, rows, height);
      parts.push({ index: r * cols + c, row: r, col: c, x, y, width: edge(c + 1, cols, width) - x, height: edge(r + 1, rows, height) - y });
    }
  }
  return parts;
}

export interface AnchorOptions {
  /**
   * 'grid' (default): one of the 2^n parts, drawn uniformly. 'random': a window of one part's size
   * at a uniformly random position, at least `margin` (fraction of the side) from the border
   * (Adam-v2's option).
   */
  mode?: 'grid' | 'random';
  margin?: number;
}

/** Draw the anchor region of one image for one epoch. */
export function sampleAnchor(width: number, height: number, level: number, rng: Rng, options: AnchorOptions = {}): Part {
  if ((options.mode ?? 'grid') === 'grid') {
    const parts = decompose(width, height, level);
    return parts[rng.int(parts.length)]!;
  }
  const { rows, cols } = gridShape(level);
  const w = Math.round(width / cols);
  const h = Math.round(height / rows);
  const margin = options.margin ?? 1 / 16;
  const place = (size: number, part: number): number => {
    const lo = Math.min(Math.round(margin * size), size - part);
    const hi = Math.max(lo, size - part - Math.round(margin * size));
    return lo + rng.int(hi - lo + 1);
  };
  return { index: -1, row: -1, col: -1, x: place(width, w), y: place(height, h), width: w, height: h };
}
