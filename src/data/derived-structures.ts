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
 * Masks are binary [side * side] at the evaluation size. The base may be one value of a label map
 * ('labels:2:apex', see parseLabelValue).
 */
import { EdenError } from '../core/errors.js';
import { boundary, components, distanceTransformSquared } from './masks.js';

export const DERIVED_KINDS = { apex: 15, costophrenic: 15, border: 2 } as const;
export type DerivedKind = keyof typeof DERIVED_KINDS;

export interface DerivedStructure {
  name: string;
  base: string;
  kind: DerivedKind;
  percent: number;
}

/**
 * One value of a label map, written `BASE:VALUE` ('labels:2': the pixels of the masks of 'labels'
 * that hold 2); undefined for another name.
 */
export function parseLabelValue(name: string): { base: string; value: number } | undefined {
  const m = /^(.+):(\d+)$/.exec(name);
  return m ? { base: m[1]!, value: Number(m[2]) } : undefined;
}

/** 'lungs:apex' -> { base: 'lungs', kind: 'apex', percent: 15 }; undefined for a plain name or a label value. */
export function parseDerived(name: string): DerivedStructure | undefined {
  const at = name.lastIndexOf(':');
  if (at < 0 || parseLabelValue(name)) return undefined;
  const m = /^([a-z]+)(\d+(?:\.\d+)?)?$/.exec(name.slice(at + 1));
  const kind = m?.[1] as DerivedKind | undefined;
  if (!m || !kind || !(kind in DERIVED_KINDS)) {
    throw new EdenError('config', `'${name}': derived structures are BASE:apex, BASE:costophrenic or BASE:border, with an optional percentage (e.g. lungs:apex20, heart:border3); BASE:VALUE is one value of a label map (e.g. labels:2)`);
  }
  const percent = m[2] !== undefined ? Number(m[2]) : DERIVED_KINDS[kind];
  if (!(percent > 0 && percent < 100)) throw new EdenError('config', `'${name}': the percentage must be in (0, 100)`);
  return { name, base: name.slice(0, at), kind, percent };
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
