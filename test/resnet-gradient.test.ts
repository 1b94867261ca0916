/**
 * The whole gradient of a small ResNet (training-mode batch norm, max pool, residual adds) with
 * an InfoNCE-style head, on wasm against the cpu backend (helpers/whole-gradient.ts; on webgpu:
 * webgpu-ops.test.ts); a save/load round trip of weights and optimizer state; and a flat tensor
 * count over repeated training steps.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { createBackbone, type ResNet } from '../src/models/resnet.js';
import { loadModel, saveModel } from '../src/engine/model-io.js';
import { compareWholeGradient, contrastiveLoss } from './helpers/whole-gradient.js';

describe('ResNet training gradient', () => {
  it('wasm matches cpu for every parameter (rel. error < 1e-4)', () => compareWholeGradient('wasm'));

  it('save and load restore weights, BN statistics and optimizer state exactly', async () => {
    await useBackend('wasm');
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-io-'));
    const file = path.join(dir, 'model.safetensors');
    const a = createBackbone('resnet-tiny', { width: 8, seed: 1 });
    const optA = tf.train.momentum(0.05, 0.9);
    const step = (net: ResNet, opt: tf.Optimizer): number => {
      const cost = opt.minimize(() => contrastiveLoss(net), true, net.store.trainable())!;
      const v = cost.dataSync()[0]!;
      cost.dispose();
      return v;
    };
    step(a, optA);
    step(a, optA);
    await saveModel(file, { student: a.store }, { optimizer: optA, metadata: { step: 2 } });

    const b = createBackbone('resnet-tiny', { width: 8, seed: 99 });
    const optB = tf.train.momentum(0.05, 0.9);
    const meta = await loadModel(file, { student: b.store }, { optimizer: optB });
    assert.deepEqual(meta, { step: 2 });
    for (const [name, v] of a.store.variables) {
      assert.deepEqual(Array.from(await b.store.get(name).data()), Array.from(await v.data()), `${name} differs after load`);
    }
    // The next step must be identical too: that needs the momentum buffers restored.
    const la = step(a, optA);
    const lb = step(b, optB);
    assert.equal(lb, la);
    for (const [name, v] of a.store.variables) {
      assert.deepEqual(Array.from(await b.store.get(name).data()), Array.from(await v.data()), `${name} differs one step after load`);
    }
    a.dispose();
    b.dispose();
    optA.dispose();
    optB.dispose();
  });

  it('keeps tf.memory().numTensors flat over 20 training steps', async () => {
    await useBackend('wasm');
    const net = createBackbone('resnet-tiny', { width: 8, seed: 5 });
    const opt = tf.train.momentum(0.01, 0.9);
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) {
      tf.tidy(() => {
        opt.minimize(() => contrastiveLoss(net), false, net.store.trainable());
      });
      counts.push(tf.memory().numTensors);
    }
    // Momentum slots are created in step 1; from step 2 on the count must not move.
    assert.deepEqual(new Set(counts.slice(1)).size, 1, `tensor counts drifted: ${counts.join(',')}`);
    net.dispose();
    opt.dispose();
  });
});
