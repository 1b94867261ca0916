/**
 * Per-layer tuning of the webgpu convolutions (EDEN_WEBGPU_CONV=tune; engine/webgpu-conv-tune.ts),
 * on Mesa's lavapipe in CI: every candidate tiling the tuner may choose computes the forward pass
 * and both gradients as the cpu backend does; convolutions are noted once, each is timed with
 * every candidate and the fastest kept; tuned choices are what then runs; a candidate the device
 * refuses is rejected. (The pretraining runner's tuning between steps: webgpu-replay.test.ts.)
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { probeWebGpu } from '../src/engine/webgpu.js';
import { candidateTilings, clearTunedConvolutions, setTunedConvolution, takeUntunedConvolutions, tunedConvolutions, webGpuConvGemms } from '../src/engine/webgpu-conv.js';
import { convTuningSeconds, describeConvChoice, describeConvTuning, tuneWebGpuConvolutions } from '../src/engine/webgpu-conv-tune.js';
import { worstRelError } from './helpers/parity.js';
import { skipOrFail } from './helpers/tools.js';

type Shape4 = [number, number, number, number];
interface Case {
  name: string;
  x: Shape4;
  w: Shape4;
  stride: number | [number, number];
  pad: 'same' | 'valid';
}

// The tilings other than chooseTiling's pick (which the EDEN_WEBGPU_CONV=all cases of
// webgpu-ops.test.ts cover) on two layers: scalar loads, partial tiles and split reductions in all
// three kernels; vec4 loads, the input gradient's stride phases and a split per phase.
const CASES: Case[] = [
  { name: '3x3, 70 -> 66 channels (scalar loads, partial tiles, split reductions)', x: [2, 16, 16, 70], w: [3, 3, 70, 66], stride: 1, pad: 'same' },
  { name: '3x3 stride 2, 9x9, 16 -> 160 (vec4 loads, phases and a split reduction)', x: [2, 9, 9, 16], w: [3, 3, 16, 160], stride: 2, pad: 'same' },
];
// The tuner's own test: a small layer (every candidate compiled and timed).
const SMALL: Case = { name: '1x1 stride [2, 3] valid, 12x13, 24 -> 36', x: [2, 12, 13, 24], w: [1, 1, 24, 36], stride: [2, 3], pad: 'valid' };

const convOf = (c: Case) => (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad);

/** Run the case's forward pass and both gradients once on webgpu (noting its convolutions when tuning). */
function runOnce(c: Case): void {
  tf.tidy(() => {
    const x = tf.randomNormal(c.x, 0, 1, 'float32', 3);
    const w = tf.randomNormal(c.w, 0, 0.2, 'float32', 4);
    tf.grads((a, b) => tf.sum(convOf(c)(a!, b!)))([x, w]);
  });
}

/** The convolution, its input gradient and its filter gradient under a random cotangent, on the current backend. */
async function valueAndGrads(c: Case): Promise<Float32Array[]> {
  const out = tf.tidy(() => {
    const x = tf.randomUniform(c.x, -1, 1, 'float32', 5);
    const w = tf.randomUniform(c.w, -0.3, 0.3, 'float32', 6);
    const y = convOf(c)(x, w);
    const dy = tf.randomUniform(y.shape, -1, 1, 'float32', 7);
    const [dx, dw] = tf.grads((a, b) => tf.sum(tf.mul(convOf(c)(a!, b!), dy)))([x, w]);
    return [y, dx!, dw!];
  });
  const values = await Promise.all(out.map(async (v) => (await v.data()) as Float32Array));
  tf.dispose(out);
  return values;
}

function withEnv<T>(value: string | undefined, work: () => Promise<T>): Promise<T> {
  const before = process.env['EDEN_WEBGPU_CONV'];
  if (value === undefined) delete process.env['EDEN_WEBGPU_CONV'];
  else process.env['EDEN_WEBGPU_CONV'] = value;
  return work().finally(() => {
    if (before === undefined) delete process.env['EDEN_WEBGPU_CONV'];
    else process.env['EDEN_WEBGPU_CONV'] = before;
  });
}

