/**
 * The whole gradient of a small ResNet (training-mode batch norm, max pool, residual adds) with an
 * InfoNCE-style head, on one backend against the cpu backend: every parameter's gradient within
 * 1e-4 relative. Run on wasm by resnet-gradient.test.ts, on webgpu by webgpu-ops.test.ts.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend, type BackendName } from '../../src/engine/backend.js';
import { createBackbone, type ResNet } from '../../src/models/resnet.js';
import { gaussian } from '../../src/models/layers.js';
import { Rng } from '../../src/core/rng.js';

const images = gaussian(4 * 48 * 48, new Rng(3));
const targets = gaussian(4 * 64, new Rng(4));

/** A contrastive-style loss on the pooled features: L2-normalise, similarity logits, log-softmax. */
export function contrastiveLoss(net: ResNet): tf.Scalar {
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
  const { grads, value } = tf.variableGrads(() => contrastiveLoss(net), net.store.trainable());
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

export async function compareWholeGradient(backend: BackendName): Promise<void> {
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
