/**
 * Binary-mask geometry shared by evaluation targets and measurements: connected components,
 * boundaries, an exact Euclidean distance transform, horizontal extents. Masks are row-major
 * [height * width] arrays; a pixel is set when its value is > 0.5.
 */

/** Connected components (8-connectivity) of a binary mask, as lists of pixel indices. */
export function components(mask: ArrayLike<number>, width: number, height = width): number[][] {
  const label = new Int32Array(mask.length).fill(-1);
  const out: number[][] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (mask[start]! <= 0.5 || label[start]! >= 0) continue;
    const comp: number[] = [];
    label[start] = out.length;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop()!;
      comp.push(i);
      const x = i % width;
      const y = (i - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          const ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const j = ny * width + nx;
          if (mask[j]! > 0.5 && label[j]! < 0) {
            label[j] = out.length;
            stack.push(j);
          }
        }
      }
    }
    out.push(comp);
  }
  return out;
}

/** Squared Euclidean distance of every pixel to the nearest pixel where `on` is set (exact; Felzenszwalb & Huttenlocher). */
export function distanceTransformSquared(on: ArrayLike<boolean | number>, side: number): Float64Array {
  const INF = 1e20;
  const f = new Float64Array(side * side);
  for (let i = 0; i < f.length; i++) f[i] = on[i] ? 0 : INF;
  const line = new Float64Array(side);
  const out = new Float64Array(side);
  const v = new Int32Array(side);
  const z = new Float64Array(side + 1);
  const pass = (get: (k: number) => number, set: (k: number, val: number) => void): void => {
    for (let q = 0; q < side; q++) line[q] = get(q);
    let k = 0;
    v[0] = 0;
    z[0] = -INF;
    z[1] = INF;
    for (let q = 1; q < side; q++) {
      let s = (line[q]! + q * q - (line[v[k]!]! + v[k]! * v[k]!)) / (2 * q - 2 * v[k]!);
      while (s <= z[k]!) {
        k--;
        s = (line[q]! + q * q - (line[v[k]!]! + v[k]! * v[k]!)) / (2 * q - 2 * v[k]!);
      }
      k++;
      v[k] = q;
      z[k] = s;
      z[k + 1] = INF;
    }
    k = 0;
    for (let q = 0; q < side; q++) {
      while (z[k + 1]! < q) k++;
      out[q] = (q - v[k]!) ** 2 + line[v[k]!]!;
    }
    for (let q = 0; q < side; q++) set(q, out[q]!);
  };
  for (let x = 0; x < side; x++) pass((y) => f[y * side + x]!, (y, val) => (f[y * side + x] = val));
  for (let y = 0; y < side; y++) pass((x) => f[y * side + x]!, (x, val) => (f[y * side + x] = val));
  return f;
}

/** Boundary pixels of a binary mask: inside, with a 4-neighbour outside (or at the image edge). */
export function boundary(mask: ArrayLike<number>, side: number): Uint8Array {
  const b = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]! <= 0.5) continue;
    const x = i % side;
    const y = (i - x) / side;
    if (x === 0 || y === 0 || x === side - 1 || y === side - 1 || mask[i - 1]! <= 0.5 || mask[i + 1]! <= 0.5 || mask[i - side]! <= 0.5 || mask[i + side]! <= 0.5) b[i] = 1;
  }
  return b;
}

/** Keep the `n` largest connected components of a mask (e.g. the heart: 1, the lungs: 2). */
export function largestComponents(mask: ArrayLike<number>, width: number, height: number, n: number): Uint8Array {
  const out = new Uint8Array(width * height);
  for (const c of components(mask, width, height).sort((a, b) => b.length - a.length).slice(0, n)) for (const i of c) out[i] = 1;
  return out;
}

/** Leftmost and rightmost columns of a mask and their distance in pixels (max - min + 1), or null if empty. */
export function horizontalExtent(mask: ArrayLike<number>, width: number): { left: number; right: number; width: number } | null {
  let left = Infinity;
  let right = -Infinity;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]! <= 0.5) continue;
    const x = i % width;
    if (x < left) left = x;
    if (x > right) right = x;
  }
  return left === Infinity ? null : { left, right, width: right - left + 1 };
}
