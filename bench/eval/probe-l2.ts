/**
 * What the classification probe's L2 penalty does: each model's frozen Eve and the raw-pixel floor
 * (src/eval/classify.ts), fitted at every penalty of PROBE_L2_GRID on the evaluation's own data and
 * split, with each one's test AUC beside the penalty the validation split chooses. A check that the
 * validated probe does not hide a penalty under which a feature set does much better or worse.
 *
 *   node --import tsx bench/eval/probe-l2.ts DATA [--label-column COL] [--checkpoint builtin] [--preset cpu] [--size 64]
 */
import { parseArgs } from 'node:util';
import { evaluationClassificationData } from './classification-data.js';
import { logisticRegression, pixelFeatures, probeFeatures, probeSplitSeed, PROBE_L2_GRID, scores, validatedProbe } from '../../src/eval/classify.js';
import { resolveSources } from '../../src/eval/models.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'label-column': { type: 'string' }, checkpoint: { type: 'string', default: 'builtin' }, preset: { type: 'string', default: 'cpu' }, size: { type: 'string', default: '64' } },
});
if (positionals.length !== 1) throw new Error('usage: probe-l2.ts DATA [--label-column COL] [--checkpoint builtin] [--preset cpu] [--size 64]');
const { config, cfg, data } = await evaluationClassificationData(positionals[0]!, { preset: values.preset!, size: Number(values.size), labelColumn: values['label-column'] });
const labels = data.train.map((x) => x.label);
const testLabels = data.test.map((x) => x.label);
const sets: [string, { train: Float32Array[]; test: Float32Array[] }][] = [];
for (const source of await resolveSources([values.checkpoint!], ['random'], {})) sets.push([source.name, await probeFeatures(source, data)]);
sets.push(['raw pixels (no network)', pixelFeatures(data)]);
for (const [name, f] of sets) {
  const byL2: Record<string, number> = {};
  for (const l2 of PROBE_L2_GRID) byL2[l2] = +scores(await logisticRegression(f.train, labels, f.test, data.classes.length, cfg.probeEpochs, l2), testLabels, data.classes).meanAuc.toFixed(4);
  const fit = await validatedProbe(f.train, labels, f.test, data.classes, cfg.probeEpochs, probeSplitSeed(config.seed));
  console.log(JSON.stringify({ data: positionals[0], size: cfg.size, model: name, test_auc_by_l2: byL2, chosen_l2: fit.l2, validation_auc: fit.validationAuc.map((a) => +a.toFixed(4)), test_auc_chosen: +scores(fit.probabilities, testLabels, data.classes).meanAuc.toFixed(4) }));
}
