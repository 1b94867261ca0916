/**
 * GPU time from timestamp queries (engine/webgpu-timing.ts), on Mesa's lavapipe in CI: every compute
 * pass of the timed work gets timestamps and nothing else changes (the work's results are those of
 * an untimed run: an invalid command buffer would drop TF.js's work silently), the time lies within
 * the wall time around it and is not quantized, passes past the limit and passes TF.js's profiler
 * times itself are counted as untimed, and misuse is refused with a message.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { probeWebGpu } from '../src/engine/webgpu.js';
import { timeGpuPasses } from '../src/engine/webgpu-timing.js';
import { skipOrFail } from './helpers/tools.js';

/** A chain of matmuls over several read-backs: several command buffers, several passes. */
async function work(a: tf.Tensor2D, reads: number): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let x = a;
  for (let r = 0; r < reads; r++) {
    for (let i = 0; i < 20; i++) {
      const y = tf.tidy(() => tf.tanh(tf.matMul(x, a)).mul(0.5));
      if (x !== a) x.dispose();
      x = y as tf.Tensor2D;
    }
    out.push((await x.data()) as Float32Array);
  }
  if (x !== a) x.dispose();
  return out;
}

/** Counts compute passes begun on any command encoder (below the timer's wrapper). */
function countPasses(): { count(): number; stop(): void } {
  const proto = GPUCommandEncoder.prototype;
  const begin = proto.beginComputePass;
  let n = 0;
  proto.beginComputePass = function (this: GPUCommandEncoder, descriptor?: GPUComputePassDescriptor) {
    n++;
    return begin.call(this, descriptor);
  };
  return { count: () => n, stop: () => void (proto.beginComputePass = begin) };
}

describe('GPU time from timestamp queries (webgpu)', () => {
  let skip: string | undefined;
  before(async () => {
    const probe = await probeWebGpu();
    skip = 'reason' in probe ? probe.reason : undefined;
    if (!skip) await useBackend('webgpu');
  });

  it('times every pass of the work without changing its results; the time lies within the wall time and is not quantized', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const a = tf.randomNormal([256, 256], 0, 0.1, 'float32', 7) as tf.Tensor2D;
    const expected = await work(a, 3);
    const tensors = tf.memory().numTensors;
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    const create = device.createCommandEncoder;
    const passes = countPasses();
    const t0 = performance.now();
    const { result, time } = await timeGpuPasses(() => work(a, 3));
    const wallS = (performance.now() - t0) / 1000;
    passes.stop();
    assert.ok(time, 'lavapipe offers timestamp-query: the time must be measured');
    assert.deepEqual(result, expected, 'the timed work computed something else');
    assert.ok(time.passes >= 3, `at least one pass per read-back, got ${time.passes}`);
    // The timer's own read-back (resolve + copy) is one command buffer without a compute pass.
    assert.equal(time.passes + time.untimedPasses, passes.count());
    assert.equal(time.untimedPasses, 0);
    assert.ok(time.gpuS > 0 && time.gpuS <= wallS, `GPU ${time.gpuS} s within the wall time ${wallS} s`);
    // Dawn's browser quantization rounds timestamps down to 2^16 ns; Eden turns it off.
    assert.notEqual(Math.round(time.gpuS * 1e9) % 65536, 0, `${time.gpuS} s is a multiple of 2^16 ns: quantized`);
    assert.equal(device.createCommandEncoder, create, 'the device was left wrapped');
    assert.equal(tf.memory().numTensors, tensors);
    a.dispose();
  });

  it('counts passes past maxPasses, and those TF.js profiles itself, as untimed', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const a = tf.randomNormal([64, 64], 0, 0.1, 'float32', 8) as tf.Tensor2D;
    const limited = await timeGpuPasses(() => work(a, 3), { maxPasses: 1 });
    assert.equal(limited.time!.passes, 1);
    assert.ok(limited.time!.untimedPasses >= 2, `untimed ${limited.time!.untimedPasses}`);
    assert.ok(limited.time!.gpuS > 0);

    const profiled = await timeGpuPasses(() => tf.profile(() => tf.tidy(() => tf.matMul(a, a).add(1))));
    // The profiler gives each kernel a pass with its own timestamps: left alone, and still timed by it.
    assert.ok(profiled.time!.untimedPasses >= 2, `untimed ${profiled.time!.untimedPasses}`);
    const kernels = profiled.result.kernels.filter((k) => k.name === '_FusedMatMul' || k.name === 'BatchMatMul' || k.name === 'Add');
    assert.ok(kernels.length >= 1 && kernels.every((k) => typeof k.kernelTimeMs === 'number' && k.kernelTimeMs > 0), JSON.stringify(profiled.result.kernels.map((k) => [k.name, k.kernelTimeMs])));
    a.dispose();
  });

  it('refuses nesting, and backends other than webgpu', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await assert.rejects(
      timeGpuPasses(() => timeGpuPasses(async () => 0)),
      /already timing: it cannot be nested/,
    );
    // After the refusal the timer works again.
    assert.ok((await timeGpuPasses(async () => 1)).time);
    await useBackend('cpu');
    try {
      await assert.rejects(timeGpuPasses(async () => 0), /needs the webgpu backend \(the backend is cpu\)/);
    } finally {
      await useBackend('webgpu');
    }
  });
});
