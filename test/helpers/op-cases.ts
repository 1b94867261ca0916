/**
 * The ops a ResNet / U-Net training step uses, as parity cases (value and gradient against the
 * pure-JS cpu backend, relative error below 1e-4), and the suite that runs them on one backend.
 * test/engine-ops.test.ts runs them on wasm, test/webgpu-ops.test.ts on webgpu; the native kernels'
 * test runs the wasm file again with the addon disabled.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { parity, formatParity, type InputSpec } from './parity.js';
import { batchNormFromPrimitives, batchNormTrain, maxPool3x3s2 } from '../../src/models/layers.js';
import { skipOrFail, type Capability } from './tools.js';
import type { BackendName } from '../../src/engine/backend.js';

export const TOLERANCE = 1e-4;

export interface OpCase {
  name: string;
  specs: InputSpec[];
  fn: (...xs: tf.Tensor[]) => tf.Tensor;
}

export const convCases: OpCase[] = [];
for (const [k, stride, pad] of [
  [1, 1, 'same'], [1, 2, 'valid'], [3, 1, 'same'], [3, 2, 'same'], [3, 1, 'valid'], [3, 2, 'valid'], [7, 2, 'same'], [7, 1, 'valid'],
] as [number, number, 'same' | 'valid'][]) {
  convCases.push({
    name: `conv2d ${k}x${k} stride ${stride} ${pad}`,
    specs: [{ shape: [2, 13, 11, 5] }, { shape: [k, k, 5, 6], scale: 0.3 }],
    fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad),
  });
}
convCases.push({
  name: 'conv2d 3x3 stride 2 explicit pad 1 (PyTorch)',
  specs: [{ shape: [2, 12, 12, 4] }, { shape: [3, 3, 4, 8], scale: 0.3 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]),
});
convCases.push({
  name: 'conv2d 7x7 stride 2 explicit pad 3 (stem)',
  specs: [{ shape: [2, 32, 32, 1] }, { shape: [7, 7, 1, 8], scale: 0.3 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, [[0, 0], [3, 3], [3, 3], [0, 0]]),
});
convCases.push({
  // 70 -> 66 channels: partial 64-wide tiles of the webgpu implicit-GEMM kernels (webgpu-conv.ts),
  // and reductions long enough that all three (forward, filter and input gradient) are split.
  name: 'conv2d 3x3 70 -> 66 channels, 16x16 (partial tiles, split reductions)',
  specs: [{ shape: [2, 16, 16, 70] }, { shape: [3, 3, 70, 66], scale: 0.1 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'),
});
convCases.push({
  name: 'conv2d 3x3 stride 2, 17x15, 20 -> 80 channels (uneven strides into the input gradient)',
  specs: [{ shape: [3, 17, 15, 20] }, { shape: [3, 3, 20, 80], scale: 0.2 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'same'),
});
convCases.push({
  // The webgpu input gradient splits rows by stride phase (webgpu-conv.ts inputGradGemm): strides
  // differing per axis and a stride of 3 (phases with 1 or 0 taps of a 2 x 2 filter); then a
  // strided one whose per-phase reduction (4 taps x 160 channels) is itself split.
  name: 'conv2d 3x3 strides [2, 3], 11x13, 6 -> 8 channels (per-axis phases)',
  specs: [{ shape: [2, 11, 13, 6] }, { shape: [3, 3, 6, 8], scale: 0.3 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, [2, 3], 'same'),
});
convCases.push({
  name: 'conv2d 2x2 stride 3 valid, 14x10 (phases without taps)',
  specs: [{ shape: [2, 14, 10, 4] }, { shape: [2, 2, 4, 8], scale: 0.3 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 3, 'valid'),
});
convCases.push({
  name: 'conv2d 3x3 stride 2, 9x9, 16 -> 160 channels (phases and a split reduction)',
  specs: [{ shape: [2, 9, 9, 16] }, { shape: [3, 3, 16, 160], scale: 0.1 }],
  fn: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'same'),
});
convCases.push({
  name: 'conv2dTranspose 2x2 stride 2 (U-Net up)',
  specs: [{ shape: [2, 6, 7, 8] }, { shape: [2, 2, 4, 8], scale: 0.3 }],
  fn: (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [2, 12, 14, 4], 2, 'same'),
});

export const otherCases: OpCase[] = [
  {
    // A batch norm folded into its convolution in inference (layers.ts convBatchNorm): the native
    // FusedConv2D on wasm with the addon (bias and ReLU as oneDNN post-ops), TF.js's elsewhere
    // (not among convCases: webgpu runs TF.js's own fused kernel, not Eden's implicit GEMMs).
    name: 'fused conv2d 3x3 + bias + ReLU, explicit pad 1 (folded batch norm)',
    specs: [{ shape: [2, 12, 11, 6] }, { shape: [3, 3, 6, 10], scale: 0.3 }, { shape: [10], scale: 0.5 }],
    fn: (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 1, pad: [[0, 0], [1, 1], [1, 1], [0, 0]], bias: b, activation: 'relu' }),
  },
  {
    name: 'fused conv2d 1x1 stride 2 + bias, no activation (folded downsample)',
    specs: [{ shape: [2, 9, 10, 8] }, { shape: [1, 1, 8, 12], scale: 0.3 }, { shape: [12], scale: 0.5 }],
    fn: (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 2, pad: 'same', bias: b }),
  },
  {
    name: 'batch norm (train; the fused kernel on wasm with native kernels, and on webgpu)',
    specs: [{ shape: [4, 5, 6, 7], scale: 2, shift: 0.5 }, { shape: [7] }, { shape: [7] }],
    fn: (x, g, b) => batchNormTrain(x as tf.Tensor4D, g!, b!).y,
  },
  {
    // 70 channels: three 32-channel tiles of the webgpu reductions, the last one partial.
    name: 'batch norm (train), 70 channels',
    specs: [{ shape: [3, 7, 9, 70], scale: 2, shift: 0.5 }, { shape: [70] }, { shape: [70] }],
    fn: (x, g, b) => batchNormTrain(x as tf.Tensor4D, g!, b!).y,
  },
  {
    // Fused into the batch norm on webgpu (forward max, backward mask recomputed from x).
    name: 'batch norm + ReLU (train), 70 channels',
    specs: [{ shape: [3, 7, 9, 70], scale: 2, shift: 0.5 }, { shape: [70] }, { shape: [70] }],
    fn: (x, g, b) => batchNormTrain(x as tf.Tensor4D, g!, b!, 1e-5, true).y,
  },
  {
    // 1,000 rows: on webgpu each reduction runs in 3 blocks of rows (334, 334, 332) and a sum of the
    // blocks (rowBlocks; the 40 channels leave the second 32-channel tile partial).
    name: 'batch norm + ReLU (train), 1,000 rows reduced in blocks',
    specs: [{ shape: [5, 10, 20, 40], scale: 2, shift: 0.5 }, { shape: [40] }, { shape: [40] }],
    fn: (x, g, b) => batchNormTrain(x as tf.Tensor4D, g!, b!, 1e-5, true).y,
  },
  {
    name: 'batch norm (train, from primitives)',
    specs: [{ shape: [4, 5, 6, 7], scale: 2, shift: 0.5 }, { shape: [7] }, { shape: [7] }],
    fn: (x, g, b) => batchNormFromPrimitives(x as tf.Tensor4D, g!, b!).y,
  },
  {
    name: 'batch norm statistics outputs (mean, variance)',
    specs: [{ shape: [3, 4, 5, 6], scale: 3, shift: -1 }],
    fn: (x) => {
      const r = batchNormTrain(x as tf.Tensor4D, tf.ones([6]), tf.zeros([6]));
      return tf.concat([r.mean, r.variance]);
    },
  },
  {
    // The gradient reaches y and both statistics: no term is skipped as a known zero (the cases
    // above reach y only, where TF.js's zero-filled statistics gradients are skipped).
    name: 'batch norm, output and statistics together',
    specs: [{ shape: [3, 4, 5, 6], scale: 3, shift: -1 }, { shape: [6] }, { shape: [6] }],
    fn: (x, g, b) => {
      const r = batchNormTrain(x as tf.Tensor4D, g!, b!);
      return tf.concat([tf.reshape(r.y, [-1]), r.mean, r.variance]);
    },
  },
  {
    name: 'max pool 3x3 stride 2 same',
    specs: [{ shape: [2, 9, 10, 3] }],
    fn: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 'same'),
  },
  {
    // ENGINE.md bug 3: every value <= 0 made wasm route the gradient to the wrong element.
    name: 'max pool 3x3 stride 2, all inputs negative',
    specs: [{ shape: [2, 9, 9, 3], shift: -10 }],
    fn: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 'valid'),
  },
  {
    // The stem's max pool: PyTorch's padding as a -inf pad, whose gradient is a Slice.
    name: 'max pool 3x3 stride 2 after a pad of 1 (the stem; gradient: Slice)',
    specs: [{ shape: [2, 10, 9, 5] }],
    fn: (x) => maxPool3x3s2(x as tf.Tensor4D),
  },
  { name: 'slice of a 4-D box, partial on every axis', specs: [{ shape: [3, 6, 5, 7] }], fn: (x) => tf.slice(x, [1, 2, 0, 3], [2, 3, 4, 2]) },
  { name: 'slice of the last axis only', specs: [{ shape: [2, 4, 3, 9] }], fn: (x) => tf.slice(x, [0, 0, 0, 2], [-1, -1, -1, 5]) },
  // (Not 5-D: TF.js 4.22's webgpu pad, the gradient, emits WGSL indexing a 'vec5' and fails.)
  { name: 'slice of a 3-D box', specs: [{ shape: [4, 6, 5] }], fn: (x) => tf.slice(x, [1, 2, 1], [2, 3, 3]) },
  { name: 'matmul', specs: [{ shape: [5, 7] }, { shape: [7, 3] }], fn: (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D) },
  { name: 'matmul a^T', specs: [{ shape: [7, 5] }, { shape: [7, 3] }], fn: (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, true, false) },
  { name: 'matmul b^T', specs: [{ shape: [5, 7] }, { shape: [3, 7] }], fn: (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true) },
  { name: 'matmul a^T b^T', specs: [{ shape: [7, 5] }, { shape: [3, 7] }], fn: (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, true, true) },
  {
    // Long K with a small output: the shape for which webgpu picks split-K (ENGINE.md bug 5).
    name: 'matmul b^T, long K (split-K shape)',
    // Without WEBGPU_MATMUL_PROGRAM_TYPE=3 webgpu's value error here is 1.39 (checked).
    specs: [{ shape: [8, 2048] }, { shape: [64, 2048] }],
    fn: (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true),
  },
  { name: 'batched matmul', specs: [{ shape: [3, 4, 6] }, { shape: [3, 6, 5] }], fn: (a, b) => tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D) },
  {
    name: 'bilinear resize x2 (align corners off)',
    specs: [{ shape: [2, 5, 6, 3] }],
    fn: (x) => tf.image.resizeBilinear(x as tf.Tensor4D, [10, 12]),
  },
  {
    name: 'bilinear resize x2 (half-pixel centers)',
    specs: [{ shape: [2, 5, 6, 3] }],
    fn: (x) => tf.image.resizeBilinear(x as tf.Tensor4D, [10, 12], false, true),
  },
  { name: 'log-softmax', specs: [{ shape: [6, 33], scale: 5 }], fn: (x) => tf.logSoftmax(x) },
  {
    name: 'L2 normalisation',
    specs: [{ shape: [6, 16] }],
    fn: (x) => tf.div(x, tf.sqrt(tf.sum(tf.square(x), 1, true))),
  },
  { name: 'relu + residual add', specs: [{ shape: [2, 4, 4, 3] }, { shape: [2, 4, 4, 3] }], fn: (a, b) => tf.relu(tf.add(a, b)) },
  { name: 'global average pool', specs: [{ shape: [2, 5, 5, 8] }], fn: (x) => tf.mean(x, [1, 2]) },
  { name: 'sigmoid', specs: [{ shape: [3, 17] }], fn: (x) => tf.sigmoid(x) },
  { name: 'concat channels (U-Net skip)', specs: [{ shape: [2, 4, 4, 3] }, { shape: [2, 4, 4, 5] }], fn: (a, b) => tf.concat([a!, b!], 3) },
  {
    name: 'concat of three along axis 2',
    specs: [{ shape: [2, 3, 1, 4] }, { shape: [2, 3, 5, 4] }, { shape: [2, 3, 2, 4] }],
    fn: (a, b, c) => tf.concat([a!, b!, c!], 2),
  },
  {
    // SplitV in the forward pass and (through concat's gradient) the backward pass; long and short runs.
    name: 'split channels 2 / 70 / 3 (SplitV)',
    specs: [{ shape: [2, 3, 4, 75] }],
    fn: (x) => {
      const [a, b, c] = tf.split(x, [2, 70, 3], 3);
      return tf.concat([tf.mul(a!, 2), tf.relu(b!), tf.neg(c!)], 3);
    },
  },
  {
    name: 'split rows 1 / 4 (SplitV on axis 1)',
    specs: [{ shape: [2, 5, 3, 4] }],
    fn: (x) => {
      const [a, b] = tf.split(x, [1, 4], 1);
      return tf.concat([tf.square(a!), b!], 1);
    },
  },
];

/** Every case on `backend`, skipped (or failed, where `capability` is required) while `skipReason` gives a reason. */
export function paritySuite(backend: BackendName, skipReason: () => string | undefined, capability?: Capability): void {
  describe(`${backend} matches the cpu backend (value and gradient, rel. error < ${TOLERANCE})`, () => {
    for (const c of [...convCases, ...otherCases]) {
      it(c.name, async (t) => {
        const reason = skipReason();
        if (reason) return capability ? skipOrFail(t, capability, reason) : t.skip(reason);
        const r = await parity(backend, c.fn, c.specs);
        console.log(`[${backend}] ${formatParity(c.name, r)}`);
        assert.ok(r.worst < TOLERANCE, `${c.name}: relative error ${r.worst} >= ${TOLERANCE}`);
      });
    }
  });
}
