/**
 * Training-mode batch norm on the webgpu backend as a few WGSL programs (issue 13: fewer, larger
 * kernels), registered as the same kernel the native CPU path uses (engine/native.ts,
 * FUSED_BATCH_NORM) so that layers.ts and the gradient are shared.
 *
 * Built from broadcast primitives (layers.ts, batchNormFromPrimitives), one batch norm is 9 dispatches
 * forward and about 20 backward (autograd of mean, sub, square, rsqrt, mul, add, with TF.js's
 * reductions transposing first). Here:
 *   forward:  mean, then the biased variance around it (two passes: no cancellation), then
 *             y = (x - mean) * (rsqrt(var + eps) * gamma) + beta;
 *   backward: dbeta = sum dy, dgamma = sum dy * xhat, then
 *             dx = gamma rstd (dy - dbeta / M - xhat dgamma / M);
 * 3 + 3 dispatches, all on [rows, C] = x viewed with channels last (NHWC). A ReLU after the batch
 * norm (attrs.relu) is fused too: max(0, .) in the forward program, and backward one masking
 * program where the pre-activation, recomputed from x, is not positive (1 dispatch fewer each way
 * than relu, step and multiply, and no activation kept for the gradient). WebGPU guarantees 8
 * storage buffers per program: the masking is its own program so that dx stays within them.
 *
 * The reductions give each workgroup 32 adjacent channels and 8 row lanes (reads of a row are
 * contiguous): simple, and enough to take the dispatch count down; their occupancy is low for narrow
 * layers on a large GPU (C / 32 workgroups), a known limit (docs/PERFORMANCE.md).
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGpuBackendLike, WebGpuProgram as Program } from './webgpu-program.js';
import { FUSED_BATCH_NORM, FUSED_BATCH_NORM_GRAD, registerFusedBatchNormGradient } from './native.js';

type Info = tf.TensorInfo;

const TILE_CHANNELS = 32;
const ROW_LANES = 8;
const ELEMENTWISE = 256;

/**
 * A per-channel sum over the rows of x [rows, C] -> [C]: each workgroup takes 32 adjacent channels
 * (contiguous reads along a row) and 8 row lanes. `term` is the summand of row `r` (element
 * `r * C + c`); `pre` declares per-channel values it uses; the sum is scaled by `scale`.
 */
function channelSum(shaderKey: string, variableNames: string[], channels: number, pre: string, term: string, scale: string): Program {
  return {
    variableNames,
    outputShape: [channels],
    shaderKey,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(channels / TILE_CHANNELS), 1, 1],
    workgroupSize: [TILE_CHANNELS * ROW_LANES, 1, 1],
    uniforms: 'rows : i32, channels : i32, eps : f32,',
    getUserCode: () => /* wgsl */ `
      var<workgroup> partial : array<f32, ${TILE_CHANNELS * ROW_LANES}>;
      fn main(index : i32) {
        let cl = i32(localId.x) % ${TILE_CHANNELS};
        let lane = i32(localId.x) / ${TILE_CHANNELS};
        let c = i32(workgroupId.x) * ${TILE_CHANNELS} + cl;
        let C = uniforms.channels;
        let M = uniforms.rows;
        var s = 0.0;
        if (c < C) {
          ${pre}
          for (var r = lane; r < M; r += ${ROW_LANES}) { s += ${term}; }
        }
        partial[localId.x] = s;
        workgroupBarrier();
        if (lane == 0 && c < C) {
          var t = 0.0;
          for (var l = 0; l < ${ROW_LANES}; l++) { t += partial[l * ${TILE_CHANNELS} + cl]; }
          result[c] = t * ${scale};
        }
      }`,
  };
}

const meanProgram = (channels: number): Program => channelSum('eden_bn_mean', ['x'], channels, '', 'x[r * C + c]', '(1.0 / f32(M))');
/** Biased variance, two-pass (around the mean computed before): no cancellation. */
const varianceProgram = (channels: number): Program => channelSum('eden_bn_variance', ['x', 'mean'], channels, 'let mu = mean[c];', '(x[r * C + c] - mu) * (x[r * C + c] - mu)', '(1.0 / f32(M))');
const dbetaProgram = (channels: number): Program => channelSum('eden_bn_dbeta', ['dy'], channels, '', 'dy[r * C + c]', '1.0');
const dgammaProgram = (channels: number): Program =>
  channelSum('eden_bn_dgamma', ['x', 'dy', 'mean', 'variance'], channels, 'let mu = mean[c];\n          let rstd = inverseSqrt(variance[c] + uniforms.eps);', 'dy[r * C + c] * ((x[r * C + c] - mu) * rstd)', '1.0');

/** An elementwise program over `shape` (flat index; `c` the channel of element `index`). */
function elementwise(shaderKey: string, variableNames: string[], shape: number[], body: string): Program {
  const size = shape.reduce((a, b) => a * b, 1);
  return {
    variableNames,
    outputShape: shape,
    shaderKey,
    dispatchLayout: { x: shape.map((_, i) => i) },
    dispatch: [Math.ceil(size / ELEMENTWISE), 1, 1],
    workgroupSize: [ELEMENTWISE, 1, 1],
    size: true,
    uniforms: 'channels : i32, eps : f32, rows : i32,',
    getUserCode: () => /* wgsl */ `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let c = index % uniforms.channels;
          ${body}
        }
      }`,
  };
}

