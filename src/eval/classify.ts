/**
 * Classification (METHOD.md §6): a linear probe (logistic regression on frozen, standardised Eve,
 * its L2 penalty chosen on a validation split of the training images) and full fine-tuning
 * (encoder + linear head), reported as ROC AUC per class (one vs rest), mean AUC and accuracy on a
 * test split.
 *
 * Data: a folder with a CSV manifest (`--labels`, `--label-column`; a `split` column with
 * train/val(id)/test values is honoured, else a seeded 80/20 split), a folder of class folders
 * (`<class>/<image>`, or `<train|val|test>/<class>/<image>`: the split honoured the same way), or a MedMNIST-style .npz
 * (`train_images`, `train_labels`, `test_images`, `test_labels`; val is added to train).
 */
import * as tf from '@tensorflow/tfjs';
import { unzipSync } from 'fflate';
import { parse as parseNpy } from 'npyjs';
import { promises as fs } from 'node:fs';
import { EdenError } from '../core/errors.js';
import { deriveSeed, Rng } from '../core/rng.js';
import type { EvaluateConfig } from '../config/evaluate.js';
import { ImageDataset } from '../data/dataset.js';
import { memoryRefusal } from '../data/cache-plan.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import { scanDataset, type ScanResult } from '../data/scan.js';
import { classFolderLabels, likelyIdentifiers, MIN_IMAGES_PER_CLASS } from '../data/class-folders.js';
import { trainClassifier } from '../train/classifier.js';
import { rocAuc, mean } from './metrics.js';
import { quantileSorted, type PairedDifference } from './statistics.js';
import { recalibrateBatchNorm } from '../models/recalibrate.js';
import { embedCrops } from './probes.js';
import type { ModelSource } from './models.js';
import { imageBatch } from '../models/input.js';

export interface ClassificationData {
  source: string;
  classes: string[];
  /** Each image with its class index and where it came from (a path, or `<file.npz>#<split>/<index>`). */
  train: { image: Float32Array; label: number; file?: string }[];
  test: { image: Float32Array; label: number; file?: string }[];
  size: number;
}

/**
 * One finding of a column as two classes (NIH ChestX-ray14's 'Finding Labels' lists an image's
 * findings as 'Cardiomegaly|Effusion'): FINDING where the image's list names it (case aside),
 * 'not FINDING' elsewhere; written into the entries' labels under `key`, which it returns.
 */
function findingLabels(scan: ScanResult, column: string, finding: string, key: string): string {
  const wanted = finding.toLowerCase();
  const seen = new Set<string>();
  let found = 0;
  for (const e of scan.images) {
    const value = e.labels?.[column];
    if (value === undefined || value === '') continue;
    const findings = value.split('|').map((f) => f.trim());
    findings.forEach((f) => seen.add(f));
    const has = findings.some((f) => f.toLowerCase() === wanted);
    found += has ? 1 : 0;
    e.labels![key] = has ? finding : `not ${finding}`;
  }
  if (!found) throw new EdenError('data', `${scan.manifest!.file}: no image's '${column}' names '${finding}' (it holds ${[...seen].sort().slice(0, 8).join(', ')}${seen.size > 8 ? ', ...' : ''})`);
  return key;
}

function subsample<T>(items: T[], cap: number, rng: Rng): T[] {
  return cap > 0 && items.length > cap ? rng.shuffle([...items]).slice(0, cap) : items;
}

/**
 * Where a scanned folder's labels come from: its CSV's column (--label-column, else 'label'), or
 * without a CSV the class folders, written into each entry's labels as 'label' (and 'split').
 */
