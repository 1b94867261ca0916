/**
 * The pieces that make an evaluation discriminating, checked by hand: paired bootstrap intervals,
 * derived targets (apex, costophrenic, border), surface distances, the atlas, and batch-norm
 * re-estimation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { formatDifference, pairedBootstrap, quantileSorted } from '../src/eval/statistics.js';
import { deriveMask, parseDerived, parseLabelValue } from '../src/data/derived-structures.js';
import { parseCombine } from '../src/cli/evaluate.js';
import { boundary, components, distanceTransformSquared, horizontalExtent, largestComponents, largestComponentsExtent } from '../src/data/masks.js';
import { dice, kde, surfaceDistance } from '../src/eval/metrics.js';
import { splitWhole } from '../src/eval/probes.js';
import { segmentationLoss } from '../src/train/segmenter.js';
import { loadSegmentationData } from '../src/data/segmentation-data.js';
import { loadClassificationData } from '../src/eval/classify.js';
import { formatInspectReport, inspectDataset } from '../src/data/inspect.js';
import sharp from 'sharp';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { atlasPrediction, drawSplit, type SegmentationData } from '../src/eval/fewshot.js';
import { recalibrateBatchNorm } from '../src/models/recalibrate.js';
import { createBackbone } from '../src/models/resnet.js';
import { useBackend } from '../src/engine/backend.js';
import { Rng } from '../src/core/rng.js';

const side = 32;
/** A binary mask with the rectangle [x0, x1] x [y0, y1] (inclusive) set. */
function rect(x0: number, y0: number, x1: number, y1: number, into: Float32Array = new Float32Array(side * side)): Float32Array {
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) into[y * side + x] = 1;
  return into;
}
const count = (m: ArrayLike<number>): number => Array.from(m).filter((v) => v > 0.5).length;

describe('paired bootstrap', () => {
  it('quantiles interpolate linearly', () => {
    assert.equal(quantileSorted([0, 10, 20, 30, 40], 0.5), 20);
    assert.equal(quantileSorted([0, 10], 0.25), 2.5);
    assert.equal(quantileSorted([0, 10, 20], 1), 20);
  });

  it('finds a constant improvement significant and gives its exact mean', () => {
    const rng = new Rng(1);
    const b = Array.from({ length: 5 }, () => Array.from({ length: 40 }, () => 0.6 + 0.2 * rng.next()));
    const a = b.map((row) => row.map((v, i) => v + 0.03 + (i % 2 ? 0.01 : -0.01)));
    const d = pairedBootstrap(a, b, { replicates: 500, seed: 3 });
    assert.ok(Math.abs(d.mean - 0.03) < 1e-12, `${d.mean}`);
    assert.ok(d.lo > 0 && d.lo < 0.03 && d.hi > 0.03, `${d.lo} ${d.hi}`);
    assert.equal(d.significant, true);
    assert.match(formatDifference(d), /^\+3\.0 \[\+\d\.\d, \+\d\.\d\]\*$/);
  });

  it('does not call identical models different, and its interval matches the normal theory for one seed', () => {
    const rng = new Rng(2);
    const n = 400;
    const diffs = Array.from({ length: n }, () => rng.uniform(-1, 1)); // mean ~0, sd 1/sqrt(3)
    const a = [diffs];
    const b = [diffs.map(() => 0)];
    const d = pairedBootstrap(a, b, { replicates: 4000, seed: 5 });
    const m = diffs.reduce((x, y) => x + y, 0) / n;
    const sd = Math.sqrt(diffs.reduce((x, y) => x + (y - m) ** 2, 0) / (n - 1));
    const half = 1.96 * (sd / Math.sqrt(n));
    assert.ok(Math.abs(d.hi - d.lo - 2 * half) / (2 * half) < 0.1, `width ${d.hi - d.lo} vs ${2 * half}`);
    assert.ok(d.lo < m && m < d.hi);
    const same = pairedBootstrap([diffs], [diffs], { replicates: 200 });
    assert.deepEqual([same.mean, same.lo, same.hi, same.significant], [0, 0, 0, false]);
  });

  it('widens with seed-to-seed disagreement that per-image resampling alone would miss', () => {
    // Two seeds: A wins by 10 points in one, loses by 8 in the other, identically on every image.
    const b = [Array(30).fill(0.5), Array(30).fill(0.5)];
    const a = [Array(30).fill(0.6), Array(30).fill(0.42)];
    const d = pairedBootstrap(a, b, { replicates: 1000, seed: 7 });
    assert.ok(d.lo <= -0.079 && d.hi >= 0.099, `${d.lo} ${d.hi}`);
    assert.equal(d.significant, false);
    assert.throws(() => pairedBootstrap(a, [b[0]!]), /same seeds/);
  });
});

