/**
 * The whole gradient of a small ResNet (training-mode batch norm, max pool, residual adds) with
 * an InfoNCE-style head, on wasm against the cpu backend; a save/load round trip of weights and
 * optimizer state; and a flat tensor count over repeated training steps.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useBackend, type BackendName } from '../src/engine/backend.js';
import { createBackbone, type ResNet } from '../src/models/resnet.js';
import { gaussian } from '../src/models/layers.js';
import { Rng } from '../src/core/rng.js';
import { loadModel, saveModel } from '../src/engine/model-io.js';
import { probeWebGpu } from '../src/engine/webgpu.js';
import { skipOrFail } from './helpers/tools.js';

const images = gaussian(4 * 48 * 48, new Rng(3));
const targets = gaussian(4 * 64, new Rng(4));

/** A contrastive-style loss on the pooled features: L2-normalise, similarity logits, log-softmax. */
function loss(net: ResNet): tf.Scalar {
  const x = tf.tensor4d(images, [4, 48, 48, 1]);
  const { pooled } = net.forward(x, { training: true });
  const q = tf.div(pooled, tf.norm(pooled, 2, 1, true));
  const k = tf.tensor2d(targets, [4, 64]).slice([0, 0], [4, q.shape[1]!]);
  const kn = tf.div(k, tf.norm(k, 2, 1, true));
  const logits = tf.div(tf.matMul(q, kn, false, true), 0.2);
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tf.range(0, 4, 1, 'int32'), 4), tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

async function gradients(backend: BackendName): Promise<Map<string, Float32Array>> {
  await useBackend(backend);
  const net = createBackbone('resnet-tiny', { width: 8, seed: 11 });
  const { grads, value } = tf.variableGrads(() => loss(net), net.store.trainable());
  const out = new Map<string, Float32Array>();
  out.set('loss', (await value.data()) as Float32Array);
  for (const [name, v] of net.store.variables) {
    const g = grads[v.name];
    if (g) out.set(name, (await g.data()) as Float32Array);
  }
  tf.dispose(Object.values(grads));
  value.dispose();
  net.dispose();
  return out;
}

async function compareWholeGradient(backend: BackendName): Promise<void> {
    const ref = await gradients('cpu');
    const got = await gradients(backend);
    assert.equal(got.size, ref.size);
    let worst = 0;
    let worstName = '';
    for (const [name, r] of ref) {
      const g = got.get(name)!;
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < r.length; i++) {
        diff = Math.max(diff, Math.abs(g[i]! - r[i]!));
        scale = Math.max(scale, Math.abs(r[i]!));
      }
      const rel = diff / Math.max(scale, 1e-12);
      if (rel > worst) [worst, worstName] = [rel, name];
    }
    console.log(`[${backend}] resnet-tiny whole gradient (${ref.size - 1} tensors): worst rel. error ${worst.toExponential(2)} at ${worstName}`);
    assert.ok(worst < 1e-4, `worst relative error ${worst} at ${worstName}`);
}

describe('ResNet training gradient', () => {
  it('wasm matches cpu for every parameter (rel. error < 1e-4)', () => compareWholeGradient('wasm'));

  it('webgpu matches cpu for every parameter (rel. error < 1e-4)', async (t) => {
    const probe = await probeWebGpu();
    if ('reason' in probe) return skipOrFail(t, 'webgpu', probe.reason);
    console.log(`webgpu adapter: ${probe.adapter}`);
    await compareWholeGradient('webgpu');
  });

  it('save and load restore weights, BN statistics and optimizer state exactly', async () => {
    await useBackend('wasm');
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-io-'));
    const file = path.join(dir, 'model.safetensors');
    const a = createBackbone('resnet-tiny', { width: 8, seed: 1 });
    const optA = tf.train.momentum(0.05, 0.9);
    const step = (net: ResNet, opt: tf.Optimizer): number => {
      const cost = opt.minimize(() => loss(net), true, net.store.trainable())!;
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
        opt.minimize(() => loss(net), false, net.store.trainable());
      });
      counts.push(tf.memory().numTensors);
    }
    // Momentum slots are created in step 1; from step 2 on the count must not move.
    assert.deepEqual(new Set(counts.slice(1)).size, 1, `tensor counts drifted: ${counts.join(',')}`);
    net.dispose();
    opt.dispose();
  });
});
