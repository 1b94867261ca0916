/**
 * Every op a ResNet / U-Net training step uses, value and gradient, on wasm against the pure-JS
 * cpu backend (cases: helpers/op-cases.ts; webgpu: webgpu-ops.test.ts). Relative error must stay
 * below 1e-4; each op's error is printed so that CI logs show the margins. test/native.test.ts runs
 * this file again with the native kernels disabled, so the wasm fallback stays correct too.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { paritySuite } from './helpers/op-cases.js';
import { relError } from './helpers/parity.js';
import { useBackend, type BackendName } from '../src/engine/backend.js';
import { nativeCallCounts, nativeStatus } from '../src/engine/native.js';
import { Rng } from '../src/core/rng.js';
import { gaussian } from '../src/models/layers.js';
import { createBackbone } from '../src/models/resnet.js';
import { UNet } from '../src/models/unet.js';

paritySuite('wasm', () => undefined);

describe('inference with the batch norms folded into the convolutions (wasm)', () => {
  // Basic blocks (U-Net on a resnet-tiny encoder) and bottlenecks with their downsample branch
  // (resnet50), with batch-norm parameters and running statistics far from their initial 1 / 0.
  for (const arch of ['resnet-tiny', 'resnet50']) {
    it(`${arch}: a U-Net's logits equal the cpu backend's, where the layers run as written`, async () => {
      const forward = async (backend: BackendName): Promise<Float32Array> => {
        await useBackend(backend);
        const unet = new UNet(createBackbone(arch, { width: 8, seed: 3 }), { classes: 2, seed: 3 });
        const rng = new Rng(11);
        for (const store of [unet.encoder.store, unet.decoder]) {
          for (const [name, v] of store.variables) {
            if (!/(bn\d|downsample\.1)\.(weight|bias|running_mean|running_var)$/.test(name)) continue;
            const values = gaussian(v.size, rng, 0.5);
            // Variances from 1 up, scales around 1: folding divides by sqrt(var + eps). (Logits, not
            // probabilities: a random resnet50's logits reach 1e3, where sigmoid hides any error.)
            if (/running_var$/.test(name)) for (let i = 0; i < values.length; i++) values[i] = 1 + values[i]! ** 2;
            if (/\.weight$/.test(name)) for (let i = 0; i < values.length; i++) values[i] = values[i]! + 1;
            v.assign(tf.tensor(values, v.shape));
          }
        }
        const x = tf.tensor4d(gaussian(2 * 64 * 64, new Rng(5)), [2, 64, 64, 1]);
        const p = tf.tidy(() => unet.forward(x, { training: false }));
        const values = (await p.data()) as Float32Array;
        tf.dispose([x, p]);
        unet.encoder.dispose();
        unet.decoder.dispose();
        return values;
      };
      const reference = await forward('cpu');
      const before = nativeCallCounts()['fusedConv2d'] ?? 0;
      const folded = await forward('wasm');
      if (nativeStatus().active) assert.ok((nativeCallCounts()['fusedConv2d'] ?? 0) > before, 'the native fused convolution did not run');
      const err = relError(folded, reference);
      console.log(`[wasm] ${arch} U-Net inference, folded vs as written: rel. error ${err.toExponential(2)}`);
      assert.ok(err < 1e-4, `relative error ${err}`);
    });
  }
});

describe('bilinear resize gradient against its hand-built transpose', () => {
  // Resizing is linear, so <dy, resize(x)> has gradient resize^T dy; entry i is <dy, resize(e_i)>.
  // Computed here from forward calls only, which both backends agree on.
  for (const [alignCorners, halfPixel] of [[false, false], [true, false], [false, true]] as [boolean, boolean][]) {
    for (const backend of ['cpu', 'wasm'] as BackendName[]) {
      it(`${backend}, alignCorners=${alignCorners}, halfPixelCenters=${halfPixel}, 5x6 -> 9x13`, async () => {
        const { useBackend } = await import('../src/engine/backend.js');
        await useBackend(backend);
        const [h, w, oh, ow] = [5, 6, 9, 13];
        const dy = tf.randomNormal([1, oh, ow, 1], 0, 1, 'float32', 7);
        const got = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.image.resizeBilinear(x as tf.Tensor4D, [oh, ow], alignCorners, halfPixel), dy)))(tf.zeros([1, h, w, 1]));
        const gotData = await got.data();
        const dyData = await dy.data();
        let worst = 0;
        for (let i = 0; i < h * w; i++) {
          const basis = tf.oneHot([i], h * w).reshape([1, h, w, 1]).cast('float32') as tf.Tensor4D;
          const column = await tf.image.resizeBilinear(basis, [oh, ow], alignCorners, halfPixel).data();
          let expected = 0;
          for (let j = 0; j < column.length; j++) expected += column[j]! * dyData[j]!;
          worst = Math.max(worst, Math.abs(expected - gotData[i]!));
          basis.dispose();
        }
        console.log(`[${backend}] resize grad vs transpose (align=${alignCorners}, half=${halfPixel}): max abs error ${worst.toExponential(2)}`);
        assert.ok(worst < 1e-4, `max abs error ${worst}`);
      });
    }
  }
});