function chooseLabels(scan: ScanResult, source: string, labelColumn: string | undefined): { column: string; labelSource: string; classes?: string[] } {
  if (scan.manifest) {
    const columns = scan.manifest.labelColumns;
    const finding = labelColumn && !columns.includes(labelColumn) ? /^(.+?)=(.+)$/.exec(labelColumn) : null;
    // The finding second: a binary task reports its positive class, the second.
    if (finding && columns.includes(finding[1]!.trim())) {
      const name = finding[2]!.trim();
      return { column: findingLabels(scan, finding[1]!.trim(), name, labelColumn!), labelSource: scan.manifest.file, classes: [`not ${name}`, name] };
    }
    const column = labelColumn ?? (columns.includes('label') ? 'label' : undefined);
    if (!column || !columns.includes(column)) throw new EdenError('data', `${scan.manifest.file}: choose the label column with --label-column (columns: ${columns.join(', ')}; COLUMN=FINDING makes one finding of a multi-label column a class, e.g. 'Finding Labels=Effusion')`);
    return { column, labelSource: scan.manifest.file };
  }
  const folders = classFolderLabels(scan.images);
  if (!folders) throw new EdenError('data', `${source}: no labels; give --labels FILE.csv, put labels.csv in the folder, or put each class's images in a folder of its own (${source}/<class>/..., or under train/ and test/)`);
  if (labelColumn && labelColumn !== 'label') throw new EdenError('config', `${source}: --label-column ${labelColumn} names a CSV column, but the labels here are the class folders`);
  for (const [e, l] of folders) e.labels = { label: l.label, ...(l.split ? { split: l.split } : {}) };
  return { column: 'label', labelSource: `${source} (class folders)` };
}