describe('derived targets', () => {
  it('parses BASE:KIND[PERCENT] and refuses unknown kinds with the list', () => {
    assert.deepEqual(parseDerived('lungs:apex'), { name: 'lungs:apex', base: 'lungs', kind: 'apex', percent: 15 });
    assert.deepEqual(parseDerived('heart:border3'), { name: 'heart:border3', base: 'heart', kind: 'border', percent: 3 });
    assert.equal(parseDerived('heart'), undefined);
    assert.throws(() => parseDerived('heart:middle'), /BASE:apex, BASE:costophrenic or BASE:border.*BASE:VALUE is one value of a label map/);
    // One value of a label map is no derived target, but can be the base of one.
    assert.equal(parseDerived('labels:2'), undefined);
    assert.deepEqual(parseLabelValue('labels:2'), { base: 'labels', value: 2 });
    assert.equal(parseLabelValue('lungs:apex'), undefined);
    assert.deepEqual(parseDerived('labels:2:apex20'), { name: 'labels:2:apex20', base: 'labels:2', kind: 'apex', percent: 20 });
  });

  it('--combine unites structures and names label values', () => {
    assert.deepEqual(parseCombine('lungs=left_lung+right_lung', {}), { lungs: ['left_lung', 'right_lung'] });
    assert.deepEqual(parseCombine('heart=labels:3', { lungs: ['labels:1', 'labels:2'] }), { lungs: ['labels:1', 'labels:2'], heart: ['labels:3'] });
    assert.throws(() => parseCombine('heart=labels:apex', {}), /--combine expects name=a\+b\(\+c...\) or name=labels:VALUE, got 'heart=labels:apex'/);
    assert.throws(() => parseCombine('lungs', {}), /--combine expects/);
  });

  it('labels connected components (8-connectivity)', () => {
    const m = rect(1, 1, 3, 3);
    rect(4, 4, 5, 5, m); // touches diagonally: same component
    rect(20, 20, 22, 22, m);
    assert.deepEqual(components(m, side).map((c) => c.length), [9 + 4, 9]);
  });

  it('labels components like a plain flood fill on random masks, never across the row ends, and keeps the largest', () => {
    // The reference: a flood fill with a neighbour test on (x, y), written out.
    const reference = (mask: Uint8Array, w: number, h: number): number[][] => {
      const seen = new Uint8Array(mask.length);
      const out: number[][] = [];
      for (let s = 0; s < mask.length; s++) {
        if (!mask[s] || seen[s]) continue;
        const comp: number[] = [];
        const todo = [s];
        seen[s] = 1;
        while (todo.length) {
          const i = todo.pop()!;
          comp.push(i);
          const [x, y] = [i % w, Math.floor(i / w)];
          for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
            const [nx, ny] = [x + dx, y + dy];
            if (nx >= 0 && ny >= 0 && nx < w && ny < h && mask[ny * w + nx] && !seen[ny * w + nx]) {
              seen[ny * w + nx] = 1;
              todo.push(ny * w + nx);
            }
          }
        }
        out.push(comp.sort((a, b) => a - b));
      }
      return out;
    };
    let seed = 5;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const [w, h, density] of [[37, 23, 0.45], [23, 37, 0.55], [64, 64, 0.4], [1, 9, 0.7], [9, 1, 0.7]] as const) {
      const mask = Uint8Array.from({ length: w * h }, () => (next() < density ? 1 : 0));
      const want = reference(mask, w, h);
      assert.deepEqual(components(mask, w, h), want, `${w} x ${h}`);
      // The two largest (ties in scan order, as a stable sort of the reference leaves them).
      const two = new Uint8Array(w * h);
      for (const c of [...want].sort((a, b) => b.length - a.length).slice(0, 2)) for (const i of c) two[i] = 1;
      assert.deepEqual(largestComponents(mask, w, h, 2), two, `${w} x ${h}`);
      // The runs' union-find gives the extent of the n largest without labelling pixels, also of a
      // union of masks (left and right lung) given apart.
      for (const n of [1, 2, 3]) assert.deepEqual(largestComponentsExtent([mask], w, h, n), horizontalExtent(largestComponents(mask, w, h, n), w), `${w} x ${h}, ${n} largest`);
      const [even, odd] = [mask.map((v, i) => (i % 2 ? 0 : v)), mask.map((v, i) => (i % 2 ? v : 0))];
      assert.deepEqual(largestComponentsExtent([even, odd], w, h, 2), largestComponentsExtent([mask], w, h, 2), `${w} x ${h}, a union`);
    }
    assert.equal(largestComponentsExtent([new Uint8Array(12)], 4, 3, 2), null);
    // Equal sizes: the component met first in scan order is the larger, in both.
    const tie = new Uint8Array(10 * 4);
    tie.set([1, 1], 7); // row 0, columns 7-8
    tie.set([1, 1], 20); // row 2, columns 0-1
    assert.deepEqual(largestComponentsExtent([tie], 10, 4, 1), { left: 7, right: 8, width: 2 });
    assert.deepEqual(horizontalExtent(largestComponents(tie, 10, 4, 1), 10), { left: 7, right: 8, width: 2 });
    // A pixel at the end of a row does not touch the start of the next one.
    const edge = new Uint8Array(4 * 3);
    edge[3] = 1; // (3, 0)
    edge[4] = 1; // (0, 1)
    assert.equal(components(edge, 4, 3).length, 2);
  });

  it('apex: the top 15% rows of each lung, both lungs of a combined mask', () => {
    // Two 'lungs' 20 rows high: the top 3 rows (15% of 20) of each.
    const m = rect(2, 5, 11, 24);
    rect(18, 6, 27, 25, m);
    const apex = deriveMask(m, side, { kind: 'apex', percent: 15 });
    assert.equal(count(apex), 2 * 3 * 10);
    assert.equal(apex[5 * side + 2], 1);
    assert.equal(apex[8 * side + 2], 0); // row 8 is the 4th row of the left lung
    assert.equal(apex[8 * side + 18], 1); // row 8 is the 3rd row of the right lung
  });

  it('costophrenic: the bottom rows of the lateral half, away from the midline on each side', () => {
    const m = rect(2, 5, 11, 24); // image left: lateral = left half, x 2..6.5
    rect(18, 5, 27, 24, m); // image right: lateral = right half, x 22.5..27
    const cp = deriveMask(m, side, { kind: 'costophrenic', percent: 15 });
    assert.equal(count(cp), 2 * 3 * 5);
    assert.equal(cp[24 * side + 2], 1);
    assert.equal(cp[24 * side + 11], 0);
    assert.equal(cp[24 * side + 27], 1);
    assert.equal(cp[24 * side + 18], 0);
  });

  it('border: a band of the given half-width on both sides of the boundary', () => {
    const m = rect(8, 8, 23, 23);
    const band = deriveMask(m, side, { kind: 'border', percent: 100 / side }); // 1 px
    // The boundary ring (16x16 - 14x14 = 60), the ring 1 px outside (18x18 - 16x16 = 68) less its
    // 4 corners (sqrt(2) from the nearest boundary pixel), and the ring 1 px inside (14x14 - 12x12 = 52).
    assert.equal(count(band), 60 + (68 - 4) + 52);
    assert.equal(band[16 * side + 16], 0);
  });

  it('distance transform agrees with brute force', () => {
    const rng = new Rng(3);
    const on = Array.from({ length: side * side }, () => rng.next() < 0.02);
    const d = distanceTransformSquared(on, side);
    for (let i = 0; i < side * side; i += 37) {
      let best = Infinity;
      for (let j = 0; j < side * side; j++) if (on[j]) best = Math.min(best, (i % side - (j % side)) ** 2 + (Math.floor(i / side) - Math.floor(j / side)) ** 2);
      assert.equal(d[i], best);
    }
    assert.equal(count(boundary(rect(0, 0, 3, 3), side)), 12);
  });
});

