/**
 * Evaluation: metrics against hand computations, landmarks on synthetic masks, the U-Net's shapes
 * and loss, and `eden evaluate --preset tiny` end to end on wingspan_ctr.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { dice, knnAccuracy, knnHits, rocAuc, silhouette, std, kde } from '../src/eval/metrics.js';
import { landmarks, splitWhole } from '../src/eval/probes.js';
import { segmentationLoss } from '../src/train/segmenter.js';
import { UNet } from '../src/models/unet.js';
import { createBackbone } from '../src/models/resnet.js';
import { useBackend } from '../src/engine/backend.js';
import { Rng } from '../src/core/rng.js';
import { loadSegmentationData } from '../src/data/segmentation-data.js';
import { evaluate } from '../src/eval/evaluate.js';
import { resolveSources } from '../src/eval/models.js';
import { resolveEvaluateConfig } from '../src/config/evaluate.js';

const root = path.join(import.meta.dirname, '..');
const wingspan = path.join(root, '..', 'shared', 'data', 'wingspan_ctr');

describe('metrics', () => {
  it('Dice by hand: 2 x 2 / (3 + 3), and 1 for two empty masks', () => {
    assert.equal(dice([1, 1, 1, 0, 0], [0, 1, 1, 1, 0]), (2 * 2) / 6);
    assert.equal(dice([0, 0], [0, 0]), 1);
    assert.equal(dice([0.6, 0.4], [1, 1]), 2 / 3);
  });

  it('ROC AUC by hand, with ties counted half', () => {
    // Pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.5), (0.5 = 0.5: 1/2), (0.5 > 0.3) -> 3.5 / 4
    assert.equal(rocAuc([0.3, 0.5, 0.8, 0.5], [0, 0, 1, 1]), 3.5 / 4);
    assert.equal(rocAuc([0.1, 0.9], [1, 0]), 0);
  });

  it('kNN accuracy and silhouette separate clean clusters from mixed ones', () => {
    const a = [[1, 0.1], [1, -0.1], [0.9, 0]].map((p) => Float32Array.from(p));
    const b = [[0.1, 1], [-0.1, 1], [0, 0.9]].map((p) => Float32Array.from(p));
    const labels = [0, 0, 0, 1, 1, 1];
    assert.equal(knnAccuracy([...a, ...b], labels, 2), 1);
    // k = 1 by hand: a2 is the nearest neighbour of a0 and of a1; a0 and a1 tie for a2's, a0 first.
    assert.deepEqual(knnHits([...a, ...b], [0, 0, 1, 1, 1, 1], 1), [0, 0, 0, 1, 1, 1]);
    assert.deepEqual(knnHits([...a, ...b], [0, 1, 0, 1, 1, 1], 1), [1, 0, 1, 1, 1, 1]);
    assert.equal(knnAccuracy([...a, ...b], [0, 0, 1, 1, 1, 1], 1), 0.5);
    assert.ok(silhouette([...a, ...b], labels) > 0.9);
    assert.ok(silhouette([...a, ...b], [0, 1, 0, 1, 0, 1]) < 0);
    assert.ok(Math.abs(std([2, 4, 4, 4, 5, 5, 7, 9]) - 2.138) < 1e-3);
    const density = kde([0, 0, 0], [-1, 0, 1]);
    assert.ok(density[1]! > density[0]! && Math.abs(density[0]! - density[2]!) < 1e-12);
  });
});

describe('landmarks and parts', () => {
  it('finds the ten landmarks on synthetic lung and heart masks', () => {
    const side = 40;
    const rect = (x0: number, y0: number, x1: number, y1: number): Float32Array => Float32Array.from({ length: side * side }, (_, i) => (i % side >= x0 && i % side <= x1 && Math.floor(i / side) >= y0 && Math.floor(i / side) <= y1 ? 1 : 0));
    const p = landmarks(rect(4, 5, 15, 30), rect(24, 6, 35, 30), rect(14, 20, 28, 34), side)!;
    assert.deepEqual(p[0], [9.5, 5]); // right lung apex: top row, mean x
    assert.deepEqual(p[1], [29.5, 6]);
    assert.deepEqual(p[2], [4, 30]); // right costophrenic angle: lowest, outermost (image left)
    assert.deepEqual(p[3], [35, 30]);
    assert.deepEqual(p[4], [9.5, 17.5]); // centroids
    assert.deepEqual(p[6], [15, 18]); // right hilum: medial edge (image right) on the centroid row (rounded)
    assert.deepEqual(p[7], [24, 18]);
    assert.deepEqual(p[9], [28, 34]); // heart apex: lowest, image right
    assert.equal(landmarks(new Float32Array(side * side), rect(0, 0, 1, 1), rect(0, 0, 1, 1), side), null);
  });

  it('splits a whole into 2, 3 and 4 parts that tile it', () => {
    for (const n of [2, 3, 4]) {
      const parts = splitWhole(10, 20, 31, 31, n);
      assert.equal(parts.length, n);
      assert.equal(parts.reduce((a, [, , w, h]) => a + w * h, 0), 31 * 31);
    }
  });
});

describe('U-Net', () => {
  it('gives one logit per structure at the input size, and a loss that is 0-ish when right', async () => {
    await useBackend('wasm');
    const unet = new UNet(createBackbone('resnet-tiny', { width: 8 }), { classes: 2, decoderChannels: [16, 16, 8, 8, 8] });
    const y = unet.forward(tf.zeros([2, 64, 96, 1]) as tf.Tensor4D, { training: true });
    assert.deepEqual(y.shape, [2, 64, 96, 2]);
    const target = tf.tensor4d([1, 0, 0, 1], [1, 2, 2, 1]);
    const good = segmentationLoss(tf.tensor4d([20, -20, -20, 20], [1, 2, 2, 1]), target).dataSync()[0]!;
    const bad = segmentationLoss(tf.tensor4d([-20, 20, 20, -20], [1, 2, 2, 1]), target).dataSync()[0]!;
    assert.ok(good < 0.35 && bad > 1.5, `good ${good}, bad ${bad}`);
    unet.dispose();
    unet.encoder.dispose();
  });
});

describe('eden evaluate (tiny preset)', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  it('writes report.json with Dice values, report.md and the plots', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'eden-eval-'));
    const run = mkdtempSync(path.join(tmpdir(), 'eden-eval-run-'));
    const pre = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'pretrain', '--preset', 'tiny', '--out', run], { cwd: root, encoding: 'utf8' });
    assert.equal(pre.status, 0, pre.stderr);
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', '--preset', 'tiny', '--task', 'fewshot-seg', '--data', wingspan, '--checkpoint', run, '--baseline', 'random', '--shots', '3', '--seeds', '1', '--combine', 'lungs=left_lung+right_lung', '--out', out],
      { cwd: root, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    assert.deepEqual(report.fewshot.structures, ['lungs', 'heart']);
    // The atlas, then each model in the default modes (frozen, finetune).
    assert.deepEqual(
      report.fewshot.runs.map((r: { model: string; mode: string }) => `${r.model}/${r.mode}`),
      ['atlas/atlas', `${path.basename(run)}/frozen`, `${path.basename(run)}/finetune`, 'random/frozen', 'random/finetune'],
    );
    for (const r of report.fewshot.runs) {
      for (const s of ['lungs', 'heart']) {
        assert.ok(r.dice[s] >= 0 && r.dice[s] <= 1, `${r.model} ${s} ${r.dice[s]}`);
        assert.equal(r.perImage[s].dice.length, report.fewshot.testImages.length);
      }
      // The k training images and the validation images never overlap the fixed test split or each other.
      assert.ok([...r.train, ...r.val].every((f: string) => !report.fewshot.testImages.includes(f)));
      assert.ok(r.val.every((f: string) => !r.train.includes(f)));
    }
    // Every pair within a mode, the atlas included, per structure and their mean.
    assert.equal(report.fewshot.comparisons.length, 2 * 3 * 3);
    assert.ok(existsSync(path.join(out, 'report.md')) && existsSync(path.join(out, 'fewshot-frozen.png')) && existsSync(path.join(out, 'fewshot-finetune.png')));
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    assert.match(md, /\| random \| \d+\.\d ± 0\.0 \|/);
    assert.match(md, /\| atlas \(no network\) \| \d+\.\d ± 0\.0 \|/);
    assert.match(md, /\| random − atlas \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]\*? \|/);
  });
});

describe('eden evaluate in worker processes, and resumed', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  it('--workers 2 gives the runs of one process; --resume reuses finished runs', () => {
    const argsFor = (modes: string, seeds: number): string[] => ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', wingspan, '--preset', 'tiny', '--task', 'fewshot-seg', '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', '--mode', modes, '--shots', '3', '--seeds', String(seeds)];
    const args = argsFor('frozen,linear', 2);
    const one = mkdtempSync(path.join(tmpdir(), 'eden-eval-one-'));
    const two = mkdtempSync(path.join(tmpdir(), 'eden-eval-two-'));
    const a = spawnSync(process.execPath, [...args, '--out', one], { cwd: root, encoding: 'utf8' });
    assert.equal(a.status, 0, a.stderr);
    const b = spawnSync(process.execPath, [...args, '--out', two, '--workers', '2'], { cwd: root, encoding: 'utf8' });
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stderr, /few-shot runs in 2 worker processes, 1 native thread\(s\) each/);
    assert.match(b.stderr, /\[worker 0\] .*random \(frozen\)/);
    assert.match(b.stderr, /\[worker 1\] .*random \(linear\)/);
    const runs = (dir: string): { key: string; dice: Record<string, number> }[] =>
      JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')).fewshot.runs.map((r: { model: string; mode: string; shots: number; seed: number; dice: Record<string, number> }) => ({ key: `${r.model}/${r.mode}/${r.shots}/${r.seed}`, dice: r.dice }));
    const [ra, rb] = [runs(one), runs(two)];
    assert.deepEqual(rb.map((r) => r.key), ra.map((r) => r.key));
    // One or two native threads may order float sums differently: Dice within 0.5 points.
    ra.forEach((r, i) => Object.entries(r.dice).forEach(([s, d]) => assert.ok(Math.abs(d - rb[i]!.dice[s]!) < 5e-3, `${r.key} ${s}: ${d} vs ${rb[i]!.dice[s]}`)));
    // Resuming the finished evaluation runs nothing again.
    const c = spawnSync(process.execPath, [...args, '--out', one, '--resume'], { cwd: root, encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /resuming: 4 finished run\(s\) found/);
    assert.equal((c.stderr.match(/\(reused\)/g) ?? []).length, 4);
    assert.deepEqual(runs(one), ra);
    // Modes, shot counts and seeds choose runs without changing any: one mode and a third seed
    // reuse that mode's two runs and run only the new seed.
    const d = spawnSync(process.execPath, [...argsFor('linear', 3), '--out', one, '--resume'], { cwd: root, encoding: 'utf8' });
    assert.equal(d.status, 0, d.stderr);
    assert.equal((d.stderr.match(/random \(linear\).*\(reused\)/g) ?? []).length, 2);
    assert.match(d.stderr, /random \(linear\), 3 shots, seed 2: .*\(\d+ s\)/);
    assert.doesNotMatch(d.stderr, /\(frozen\)/);
  });
});

describe('eden evaluate --task locality / compositionality (tiny preset)', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  for (const [task, measure] of [['locality', 'kNN accuracy'], ['compositionality', 'retrieval top-1']] as const) {
    it(`${task}: the raw-pixel floor beside the encoder, and A − B paired over the probe's units`, () => {
      const out = mkdtempSync(path.join(tmpdir(), `eden-${task}-`));
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', wingspan, '--preset', 'tiny', '--task', task, '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', '--out', out], { cwd: root, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const section = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'))[task];
      assert.deepEqual(Object.keys(section.results).sort(), ['random', 'raw pixels (no network)']);
      assert.equal(section.comparisons.length, 1);
      const [c] = section.comparisons;
      assert.equal(`${c.a} − ${c.b}`, 'random − raw pixels (no network)');
      // The paired mean is the difference of the two scores in the table (every image has its ten
      // patches; every whole counts once), and the interval holds it.
      const score = (m: string): number => (task === 'locality' ? section.results[m].knnAccuracy : section.results[m].retrieval.top1);
      assert.ok(Math.abs(c.difference.mean - (score('random') - score('raw pixels (no network)'))) < 1e-12, JSON.stringify(c));
      assert.ok(c.difference.lo <= c.difference.mean && c.difference.mean <= c.difference.hi);
      const md = readFileSync(path.join(out, 'report.md'), 'utf8');
      assert.match(md, new RegExp(`Paired differences in ${measure} \\(A − B`));
      assert.match(md, /\| random − raw pixels \(no network\) \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]\*? \|/);
    });
  }
});

/** A labelled folder of the first `n` wingspan_ctr images with the masks of one structure. */
function wingspanCopy(prefix: string, n: number, structure: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  for (const d of ['images', `masks/${structure}`]) mkdirSync(path.join(dir, d), { recursive: true });
  for (const f of readdirSync(path.join(wingspan, 'images')).sort().slice(0, n)) {
    copyFileSync(path.join(wingspan, 'images', f), path.join(dir, 'images', f));
    copyFileSync(path.join(wingspan, 'masks', structure, f), path.join(dir, 'masks', structure, f));
  }
  return dir;
}