/** Load labelled images for classification at `size`, [0, 1] per-image windowed. */
export async function loadClassificationData(source: string, size: number, o: { labels?: string; labelColumn?: string; seed: number; maxTrain: number; maxTest: number; memoryBytes?: number; onSkip?: (message: string) => void; onWarning?: (message: string) => void }): Promise<ClassificationData> {
  const rng = new Rng(deriveSeed(o.seed, 71));
  let train: ClassificationData['train'] = [];
  let test: ClassificationData['test'] = [];
  let classes: string[];
  if (source.endsWith('.npz')) {
    const files = unzipSync(await fs.readFile(source));
    const arr = (key: string): { data: Uint8Array; shape: number[] } | undefined => {
      const f = files[`${key}.npy`];
      if (!f) return undefined;
      const a = parseNpy(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength) as ArrayBuffer);
      return { data: new Uint8Array((a.data as Uint8Array).buffer, (a.data as Uint8Array).byteOffset, (a.data as Uint8Array).byteLength), shape: a.shape };
    };
    const split = (name: string): ClassificationData['train'] => {
      const im = arr(`${name}_images`);
      const lb = arr(`${name}_labels`);
      if (!im || !lb) return [];
      if (im.shape.length !== 3) throw new EdenError('data', `${source}: ${name}_images must be [N, H, W] grey images, got [${im.shape}]`);
      const [n, h, w] = im.shape as [number, number, number];
      return Array.from({ length: n }, (_, i) => {
        const grey = { width: w, height: h, data: Float32Array.from(im.data.subarray(i * h * w, (i + 1) * h * w)), bitDepth: 8, encoding: 'npz' };
        return { image: resizeGrey(normalizeIntensity(grey), w, h, size, size), label: lb.data[i]!, file: `${source}#${name}/${i}` };
      });
    };
    train = [...split('train'), ...split('val')];
    test = split('test');
    if (!train.length || !test.length) throw new EdenError('data', `${source}: expected train_images/train_labels and test_images/test_labels arrays`);
    classes = [...new Set([...train, ...test].map((x) => x.label))].sort((a, b) => a - b).map(String);
    const index = new Map(classes.map((c, i) => [Number(c), i]));
    train = train.map((x) => ({ ...x, label: index.get(x.label)! }));
    test = test.map((x) => ({ ...x, label: index.get(x.label)! }));
  } else {
    const scan = await scanDataset([source], { labels: o.labels, imagesOnly: true });
    for (const s of scan.skipped) o.onSkip?.(s.message);
    const { column, labelSource, classes: ordered } = chooseLabels(scan, source, o.labelColumn);
    const labelled = scan.images.filter((e) => e.labels?.[column] !== undefined && e.labels[column] !== '');
    if (!labelled.length && scan.manifest) {
      const example = scan.manifest.rows.keys().next().value;
      throw new EdenError('data', `${scan.manifest.file}: none of the ${scan.images.length} images of ${source} is in it (its key column '${scan.manifest.keyColumn}' holds e.g. '${example}'; an image is found by its path under ${source}, or a path ending as it does, or by its file name or stem)`);
    }
    const ambiguous = scan.ambiguousLabels?.length ? ` (${scan.ambiguousLabels.length} named only ambiguously: several rows alike, or one row by several images' names, e.g. ${scan.ambiguousLabels[0]})` : '';
    if (labelled.length < scan.images.length) o.onSkip?.(`${scan.images.length - labelled.length} image(s) without a '${column}' label in ${labelSource}: left out${ambiguous}`);
    classes = ordered ?? [...new Set(labelled.map((e) => e.labels![column]!))].sort();
    const multi = classes.filter((c) => c.includes('|'));
    if (multi.length) o.onWarning?.(`${labelSource}: column '${column}' holds multi-label values (${multi.length} of its ${classes.length} classes, e.g. '${multi[0]}'): each combination is read as a class of its own, and Eden's classifier is single-label; for one finding against the rest, pass --label-column '${column}=${multi[0]!.split('|')[0]}'`);
    if (classes.length < 2) throw new EdenError('data', `${labelSource}: column '${column}' has ${classes.length} class(es); need at least 2`);
    if (likelyIdentifiers(classes.length, labelled.length)) {
      // Classes of one or two images: identifiers (a patient ID column, per-patient or
      // per-study folders), not labels; a classifier cannot learn, nor a test score, a class seen once.
      const what = scan.manifest ? `is '${column}' a label, or an identifier?` : 'folders of one or two images are more likely patients or studies than classes';
      throw new EdenError('data', `${labelSource}: ${classes.length} classes for ${labelled.length} images (${what}); a classifier needs several images of every class, to train, validate and test on; here fewer than ${MIN_IMAGES_PER_CLASS} on average`);
    }
    // Split and capped before decoding: of a folder of 200,000 only the images kept are read (as
    // the decoded images would be split and capped, when every image decodes).
    let [trainEntries, testEntries] = [labelled.filter((e) => e.labels!['split'] !== 'test'), labelled.filter((e) => e.labels!['split'] === 'test')];
    if (!testEntries.length) {
      const order = rng.shuffle([...labelled]);
      const n = Math.max(1, Math.round(order.length * 0.2));
      [testEntries, trainEntries] = [order.slice(0, n), order.slice(n)];
    }
    [trainEntries, testEntries] = [subsample(trainEntries, o.maxTrain, rng), subsample(testEntries, o.maxTest, rng)];
    const kept = [...trainEntries, ...testEntries];
    // Held in memory as float32 for training: refused before decoding when they would not fit.
    const bytes = kept.length * size * size * 4;
    if (o.memoryBytes !== undefined && bytes > o.memoryBytes) throw memoryRefusal(`${source}: ${kept.length} images at ${size} px`, bytes, 'as float32', o.memoryBytes, 'train at a smaller --size, or on part of the images (a label CSV listing fewer)');
    const ds = new ImageDataset(kept, { size, onSkip: (s) => o.onSkip?.(s.message) });
    const items: ClassificationData['train'] = [];
    for await (const s of ds.iterate()) items.push({ image: s.image, label: classes.indexOf(s.entry.labels![column]!), file: s.entry.path });
    const inTest = new Set(testEntries.map((e) => e.path));
    return { source, classes, train: items.filter((x) => !inTest.has(x.file!)), test: items.filter((x) => inTest.has(x.file!)), size };
  }
  return { source, classes, train: subsample(train, o.maxTrain, rng), test: subsample(test, o.maxTest, rng), size };
}

/** Frozen Eve of [0, 1] images: the same embedding as the locality and compositionality probes. */
const features = embedCrops;

/** Labels -> one-hot [N, C], without leaving the index tensor behind. */
function oneHot(labels: number[], classes: number): tf.Tensor2D {
  return tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), classes) as tf.Tensor2D);
}

