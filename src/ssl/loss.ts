/**
 * InfoNCE with the purposive pruner (METHOD.md §4-5), vectorised with masks:
 *
 *   q [B, C], k [B, C]: L2-normalised student queries and teacher keys (C = 128)
 *   queue [K, C]: L2-normalised negatives
 *   lpos = sum(q * k)                    [B, 1]
 *   lneg = q queue^T                     [B, K]
 *   pruned = lneg >= threshold           [B, K]  (per query; the positive is always kept)
 *   logits = [lpos, lneg masked] / tau   [B, 1 + K]
 *   loss = mean(-log_softmax(logits)[:, 0])
 *
 * Pruned logits are replaced by a large negative constant (not -inf, so no inf/NaN can appear in
 * the gradient), which is exactly exp(.) = 0 in float32.
 *
 * On the webgpu backend the same loss, gradient and diagnostics run as a few WGSL programs
 * (engine/webgpu-infonce.ts: ~10 dispatches instead of ~140); elsewhere, as the tensor ops below.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedInfoNce, webGpuInfoNceAvailable } from '../engine/webgpu-infonce.js';

export interface InfoNceOptions {
  temperature: number;
  /** Raw-cosine threshold of the purposive pruner; undefined turns the pruner off. */
  pruneThreshold?: number;
}

export interface InfoNceResult {
  loss: tf.Scalar;
  /** Fraction of the B x K negatives pruned (0 when the pruner is off). */
  prunedFraction: tf.Scalar;
  /** Diagnostics: mean q.k+, and the mean and 99.9th percentile of the raw q.k- over all B x K (before pruning). */
  positive: tf.Scalar;
  negativeMean: tf.Scalar;
  negativeP999: tf.Scalar;
}

const MASKED = -1e9;

export function l2Normalize(x: tf.Tensor2D, eps = 1e-12): tf.Tensor2D {
  return tf.div(x, tf.maximum(tf.norm(x, 2, 1, true), eps));
}

/** Boolean [B, K]: negatives the pruner removes for each query. */
export function pruneMask(lneg: tf.Tensor2D, threshold: number): tf.Tensor2D {
  return tf.greaterEqual(lneg, threshold) as tf.Tensor2D;
}

/** The q-th quantile (q in (0, 1)) of every value of `x`, from its top ceil((1 - q) n) values. */
export function upperQuantile(x: tf.Tensor, q: number): tf.Scalar {
  return tf.tidy(() => {
    const flat = tf.reshape(x, [-1]) as tf.Tensor1D;
    const k = Math.max(1, Math.ceil((1 - q) * flat.size - 1e-9)); // - 1e-9: (1 - 0.999) * 1000 is 1.0000000000000009
    return tf.min(tf.topk(flat, k).values) as tf.Scalar;
  });
}

/** The loss and the step's diagnostics vector, as a training step reads them back. */
export interface InfoNceLoss {
  loss: tf.Scalar;
  /** [prunedFraction, positive, negativeMean, negativeP999] (InfoNceResult's diagnostics, in that order). */
  diagnostics: tf.Tensor1D;
}

/**
 * InfoNCE's loss and diagnostics in the form a training step needs (one vector to read back): on
 * webgpu the fused programs, elsewhere the tensor ops of infoNce. The diagnostics carry no gradient.
 */
export function infoNceLoss(q: tf.Tensor2D, k: tf.Tensor2D, queue: tf.Tensor2D, options: InfoNceOptions): InfoNceLoss {
  return tf.tidy(() => {
    if (webGpuInfoNceAvailable()) return fusedInfoNce(q, k, tf.matMul(q, queue, false, true), options);
    const r = infoNceFromOps(q, k, queue, options);
    return { loss: r.loss, diagnostics: tf.stack([r.prunedFraction, r.positive, r.negativeMean, r.negativeP999]) as tf.Tensor1D };
  });
}

export function infoNce(q: tf.Tensor2D, k: tf.Tensor2D, queue: tf.Tensor2D, options: InfoNceOptions): InfoNceResult {
  if (!webGpuInfoNceAvailable()) return infoNceFromOps(q, k, queue, options);
  return tf.tidy(() => {
    const { loss, diagnostics } = infoNceLoss(q, k, queue, options);
    const [prunedFraction, positive, negativeMean, negativeP999] = tf.unstack(diagnostics) as tf.Scalar[];
    return { loss, prunedFraction: prunedFraction!, positive: positive!, negativeMean: negativeMean!, negativeP999: negativeP999! };
  });
}

function infoNceFromOps(q: tf.Tensor2D, k: tf.Tensor2D, queue: tf.Tensor2D, options: InfoNceOptions): InfoNceResult {
  return tf.tidy(() => {
    const lpos = tf.sum(tf.mul(q, k), 1, true); // [B, 1]
    let lneg: tf.Tensor2D = tf.matMul(q, queue, false, true); // [B, K]
    // Diagnostics: not part of the loss, so no gradient is taken through them.
    const positive = tf.mean(lpos) as tf.Scalar;
    const negativeMean = tf.mean(lneg) as tf.Scalar;
    const negativeP999 = upperQuantile(lneg, 0.999);
    let prunedFraction: tf.Scalar = tf.scalar(0);
    if (options.pruneThreshold !== undefined) {
      const mask = pruneMask(lneg, options.pruneThreshold);
      prunedFraction = tf.mean(tf.cast(mask, 'float32'));
      lneg = tf.where(mask, tf.fill(lneg.shape, MASKED), lneg) as tf.Tensor2D;
    }
    const logits = tf.div(tf.concat([lpos, lneg], 1), options.temperature); // [B, 1 + K]
    const logProb = tf.logSoftmax(logits);
    const loss = tf.neg(tf.mean(logProb.slice([0, 0], [-1, 1]))) as tf.Scalar;
    return { loss, prunedFraction, positive, negativeMean, negativeP999 };
  });
}
