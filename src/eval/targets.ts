/**
 * Smaller, harder segmentation targets derived from the masks a user already has, so that an
 * evaluation is not decided by the location prior of a large organ (the mean of three heart masks
 * alone scores ~68 Dice on wingspan_ctr). Each derived structure is written `BASE:KIND[PERCENT]`
 * and selected with `--structures`, e.g. `--structures heart,lungs:apex,heart:border`.
 *
 * Every rule works per connected component of the base mask (components smaller than 2% of the
 * mask's area are ignored), so a mask that holds both lungs gives both apices:
 *   apex[P=15]          the component's pixels in the top P% of its vertical extent
 *                       (lung apices; superimposed on clavicles and ribs, hard to see);
 *   costophrenic[P=15]  pixels in the bottom P% of the vertical extent and the lateral half of the
 *                       horizontal extent (lateral = away from the image's vertical midline):
 *                       the costophrenic angles;
 *   border[P=2]         a band of half-width P% of the image side on both sides of the boundary
 *                       (e.g. the heart border, where most segmentation error lives).
 * Masks are binary [side * side] at the evaluation size.
 */
import { EdenError } from '../core/errors.js';

export const DERIVED_KINDS = { apex: 15, costophrenic: 15, border: 2 } as const;
export type DerivedKind = keyof typeof DERIVED_KINDS;

export interface DerivedStructure {
  name: string;
  base: string;
  kind: DerivedKind;
  percent: number;
}

/** 'lungs:apex' -> { base: 'lungs', kind: 'apex', percent: 15 }; undefined for a plain name. */
export function parseDerived(name: string): DerivedStructure | undefined {
  const at = name.lastIndexOf(':');
  if (at < 0) return undefined;
  const m = /^([a-z]+)(\d+(?:\.\d+)?)?$/.exec(name.slice(at + 1));
  const kind = m?.[1] as DerivedKind | undefined;
  if (!m || !kind || !(kind in DERIVED_KINDS)) {
    throw new EdenError('config', `'${name}': derived structures are BASE:apex, BASE:costophrenic or BASE:border, with an optional percentage (e.g. lungs:apex20, heart:border3)`);
  }
  const percent = m[2] !== undefined ? Number(m[2]) : DERIVED_KINDS[kind];
  if (!(percent > 0 && percent < 100)) throw new EdenError('config', `'${name}': the percentage must be in (0, 100)`);
  return { name, base: name.slice(0, at), kind, percent };
}

/** Connected components (8-connectivity) of a binary mask, as lists of pixel indices. */
export function components(mask: ArrayLike<number>, side: number): number[][] {
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
      const x = i % side;
      const y = (i - x) / side;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          const ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= side || ny >= side) continue;
          const j = ny * side + nx;
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

/** The derived mask of `d` from its base mask [side * side]. */
export function deriveMask(base: Float32Array, side: number, d: Pick<DerivedStructure, 'kind' | 'percent'>): Float32Array {
  const out = new Float32Array(base.length);
  if (d.kind === 'border') {
    const width = Math.max(1, (d.percent / 100) * side);
    const edge = boundary(base, side);
    const dist = distanceTransformSquared(edge, side);
    for (let i = 0; i < out.length; i++) if (dist[i]! <= width * width) out[i] = 1;
    return out;
  }
  const comps = components(base, side);
  const area = comps.reduce((n, c) => n + c.length, 0);
  for (const comp of comps) {
    if (comp.length < 0.02 * area) continue;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const i of comp) {
      const x = i % side;
      const y = (i - x) / side;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
    const h = y1 - y0 + 1;
    const band = Math.max(1, Math.round((d.percent / 100) * h));
    const cx = (x0 + x1) / 2;
    const lateralIsLeft = cx < (side - 1) / 2;
    for (const i of comp) {
      const x = i % side;
      const y = (i - x) / side;
      if (d.kind === 'apex' && y < y0 + band) out[i] = 1;
      if (d.kind === 'costophrenic' && y > y1 - band && (lateralIsLeft ? x <= cx : x >= cx)) out[i] = 1;
    }
  }
  return out;
}