/** A trainable variable taking over `init` (which is disposed). */
function variableOf(init: tf.Tensor): tf.Variable {
  const v = tf.variable(init);
  init.dispose();
  return v;
}

export interface ClassificationScores {
  aucPerClass: Record<string, number>;
  meanAuc: number;
  accuracy: number;
  /** Test-set probabilities [test images x classes], row-major: kept for paired comparisons. */
  probabilities?: number[];
  /** Linear probes: the L2 penalty chosen on the validation split (validatedProbe). */
  l2?: number;
}

export function scores(prob: ArrayLike<number>, labels: number[], classes: string[]): ClassificationScores {
  const c = classes.length;
  const aucPerClass: Record<string, number> = {};
  // Binary tasks report the positive class only (both one-vs-rest AUCs are equal).
  const report = c === 2 ? [1] : classes.map((_, k) => k);
  for (const k of report) aucPerClass[classes[k]!] = rocAuc(labels.map((_, i) => prob[i * c + k]!), labels.map((l) => (l === k ? 1 : 0)));
  let correct = 0;
  labels.forEach((l, i) => {
    let best = 0;
    for (let k = 1; k < c; k++) if (prob[i * c + k]! > prob[i * c + best]!) best = k;
    if (best === l) correct++;
  });
  return { aucPerClass, meanAuc: mean(Object.values(aucPerClass).filter(Number.isFinite)), accuracy: correct / labels.length, probabilities: Array.from(prob) };
}

/**
 * Mean AUC of A minus that of B, paired: a two-way bootstrap over seeds and test images (the same
 * resampled images for both models), as eval/statistics.ts does for per-image scores.
 */
export function pairedAucDifference(a: number[][], b: number[][], labels: number[], classes: string[], o: { replicates?: number; seed?: number } = {}): PairedDifference {
  const seeds = a.length;
  const c = classes.length;
  const n = labels.length;
  const auc = (probs: number[], pick: Int32Array): number => {
    const picked = Array.from(pick, (i) => probs.slice(i * c, i * c + c));
    return scores(picked.flat(), Array.from(pick, (i) => labels[i]!), classes).meanAuc;
  };
  const all = Int32Array.from({ length: n }, (_, i) => i);
  const diff = (pickSeeds: number[], pick: Int32Array): number => mean(pickSeeds.map((s) => auc(a[s]!, pick) - auc(b[s]!, pick)));
  const observed = diff([...Array(seeds).keys()], all);
  const rng = new Rng(o.seed ?? 0x5eed);
  const replicates = o.replicates ?? 2000;
  const values: number[] = [];
  for (let r = 0; r < replicates; r++) {
    const pickSeeds = Array.from({ length: seeds }, () => (seeds === 1 ? 0 : rng.int(seeds)));
    const pick = Int32Array.from({ length: n }, () => rng.int(n));
    const v = diff(pickSeeds, pick);
    if (Number.isFinite(v)) values.push(v);
  }
  values.sort((x, y) => x - y);
  const lo = quantileSorted(values, 0.025);
  const hi = quantileSorted(values, 0.975);
  return { mean: observed, lo, hi, significant: lo > 0 || hi < 0, seeds, images: n };
}

/**
 * Multinomial logistic regression on standardised features (full batch, Adam 0.01, L2 penalty
 * `l2` on the weights, each feature centred and scaled by the training set's statistics): the test
 * set's class probabilities, [test x classes] row-major. Deterministic (zero init, full batch).
 */
