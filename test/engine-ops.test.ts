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
import type { BackendName } from '../src/engine/backend.js';

paritySuite('wasm', () => undefined);

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
