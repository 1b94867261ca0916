/**
 * The in-place update dispatches of the webgpu backend (engine/webgpu-inplace.ts) against the
 * tensor-op path on the cpu backend (the numerical reference): SGD with momentum, weight decay and
 * the EMA teacher, Adam, and batch norm's running statistics, over several steps, on a tensor large enough for the kernels' grid-
 * stride loop and on a small odd-sized one. Also: a parameter whose buffer is shared falls back to
 * tensor ops, and no tensor leaks. Runs on Mesa's lavapipe in CI.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { probeWebGpu } from '../src/engine/webgpu.js';
import { webGpuInPlaceDispatches } from '../src/engine/webgpu-inplace.js';
import { Adam, SgdMomentum } from '../src/train/optimizer.js';
import { ParameterStore, batchNorm, defineBatchNorm } from '../src/models/layers.js';
import { MemoryQueue } from '../src/ssl/queue.js';
import { Rng } from '../src/core/rng.js';
import { worstRelError } from './helpers/parity.js';
import { skipOrFail } from './helpers/tools.js';

// 1.3M elements: more than the 4096 workgroups x 256 threads of one pass of the kernel.
const SHAPES = { w: [1300, 1000], b: [5] } as const;
const STEPS = 4;

function values(size: number, seed: number, shift = 0): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => shift + rng.uniform(-1, 1));
}

/** A variable that owns its buffer (as ParameterStore makes them). */
function owned(shape: readonly number[], seed: number): tf.Variable {
  const init = tf.tensor(values(shape.reduce((a, b) => a * b, 1), seed), shape as number[]);
  const v = tf.variable(init, true, `v${seed}`);
  init.dispose();
  return v;
}

function gradients(step: number): Map<string, tf.Tensor> {
  return new Map(Object.entries(SHAPES).map(([name, shape], i) => [name, tf.tensor(values(shape.reduce((a, b) => a * b, 1), 100 * step + i, 0.05 * step), shape as unknown as number[])]));
}

interface Outcome {
  params: Float32Array[];
  teacher?: Float32Array[];
  counts: { inPlace: number; tensorOps: number };
}

/** readBetween: read the parameters back after every step (TF.js then holds host copies of them). */
async function sgd(backend: 'cpu' | 'webgpu', shareBuffers = false, readBetween = false): Promise<Outcome> {
  await useBackend(backend);
  const params = new Map(Object.entries(SHAPES).map(([name, shape], i) => [name, owned(shape, i + 1)]));
  const teacher = new Map(Object.entries(SHAPES).map(([name, shape], i) => [name, owned(shape, i + 11)]));
  const clones = shareBuffers ? [...params.values()].map((p) => tf.clone(p)) : [];
  const opt = new SgdMomentum({ momentum: 0.9, weightDecay: 1e-4 });
  for (let step = 0; step < STEPS; step++) {
    const grads = gradients(step);
    opt.step(params, grads, 0.03 * (1 - step / 10), { params: teacher, ema: 0.99 });
    tf.dispose([...grads.values()]);
    if (readBetween) for (const v of [...params.values(), ...teacher.values()]) await v.data();
  }
  const out = { params: await Promise.all([...params.values()].map(async (p) => (await p.data()) as Float32Array)), teacher: await Promise.all([...teacher.values()].map(async (p) => (await p.data()) as Float32Array)), counts: { ...opt.counts } };
  tf.dispose([...params.values(), ...teacher.values(), ...clones]);
  opt.dispose();
  return out;
}

async function adam(backend: 'cpu' | 'webgpu'): Promise<Outcome> {
  await useBackend(backend);
  const vars = Object.values(SHAPES).map((shape, i) => owned(shape, i + 1));
  const opt = new Adam(0.01);
  for (let step = 0; step < STEPS; step++) {
    const grads = gradients(step);
    opt.applyGradients(vars, Object.fromEntries(vars.map((v, i) => [v.name, grads.get(Object.keys(SHAPES)[i]!)!])));
    tf.dispose([...grads.values()]);
  }
  const out = { params: await Promise.all(vars.map(async (p) => (await p.data()) as Float32Array)), counts: { ...opt.counts } };
  tf.dispose(vars);
  opt.dispose();
  return out;
}

/** Batch norm's running statistics after three training forward passes. */
async function runningStats(backend: 'cpu' | 'webgpu'): Promise<Float32Array[]> {
  await useBackend(backend);
  const store = new ParameterStore();
  defineBatchNorm(store, 'bn', 40);
  for (let step = 0; step < 3; step++) {
    const x = tf.tensor4d(values(4 * 5 * 6 * 40, 50 + step, 0.3 * step), [4, 5, 6, 40]);
    tf.tidy(() => batchNorm(store, 'bn', x, { training: true, bnMomentum: 0.1 })).dispose();
    x.dispose();
  }
  const out = await Promise.all(['bn.running_mean', 'bn.running_var'].map(async (n) => (await store.get(n).data()) as Float32Array));
  store.dispose();
  return out;
}

