/**
 * What loading labelled images costs, and the per-image percentile window in it: `percentiles`
 * (src/data/intensity.ts: counting for integer images) against sorting a copy (what it did before,
 * and still does for fractional values), on synthetic 8- and 12-bit images; then a whole
 * segmentation folder loaded as `eden evaluate` loads it. A benchmark, not a test.
 *
 *   node --import tsx bench/data/loading.ts [DIR] [--size 64] [--reps 20]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { percentiles, sortedPercentiles } from '../../src/data/intensity.js';
import { loadSegmentationData } from '../../src/data/segmentation-data.js';
import { Rng } from '../../src/core/rng.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { size: { type: 'string', default: '64' }, reps: { type: 'string', default: '20' } } });
const dir = positionals[0] ?? path.join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'wingspan_ctr');
const reps = Number(values.reps);

function msPerCall(fn: () => unknown): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
}

const rng = new Rng(1);
for (const [name, side, levels] of [['512 x 512, 8-bit', 512, 256], ['2048 x 2048, 12-bit', 2048, 4096]] as const) {
  const image = Float32Array.from({ length: side * side }, () => Math.floor(rng.next() * levels));
  const counted = msPerCall(() => percentiles(image, [1, 99]));
  const sorted = msPerCall(() => sortedPercentiles(image, [1, 99]));
  console.log(JSON.stringify({ workload: 'percentiles', image: name, counting_ms: +counted.toFixed(2), sorting_ms: +sorted.toFixed(2), ratio: +(sorted / counted).toFixed(1) }));
}
const t0 = performance.now();
const data = await loadSegmentationData(dir, Number(values.size), { testFraction: 0.06, maxTestImages: 16, seed: 0 });
console.log(JSON.stringify({ workload: 'segmentation folder', dir, size: Number(values.size), images: data.samples.length, structures: data.structures.length, seconds: +((performance.now() - t0) / 1000).toFixed(2) }));