describe('surface distance and the atlas', () => {
  it('HD95 and mean surface distance by hand', () => {
    const a = rect(5, 5, 14, 14);
    const b = rect(8, 5, 17, 14); // shifted 3 px right
    const r = surfaceDistance(a, b, side);
    assert.equal(r.hd95, 3);
    assert.ok(r.mean > 0 && r.mean <= 3);
    assert.deepEqual(surfaceDistance(a, a, side), { hd95: 0, mean: 0 });
    assert.ok(Number.isNaN(surfaceDistance(new Float32Array(side * side), a, side).hd95));
    assert.deepEqual(surfaceDistance(new Float32Array(side * side), new Float32Array(side * side), side), { hd95: 0, mean: 0 });
  });

  it('the atlas is the thresholded mean of the training masks', () => {
    const img = new Float32Array(side * side);
    const data: SegmentationData = {
      root: 'x',
      structures: ['s'],
      samples: [rect(0, 0, 9, 9), rect(5, 0, 14, 9), rect(20, 20, 25, 25), rect(0, 0, 1, 1)].map((m, i) => ({ file: `f${i}`, image: img, masks: [m] })),
      test: [3],
      trainPool: [0, 1, 2],
    };
    const [atlas] = atlasPrediction(data, [0, 1, 2]);
    // A pixel needs 2 of 3 masks: only the overlap of the first two (x 5..9, y 0..9).
    assert.equal(count(atlas!), 50);
    assert.equal(atlas![5], 1);
    assert.equal(atlas![4], 0);
    const split = drawSplit(data, 2, 11, 5);
    assert.equal(split.train.length, 2);
    assert.equal(split.val.length, 1);
    assert.ok(split.train.every((i) => !split.val.includes(i) && data.trainPool.includes(i)));
    assert.throws(() => drawSplit(data, 4, 1, 0), /4 shots need 4 training images; the train pool has 3/);
  });
});