/** A queue of 10 keys of dim 3 after batches of 4 rows (wrapping twice) and one of 13 (> K). */
async function queueAfterBatches(backend: 'cpu' | 'webgpu'): Promise<{ keys: Float32Array; afterThree: Float32Array; pointer: number }> {
  await useBackend(backend);
  const queue = new MemoryQueue(10, 3, 1);
  let afterThree = new Float32Array();
  for (let i = 0; i < 3; i++) {
    const k = tf.tensor2d(values(12, 70 + i), [4, 3]);
    queue.enqueue(k);
    k.dispose();
    // Read back after every batch (TF.js keeps the host copy): the next in-place write must not leave it stale.
    afterThree = Float32Array.from(await queue.keys.data());
  }
  const big = tf.tensor2d(values(39, 80), [13, 3]);
  queue.enqueue(big);
  big.dispose();
  const out = { keys: (await queue.keys.data()) as Float32Array, afterThree, pointer: queue.pointer };
  queue.dispose();
  return out;
}

describe('in-place update dispatches on webgpu', () => {
  let skip: string | undefined;
  before(async () => {
    const probe = await probeWebGpu();
    skip = 'reason' in probe ? probe.reason : undefined;
  });

  it('SGD + weight decay + EMA teacher: one dispatch per parameter, equal to the tensor ops on cpu', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const reference = await sgd('cpu');
    assert.deepEqual(reference.counts, { inPlace: 0, tensorOps: 2 * STEPS });
    await useBackend('webgpu');
    const [tensors, dispatches] = [tf.memory().numTensors, webGpuInPlaceDispatches()];
    const got = await sgd('webgpu');
    assert.equal(tf.memory().numTensors, tensors);
    assert.deepEqual(got.counts, { inPlace: 2 * STEPS, tensorOps: 0 });
    assert.equal(webGpuInPlaceDispatches() - dispatches, 2 * STEPS);
    // Same formula, same order; only fused multiply-adds may round differently (~1e-7 relative).
    const [p, te] = [worstRelError(got.params, reference.params), worstRelError(got.teacher!, reference.teacher!)];
    console.log(`webgpu fused SGD+EMA vs cpu tensor ops: parameters ${p.toExponential(2)}, teacher ${te.toExponential(2)} relative`);
    assert.ok(p < 1e-6 && te < 1e-6, `parameters ${p}, teacher ${te}`);
    // The update is not trivially equal to the initial values (a kernel that does nothing would fail).
    const init = values(SHAPES.b[0], 2);
    assert.ok(Math.abs(got.params[1]![0]! - init[0]!) > 1e-3);
  });

  it('reads between steps do not hide later in-place updates (TF.js caches what it read)', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const reference = await sgd('cpu');
    const got = await sgd('webgpu', false, true);
    assert.deepEqual(got.counts, { inPlace: 2 * STEPS, tensorOps: 0 });
    const [p, te] = [worstRelError(got.params, reference.params), worstRelError(got.teacher!, reference.teacher!)];
    assert.ok(p < 1e-6 && te < 1e-6, `parameters ${p}, teacher ${te} (a stale host copy reads as the state of an earlier step)`);
  });

  it('a parameter sharing its buffer takes the tensor-op path, with the same result', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const reference = await sgd('cpu');
    const got = await sgd('webgpu', true);
    // The clones share the parameters' buffers until the first assign; afterwards in place.
    assert.equal(got.counts.tensorOps, 2, JSON.stringify(got.counts));
    assert.ok(worstRelError(got.params, reference.params) < 1e-6);
  });

  it("Adam: one dispatch per parameter, equal to TF.js's formula on cpu", async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const reference = await adam('cpu');
    await useBackend('webgpu');
    const tensors = tf.memory().numTensors;
    const got = await adam('webgpu');
    assert.equal(tf.memory().numTensors, tensors);
    assert.deepEqual(got.counts, { inPlace: 2 * STEPS, tensorOps: 0 });
    const worst = worstRelError(got.params, reference.params);
    console.log(`webgpu fused Adam vs cpu tensor ops: ${worst.toExponential(2)} relative`);
    assert.ok(worst < 1e-6, `${worst}`);
  });

  it('batch norm running statistics: one dispatch per layer, equal to the tensor ops on cpu', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const reference = await runningStats('cpu');
    await useBackend('webgpu');
    const [tensors, dispatches] = [tf.memory().numTensors, webGpuInPlaceDispatches()];
    const got = await runningStats('webgpu');
    assert.equal(tf.memory().numTensors, tensors);
    // The first update may find the initial values' buffers shared (tensor ops); the later ones not.
    assert.ok(webGpuInPlaceDispatches() - dispatches >= 2, `${webGpuInPlaceDispatches() - dispatches} dispatches`);
    const worst = worstRelError(got, reference);
    console.log(`webgpu running statistics vs cpu tensor ops: ${worst.toExponential(2)} relative`);
    assert.ok(worst < 1e-6, `${worst}`);
  });

  it('the memory queue: one in-place dispatch per batch, the same rows as the tensor ops on cpu', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    const reference = await queueAfterBatches('cpu');
    await useBackend('webgpu');
    const [tensors, dispatches] = [tf.memory().numTensors, webGpuInPlaceDispatches()];
    const got = await queueAfterBatches('webgpu');
    assert.equal(tf.memory().numTensors, tensors);
    // The three 4-row batches in place (the first may find the initial buffer shared); 13 > K rows: tensor ops.
    assert.ok(webGpuInPlaceDispatches() - dispatches >= 2, `${webGpuInPlaceDispatches() - dispatches} dispatches`);
    assert.equal(got.pointer, reference.pointer);
    assert.deepEqual(Array.from(got.afterThree), Array.from(reference.afterThree));
    assert.deepEqual(Array.from(got.keys), Array.from(reference.keys));
  });
});
