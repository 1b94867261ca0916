/**
 * Functional layers over named variables. Tensors are NHWC throughout; conv weights are HWIO
 * ([kh, kw, in, out]). Parameter names follow PyTorch's state-dict names (`layer1.0.conv1.weight`,
 * `bn1.running_mean`) so that checkpoints map one to one onto torchvision's.
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../core/rng.js';
import { fusedBatchNormTrain, nativeBatchNormRelu, nativeFusedAvailable } from '../engine/native.js';
import { webGpuBatchNormAvailable } from '../engine/webgpu-batchnorm.js';
import { webGpuRunningStats } from '../engine/webgpu-inplace.js';

/** A flat, ordered set of named variables: trainable parameters and buffers (BN statistics). */
export class ParameterStore {
  readonly variables = new Map<string, tf.Variable>();
  private readonly buffers = new Set<string>();

  add(name: string, value: tf.Tensor, trainable = true): tf.Variable {
    if (this.variables.has(name)) throw new Error(`parameter '${name}' defined twice`);
    // Variable names are global in TF.js: make them unique per store, keep ours as the map key.
    const v = tf.variable(value, trainable, `${name}#${storeIds.next()}`);
    value.dispose();
    this.variables.set(name, v);
    if (!trainable) this.buffers.add(name);
    return v;
  }

  get(name: string): tf.Variable {
    const v = this.variables.get(name);
    if (!v) throw new Error(`no parameter named '${name}'`);
    return v;
  }

  /** Trainable variables, in definition order. */
  trainable(): tf.Variable[] {
    return [...this.variables.entries()].filter(([n]) => !this.buffers.has(n)).map(([, v]) => v);
  }

  isBuffer(name: string): boolean {
    return this.buffers.has(name);
  }

