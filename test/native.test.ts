/**
 * The native kernel provider: when the addon is built, every kernel it serves is covered by the
 * parity suites (engine-ops, resnet-gradient), which run with it active; this file reruns those
 * suites with the addon disabled (EDEN_NATIVE=0), so the wasm fallback stays correct too.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { nativeCallCounts, nativeStatus } from '../src/engine/native.js';
import { skipOrFail } from './helpers/tools.js';

const root = path.join(import.meta.dirname, '..');

describe('native kernels', () => {
  it('report whether they are active, and why not', async (t) => {
    await useBackend('wasm');
    const status = nativeStatus();
    console.log(`native kernels: ${status.active ? 'active' : 'inactive'} (${status.detail})`);
    if (!status.active) {
      assert.match(status.detail, /disabled by EDEN_NATIVE=0|not built/);
      // In CI the addon must build and load: a broken build fails here instead of passing quietly.
      if (process.env['EDEN_NATIVE'] !== '0') skipOrFail(t, 'native', `native kernels inactive: ${status.detail}`);
      return;
    }
    assert.match(status.detail, /^oneDNN \d+\.\d+/);
  });

  it('are the kernels that run: the addon counts its own calls', async (t) => {
    await useBackend('wasm');
    if (!nativeStatus().active) return skipOrFail(t, 'native', `native kernels inactive: ${nativeStatus().detail}`);
    const before = nativeCallCounts();
    // A convolution forward and both gradients, a matmul, a channel reduction, an inference
    // convolution with bias and ReLU, a concatenation, a slice and a split through TF.js.
    const x = tf.randomNormal([2, 8, 8, 3]) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 3, 4]) as tf.Tensor4D;
    const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same')));
    const bias = tf.ones([4]);
    const fused = tf.fused.conv2d({ x, filter: w, strides: 1, pad: 'same', bias, activation: 'relu' });
    tf.dispose([...g([x, w]), tf.matMul(tf.ones([16, 32]), tf.ones([32, 8])), tf.mean(x, [0, 1, 2]), bias, fused, tf.concat([x, fused], 3), tf.slice(x, [0, 1, 1, 0], [2, 6, 6, 3]), ...tf.split(fused, [1, 3], 3)]);
    const after = nativeCallCounts();
    for (const k of ['conv2d', 'conv2dBackpropInput', 'conv2dBackpropFilter', 'matmul', 'reduceRows', 'fusedConv2d', 'concatChannels', 'slice']) assert.ok(after[k]! > before[k]!, `${k}: ${before[k]} -> ${after[k]} calls`);
    tf.dispose([x, w]);
  });

  it('the wasm fallback passes the parity suites with the addon disabled (EDEN_NATIVE=0)', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', 'test/engine-ops.test.ts', 'test/resnet-gradient.test.ts', 'test/ssl.test.ts'], {
      cwd: root,
      encoding: 'utf8',
      // NODE_TEST_CONTEXT would make the child report to this runner instead of printing TAP.
      env: { ...process.env, EDEN_NATIVE: '0', NODE_TEST_CONTEXT: undefined },
    });
    const summary = r.stdout.split('\n').filter((l) => /^# (pass|fail)/.test(l));
    console.log(`fallback run: ${summary.join(', ')}`);
    assert.equal(r.status, 0, r.stdout.slice(-3000));
    assert.match(r.stdout, /^# fail 0$/m);
  });
});
