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
import { nativeStatus } from '../src/engine/native.js';

const root = path.join(import.meta.dirname, '..');

describe('native kernels', () => {
  it('report whether they are active, and why not', async () => {
    await useBackend('wasm');
    const status = nativeStatus();
    console.log(`native kernels: ${status.active ? 'active' : 'inactive'} (${status.detail})`);
    if (status.active) {
      assert.match(status.detail, /^oneDNN \d+\.\d+/);
      assert.equal(tf.getKernel('Conv2D', 'wasm')!.kernelFunc.name, 'conv2d');
    } else {
      assert.match(status.detail, /disabled by EDEN_NATIVE=0|not built/);
    }
  });

  it('the wasm fallback passes the parity suites with the addon disabled (EDEN_NATIVE=0)', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', 'test/engine-ops.test.ts', 'test/resnet-gradient.test.ts'], {
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
