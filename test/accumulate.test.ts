/**
 * Gradient accumulation (train/accumulate.ts, used by the segmenter when a batch does not fit the
 * wasm heap): for a loss that is a mean over examples, passes of a few examples must give the whole
 * batch's loss and gradients; and a segmenter trained in passes must not leak tensors.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { accumulatedGradients } from '../src/train/accumulate.js';
import { trainSegmenter } from '../src/train/segmenter.js';
import { createBackbone } from '../src/models/resnet.js';
import { DEFAULT_PAIRED_AUGMENT } from '../src/data/paired-transforms.js';
import { Rng } from '../src/core/rng.js';
import { disc } from './helpers/discs.js';

describe('gradient accumulation', () => {
  before(async () => {
    await useBackend('wasm');
  });

  it('passes of 4 + 3 images give the 7-image batch loss and gradients of a mean loss', () => {
    const w = tf.variable(tf.randomNormal([5, 3], 0, 1, 'float32', 1), true, 'acc_w');
    const b = tf.variable(tf.randomNormal([3], 0, 1, 'float32', 2), true, 'acc_b');
    const x = tf.randomNormal([7, 5], 0, 1, 'float32', 3) as tf.Tensor2D;
    const y = tf.randomNormal([7, 3], 0, 1, 'float32', 4) as tf.Tensor2D;
    // Mean squared error through a non-linearity: a mean over examples, not a linear function.
    const lossOf = (xs: tf.Tensor2D, ys: tf.Tensor2D): tf.Scalar => tf.mean(tf.square(tf.sub(tf.tanh(tf.add(tf.matMul(xs, w), b)), ys)));
    const whole = accumulatedGradients(lossOf, x, y, 7, [w, b]);
    const before = tf.memory().numTensors;
    const parts = accumulatedGradients(lossOf, x, y, 4, [w, b]);
    // The parts' result is exactly loss + one gradient per variable: nothing else was left behind.
    assert.equal(tf.memory().numTensors, before + 3);
    assert.ok(Math.abs(parts.loss.dataSync()[0]! - whole.loss.dataSync()[0]!) < 1e-6);
    for (const name of ['acc_w', 'acc_b']) {
      const [a, e] = [parts.grads[name]!.dataSync(), whole.grads[name]!.dataSync()];
      for (let i = 0; i < e.length; i++) assert.ok(Math.abs(a[i]! - e[i]!) < 1e-6, `${name}[${i}]: ${a[i]} vs ${e[i]}`);
    }
    // Passes of one image each: the same again.
    const single = accumulatedGradients(lossOf, x, y, 1, [w, b]);
    const [a1, e1] = [single.grads['acc_w']!.dataSync(), whole.grads['acc_w']!.dataSync()];
    for (let i = 0; i < e1.length; i++) assert.ok(Math.abs(a1[i]! - e1[i]!) < 1e-6);
    tf.dispose([w, b, x, y, whole.loss, parts.loss, single.loss, ...Object.values(whole.grads), ...Object.values(parts.grads), ...Object.values(single.grads)]);
  });

  it('a pass that throws mid-forward (as when the wasm heap runs out) leaves no tensor behind', () => {
    const w = tf.variable(tf.randomNormal([5, 3], 0, 1, 'float32', 1), true, 'acc_w2');
    const x = tf.randomNormal([4, 5], 0, 1, 'float32', 3) as tf.Tensor2D;
    const y = tf.zeros([4, 3]) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const failing = (xs: tf.Tensor2D): tf.Scalar => {
      // Ops that save tensors for their backward pass (kept outside tidy scopes), then the failure.
      tf.relu(tf.tanh(tf.matMul(xs, w)));
      throw new Error('out of wasm memory (simulated)');
    };
    for (const micro of [4, 2]) assert.throws(() => accumulatedGradients(failing, x, y, micro, [w]), /simulated/);
    assert.equal(tf.memory().numTensors, before);
    // And the engine still computes gradients afterwards.
    const ok = accumulatedGradients((xs) => tf.sum(tf.matMul(xs, w)), x, y, 2, [w]);
    assert.equal(ok.grads['acc_w2']!.shape.join('x'), '5x3');
    tf.dispose([w, x, y, ok.loss, ...Object.values(ok.grads)]);
  });

  it('a U-Net fine-tuned in passes of 2 (batch 4) trains and keeps the tensor count flat', async () => {
    const side = 64;
    const rng = new Rng(7);
    const train = Array.from({ length: 6 }, () => disc(side, rng));
    const backbone = createBackbone('resnet-tiny', { width: 8, seed: 1 });
    const counts: number[] = [];
    const trained = await trainSegmenter(backbone, train, [], {
      mode: 'finetune', size: side, batchSize: 4, microBatch: 2, lr: 3e-3, encoderLrMultiplier: 1, linearLr: 1e-2, maxSteps: 12,
      evalEvery: 100, patience: 1, bnBatches: 1, augment: DEFAULT_PAIRED_AUGMENT, seed: 2,
      onProgress: () => counts.push(tf.memory().numTensors),
    });
    try {
      assert.equal(trained.steps, 12);
      assert.deepEqual(new Set(counts.slice(2)).size, 1, `tensor counts over steps: ${counts.join(' ')}`);
      const probs = await trained.predict(train.map((t) => t.image));
      // Better than chance on the training discs after 12 accumulated steps.
      let inter = 0;
      let total = 0;
      probs.forEach(([p], j) => p!.forEach((v, i) => {
        const [a, t] = [v > 0.5 ? 1 : 0, train[j]!.masks[0]![i]!];
        inter += a * t;
        total += a + t;
      }));
      assert.ok((2 * inter) / total > 0.3, `training Dice ${(2 * inter) / total}`);
    } finally {
      trained.dispose();
    }
    await assert.rejects(trainSegmenter(backbone, train, [], { mode: 'frozen', size: side, batchSize: 4, microBatch: 0, lr: 1e-3, encoderLrMultiplier: 1, linearLr: 1e-2, maxSteps: 12, evalEvery: 1, patience: 1, bnBatches: 1, augment: DEFAULT_PAIRED_AUGMENT, seed: 2 }), /micro-batch must be a positive integer, got 0/);
    backbone.dispose();
  });
});