describe('eden evaluate on a folder too small for a shot count', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  it('leaves that count out before any run, saying why (it failed after the others had run, an hour in); none left is an error at once', () => {
    const dir = wingspanCopy('eden-small-', 8, 'heart');
    const run = (shots: string, out: string): SpawnSyncReturns<string> =>
      spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', dir, '--preset', 'tiny', '--task', 'fewshot-seg', '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', '--shots', shots, '--out', out], { cwd: root, encoding: 'utf8' });
    const out = path.join(dir, 'out');
    const r = run('3,12', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^warning: 12 shots left out: 8 labelled images leave 6 to draw shots from \(2 held out for testing\); evaluating 3 shots\n/);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    assert.deepEqual(report.config.segmentation.shots, [3]);
    assert.deepEqual([...new Set(report.fewshot.runs.map((x: { shots: number }) => x.shots))], [3]);
    const none = run('12', path.join(dir, 'none'));
    assert.equal(none.status, 1);
    assert.match(none.stderr, /eden: 12 shots: 8 labelled images leave 6 to draw shots from \(2 held out for testing\); give --shots 6 or fewer, or label more images\n$/);
    assert.doesNotMatch(none.stderr, /\[1\//); // no run began
  });
});

describe('eden evaluate --max-images: a folder larger than memory holds', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  it('draws N of the labelled images with the seed (each as a whole load decodes it, in the folder\'s order; one unreadable replaced by the next drawn)', async () => {
    const dir = wingspanCopy('eden-max-images-', 10, 'heart');
    const load = (o: { maxImages?: number; seed?: number } = {}): ReturnType<typeof loadSegmentationData> => loadSegmentationData(dir, 32, { testFraction: 0.2, maxTestImages: 10, seed: 0, ...o });
    const all = await load();
    const byFile = new Map(all.samples.map((x) => [x.file, x]));
    const six = await load({ maxImages: 6 });
    assert.deepEqual([six.samples.length, six.labelled, all.labelled], [6, 10, undefined]);
    const files = six.samples.map((x) => x.file);
    assert.deepEqual(files, all.samples.map((x) => x.file).filter((f) => files.includes(f))); // the folder's order
    for (const x of six.samples) assert.deepEqual(x, byFile.get(x.file));
    assert.deepEqual((await load({ maxImages: 6 })).samples.map((x) => x.file), files);
    assert.notDeepEqual((await load({ maxImages: 6, seed: 1 })).samples.map((x) => x.file), files);
    assert.deepEqual([six.test.length + six.trainPool.length, six.test.length], [6, 1]);
    // Nine of ten with one unreadable: still nine, none of them the broken one.
    const broken = path.join(dir, 'images', readdirSync(path.join(dir, 'images')).sort()[4]!);
    writeFileSync(broken, 'not an image');
    const skipped: string[] = [];
    const nine = await loadSegmentationData(dir, 32, { testFraction: 0.2, maxTestImages: 10, seed: 0, maxImages: 9, onSkip: (m) => skipped.push(m) });
    assert.deepEqual([nine.samples.length, nine.samples.some((x) => x.file === broken), skipped.length], [9, false, 1]);
  });

  it('refuses before decoding what would not fit in memory, naming the N that does; --max-images N evaluates on N, said in the log and report', async () => {
    const dir = wingspanCopy('eden-max-images-', 10, 'heart');
    const sources = await resolveSources([], ['random'], { backbone: 'resnet-tiny', width: 8 });
    const config = resolveEvaluateConfig('tiny', {}, ['fewshot-seg']);
    // 64 px, an image and one mask as float32: 32,768 bytes each; 200,000 bytes hold 6.
    await assert.rejects(evaluate({ data: dir, tasks: ['fewshot-seg'], sources, config, out: path.join(dir, 'refused'), command: 'test', memoryBytes: 200_000 }), {
      message: `${dir}: 10 labelled images at 64 px take 327.7 KB in memory as float32 with their masks, more than the 200.0 KB allowed (by default half of this machine's memory): evaluate on --max-images 6 of them (drawn with the seed), or at a smaller --size`,
    });
    const out = path.join(dir, 'out');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', dir, '--preset', 'tiny', '--task', 'fewshot-seg', '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', '--max-images', '6', '--out', out], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /few-shot segmentation: 6 images \(drawn by --max-images from 10 labelled\), test split 1,/);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    assert.deepEqual([report.fewshot.labelled, report.fewshot.images, report.fewshot.trainPool + report.fewshot.testImages.length], [10, 6, 6]);
    assert.match(readFileSync(path.join(out, 'report.md'), 'utf8'), /6 of the folder's 10 labelled images were drawn by --max-images/);
    const classify = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', dir, '--task', 'classify', '--max-images', '6', '--out', out], { cwd: root, encoding: 'utf8' });
    assert.match(classify.stderr, /eden: --max-images is for the segmentation tasks/);
  });
});

describe('eden evaluate --task locality on a folder without its masks', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  it('fails, saying which masks it needs (asked for alone, a skipped task wrote an empty report and exited 0)', () => {
    const dir = wingspanCopy('eden-no-heart-', 4, 'left_lung');
    const out = path.join(dir, 'out');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', dir, '--preset', 'tiny', '--task', 'locality', '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', '--out', out], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /eden: locality needs heart, left_lung and right_lung masks: .*eden-no-heart-\w+ has left_lung \(masks named otherwise can be named with --combine, e.g. heart=cardiac, or heart=labels:3 for a label map's value\)\n$/);
    assert.ok(!existsSync(path.join(out, 'report.json')));
  });

  it("runs on a label map's values named with --combine, as on the same masks in folders, and as with the masks' folder named apart (--masks)", async () => {
    // One label map per image (1 left lung, 2 right lung, 3 heart, drawn in that order), and the
    // same pixels written as three folders of masks.
    const [maps, folders] = [mkdtempSync(path.join(tmpdir(), 'eden-labelmap-locality-')), mkdtempSync(path.join(tmpdir(), 'eden-folders-locality-'))];
    const structures = ['left_lung', 'right_lung', 'heart'];
    for (const d of [`${maps}/images`, `${maps}/masks/labels`, `${folders}/images`, ...structures.map((s) => `${folders}/masks/${s}`)]) mkdirSync(d, { recursive: true });
    for (const f of readdirSync(path.join(wingspan, 'images')).sort().slice(0, 8)) {
      copyFileSync(path.join(wingspan, 'images', f), path.join(maps, 'images', f));
      copyFileSync(path.join(wingspan, 'images', f), path.join(folders, 'images', f));
      let map: Uint8Array | undefined;
      let size = { width: 0, height: 0 };
      for (const [k, s] of structures.entries()) {
        const { data, info } = await sharp(path.join(wingspan, 'masks', s, f)).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
        map ??= new Uint8Array(data.length);
        size = info;
        data.forEach((v, i) => v > 127 && (map![i] = k + 1));
      }
      const raw = { raw: { width: size.width, height: size.height, channels: 1 as const } };
      await sharp(map!, raw).png().toFile(path.join(maps, 'masks', 'labels', f));
      for (const [k, s] of structures.entries()) await sharp(map!.map((v) => (v === k + 1 ? 255 : 0)), raw).png().toFile(path.join(folders, 'masks', s, f));
    }
    const locality = (dir: string, extra: string[], out = path.join(dir, 'out')): unknown => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', dir, '--preset', 'tiny', '--task', 'locality', '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', ...extra, '--out', out], { cwd: root, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr + r.stdout, /a label map/); // its values are read apart: no warning
      const { locality: l } = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as { locality: { results: unknown } };
      return l.results;
    };
    const fromMaps = locality(maps, ['--combine', 'left_lung=labels:1', '--combine', 'right_lung=labels:2', '--combine', 'heart=labels:3']);
    assert.ok(fromMaps);
    assert.deepEqual(fromMaps, locality(folders, []));
    const apart = path.join(folders, 'apart');
    assert.deepEqual(locality(path.join(folders, 'images'), ['--masks', path.join(folders, 'masks')], apart), fromMaps);
    assert.match(readFileSync(path.join(apart, 'report.md'), 'utf8'), new RegExp(`\\n- data: ${path.join(folders, 'images')} \\(masks: ${path.join(folders, 'masks')}\\)\\n`));
  });
});