export async function logisticRegression(train: Float32Array[], labels: number[], test: Float32Array[], classes: number, epochs: number, l2: number): Promise<Float32Array> {
  const d = train[0]!.length;
  const mu = new Float32Array(d);
  const sd = new Float32Array(d);
  for (const f of train) for (let k = 0; k < d; k++) mu[k]! += f[k]! / train.length;
  for (const f of train) for (let k = 0; k < d; k++) sd[k]! += (f[k]! - mu[k]!) ** 2 / train.length;
  for (let k = 0; k < d; k++) sd[k] = Math.sqrt(sd[k]!) + 1e-6;
  const stack = (fs: Float32Array[]): tf.Tensor2D => tf.tensor2d(Float32Array.from(fs.flatMap((f) => Array.from(f, (v, k) => (v - mu[k]!) / sd[k]!))), [fs.length, d]);
  const xtr = stack(train);
  const xte = stack(test);
  const ytr = oneHot(labels, classes);
  const w = variableOf(tf.zeros([d, classes]));
  const b = variableOf(tf.zeros([classes]));
  const opt = tf.train.adam(0.01);
  try {
    for (let e = 0; e < epochs; e++) {
      tf.dispose(opt.minimize(() => tf.add(tf.losses.softmaxCrossEntropy(ytr, tf.add(tf.matMul(xtr, w), b)), tf.mul(l2, tf.sum(tf.square(w)))) as tf.Scalar, true, [w, b]) ?? []);
    }
    const prob = tf.tidy(() => tf.softmax(tf.add(tf.matMul(xte, w), b)));
    const out = (await prob.data()) as Float32Array;
    prob.dispose();
    return out;
  } finally {
    tf.dispose([xtr, xte, ytr, w, b]);
    opt.dispose();
  }
}

/**
 * The L2 penalties a probe chooses from, per model, on a validation split of the training images
 * (CLIP's linear probes, Radford et al. 2021, sweep theirs the same way). One fixed penalty favours
 * whichever feature set it happens to suit: 512 features of Eve, 512 of a random network and 256
 * pixels need not want the same (docs/results/README.md has how much it mattered).
 */
export const PROBE_L2_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1];

/** The seed of the probes' validation split: one split for every model and the floor of an evaluation. */
export function probeSplitSeed(evaluationSeed: number): number {
  return deriveSeed(evaluationSeed, 79);
}

/** Share of each class's training images held out to choose the penalty. */
const PROBE_VALIDATION_SHARE = 0.2;

export interface ProbeFit {
  /** Test-set probabilities [test x classes], from the chosen penalty refitted on every training image. */
  probabilities: Float32Array;
  /** The chosen penalty. */
  l2: number;
  /** Mean validation AUC of each penalty of the grid, in its order. */
  validationAuc: number[];
}

/**
 * A linear probe with its L2 penalty chosen on data it is not tested on: each penalty of
 * PROBE_L2_GRID is fitted on 80% of the training images (per class, seeded) and scored by mean AUC
 * on the other 20%; the best (the stronger penalty on a tie) is refitted on all of them.
 */
export async function validatedProbe(train: Float32Array[], labels: number[], test: Float32Array[], classNames: string[], epochs: number, seed: number): Promise<ProbeFit> {
  const classes = classNames.length;
  const held = new Set<number>();
  const rng = new Rng(deriveSeed(seed, 73));
  for (let k = 0; k < classes; k++) {
    const members = rng.shuffle(labels.flatMap((l, i) => (l === k ? [i] : [])));
    // At least one image of each class stays on each side where the class has two.
    const n = members.length < 2 ? 0 : Math.min(members.length - 1, Math.max(1, Math.round(members.length * PROBE_VALIDATION_SHARE)));
    for (const i of members.slice(0, n)) held.add(i);
  }
  const fitIdx = labels.flatMap((_, i) => (held.has(i) ? [] : [i]));
  const valIdx = [...held].sort((a, b) => a - b);
  const validationAuc: number[] = [];
  for (const l2 of PROBE_L2_GRID) {
    const prob = await logisticRegression(fitIdx.map((i) => train[i]!), fitIdx.map((i) => labels[i]!), valIdx.map((i) => train[i]!), classes, epochs, l2);
    const auc = scores(prob, valIdx.map((i) => labels[i]!), classNames).meanAuc;
    validationAuc.push(Number.isFinite(auc) ? auc : -Infinity);
  }
  // The best validation AUC; on a tie the stronger penalty (the later one in the grid).
  let best = 0;
  validationAuc.forEach((auc, j) => {
    if (auc >= validationAuc[best]!) best = j;
  });
  const l2 = PROBE_L2_GRID[best]!;
  return { probabilities: await logisticRegression(train, labels, test, classes, epochs, l2), l2, validationAuc };
}