function uniforms(rows: number, channels: number, eps: number, elementwiseOrder: boolean): { type: string; data: number[] }[] {
  return elementwiseOrder
    ? [{ type: 'int32', data: [channels] }, { type: 'float32', data: [eps] }, { type: 'int32', data: [rows] }]
    : [{ type: 'int32', data: [rows] }, { type: 'int32', data: [channels] }, { type: 'float32', data: [eps] }];
}

function shapeOf(x: Info): { rows: number; channels: number } {
  const channels = x.shape[x.shape.length - 1]!;
  return { rows: x.shape.reduce((a, b) => a * b, 1) / channels, channels };
}

/** x [..., C], gamma [C], beta [C] -> [y, mean, variance (biased)]. */
function forward({ inputs, backend, attrs }: { inputs: Record<string, Info>; backend: WebGpuBackendLike; attrs: Record<string, unknown> }): Info[] {
  const x = inputs['x']!;
  const { rows, channels } = shapeOf(x);
  const eps = attrs['epsilon'] as number;
  const relu = attrs['relu'] === true;
  const mean = backend.runWebGPUProgram(meanProgram(channels), [x], 'float32', uniforms(rows, channels, eps, false));
  const variance = backend.runWebGPUProgram(varianceProgram(channels), [x, mean], 'float32', uniforms(rows, channels, eps, false));
  const y = backend.runWebGPUProgram(
    elementwise(`eden_bn_normalize${relu ? '_relu' : ''}`, ['x', 'mean', 'variance', 'gamma', 'beta'], [...x.shape], `
      let scale = inverseSqrt(variance[c] + uniforms.eps) * gamma[c];
      let z = (x[index] - mean[c]) * scale + beta[c];
      result[index] = ${relu ? 'max(z, 0.0)' : 'z'};`),
    [x, mean, variance, inputs['gamma']!, inputs['beta']!],
    'float32',
    uniforms(rows, channels, eps, true),
  );
  return [y, mean, variance];
}

/** x, gamma, beta, mean, variance, dy -> [dx, dgamma, dbeta] (attrs.relu: dy masked by the ReLU first). */
function backward({ inputs, backend, attrs }: { inputs: Record<string, Info>; backend: WebGpuBackendLike; attrs: Record<string, unknown> }): Info[] {
  const [x, gamma, beta, mean, variance, dy0] = (['x', 'gamma', 'beta', 'mean', 'variance', 'dy'] as const).map((k) => inputs[k]!) as [Info, Info, Info, Info, Info, Info];
  const { rows, channels } = shapeOf(x);
  const eps = attrs['epsilon'] as number;
  const u = (elementwiseOrder: boolean) => uniforms(rows, channels, eps, elementwiseOrder);
  // With a fused ReLU: the gradient passes where the pre-activation, recomputed from x, is > 0
  // (TF.js's relu gradient: step with step(0) = 0). One dispatch, instead of keeping y for a mask.
  const dy = attrs['relu'] === true
    ? backend.runWebGPUProgram(
        elementwise('eden_bn_relu_mask', ['x', 'dy', 'mean', 'variance', 'gamma', 'beta'], [...x.shape], `
          let z = (x[index] - mean[c]) * (inverseSqrt(variance[c] + uniforms.eps) * gamma[c]) + beta[c];
          result[index] = select(0.0, dy[index], z > 0.0);`),
        [x, dy0, mean, variance, gamma, beta], 'float32', u(true))
    : dy0;
  const dbeta = backend.runWebGPUProgram(dbetaProgram(channels), [dy], 'float32', u(false));
  const dgamma = backend.runWebGPUProgram(dgammaProgram(channels), [x, dy, mean, variance], 'float32', u(false));
  const dx = backend.runWebGPUProgram(
    elementwise('eden_bn_dx', ['x', 'dy', 'mean', 'variance', 'gamma', 'dbeta', 'dgamma'], [...x.shape], `
      let rstd = inverseSqrt(variance[c] + uniforms.eps);
      let m = f32(uniforms.rows);
      let xhat = (x[index] - mean[c]) * rstd;
      result[index] = gamma[c] * rstd * (dy[index] - dbeta[c] / m - xhat * (dgamma[c] / m));`),
    [x, dy, mean, variance, gamma, dbeta, dgamma], 'float32', u(true));
  if (dy !== dy0) backend.disposeData(dy.dataId);
  return [dx, dgamma, dbeta];
}

let registered = false;

/** Register the batch-norm kernels on the webgpu backend (idempotent; after the backend loads). */
export function registerWebGpuBatchNorm(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: FUSED_BATCH_NORM, backendName: 'webgpu', kernelFunc: forward as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: FUSED_BATCH_NORM_GRAD, backendName: 'webgpu', kernelFunc: backward as unknown as tf.KernelFunc });
  registerFusedBatchNormGradient();
}

/** True when the fused batch norm runs here: the webgpu backend is active with these kernels (EDEN_WEBGPU_FUSED=0 turns them off). */
export function webGpuBatchNormAvailable(): boolean {
  return registered && tf.getBackend() === 'webgpu' && globalThis.process?.env['EDEN_WEBGPU_FUSED'] !== '0';
}
