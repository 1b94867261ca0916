/**
 * Held-out measurement of a segmentation model that `eden finetune` trained on a labelled folder
 * and `eden segment` applied to the whole folder: every image the model neither trained nor
 * validated on (its file lists them) is scored by Dice per structure against the folder's masks,
 * and, where heart and lungs are segmented, the cardiothoracic ratio (CTR) of the predicted masks is
 * compared with a ground-truth CSV (id,ctr) beside the CTR of the ground-truth masks under the same
 * definition (src/apply/measure.ts), so segmentation error and definition error are told apart.
 *
 *   node --import tsx bench/apply/heldout.ts MODEL SEGMENT_OUT DATA_DIR [--combine lungs=left_lung+right_lung] [--ctr CSV] [--json OUT]
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { useBackend } from '../../src/engine/backend.js';
import { loadSegmenter } from '../../src/models/task-model-file.js';
import { cardiothoracicRatio, lungsOf } from '../../src/apply/measure.js';
import { dice, mean } from '../../src/eval/metrics.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { combine: { type: 'string', multiple: true }, ctr: { type: 'string' }, json: { type: 'string' } } });
const [modelFile, segOut, dataDir] = positionals;
if (!modelFile || !segOut || !dataDir) throw new Error('usage: heldout.ts MODEL SEGMENT_OUT DATA_DIR [--combine a=b+c] [--ctr CSV] [--json OUT]');

await useBackend('wasm');
const model = await loadSegmenter(modelFile);
const { training } = model.meta;
const structures = model.meta.structures ?? [];
model.dispose();
const validationFiles = (training['validationFiles'] as string[] | undefined) ?? [];
const seen = new Set([...training.files, ...validationFiles].map((f) => path.basename(f)));
const combine = Object.fromEntries((values.combine ?? []).map((c) => { const [name, parts] = c.split('='); return [name!, parts!.split('+')]; }));

function pearson(x: number[], y: number[]): number {
  const [mx, my] = [mean(x), mean(y)];
  let [sxy, sxx, syy] = [0, 0, 0];
  for (let i = 0; i < x.length; i++) { sxy += (x[i]! - mx) * (y[i]! - my); sxx += (x[i]! - mx) ** 2; syy += (y[i]! - my) ** 2; }
  return sxy / Math.sqrt(sxx * syy);
}
const stem = (f: string): string => f.replace(/\.[^.]+$/, '');
async function readMask(file: string): Promise<{ data: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(file).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  return { data: Uint8Array.from(data, (v) => (v > 127 ? 1 : 0)), width: info.width, height: info.height };
}
const maskDirs = new Map<string, Map<string, string>>();
function maskFiles(structure: string): Map<string, string> {
  if (!maskDirs.has(structure)) maskDirs.set(structure, new Map(readdirSync(path.join(dataDir!, 'masks', structure)).map((f) => [stem(f), f])));
  return maskDirs.get(structure)!;
}
async function truthMask(structure: string, file: string): Promise<Uint8Array> {
  const parts = combine[structure] ?? [structure];
  // Masks match images by file stem (as everywhere in Eden): x.jpg's mask may be x.png.
  const masks = await Promise.all(parts.map((p) => readMask(path.join(dataDir!, 'masks', p, maskFiles(p).get(stem(file)) ?? file))));
  return Uint8Array.from(masks[0]!.data, (_, i) => (masks.some((m) => m.data[i]) ? 1 : 0));
}

const groundTruth = new Map<string, number>();
if (values.ctr) for (const line of readFileSync(values.ctr, 'utf8').trim().split('\n').slice(1)) { const [id, v] = line.split(','); groundTruth.set(stem(id!), Number(v)); }

const files = readdirSync(path.join(dataDir, 'images')).filter((f) => !seen.has(f)).sort();
const diceBy: Record<string, number[]> = Object.fromEntries(structures.map((s) => [s, []]));
const rows: { file: string; predicted?: number; fromMasks?: number; truth?: number }[] = [];
for (const file of files) {
  const pred: Record<string, Uint8Array> = {};
  const truth: Record<string, Uint8Array> = {};
  let size = { width: 0, height: 0 };
  for (const s of structures) {
    const p = await readMask(path.join(segOut, 'masks', s, `${stem(file)}.png`));
    size = p;
    pred[s] = p.data;
    truth[s] = await truthMask(s, file);
    diceBy[s]!.push(dice(p.data, truth[s]!));
  }
  const [pl, tl] = [lungsOf(pred), lungsOf(truth)];
  if (pred['heart'] && pl && tl) {
    rows.push({ file, predicted: cardiothoracicRatio(pred['heart'], pl, size.width, size.height)?.ctr, fromMasks: cardiothoracicRatio(truth['heart']!, tl, size.width, size.height)?.ctr, truth: groundTruth.get(stem(file)) });
  }
}

const summary: Record<string, unknown> = { model: modelFile, trainedOn: training.files.length, validatedOn: validationFiles.length, heldOut: files.length, dice: Object.fromEntries(structures.map((s) => [s, mean(diceBy[s]!)])) };
console.log(`${path.basename(modelFile)}: trained on ${training.files.length}, validated on ${validationFiles.length}, held out ${files.length}`);
for (const s of structures) console.log(`  Dice ${s}: ${(100 * mean(diceBy[s]!)).toFixed(1)}`);
const compare = (name: string, a: (r: (typeof rows)[number]) => number | undefined, b: (r: (typeof rows)[number]) => number | undefined): void => {
  const pairs = rows.map((r) => [a(r), b(r)] as const).filter((p): p is readonly [number, number] => p[0] !== undefined && p[1] !== undefined);
  if (!pairs.length) return;
  const mae = mean(pairs.map(([x, y]) => Math.abs(x - y)));
  const r = pearson(pairs.map((p) => p[0]), pairs.map((p) => p[1]));
  const missing = rows.length - pairs.length;
  summary[name] = { n: pairs.length, mae, pearson: r, missing };
  console.log(`  CTR ${name}: MAE ${mae.toFixed(4)}, Pearson r ${r.toFixed(4)} over ${pairs.length} images${missing ? ` (${missing} without a CTR)` : ''}`);
};
compare('predicted vs ground truth', (r) => r.predicted, (r) => r.truth);
compare('ground-truth masks vs ground truth', (r) => r.fromMasks, (r) => r.truth);
compare('predicted vs ground-truth masks', (r) => r.predicted, (r) => r.fromMasks);
if (values.json) writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