/** The validated probe on features of the training and test images: its test scores, with the chosen penalty. */
async function probeScores(f: { train: Float32Array[]; test: Float32Array[] }, data: ClassificationData, cfg: EvaluateConfig['classification'], seed: number): Promise<ClassificationScores> {
  const fit = await validatedProbe(f.train, data.train.map((x) => x.label), f.test, data.classes, cfg.probeEpochs, seed);
  return { ...scores(fit.probabilities, data.test.map((x) => x.label), data.classes), l2: fit.l2 };
}

/** Frozen Eve of the training and test images, batch-norm statistics re-estimated on the training images first. */
export async function probeFeatures(source: ModelSource, data: ClassificationData): Promise<{ train: Float32Array[]; test: Float32Array[] }> {
  const backbone = await source.create();
  try {
    // Batch-norm statistics re-estimated on the training images (see models/recalibrate.ts).
    const s = data.size;
    function* batches(): Generator<tf.Tensor4D> {
      for (let i = 0; i + 2 <= Math.min(data.train.length, 256); i += 32) {
        const batch = data.train.slice(i, Math.min(i + 32, 256));
        const x = imageBatch(batch.map((v) => v.image), s);
        try {
          yield x;
        } finally {
          x.dispose();
        }
      }
    }
    recalibrateBatchNorm(backbone, batches());
    return { train: await features(backbone, data.train.map((x) => x.image), data.size), test: await features(backbone, data.test.map((x) => x.image), data.size) };
  } finally {
    backbone.dispose();
  }
}

/** Logistic regression on frozen, standardised Eve, its penalty validated (validatedProbe above). */
export async function linearProbe(source: ModelSource, data: ClassificationData, cfg: EvaluateConfig['classification'], seed: number): Promise<ClassificationScores> {
  return probeScores(await probeFeatures(source, data), data, cfg, seed);
}

/** Side of the raw-pixel floor's grid: each image area-averaged to 16 x 16, as the locality floor's patches. */
export const PIXEL_FLOOR_SIDE = 16;

/** Each image's own pixels, area-averaged to side x side: the floor's features. */
export function pixelFeatures(data: ClassificationData, side = PIXEL_FLOOR_SIDE): { train: Float32Array[]; test: Float32Array[] } {
  const pixels = (items: ClassificationData['train']): Float32Array[] => items.map((x) => resizeGrey(x.image, data.size, data.size, side, side));
  return { train: pixels(data.train), test: pixels(data.test) };
}

/**
 * The no-network floor of classification: the linear probe's logistic regression on each image's
 * own pixels, area-averaged to PIXEL_FLOOR_SIDE x PIXEL_FLOOR_SIDE (256 features; ResNet-18's Eve has
 * 512). Whatever a frozen encoder adds must beat this.
 */
export async function rawPixelProbe(data: ClassificationData, cfg: EvaluateConfig['classification'], seed: number, side = PIXEL_FLOOR_SIDE): Promise<ClassificationScores> {
  return probeScores(pixelFeatures(data, side), data, cfg, seed);
}

/** Fine-tune encoder + linear head with cross-entropy and seeded augmentation (train/classifier.ts), a fixed number of steps. */
export async function fineTuneClassifier(source: ModelSource, data: ClassificationData, cfg: EvaluateConfig['classification'], seed: number): Promise<ClassificationScores> {
  const backbone = await source.create();
  try {
    const trained = await trainClassifier(backbone, data.train, [], { classes: data.classes.length, size: data.size, steps: cfg.fineTuneSteps, batchSize: cfg.batchSize, lr: cfg.lr, seed });
    const probs = await trained.predict(data.test.map((x) => x.image));
    trained.dispose();
    return scores(probs, data.test.map((x) => x.label), data.classes);
  } finally {
    backbone.dispose();
  }
}
