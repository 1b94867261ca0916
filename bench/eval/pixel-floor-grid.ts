/**
 * How the classification floor depends on its grid: the no-network probe of `eden evaluate --task
 * classify` (logistic regression on each image's pixels, src/eval/classify.ts rawPixelProbe) at
 * several grid sides, on the same data, split and settings as the evaluation. A check that the
 * floor is not an artefact of its 16 x 16 default, not a way to tune it.
 *
 *   node --import tsx bench/eval/pixel-floor-grid.ts DATA [--label-column COL] [--preset cpu] [--size 64] [--sides 8,16,32,64]
 */
import { parseArgs } from 'node:util';
import { evaluationClassificationData } from './classification-data.js';
import { probeSplitSeed, rawPixelProbe } from '../../src/eval/classify.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'label-column': { type: 'string' }, preset: { type: 'string', default: 'cpu' }, size: { type: 'string', default: '64' }, sides: { type: 'string', default: '8,16,32,64' } },
});
if (positionals.length !== 1) throw new Error('usage: pixel-floor-grid.ts DATA [--label-column COL] [--preset cpu] [--size 64] [--sides 8,16,32,64]');
const { config, cfg, data } = await evaluationClassificationData(positionals[0]!, { preset: values.preset!, size: Number(values.size), labelColumn: values['label-column'] });
for (const side of values.sides!.split(',').map(Number)) {
  const r = await rawPixelProbe(data, cfg, probeSplitSeed(config.seed), side);
  console.log(`${positionals[0]}: pixels at ${side} x ${side}: AUC ${r.meanAuc.toFixed(3)}, accuracy ${(100 * r.accuracy).toFixed(1)}% (L2 ${r.l2}, validated)`);
}
