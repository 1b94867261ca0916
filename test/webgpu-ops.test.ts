/**
 * Every op a ResNet / U-Net training step uses, value and gradient, on webgpu (lavapipe in CI)
 * against the pure-JS cpu backend (cases: helpers/op-cases.ts), a small ResNet's whole gradient
 * (helpers/whole-gradient.ts), and Eden's implicit-GEMM convolutions (engine/webgpu-conv.ts) with
 * every routing. Relative error must stay below 1e-4.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { parity, formatParity } from './helpers/parity.js';
import { convCases, paritySuite, TOLERANCE } from './helpers/op-cases.js';
import { compareWholeGradient } from './helpers/whole-gradient.js';
import { probeWebGpu } from '../src/engine/webgpu.js';
import { webGpuConvGemms, webGpuConvVec4Gemms } from '../src/engine/webgpu-conv.js';
import { rowBlocks } from '../src/engine/webgpu-batchnorm.js';
import { skipOrFail } from './helpers/tools.js';
import { useBackend } from '../src/engine/backend.js';

let webgpuSkip: string | undefined = 'not probed';
before(async () => {
  const probe = await probeWebGpu();
  webgpuSkip = 'reason' in probe ? probe.reason : undefined;
  if ('adapter' in probe) console.log(`webgpu adapter: ${probe.adapter}`);
});
paritySuite('webgpu', () => webgpuSkip, 'webgpu');

describe('ResNet training gradient on webgpu', () => {
  it('webgpu matches cpu for every parameter (rel. error < 1e-4)', async (t) => {
    if (webgpuSkip) return skipOrFail(t, 'webgpu', webgpuSkip);
    await compareWholeGradient('webgpu');
  });
});

describe('webgpu implicit-GEMM convolutions (engine/webgpu-conv.ts)', () => {
  // The default routing runs only some convolutions there (see route()); here all three run there,
  // forward and both gradients, against the cpu backend.
  for (const c of convCases) {
    it(`all three kernels (EDEN_WEBGPU_CONV=all): ${c.name}`, async (t) => {
      if (webgpuSkip) return skipOrFail(t, 'webgpu', webgpuSkip);
      process.env['EDEN_WEBGPU_CONV'] = 'all';
      const before = webGpuConvGemms();
      try {
        const r = await parity('webgpu', c.fn, c.specs);
        // The forward pass and both gradients ran there (TF.js's own kernels are the fallback).
        assert.ok(webGpuConvGemms() - before >= 3, `only ${webGpuConvGemms() - before} convolutions ran as implicit GEMMs`);
        console.log(`[webgpu, all convolutions] ${formatParity(c.name, r)}`);
        assert.ok(r.worst < TOLERANCE, `${c.name}: relative error ${r.worst} >= ${TOLERANCE}`);
      } finally {
        delete process.env['EDEN_WEBGPU_CONV'];
      }
    });
  }

  it('vec4 loads (channels a multiple of 4) give the scalar loads\' results to the bit', async (t) => {
    if (webgpuSkip) return skipOrFail(t, 'webgpu', webgpuSkip);
    const previous = tf.getBackend();
    await useBackend('webgpu');
    process.env['EDEN_WEBGPU_CONV'] = 'all';
    // Same tiles, same multiply-add order: only how they are loaded differs. Shapes: both operands
    // vectorised with full and partial (guarded) vector loads, and the stem (1 channel: x scalar, w vec4).
    type Shape4 = [number, number, number, number];
    const shapes: [Shape4, Shape4, number][] = [[[3, 17, 15, 20], [3, 3, 20, 80], 2], [[2, 9, 9, 64], [3, 3, 64, 8], 1], [[2, 16, 16, 1], [7, 7, 1, 8], 2]];
    const run = async (xShape: Shape4, wShape: Shape4, stride: number): Promise<Float32Array[]> => {
      const out = tf.tidy(() => {
        const x = tf.randomUniform(xShape, -1, 1, 'float32', 7) as tf.Tensor4D;
        const w = tf.randomUniform(wShape, -1, 1, 'float32', 8) as tf.Tensor4D;
        const dy = tf.randomUniform([xShape[0]!, Math.ceil(xShape[1]! / stride), Math.ceil(xShape[2]! / stride), wShape[3]!], -1, 1, 'float32', 9);
        let y: tf.Tensor | undefined;
        const [dx, dw] = tf.grads((a, b) => tf.sum(tf.mul((y = tf.keep(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'same'))), dy)))([x, w]);
        return [y!, dx!, dw!];
      });
      const values = await Promise.all(out.map(async (v) => (await v.data()) as Float32Array));
      tf.dispose(out);
      return values;
    };
    try {
      for (const [xShape, wShape, stride] of shapes) {
        const before = webGpuConvVec4Gemms();
        const vec = await run(xShape, wShape, stride);
        assert.equal(webGpuConvVec4Gemms() - before, 3, `${xShape} * ${wShape}: vec4 loads in all three`);
        process.env['EDEN_WEBGPU_CONV_VEC4'] = '0';
        const scalar = await run(xShape, wShape, stride);
        delete process.env['EDEN_WEBGPU_CONV_VEC4'];
        assert.equal(webGpuConvVec4Gemms() - before, 3, 'none with EDEN_WEBGPU_CONV_VEC4=0');
        vec.forEach((v, i) => assert.deepEqual(v, scalar[i], `${xShape} * ${wShape}: output ${i}`));
      }
    } finally {
      delete process.env['EDEN_WEBGPU_CONV'];
      delete process.env['EDEN_WEBGPU_CONV_VEC4'];
      if (previous) await tf.setBackend(previous);
    }
  });

  it('splits batch norm reductions over many rows into blocks, for occupancy (rowBlocks)', () => {
    assert.equal(rowBlocks(1000, 40), 3); // the op case above
    assert.equal(rowBlocks(120, 7), 1); // few rows: one program, as before
    assert.equal(rowBlocks(16 * 64 * 64, 64), 128); // (a)'s stem at 128 px, batch 16: 2 x 128 = 256 workgroups
    assert.equal(rowBlocks(16 * 4 * 4, 512), 1); // its last stage: 16 channel tiles, 256 rows
  });

  it('route by default the filter gradient and small or 1 x 1 forward passes there, nothing with EDEN_WEBGPU_CONV=0', async (t) => {
    if (webgpuSkip) return skipOrFail(t, 'webgpu', webgpuSkip);
    const previous = tf.getBackend();
    await tf.setBackend('webgpu');
    const count = (env: string | undefined, xShape: [number, number, number, number], wShape: [number, number, number, number], stride: number): number => {
      if (env === undefined) delete process.env['EDEN_WEBGPU_CONV'];
      else process.env['EDEN_WEBGPU_CONV'] = env;
      const before = webGpuConvGemms();
      tf.tidy(() => {
        const x = tf.randomNormal(xShape) as tf.Tensor4D;
        const w = tf.randomNormal(wShape) as tf.Tensor4D;
        tf.grads((a, b) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'same')))([x, w]);
      });
      delete process.env['EDEN_WEBGPU_CONV'];
      return webGpuConvGemms() - before;
    };
    try {
      // Deep and small (16 x 512 outputs): forward and filter gradient here; input gradient TF.js's.
      assert.equal(count(undefined, [4, 2, 2, 512], [3, 3, 512, 512], 1), 2);
      // A large output, 3 x 3: only the filter gradient. 1 x 1: forward too.
      assert.equal(count(undefined, [4, 16, 16, 64], [3, 3, 64, 64], 1), 1);
      assert.equal(count(undefined, [4, 16, 16, 64], [1, 1, 64, 64], 1), 2);
      assert.equal(count('all', [4, 16, 16, 64], [3, 3, 64, 64], 1), 3);
      assert.equal(count('0', [4, 2, 2, 512], [3, 3, 512, 512], 1), 0);
    } finally {
      await tf.setBackend(previous);
    }
  });
});