describe('batch-norm re-estimation', () => {
  it('sets the running statistics to the average of the batch statistics, weights untouched', async () => {
    await useBackend('wasm');
    const net = createBackbone('resnet-tiny', { width: 4, seed: 1 });
    const before = net.store.get('conv1.weight').arraySync();
    const xs = [1, 2, 3].map((s) => tf.randomNormal([4, 32, 32, 1], 0.3, 1.5, 'float32', s) as tf.Tensor4D);
    assert.equal(recalibrateBatchNorm(net, xs), 3);
    // bn1 normalises conv1's output: its running mean must be the mean of the three batch means.
    const expected = tf.tidy(() => tf.addN(xs.map((x) => tf.mean(tf.conv2d(x, net.store.get('conv1.weight') as unknown as tf.Tensor4D, 2, [[0, 0], [3, 3], [3, 3], [0, 0]]), [0, 1, 2]))).div(3));
    const got = net.store.get('bn1.running_mean');
    const err = tf.tidy(() => tf.max(tf.abs(tf.sub(expected, got))).dataSync()[0]!);
    assert.ok(err < 1e-5, `running mean off by ${err}`);
    assert.deepEqual(net.store.get('conv1.weight').arraySync(), before);
    tf.dispose([...xs, expected]);
    net.dispose();
  });
});

