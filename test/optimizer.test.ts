/**
 * Eden's Adam (train/optimizer.ts) against TF.js's tf.train.adam: the same parameters after several
 * steps, both on the fused in-place path (native kernels) and on the tensor-op path it falls back to
 * when a parameter's buffer is shared.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { nativeStatus } from '../src/engine/native.js';
import { Adam } from '../src/train/optimizer.js';
import { skipOrFail } from './helpers/tools.js';
import { Rng } from '../src/core/rng.js';

/** Deterministic values (TF.js's seeded randomNormal is not repeatable for large tensors on wasm). */
function values(shape: number[], seed: number, shift = 0): tf.Tensor {
  const rng = new Rng(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => shift + rng.uniform(-1, 1)), shape);
}

function run(optimiser: 'tfjs' | 'eden', shareBuffers: boolean): { values: Float32Array[]; counts?: Adam['counts'] } {
  const vars = tf.tidy(() => [tf.variable(values([3, 70000], 1), true, 'w'), tf.variable(values([5], 2), true, 'b')]);
  // A clone shares its variable's buffer (as an early-stopping snapshot does): no in-place update then.
  const clones = shareBuffers ? vars.map((v) => tf.clone(v)) : [];
  const tfjs = tf.train.adam(0.01);
  const eden = new Adam(0.01);
  for (let step = 0; step < 5; step++) {
    const grads: tf.NamedTensorMap = Object.fromEntries(vars.map((v, i) => [v.name, values(v.shape, 10 * step + i + 3, 0.1 * step)]));
    if (optimiser === 'tfjs') tfjs.applyGradients(vars.map((v) => ({ name: v.name, tensor: grads[v.name]! })));
    else eden.applyGradients(vars, grads);
    tf.dispose(Object.values(grads));
  }
  const result = vars.map((v) => v.dataSync() as Float32Array);
  const counts = { ...eden.counts };
  tf.dispose([...vars, ...clones]);
  tfjs.dispose();
  eden.dispose();
  return { values: result, counts: optimiser === 'eden' ? counts : undefined };
}

describe("Adam matches TF.js's tf.train.adam", () => {
  before(async () => {
    await useBackend('wasm');
  });

  for (const shared of [false, true]) {
    it(shared ? 'with shared buffers (tensor ops)' : 'in place (fused native kernel)', async (t) => {
      if (!shared && !nativeStatus().active) return skipOrFail(t, 'native', 'native kernels not built');
      const before = tf.memory().numTensors;
      const expected = run('tfjs', shared).values;
      const got = run('eden', shared);
      assert.equal(tf.memory().numTensors, before);
      // Every update took the path this case is about (the clone's sharing ends at the first assign).
      if (shared) assert.ok(got.counts!.tensorOps >= 2, JSON.stringify(got.counts));
      else assert.deepEqual(got.counts, { inPlace: 10, tensorOps: 0 });
      let worst = 0;
      // Parameters are O(1) and each of the 5 updates is 0.01 x O(1): float32 rounding of the two
      // formulations stays near 1e-7 absolute; a wrong bias correction or moment would be ~1e-3.
      expected.forEach((e, k) => e.forEach((v, i) => (worst = Math.max(worst, Math.abs(got.values[k]![i]! - v)))));
      assert.ok(worst < 2e-6, `max absolute difference ${worst}`);
    });
  }
});