describe('tuned webgpu convolutions (EDEN_WEBGPU_CONV=tune)', () => {
  let skip: string | undefined;
  before(async () => {
    const probe = await probeWebGpu();
    skip = 'reason' in probe ? probe.reason : undefined;
    if (!skip) await useBackend('webgpu');
  });
  after(() => clearTunedConvolutions());

  for (const c of CASES) {
    it(`every candidate tiling matches the cpu backend: ${c.name}`, async (t) => {
      if (skip) return skipOrFail(t, 'webgpu', skip);
      await withEnv('tune', async () => {
        clearTunedConvolutions();
        runOnce(c);
        const signatures = takeUntunedConvolutions();
        assert.deepEqual(signatures.map((s) => s.kind).sort(), ['filter', 'forward', 'input']);
        const tilings = new Map(signatures.map((s) => [s.key, candidateTilings(s.gemm)] as const));
        const rounds = Math.max(...[...tilings.values()].map((l) => l.length));
        assert.ok(rounds >= 4, `${rounds} candidates`);
        await useBackend('cpu');
        const reference = await valueAndGrads(c);
        await useBackend('webgpu');
        for (let k = 0; k < rounds; k++) {
          // The k-th candidate of each of the three (or its last), as the tuner would have chosen it.
          for (const s of signatures) setTunedConvolution(s.key, tilings.get(s.key)![Math.min(k, tilings.get(s.key)!.length - 1)]!);
          const chosen = signatures.map((s) => `${s.kind} ${describeConvChoice(tunedConvolutions().get(s.key)!)}`).join(', ');
          const gemms = webGpuConvGemms();
          const worst = worstRelError(await valueAndGrads(c), reference);
          // The value, then the forward pass again and both gradients: all four Eden's.
          assert.equal(webGpuConvGemms() - gemms, 4, `${chosen}: not every convolution ran the tuned choice`);
          console.log(`[tuned] ${c.name} | ${chosen}: relative error ${worst.toExponential(2)}`);
          assert.ok(worst < 1e-5, `${chosen}: relative error ${worst}`);
        }
        clearTunedConvolutions();
      });
    });
  }

  it('notes each convolution once, times every candidate, keeps the fastest and runs it', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await withEnv('tune', async () => {
      clearTunedConvolutions();
      const c = SMALL;
      runOnce(c);
      runOnce(c); // the same shapes again: still three convolutions to tune
      const tensors = tf.memory().numTensors;
      const results = await tuneWebGpuConvolutions({ repetitions: 2 });
      assert.equal(tf.memory().numTensors, tensors, 'tuning left tensors behind');
      assert.deepEqual(results.map((r) => r.kind).sort(), ['filter', 'forward', 'input']);
      for (const r of results) {
        assert.equal(r.candidates[0]!.choice, 'tfjs');
        assert.ok(r.candidates.length >= 5, `${r.kind}: ${r.candidates.length} candidates`);
        assert.ok(r.candidates.every((x) => Number.isFinite(x.ms) && x.ms > 0), JSON.stringify(r.candidates));
        const fastest = r.candidates.reduce((a, b) => (b.ms < a.ms ? b : a));
        assert.equal(r.chosen, fastest.choice);
        assert.equal(tunedConvolutions().get(r.key), r.chosen);
        console.log(`[tune] ${r.kind}: ${describeConvChoice(r.chosen)} of ${r.candidates.map((x) => `${describeConvChoice(x.choice)} ${x.ms.toFixed(2)} ms`).join(', ')}`);
      }
      const eden0 = results.filter((r) => r.chosen !== 'tfjs').length;
      assert.equal(describeConvTuning(), `convolutions tuned on this device: 3 (Eden's kernels for ${eden0}, TF.js's for ${3 - eden0}), ${convTuningSeconds().toFixed(1)} s`);
      // Nothing left to tune; the next run runs the choices: as many of Eden's GEMMs as were chosen.
      assert.deepEqual(await tuneWebGpuConvolutions(), []);
      const eden = results.filter((r) => r.chosen !== 'tfjs').length;
      const gemms = webGpuConvGemms();
      runOnce(c);
      assert.equal(webGpuConvGemms() - gemms, eden);
      assert.deepEqual(takeUntunedConvolutions(), []);
      // Choices set by hand are followed too: all TF.js's, then all Eden's.
      for (const r of results) setTunedConvolution(r.key, 'tfjs');
      const g0 = webGpuConvGemms();
      runOnce(c);
      assert.equal(webGpuConvGemms() - g0, 0);
      for (const r of results) setTunedConvolution(r.key, { ri: 2, rj: 2, splits: 1 });
      runOnce(c);
      assert.equal(webGpuConvGemms() - g0, 3);
      clearTunedConvolutions();
    });
    // Without `tune`, nothing is noted or tuned.
    runOnce(SMALL);
    assert.deepEqual(takeUntunedConvolutions(), []);
    assert.deepEqual(await tuneWebGpuConvolutions(), []);
  });

  it('rejects a candidate the device refuses, and keeps tuning', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await withEnv('tune', async () => {
      clearTunedConvolutions();
      runOnce(SMALL);
      // 64 x 1 outputs per thread: 64 KB of workgroup memory, over WebGPU's 16 KB default limit.
      const results = await tuneWebGpuConvolutions({ repetitions: 1, candidates: () => [{ ri: 64, rj: 1, splits: 1 }, { ri: 4, rj: 4, splits: 1 }] });
      assert.equal(results.length, 3);
      for (const r of results) {
        const [tfjs, refused, fine] = r.candidates;
        assert.equal(tfjs!.rejected, undefined);
        assert.equal(refused!.ms, Infinity);
        assert.match(refused!.rejected ?? '', /^device error: .*workgroup/i, JSON.stringify(refused));
        assert.equal(fine!.rejected, undefined);
        assert.ok(Number.isFinite(fine!.ms));
        assert.notDeepEqual(r.chosen, { ri: 64, rj: 1, splits: 1 });
      }
      // The device is usable afterwards: the chosen kernels give TF.js's results.
      const gemms = webGpuConvGemms();
      runOnce(SMALL);
      assert.equal(webGpuConvGemms() - gemms, results.filter((r) => r.chosen !== 'tfjs').length);
      clearTunedConvolutions();
    });
  });
});