describe('evaluation pieces, by hand', () => {
  it('Dice thresholds soft predictions at 0.5', () => {
    // pred -> [0, 1, 1, 0]; truth [1, 1, 1, 0]: 2 * 2 / (2 + 3).
    assert.equal(dice([0.49, 0.51, 0.9, 0.1], [1, 1, 1, 0]), 0.8);
    assert.equal(dice([0.5, 0.5], [1, 1]), 0); // 0.5 is not above the threshold
  });

  it('the U-Net loss (BCE with logits + soft Dice) equals its hand computation', async () => {
    await useBackend('cpu');
    const logits = [2, -1, 0.5, -3, 1.5, 0.25];
    const target = [1, 0, 1, 0, 0, 1];
    const sig = (x: number): number => 1 / (1 + Math.exp(-x));
    const bce = logits.reduce((s, x, i) => s + Math.max(x, 0) - x * target[i]! + Math.log(1 + Math.exp(-Math.abs(x))), 0) / logits.length;
    const p = logits.map(sig);
    const inter = p.reduce((s, v, i) => s + v * target[i]!, 0);
    const total = p.reduce((a, b) => a + b, 0) + target.reduce((a, b) => a + b, 0);
    const expected = bce + 1 - (2 * inter + 1) / (total + 1);
    const got = segmentationLoss(tf.tensor4d(logits, [1, 2, 3, 1]), tf.tensor4d(target, [1, 2, 3, 1])).dataSync()[0]!;
    assert.ok(Math.abs(got - expected) < 1e-6, `${got} vs ${expected}`);
    await useBackend('wasm');
  });

  it("KDE on data with spread equals the Gaussian sum with Silverman's bandwidth", () => {
    const values = [-1, 0, 2, 2.5];
    const m = values.reduce((a, b) => a + b, 0) / values.length;
    const sd = Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / (values.length - 1));
    const h = 1.06 * sd * values.length ** -0.2;
    for (const x of [-2, 0.3, 2.2]) {
      const expected = values.reduce((s, v) => s + Math.exp(-0.5 * ((x - v) / h) ** 2), 0) / (values.length * h * Math.sqrt(2 * Math.PI));
      assert.ok(Math.abs(kde(values, [x])[0]! - expected) < 1e-12);
    }
  });

  it('the parts of a whole tile it: every pixel covered exactly once', () => {
    for (const [w, h] of [[31, 31], [32, 20], [7, 9]] as const) {
      for (const n of [2, 3, 4]) {
        const cover = new Uint8Array(w * h);
        for (const [x, y, pw, ph] of splitWhole(0, 0, w, h, n)) for (let yy = y; yy < y + ph; yy++) for (let xx = x; xx < x + pw; xx++) cover[yy * w + xx]!++;
        assert.ok(cover.every((c) => c === 1), `${w}x${h} into ${n}`);
      }
    }
  });

  it('few-shot and classification splits: disjoint, complete, seeded', async () => {
    // A small labelled folder: 10 images with one mask each, and a labels.csv.
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-split-'));
    mkdirSync(path.join(dir, 'images'));
    mkdirSync(path.join(dir, 'masks', 'blob'), { recursive: true });
    const lines = ['file,label'];
    for (let i = 0; i < 10; i++) {
      const px = Buffer.from(Array.from({ length: 32 * 32 }, (_, k) => (k * (i + 1)) % 256));
      await sharp(px, { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(path.join(dir, 'images', `im${i}.png`));
      await sharp(Buffer.from(Array.from({ length: 32 * 32 }, (_, k) => (k % 32 > 10 + i ? 255 : 0))), { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(path.join(dir, 'masks', 'blob', `im${i}.png`));
      lines.push(`images/im${i}.png,${i % 2 ? 'b' : 'a'}`);
    }
    writeFileSync(path.join(dir, 'labels.csv'), `${lines.join('\n')}\n`);
    const seg = await loadSegmentationData(dir, 32, { testFraction: 0.3, maxTestImages: 100, seed: 4 });
    assert.equal(seg.test.length, 3);
    assert.equal(seg.trainPool.length, 7);
    assert.deepEqual([...seg.test, ...seg.trainPool].sort((a, b) => a - b), [...Array(10).keys()]);
    assert.deepEqual((await loadSegmentationData(dir, 32, { testFraction: 0.3, maxTestImages: 100, seed: 4 })).test, seg.test);
    assert.notDeepEqual((await loadSegmentationData(dir, 32, { testFraction: 0.3, maxTestImages: 100, seed: 5 })).test, seg.test);
    const split = drawSplit(seg, 3, 99, 2);
    assert.ok([...split.train, ...split.val].every((i) => seg.trainPool.includes(i)));
    assert.equal(new Set([...split.train, ...split.val]).size, 5);
    const cls = await loadClassificationData(dir, 32, { seed: 4, maxTrain: 0, maxTest: 0 });
    assert.deepEqual(cls.classes, ['a', 'b']);
    assert.equal(cls.test.length, 2); // a seeded 80/20 split without a split column
    assert.equal(cls.train.length, 8);
    // With a split column, it is honoured.
    writeFileSync(path.join(dir, 'labels.csv'), `file,label,split\n${lines.slice(1).map((l, i) => `${l},${i < 6 ? 'train' : 'test'}`).join('\n')}\n`);
    const byColumn = await loadClassificationData(dir, 32, { seed: 4, maxTrain: 0, maxTest: 0 });
    assert.deepEqual([byColumn.train.length, byColumn.test.length], [6, 4]);
  });

  it("one finding of a multi-label column (NIH's 'Finding Labels': 'Cardiomegaly|Effusion') against the rest: --label-column 'Finding Labels=Effusion'", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-findings-'));
    const findings = ['No Finding', 'Effusion', 'Cardiomegaly|Effusion', 'Cardiomegaly', 'Atelectasis|effusion', 'No Finding', 'Infiltration', 'Effusion|Mass', 'Mass', 'No Finding', 'Nodule', 'Effusion'];
    for (const [i] of findings.entries()) await sharp(Buffer.from(Array.from({ length: 32 * 32 }, (_, k) => (k * (i + 1)) % 256)), { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(path.join(dir, `0000${i}_000.png`));
    writeFileSync(path.join(dir, 'Data_Entry_2017.csv'), ['Image Index,Finding Labels,Patient ID', ...findings.map((f, i) => `0000${i}_000.png,${f},${i}`)].join('\n'));
    const load = (labelColumn: string, onWarning?: (m: string) => void): ReturnType<typeof loadClassificationData> => loadClassificationData(dir, 32, { labels: path.join(dir, 'Data_Entry_2017.csv'), labelColumn, seed: 1, maxTrain: 0, maxTest: 0, onWarning });
    const warnings: string[] = [];
    // As it is, each combination a class: warned, naming the form that picks one finding (here too few images a class besides).
    await assert.rejects(load('Finding Labels', (m) => warnings.push(m)), /9 classes for 12 images/);
    assert.ok(warnings.some((m) => m.includes("for one finding against the rest, pass --label-column 'Finding Labels=Atelectasis'")), warnings.join('\n'));
    const effusion = await load('Finding Labels=Effusion');
    assert.deepEqual(effusion.classes, ['not Effusion', 'Effusion']); // the finding second: a binary task's positive class
    const byFile = new Map([...effusion.train, ...effusion.test].map((x) => [path.basename(x.file!), effusion.classes[x.label]]));
    assert.deepEqual(findings.map((_, i) => byFile.get(`0000${i}_000.png`)), findings.map((f) => (/(^|\|)effusion(\||$)/i.test(f) ? 'Effusion' : 'not Effusion')));
    await assert.rejects(load('Finding Labels=Pneumothorax'), { message: `${path.join(dir, 'Data_Entry_2017.csv')}: no image's 'Finding Labels' names 'Pneumothorax' (it holds Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, No Finding, Nodule, effusion)` });
  });

  it('classification labels from class folders (<class>/ or <train|val|test>/<class>/, as ImageFolder reads them) when there is no CSV', async () => {
    const png = (file: string, i: number): Promise<unknown> => {
      mkdirSync(path.dirname(file), { recursive: true });
      return sharp(Buffer.from(Array.from({ length: 32 * 32 }, (_, k) => (k * (i + 1)) % 256)), { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(file);
    };
    const flat = mkdtempSync(path.join(tmpdir(), 'eden-classes-'));
    for (let i = 0; i < 10; i++) await png(path.join(flat, i < 4 ? 'Normal' : 'Pneumonia', i % 2 ? `sub/x${i}.png` : `x${i}.png`), i);
    writeFileSync(path.join(flat, 'Normal', 'broken.png'), 'not a png');
    const skippedMessages: string[] = [];
    const cls = await loadClassificationData(flat, 32, { seed: 4, maxTrain: 0, maxTest: 0, onSkip: (m) => skippedMessages.push(m) });
    assert.deepEqual(cls.classes, ['Normal', 'Pneumonia']);
    assert.deepEqual([cls.train.length, cls.test.length], [8, 2]);
    assert.deepEqual([...cls.train, ...cls.test].map((x) => x.label).sort(), [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert.equal(skippedMessages.length, 1);
    assert.match(skippedMessages[0]!, /Normal\/broken\.png: corrupt/);
    await assert.rejects(loadClassificationData(flat, 32, { labelColumn: 'finding', seed: 4, maxTrain: 0, maxTest: 0 }), /--label-column finding names a CSV column, but the labels here are the class folders/);
    // Capped (evaluation's maxTrain / maxTest): only the images kept are read. Of 10 readable and
    // 20 unreadable, 3 kept: every unreadable one reported took a kept place (all 20 were read before).
    const capped = mkdtempSync(path.join(tmpdir(), 'eden-capped-'));
    for (let i = 0; i < 30; i++) {
      const file = path.join(capped, i % 2 ? 'Normal' : 'Pneumonia', `x${i}.png`);
      if (i < 10) await png(file, i);
      else {
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, 'not a png');
      }
    }
    for (const seed of [1, 2, 3]) {
      const reported: string[] = [];
      const c = await loadClassificationData(capped, 32, { seed, maxTrain: 2, maxTest: 1, onSkip: (m) => reported.push(m) });
      assert.equal(c.train.length + c.test.length + reported.length, 3, `seed ${seed}: ${reported.join('; ')}`);
    }
    // Images that would not fit in memory (eden finetune --task classify holds them all) are refused before any is read.
    const unread: string[] = [];
    await assert.rejects(loadClassificationData(capped, 32, { seed: 1, maxTrain: 0, maxTest: 0, memoryBytes: 100_000, onSkip: (m) => unread.push(m) }), { message: `${capped}: 30 images at 32 px take 122.9 KB in memory as float32, more than the 100.0 KB allowed (by default half of this machine's memory): train at a smaller --size, or on part of the images (a label CSV listing fewer)` });
    assert.deepEqual(unread, []);

    // Under split folders the test folder is the test split; val trains, as a CSV's split column does.
    const splits = mkdtempSync(path.join(tmpdir(), 'eden-class-splits-'));
    for (let i = 0; i < 9; i++) await png(path.join(splits, ['train', 'Val', 'test'][i % 3]!, i < 5 ? 'a' : 'b', `x${i}.png`), i);
    const bySplit = await loadClassificationData(splits, 32, { seed: 4, maxTrain: 0, maxTest: 0 });
    assert.deepEqual(bySplit.classes, ['a', 'b']);
    assert.deepEqual([bySplit.train.length, bySplit.test.length], [6, 3]);
    // eden inspect shows them.
    assert.deepEqual((await inspectDataset([flat])).classFolders, { Normal: 4, Pneumonia: 6 });
    assert.deepEqual((await inspectDataset([splits])).classFolders, { 'a (train)': 2, 'a (val)': 2, 'a (test)': 1, 'b (train)': 1, 'b (val)': 1, 'b (test)': 2 });
    assert.match(formatInspectReport(await inspectDataset([flat])), /\nclasses \(from folders\): Pneumonia \(6\), Normal \(4\)\n/);

    // An image outside any class folder, or a single class: not this layout, and the error says what would do.
    await png(path.join(flat, 'loose.png'), 0);
    await assert.rejects(loadClassificationData(flat, 32, { seed: 4, maxTrain: 0, maxTest: 0 }), /eden-classes-\w+: no labels; give --labels FILE\.csv, put labels\.csv in the folder, or put each class's images in a folder of its own/);
    const one = mkdtempSync(path.join(tmpdir(), 'eden-one-class-'));
    for (let i = 0; i < 3; i++) await png(path.join(one, 'Normal', `x${i}.png`), i);
    await assert.rejects(loadClassificationData(one, 32, { seed: 4, maxTrain: 0, maxTest: 0 }), /no labels/);
    // NIH's CSV style, several findings joined by '|': read as classes of their own, and said so.
    for (let i = 3; i < 9; i++) await png(path.join(one, 'Normal', `x${i}.png`), i);
    const findings = ['Effusion|Infiltration', 'Effusion', 'No Finding', 'No Finding', 'Effusion', 'No Finding', 'Effusion', 'No Finding', 'Effusion|Infiltration'];
    writeFileSync(path.join(one, 'labels.csv'), `path,finding,patient\n${findings.map((f, i) => `Normal/x${i}.png,${f},p${i}`).join('\n')}\n`);
    const warned: string[] = [];
    const multi = await loadClassificationData(one, 32, { labelColumn: 'finding', seed: 4, maxTrain: 0, maxTest: 0, onWarning: (m) => warned.push(m) });
    assert.deepEqual(multi.classes, ['Effusion', 'Effusion|Infiltration', 'No Finding']);
    assert.equal(warned.length, 1);
    assert.match(warned[0]!, /labels\.csv: column 'finding' holds multi-label values \(1 of its 3 classes, e\.g\. 'Effusion\|Infiltration'\): each combination is read as a class of its own, and Eden's classifier is single-label/);
    // An identifier chosen as the label, or folders per patient: classes of one image each are refused.
    await assert.rejects(loadClassificationData(one, 32, { labelColumn: 'patient', seed: 4, maxTrain: 0, maxTest: 0 }), /labels\.csv: 9 classes for 9 images \(is 'patient' a label, or an identifier\?\); a classifier needs several images of every class, to train, validate and test on; here fewer than 3 on average$/);
    const patients = mkdtempSync(path.join(tmpdir(), 'eden-patient-folders-'));
    for (let i = 0; i < 5; i++) await png(path.join(patients, `patient${i}`, `x${i}.png`), i);
    await png(path.join(patients, 'patient0', 'y.png'), 7);
    await assert.rejects(loadClassificationData(patients, 32, { seed: 4, maxTrain: 0, maxTest: 0 }), /\(class folders\): 5 classes for 6 images \(folders of one or two images are more likely patients or studies than classes\)/);
    assert.match(formatInspectReport(await inspectDataset([patients])), /\nclasses \(from folders\): 5 folders for 6 images: more likely patients or studies than classes \(give labels in a CSV\)\n/);
    // A CSV that names none of the images says what it holds and how images are found.
    writeFileSync(path.join(one, 'labels.csv'), 'path,label\nelsewhere/zzz.png,a\n');
    await assert.rejects(loadClassificationData(one, 32, { seed: 4, maxTrain: 0, maxTest: 0 }), /labels\.csv: none of the 9 images of .* is in it \(its key column 'path' holds e\.g\. 'elsewhere\/zzz\.png'; an image is found by its path under .*, or a path ending as it does, or by its file name or stem\)/);
    assert.match(formatInspectReport(await inspectDataset([one])), /0 of 9 images labelled \(an image is found by its path under the folder, or a path ending as it does, or by its file name or stem/);
  });
});