describe('eden evaluate --task classify (tiny preset)', () => {
  const data = path.join(root, '..', 'shared', 'data');
  for (const [name, args] of [
    ['a folder with a CSV manifest and a split column (nih1000_64px)', ['--data', path.join(data, 'nih1000_64px'), '--label-column', 'abnormal']],
    ['a MedMNIST .npz (pneumoniamnist)', ['--data', path.join(data, 'pneumoniamnist', 'pneumoniamnist.npz')]],
  ] as [string, string[]][]) {
    it(`reports linear-probe and fine-tuned AUC and accuracy on ${name}`, (t) => {
      if (!existsSync(args[1]!)) return t.skip(`${args[1]} not found`);
      const out = mkdtempSync(path.join(tmpdir(), 'eden-cls-'));
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'evaluate', '--preset', 'tiny', '--task', 'classify', ...args, '--baseline', 'random', '--arch', 'resnet-tiny', '--width', '8', '--out', out], { cwd: root, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
      assert.deepEqual(report.classification.classes, ['0', '1']);
      const res = report.classification.results.random;
      for (const k of ['linearProbe', 'fineTune']) {
        assert.ok(res[k].meanAuc >= 0 && res[k].meanAuc <= 1, `${k} AUC ${res[k].meanAuc}`);
        assert.ok(res[k].accuracy >= 0 && res[k].accuracy <= 1);
      }
      // The no-network floor sits beside the encoders, with the encoder's probe paired against it.
      const floor = report.classification.floor;
      assert.equal(floor.name, 'raw pixels (no network)');
      assert.equal(floor.side, 16);
      assert.ok(floor.linearProbe.meanAuc >= 0 && floor.linearProbe.meanAuc <= 1, `floor AUC ${floor.linearProbe.meanAuc}`);
      const vsFloor = report.classification.comparisons.filter((x: { b: string }) => x.b === floor.name);
      assert.deepEqual(vsFloor.map((x: { a: string; kind: string }) => `${x.a} ${x.kind}`), ['random linearProbe', 'random fineTune']);
      assert.ok(vsFloor[0].auc.lo <= vsFloor[0].auc.mean && vsFloor[0].auc.mean <= vsFloor[0].auc.hi);
      const md = readFileSync(path.join(out, 'report.md'), 'utf8');
      assert.match(md, /\| random \| 0\.\d{3} \|/);
      // Each probe's L2 penalty was chosen on the validation split, and is reported with it.
      const grid = ['0.0001', '0.001', '0.01', '0.1', '1'];
      assert.ok(grid.includes(String(floor.linearProbe.l2)) && grid.includes(String(report.classification.results.random.linearProbe.l2)), JSON.stringify(floor.linearProbe));
      assert.match(md, /\| raw pixels \(no network\) \| [01]\.\d{3} \| \d+\.\d% \| (0\.0*1|1) \| — \| — \|/);
      assert.match(md, /L2 penalty chosen per model among 0\.0001, 0\.001, 0\.01, 0\.1, 1 by mean AUC on 20% of the training images held out/);
      assert.match(md, /\| random − raw pixels \(no network\) \| [+-]\d+\.\d \[.*\] \| [+-]\d+\.\d \[/);
    });
  }
});

describe('evaluation settings', () => {
  it('asks a multiple of 32 of the size only where the U-Net runs', async () => {
    const { resolveEvaluateConfig } = await import('../src/config/evaluate.js');
    assert.equal(resolveEvaluateConfig('cpu', { size: 112 }, ['classify']).classification.size, 112);
    assert.equal(resolveEvaluateConfig('cpu', { size: 112 }, ['locality', 'compositionality']).classification.size, 112);
    for (const tasks of [['fewshot-seg'], undefined]) {
      assert.throws(() => resolveEvaluateConfig('cpu', { size: 112 }, tasks), /segmentation size must be a multiple of 32 \(the encoder's stride\), got 112/);
    }
  });
});

describe('classification floor: logistic regression on the pixels at 16 x 16', () => {
  const side = 32;
  // Images of noise; class 1 has a brighter left half (visible at 16 x 16), class 0 the right half.
  const rng = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const draw = (n: number, label: (i: number) => number, seed: number) => {
    const r = rng(seed);
    return Array.from({ length: n }, (_, i) => {
      const l = label(i);
      const image = Float32Array.from({ length: side * side }, (_, p) => 0.4 * r() + ((p % side < side / 2) === (l === 1) ? 0.15 : 0));
      return { image, label: l };
    });
  };
  const config = async () => (await import('../src/config/evaluate.js')).resolveEvaluateConfig('tiny').classification;

  it('separates classes the pixels show, and is at chance on labels they do not', async () => {
    await useBackend('wasm');
    const { rawPixelProbe } = await import('../src/eval/classify.js');
    const cfg = await config();
    const shown = await rawPixelProbe({ source: 'synthetic', classes: ['0', '1'], train: draw(40, (i) => i % 2, 1), test: draw(40, (i) => i % 2, 2), size: side }, cfg, 0);
    assert.equal(shown.meanAuc, 1);
    assert.equal(shown.accuracy, 1);
    // Same images, labels drawn independently of them: nothing to learn.
    const coin = rng(7);
    const hidden = (n: number, seed: number) => draw(n, () => 0, seed).map((x) => ({ ...x, label: coin() < 0.5 ? 0 : 1 }));
    const blind = await rawPixelProbe({ source: 'synthetic', classes: ['0', '1'], train: hidden(40, 3), test: hidden(200, 4), size: side }, cfg, 0);
    assert.ok(Math.abs(blind.meanAuc - 0.5) < 0.12, `AUC on labels the pixels do not carry: ${blind.meanAuc}`);
  });
});

describe('the linear probe\'s penalty, validated (validatedProbe)', () => {
  // 80 training images of 300 features, 10 of them shifted by the label (0.25 against noise of
  // width 2): a barely penalised logistic regression fits the noise; a stronger penalty generalises.
  const draw = (n: number, seed: number): { features: Float32Array[]; labels: number[] } => {
    const r = new Rng(seed);
    const labels = Array.from({ length: n }, (_, i) => i % 2);
    const features = labels.map((l) => Float32Array.from({ length: 300 }, (_, k) => (k < 10 ? (l ? 0.25 : -0.25) : 0) + 2 * (r.next() - 0.5)));
    return { features, labels };
  };
  it('chooses by validation AUC among the grid, and beats the smallest penalty where that one overfits', async () => {
    await useBackend('wasm');
    const { validatedProbe, logisticRegression, scores, PROBE_L2_GRID } = await import('../src/eval/classify.js');
    const [train, test] = [draw(80, 1), draw(400, 2)];
    const fit = await validatedProbe(train.features, train.labels, test.features, ['0', '1'], 100, 0);
    assert.equal(fit.validationAuc.length, PROBE_L2_GRID.length);
    // The chosen penalty is the grid's best on validation (the stronger on a tie).
    const best = Math.max(...fit.validationAuc);
    assert.equal(fit.l2, PROBE_L2_GRID[fit.validationAuc.lastIndexOf(best)]);
    const weak = await logisticRegression(train.features, train.labels, test.features, 2, 100, PROBE_L2_GRID[0]!);
    const [validated, unvalidated] = [scores(fit.probabilities, test.labels, ['0', '1']).meanAuc, scores(weak, test.labels, ['0', '1']).meanAuc];
    console.log(`validated probe: L2 ${fit.l2} (validation AUC ${fit.validationAuc.map((a) => a.toFixed(3)).join(' / ')}), test AUC ${validated.toFixed(3)} against ${unvalidated.toFixed(3)} at L2 ${PROBE_L2_GRID[0]}`);
    assert.ok(fit.l2 > PROBE_L2_GRID[0]!, `L2 ${fit.l2}`);
    assert.ok(validated > unvalidated + 0.1, `validated ${validated} vs ${unvalidated}`);
    // Deterministic: the same seed, the same split and choice.
    const again = await validatedProbe(train.features, train.labels, test.features, ['0', '1'], 100, 0);
    assert.deepEqual(again.validationAuc, fit.validationAuc);
  });
});

describe('compositionality floor: the probe on raw pixels', () => {
  const side = 64;
  const o = { wholes: 60, size: 32, wholeFraction: 0.5, seed: 0, retrieval: 19, centring: 32 };
  // Linear ramps: any part of one, stretched, is still a ramp whose direction is tied to the image's.
  const ramp = (angle: number, offset: number): Float32Array => {
    const [c, s] = [Math.cos(angle), Math.sin(angle)];
    return Float32Array.from({ length: side * side }, (_, p) => offset + 0.4 * (c * ((p % side) / side - 0.5) + s * (Math.floor(p / side) / side - 0.5)));
  };
  it('finds wholes from their parts when the pixels tell images apart, not when they differ by brightness only', async () => {
    const { rawPixelCompositionality } = await import('../src/eval/probes.js');
    // Each image its own direction: averaged parts point where their whole does.
    const apart = await rawPixelCompositionality(Array.from({ length: 60 }, (_, i) => ramp((2 * Math.PI * i) / 60, 0.5)), side, o);
    // One direction, 60 brightness offsets: pixels centred on their mean cannot tell them apart.
    const alike = await rawPixelCompositionality(Array.from({ length: 60 }, (_, i) => ramp(1, 0.2 + i / 100)), side, o);
    console.log(`pixel floor, compositionality: retrieval top-1 ${apart.retrieval.top1.toFixed(3)} (mean rank ${apart.retrieval.meanRank.toFixed(1)}) across directions, ${alike.retrieval.top1.toFixed(3)} (${alike.retrieval.meanRank.toFixed(1)}) across brightness; chance 0.05 (10.5)`);
    assert.equal(apart.retrieval.candidates, 20);
    // Chance: top-1 0.05, mean rank 10.5.
    assert.ok(apart.retrieval.top1 > 0.3 && apart.retrieval.meanRank < 4, `directions: ${JSON.stringify(apart.retrieval)}`);
    assert.ok(alike.retrieval.top1 < 0.2 && alike.retrieval.meanRank > 7, `brightness only: ${JSON.stringify(alike.retrieval)}`);
  });
});

describe('evaluation loops free their tensors', () => {
  it('few-shot fine-tuning, the linear probe, the pixel floor and classifier fine-tuning leave tf.memory().numTensors as they found it', async () => {
    await useBackend('wasm');
    const { resolveEvaluateConfig } = await import('../src/config/evaluate.js');
    const { fineTuneAndTest } = await import('../src/eval/fewshot.js');
    const { linearProbe, fineTuneClassifier, rawPixelProbe } = await import('../src/eval/classify.js');
    const { randomSource } = await import('../src/eval/models.js');
    const cfg = resolveEvaluateConfig('tiny');
    const size = cfg.segmentation.size;
    const image = (k: number): Float32Array => Float32Array.from({ length: size * size }, (_, i) => ((i * (k + 3)) % 97) / 97);
    const mask = (k: number): Float32Array => Float32Array.from({ length: size * size }, (_, i) => ((i % size) > size / 2 + k ? 1 : 0));
    const seg = { root: 'synthetic', structures: ['a'], samples: [0, 1, 2, 3].map((k) => ({ file: `s${k}`, image: image(k), masks: [mask(k)] })), test: [3], trainPool: [0, 1, 2] };
    const cls = { source: 'synthetic', classes: ['0', '1'], train: [0, 1, 2, 3].map((k) => ({ image: image(k), label: k % 2 })), test: [4, 5].map((k) => ({ image: image(k), label: k % 2 })), size };
    const source = randomSource('resnet-tiny', 8, 1);
    const counts: number[] = [];
    for (let run = 0; run < 2; run++) {
      for (const mode of ['finetune', 'frozen', 'linear'] as const) await fineTuneAndTest(source, seg, { train: [0, 1, 2], val: [3] }, cfg.segmentation, run, mode);
      await linearProbe(source, cls, cfg.classification, run);
      await fineTuneClassifier(source, cls, cfg.classification, run);
      await rawPixelProbe(cls, cfg.classification, run);
      counts.push(tf.memory().numTensors);
    }
    assert.equal(counts[1], counts[0], `tensor count moved: ${counts.join(' -> ')}`);
  });
});
