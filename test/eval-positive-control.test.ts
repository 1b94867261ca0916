/**
 * Positive controls: the evaluation must be able to tell an encoder that knows something from one
 * that does not. Encoders are deliberately given informative features on real radiographs
 * (wingspan_ctr at 64 px, tiny ResNets) and must beat random initialisation by a clear, significant
 * margin; the atlas must beat a random encoder on a task where only location matters.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { resolveEvaluateConfig, type EvaluateConfig } from '../src/config/evaluate.js';
import { compareFewShot, fewShotSegmentation, loadSegmentationData, type SegmentationData } from '../src/eval/fewshot.js';
import { randomSource, type ModelSource } from '../src/eval/models.js';
import { compositionality } from '../src/eval/probes.js';
import { createBackbone, type ResNet } from '../src/models/resnet.js';
import { trainSegmenter } from '../src/train/segmenter.js';
import { DEFAULT_PAIRED_AUGMENT } from '../src/data/paired-transforms.js';
import { resizeGrey } from '../src/data/resize.js';
import { extractRegion } from '../src/data/views.js';
import { Rng } from '../src/core/rng.js';

const wingspan = path.join(import.meta.dirname, '..', '..', 'shared', 'data', 'wingspan_ctr');
const SIDE = 64;
const ARCH = { backbone: 'resnet-tiny', width: 8 };

/** A model source that hands out copies of a trained backbone's weights. */
function sourceOf(name: string, trained: ResNet): ModelSource {
  const weights = [...trained.store.variables.entries()].map(([n, v]) => [n, v.clone()] as const);
  return {
    name,
    description: name,
    create: async () => {
      const b = createBackbone(ARCH.backbone, { width: ARCH.width, seed: 99 });
      for (const [n, v] of weights) b.store.get(n).assign(v);
      return b;
    },
  };
}

function fastConfig(modes: EvaluateConfig['segmentation']['modes'], steps: number): EvaluateConfig {
  // 3 seeds: with 2 the frozen interval spanned [0.8, 12.0] Dice points.
  const cfg = resolveEvaluateConfig('tiny', { shots: [3], seeds: 3, modes });
  Object.assign(cfg.segmentation, { steps, linearSteps: steps, evalEvery: 10, patience: 2, valImages: 4, batchSize: 4, bnBatches: 2 });
  return { ...cfg, bootstrap: 500 };
}