  /** Number of trainable scalars. */
  parameterCount(): number {
    return this.trainable().reduce((n, v) => n + v.size, 0);
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}

const storeIds = (() => {
  let i = 0;
  return { next: () => ++i };
})();

/** While set, the random initialisers give zeros (withoutRandomInit). */
let randomInitSkipped = false;

/**
 * Build a model whose every weight is about to be read from a file without drawing its random
 * initial weights: 11M normal draws in JavaScript took 0.6 s of each `eden segment` start.
 */
export function withoutRandomInit<T>(build: () => T): T {
  const was = randomInitSkipped;
  randomInitSkipped = true;
  try {
    return build();
  } finally {
    randomInitSkipped = was;
  }
}

/** He (Kaiming) normal init for a conv with fan_out mode, as torchvision's ResNet uses. */
export function kaimingNormal(shape: number[], fanOut: number, rng: Rng): tf.Tensor {
  if (randomInitSkipped) return tf.zeros(shape);
  const std = Math.sqrt(2 / fanOut);
  return tf.tensor(gaussian(shape.reduce((a, b) => a * b, 1), rng, std), shape);
}

/** Uniform(-bound, bound), the default PyTorch Linear init with bound = 1/sqrt(fan_in). */
export function uniformInit(shape: number[], bound: number, rng: Rng): tf.Tensor {
  if (randomInitSkipped) return tf.zeros(shape);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.uniform(-bound, bound);
  return tf.tensor(out, shape);
}

export function gaussian(n: number, rng: Rng, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller, two normals per pair of uniforms.
    const u = 1 - rng.next();
    const v = rng.next();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

export function defineConv(store: ParameterStore, name: string, kernel: number, cin: number, cout: number, rng: Rng): void {
  store.add(`${name}.weight`, kaimingNormal([kernel, kernel, cin, cout], kernel * kernel * cout, rng));
}

export function defineBatchNorm(store: ParameterStore, name: string, channels: number, zeroGamma = false): void {
  store.add(`${name}.weight`, zeroGamma ? tf.zeros([channels]) : tf.ones([channels]));
  store.add(`${name}.bias`, tf.zeros([channels]));
  store.add(`${name}.running_mean`, tf.zeros([channels]), false);
  store.add(`${name}.running_var`, tf.ones([channels]), false);
}

/** PyTorch's default Linear init as tensors ([din, dout] weight, [dout] bias). */
export function linearInit(din: number, dout: number, rng: Rng): { weight: tf.Tensor; bias: tf.Tensor } {
  const bound = 1 / Math.sqrt(din);
  return { weight: uniformInit([din, dout], bound, rng), bias: uniformInit([dout], bound, rng) };
}

export function defineLinear(store: ParameterStore, name: string, din: number, dout: number, rng: Rng): void {
  const bound = 1 / Math.sqrt(din);
  store.add(`${name}.weight`, uniformInit([din, dout], bound, rng));
  store.add(`${name}.bias`, uniformInit([dout], bound, rng));
}

export function conv(store: ParameterStore, name: string, x: tf.Tensor4D, stride: number, pad: 'same' | number = 'same'): tf.Tensor4D {
  const w = store.get(`${name}.weight`) as unknown as tf.Tensor4D;
  return tf.conv2d(x, w, stride, tfPadding(pad));
}

/** A number is PyTorch-style symmetric padding, passed to TF.js as explicit padding. */
function tfPadding(pad: 'same' | number): 'same' | tf.backend_util.ExplicitPadding {
  return typeof pad === 'number' ? ([[0, 0], [pad, pad], [pad, pad], [0, 0]] as tf.backend_util.ExplicitPadding) : pad;
}

/**
 * A convolution followed by a batch norm (and a ReLU with `relu`). In inference on the wasm backend
 * the batch norm is folded into the convolution — weights w * gamma / sqrt(var + eps) per output
 * channel, bias beta - mean * that scale — and the ReLU applied as the output is written: one
 * kernel (the native FusedConv2D, or wasm's) instead of a convolution and three passes over its
 * output (multiply, add, ReLU). The folded weights are recomputed at every call, a pass over the
 * weights, so a model whose weights change between calls (validation during training) stays
 * right. In training, and on other backends (webgpu has its own fused batch norm), the layers run
 * as written. Same values within float rounding (test/engine-ops.test.ts).
 */
export function convBatchNorm(store: ParameterStore, convName: string, bnName: string, x: tf.Tensor4D, stride: number, pad: 'same' | number, ctx: ForwardContext, relu = false): tf.Tensor4D {
  if (ctx.training || tf.getBackend() !== 'wasm') return batchNorm(store, bnName, conv(store, convName, x, stride, pad), ctx, 1e-5, relu);
  const { scale, shift } = inferenceScaleShift(store, bnName, 1e-5);
  const filter = tf.mul(store.get(`${convName}.weight`), scale) as tf.Tensor4D;
  return tf.fused.conv2d({ x, filter, strides: stride, pad: tfPadding(pad), bias: shift, activation: relu ? 'relu' : 'linear' });
}

/** The per-channel affine map of an inference batch norm: y = x * scale + shift. */
function inferenceScaleShift(store: ParameterStore, name: string, eps: number): { scale: tf.Tensor; shift: tf.Tensor } {
  const scale = tf.mul(store.get(`${name}.weight`), tf.rsqrt(tf.add(store.get(`${name}.running_var`), eps)));
  const shift = tf.sub(store.get(`${name}.bias`), tf.mul(store.get(`${name}.running_mean`), scale));
  return { scale, shift };
}

export interface ForwardContext {
  /** Batch statistics and running-stat updates when true; running statistics when false. */
  training: boolean;
  /** Momentum of the running statistics (PyTorch convention: new = (1 - m) * old + m * batch). */
  bnMomentum?: number;
  /** In training, update the running statistics (default true); false for validation passes. */
  updateStats?: boolean;
}

/**
 * Batch normalisation over N, H, W written from broadcast primitives (moments, sub, mul, rsqrt):
 * markedly faster on wasm than TF.js's fused kernel, whose gradient tiles per-channel vectors to
 * full size (ENGINE.md, point 4). In training the running statistics are updated in place, with the
 * unbiased variance as PyTorch does.
 */
export function batchNorm(store: ParameterStore, name: string, x: tf.Tensor4D, ctx: ForwardContext, eps = 1e-5, relu = false): tf.Tensor4D {
  const gamma = store.get(`${name}.weight`);
  const beta = store.get(`${name}.bias`);
  if (!ctx.training) {
    // x * scale + shift: two passes over x instead of three (sub, mul, add); the per-channel
    // vectors are folded first.
    const { scale, shift } = inferenceScaleShift(store, name, eps);
    const y = tf.add(tf.mul(x, scale), shift) as tf.Tensor4D;
    return relu ? tf.relu(y) : y;
  }
  const { y, mean, variance } = batchNormTrain(x, gamma, beta, eps, relu);
  if (ctx.updateStats !== false) updateRunningStats(store, name, mean, variance, x.size / x.shape[3], ctx.bnMomentum ?? 0.1);
  return y;
}

/**
 * The training-mode batch norm itself: y = (x - mean) * rsqrt(var + eps) * gamma + beta, with
 * `relu`, max(0, y) (mean and variance are those of x either way).
 */
export function batchNormTrain(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5, relu = false): { y: tf.Tensor4D; mean: tf.Tensor; variance: tf.Tensor } {
  // The ReLU inside the kernel where it can take it: webgpu's always, the native one when built with it.
  if (webGpuBatchNormAvailable() || (relu && nativeBatchNormRelu())) {
    const r = fusedBatchNormTrain(x, gamma, beta, eps, relu);
    return { y: r.y as tf.Tensor4D, mean: r.mean, variance: r.variance };
  }
  const r = nativeFusedAvailable() ? fusedBatchNormTrain(x, gamma, beta, eps) : batchNormFromPrimitives(x, gamma, beta, eps);
  return { y: (relu ? tf.relu(r.y) : r.y) as tf.Tensor4D, mean: r.mean, variance: r.variance };
}

/** The same computation from broadcast primitives, for backends without the fused kernel. */
export function batchNormFromPrimitives(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5): { y: tf.Tensor4D; mean: tf.Tensor; variance: tf.Tensor } {
  const mean = tf.mean(x, [0, 1, 2]);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), [0, 1, 2]);
  const y = tf.add(tf.mul(centered, tf.mul(tf.rsqrt(tf.add(variance, eps)), gamma)), beta) as tf.Tensor4D;
  return { y, mean, variance };
}