describe('positive controls', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  let data: SegmentationData;
  before(async () => {
    await useBackend('wasm');
    data = await loadSegmentationData(wingspan, SIDE, { combine: { lungs: ['left_lung', 'right_lung'] }, structures: ['heart', 'lungs'], testFraction: 0.06, maxTestImages: 16, seed: 0 });
  });

  it('an encoder trained with mask supervision beats random init in frozen and linear modes', async () => {
    // Supervision on 40 labelled images the few-shot draws may also use: that is the point of a
    // positive control (the encoder's features are informative by construction). Probes get 150
    // steps: at 40 every probe, supervised or not, was still below the atlas (undertrained decoders
    // measure nothing: supervised − random was −7 [−18, 3] Dice points in frozen mode).
    const encoder = createBackbone(ARCH.backbone, { width: ARCH.width, seed: 5 });
    const labelled = data.trainPool.slice(0, 40).map((i) => data.samples[i]!);
    const trained = await trainSegmenter(encoder, labelled, [], { mode: 'finetune', size: SIDE, batchSize: 8, lr: 3e-3, encoderLrMultiplier: 1, linearLr: 1e-2, maxSteps: 300, evalEvery: 1000, patience: 1, bnBatches: 1, augment: DEFAULT_PAIRED_AUGMENT, seed: 3 });
    trained.dispose();
    const supervised = sourceOf('supervised', encoder);
    encoder.dispose();
    const runs = await fewShotSegmentation([supervised, randomSource(ARCH.backbone, ARCH.width, 1)], data, fastConfig(['frozen', 'linear'], 150));
    const comparisons = compareFewShot(runs, data.structures, SIDE, { replicates: 500 });
    for (const mode of ['frozen', 'linear'] as const) {
      const c = comparisons.find((x) => x.mode === mode && x.a === 'supervised' && x.b === 'random' && x.structure === 'mean')!;
      console.log(`positive control, ${mode}: supervised − random = ${(100 * c.dice.mean).toFixed(1)} Dice points [${(100 * c.dice.lo).toFixed(1)}, ${(100 * c.dice.hi).toFixed(1)}]`);
      // A clear margin: significant (the interval excludes 0) and at least 5 Dice points on average.
      // Not "lower bound > 3 points": with 2-3 seeds of a tiny model that bound is seed noise — a
      // float-level change (Eden's Adam vs tf.train.adam, same semantics) moved it from 7.4 to 0.8
      // while the mean stayed 7-16 points.
      assert.ok(c.dice.significant && c.dice.mean > 0.05, `${mode}: ${JSON.stringify(c.dice)}`);
    }
  });

  it('an encoder trained to know where a crop lies beats random init in centred compositionality and retrieval', async () => {
    // Eve trained for 150 steps to regress each random crop's centre: informative about location,
    // which parts and their whole share, so averaged parts must point where the whole does.
    const images = data.samples.slice(0, 80).map((s) => s.image);
    const net = createBackbone(ARCH.backbone, { width: ARCH.width, seed: 5 });
    const head = tf.variable(tf.randomNormal([net.featureDim, 2], 0, 0.01, 'float32', 1));
    const opt = tf.train.adam(3e-3);
    const rng = new Rng(4);
    for (let step = 0; step < 150; step++) {
      const xs: number[] = [];
      const ys: number[] = [];
      for (let b = 0; b < 16; b++) {
        const [w, h] = [8 + rng.int(33), 8 + rng.int(33)];
        const [x, y] = [rng.int(SIDE - w + 1), rng.int(SIDE - h + 1)];
        const crop = resizeGrey(extractRegion(images[rng.int(images.length)]!, SIDE, { x, y, width: w, height: h }), w, h, SIDE, SIDE);
        xs.push(...Array.from(crop, (v) => (v - 0.5) / 0.25));
        ys.push((x + w / 2) / SIDE - 0.5, (y + h / 2) / SIDE - 0.5);
      }
      const [X, Y] = [tf.tensor4d(xs, [16, SIDE, SIDE, 1]), tf.tensor2d(ys, [16, 2])];
      tf.dispose([opt.minimize(() => tf.losses.meanSquaredError(Y, tf.matMul(net.forward(X, { training: true }).pooled, head)) as tf.Scalar, true, [...net.store.trainable(), head])!, X, Y]);
    }
    tf.dispose([head]);
    opt.dispose();
    const random = createBackbone(ARCH.backbone, { width: ARCH.width, seed: 5 });
    const o = { wholes: 60, size: SIDE, wholeFraction: 0.5, seed: 0, retrieval: 19, centring: 32 };
    const mean = (x: Record<string, number[]>): number => Object.values(x).flat().reduce((a, b) => a + b, 0) / o.wholes;
    const [t, r] = [await compositionality(net, images, SIDE, o), await compositionality(random, images, SIDE, o)];
    console.log(`positive control, compositionality: centred cosine ${mean(t.centredByParts).toFixed(3)} vs random ${mean(r.centredByParts).toFixed(3)}; retrieval top-1 ${t.retrieval.top1.toFixed(3)} vs ${r.retrieval.top1.toFixed(3)} (chance ${(1 / o.retrieval).toFixed(3)})`);
    assert.ok(mean(t.centredByParts) > mean(r.centredByParts) + 0.2);
    assert.ok(t.retrieval.top1 > r.retrieval.top1 + 0.1 && t.retrieval.meanRank < r.retrieval.meanRank);
    // The raw cosine, as the paper defines it, cannot make this distinction: both near 1.
    assert.ok(mean(r.byParts) > 0.7);
    net.dispose();
    random.dispose();
  });

  it('the atlas beats a random encoder on a task where only location matters', async () => {
    // Noise images, each with the same square 'structure' at a fixed place: nothing to see, only where.
    const rng = new Rng(8);
    const mask = Float32Array.from({ length: SIDE * SIDE }, (_, i) => (i % SIDE >= 20 && i % SIDE < 44 && Math.floor(i / SIDE) >= 10 && Math.floor(i / SIDE) < 34 ? 1 : 0));
    const toy: SegmentationData = {
      root: 'toy',
      structures: ['square'],
      samples: Array.from({ length: 24 }, (_, i) => ({ file: `noise${i}`, image: Float32Array.from({ length: SIDE * SIDE }, () => rng.next()), masks: [mask] })),
      test: [...Array(8).keys()],
      trainPool: [...Array(16).keys()].map((i) => i + 8),
    };
    const cfg = fastConfig(['linear'], 40);
    const runs = await fewShotSegmentation([randomSource(ARCH.backbone, ARCH.width, 1)], toy, cfg);
    const c = compareFewShot(runs, toy.structures, SIDE, { replicates: 500 }).find((x) => x.structure === 'square')!;
    assert.equal(c.a, 'random');
    assert.equal(c.b, 'atlas');
    assert.ok(c.dice.significant && c.dice.hi < 0, JSON.stringify(c.dice));
    const atlas = runs.find((r) => r.mode === 'atlas')!;
    assert.equal(atlas.dice['square'], 1);
  });
});