function updateRunningStats(store: ParameterStore, name: string, mean: tf.Tensor, variance: tf.Tensor, count: number, momentum: number): void {
  const runningMean = store.get(`${name}.running_mean`);
  const runningVar = store.get(`${name}.running_var`);
  const unbias = count / Math.max(1, count - 1);
  if (webGpuRunningStats(runningMean, runningVar, mean, variance, momentum, unbias)) return;
  tf.tidy(() => {
    const unbiased = tf.mul(variance, unbias);
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - momentum), tf.mul(mean, momentum)));
    runningVar.assign(tf.add(tf.mul(runningVar, 1 - momentum), tf.mul(unbiased, momentum)));
  });
}

export function linear(store: ParameterStore, name: string, x: tf.Tensor2D): tf.Tensor2D {
  return tf.add(tf.matMul(x, store.get(`${name}.weight`) as unknown as tf.Tensor2D), store.get(`${name}.bias`)) as tf.Tensor2D;
}

/** Max pool 3x3 stride 2 with PyTorch's explicit padding 1 (not TF's asymmetric 'same'). */
export function maxPool3x3s2(x: tf.Tensor4D): tf.Tensor4D {
  // Padding with -inf-like values keeps the max identical to PyTorch's padding=1.
  const padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], -3.4e38);
  return tf.maxPool(padded, 3, 2, 'valid');
}
