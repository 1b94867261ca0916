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
 * contiguous). Alone that is C / 32 workgroups: 2 for a 64-channel layer, whatever its rows, which
 * would leave a large GPU idle; so a reduction over many rows is split into blocks of rows (about
 * 256 workgroups in all, at least 256 rows each, rowBlocks) and a second program adds the blocks'
 * sums: one dispatch more per reduction where it splits.
 */
import * as tf from '@tensorflow/tfjs';
import { elementwiseProgram, type WebGpuBackendLike, type WebGpuProgram as Program } from './webgpu-program.js';
import { FUSED_BATCH_NORM, FUSED_BATCH_NORM_GRAD, registerFusedBatchNormGradient } from './native.js';

type Info = tf.TensorInfo;

const TILE_CHANNELS = 32;
const ROW_LANES = 8;
const ELEMENTWISE = 256;

/**
 * Workgroups a reduction aims for (a large GPU's cores, twice) and the fewest rows a block of it
 * gets: a layer with few channels (64 channels are 2 tiles of 32) and many rows (a batch of 16 at
 * 64 x 64 is 65,536) would otherwise leave all but 2 of the GPU's workgroup slots idle.
 */
const TARGET_WORKGROUPS = 256;
const MIN_BLOCK_ROWS = 256;

/** How many blocks of rows a [rows, channels] reduction is split into (1: not split). */
export function rowBlocks(rows: number, channels: number): number {
  const tiles = Math.ceil(channels / TILE_CHANNELS);
  return Math.max(1, Math.min(Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(rows / MIN_BLOCK_ROWS)));
}

/**
 * A per-channel sum over the rows of x [rows, C]: each workgroup takes 32 adjacent channels
 * (contiguous reads along a row), 8 row lanes, and one block of `uniforms.blockRows` rows
 * (workgroupId.y). `term` is the summand of row `r` (element `r * C + c`); `pre` declares
 * per-channel values it uses. With one block the sum is scaled by `scale` and is the result [C];
 * with several, each block's unscaled sum goes to [blocks, C] for sumBlocksProgram.
 */
function channelSumProgram(shaderKey: string, variableNames: string[], channels: number, blocks: number, pre: string, term: string, scale: string): Program {
  return {
    variableNames,
    outputShape: blocks > 1 ? [blocks, channels] : [channels],
    shaderKey: blocks > 1 ? `${shaderKey}_blocks` : shaderKey,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(channels / TILE_CHANNELS), blocks, 1],
    workgroupSize: [TILE_CHANNELS * ROW_LANES, 1, 1],
    uniforms: 'rows : i32, channels : i32, eps : f32, blockRows : i32,',
    getUserCode: () => /* wgsl */ `
      var<workgroup> partial : array<f32, ${TILE_CHANNELS * ROW_LANES}>;
      fn main(index : i32) {
        let cl = i32(localId.x) % ${TILE_CHANNELS};
        let lane = i32(localId.x) / ${TILE_CHANNELS};
        let c = i32(workgroupId.x) * ${TILE_CHANNELS} + cl;
        let C = uniforms.channels;
        let M = uniforms.rows;
        let r0 = i32(workgroupId.y) * uniforms.blockRows;
        let r1 = min(M, r0 + uniforms.blockRows);
        var s = 0.0;
        if (c < C) {
          ${pre}
          for (var r = r0 + lane; r < r1; r += ${ROW_LANES}) { s += ${term}; }
        }
        partial[localId.x] = s;
        workgroupBarrier();
        if (lane == 0 && c < C) {
          var t = 0.0;
          for (var l = 0; l < ${ROW_LANES}; l++) { t += partial[l * ${TILE_CHANNELS} + cl]; }
          ${blocks > 1 ? 'result[i32(workgroupId.y) * C + c] = t;' : `result[c] = t * ${scale};`}
        }
      }`,
  };
}

/** partial [blocks, C] -> [C]: the blocks' sums added, times uniforms.scale. Shared by every layer. */
function sumBlocksProgram(channels: number): Program {
  return {
    variableNames: ['partial'],
    outputShape: [channels],
    shaderKey: 'eden_bn_sum_blocks',
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(channels / ELEMENTWISE), 1, 1],
    workgroupSize: [ELEMENTWISE, 1, 1],
    uniforms: 'channels : i32, blocks : i32, scale : f32,',
    getUserCode: () => /* wgsl */ `
      fn main(index : i32) {
        let c = i32(workgroupId.x) * ${ELEMENTWISE} + i32(localId.x);
        if (c < uniforms.channels) {
          var s = 0.0;
          for (var b = 0; b < uniforms.blocks; b++) { s += partial[b * uniforms.channels + c]; }
          result[c] = s * uniforms.scale;
        }
      }`,
  };
}

interface ChannelSum {
  shaderKey: string;
  variableNames: string[];
  pre: string;
  term: string;
  /** Whether the sum is divided by the row count (a mean) or not. */
  mean: boolean;
}

const MEAN: ChannelSum = { shaderKey: 'eden_bn_mean', variableNames: ['x'], pre: '', term: 'x[r * C + c]', mean: true };
/** Biased variance, two-pass (around the mean computed before): no cancellation. */
const VARIANCE: ChannelSum = { shaderKey: 'eden_bn_variance', variableNames: ['x', 'mean'], pre: 'let mu = mean[c];', term: '(x[r * C + c] - mu) * (x[r * C + c] - mu)', mean: true };
const DBETA: ChannelSum = { shaderKey: 'eden_bn_dbeta', variableNames: ['dy'], pre: '', term: 'dy[r * C + c]', mean: false };
const DGAMMA: ChannelSum = {
  shaderKey: 'eden_bn_dgamma',
  variableNames: ['x', 'dy', 'mean', 'variance'],
  pre: 'let mu = mean[c];\n          let rstd = inverseSqrt(variance[c] + uniforms.eps);',
  term: 'dy[r * C + c] * ((x[r * C + c] - mu) * rstd)',
  mean: false,
};

/** Run a channel sum over x's rows: one program, or a blocked one and the sum of its blocks. */
function runChannelSum(backend: WebGpuBackendLike, sum: ChannelSum, inputs: Info[], rows: number, channels: number, eps: number): Info {
  const blocks = rowBlocks(rows, channels);
  const blockRows = Math.ceil(rows / blocks);
  const program = channelSumProgram(sum.shaderKey, sum.variableNames, channels, blocks, sum.pre, sum.term, sum.mean ? '(1.0 / f32(M))' : '1.0');
  const out = backend.runWebGPUProgram(program, inputs, 'float32', [
    { type: 'int32', data: [rows] },
    { type: 'int32', data: [channels] },
    { type: 'float32', data: [eps] },
    { type: 'int32', data: [blockRows] },
  ]);
  if (blocks === 1) return out;
  const total = backend.runWebGPUProgram(sumBlocksProgram(channels), [out], 'float32', [
    { type: 'int32', data: [channels] },
    { type: 'int32', data: [blocks] },
    { type: 'float32', data: [sum.mean ? 1 / rows : 1] },
  ]);
  backend.disposeData(out.dataId);
  return total;
}

/** An elementwise program over `shape` (flat index; `c` the channel of element `index`). */
function elementwise(shaderKey: string, variableNames: string[], shape: number[], body: string): Program {
  return elementwiseProgram({ shaderKey, variableNames, shape, uniforms: 'channels : i32, eps : f32, rows : i32,', prelude: 'let c = index % uniforms.channels;', body });
}

/** The uniforms of the elementwise programs, in their declared order. */
function elementwiseUniforms(rows: number, channels: number, eps: number): { type: string; data: number[] }[] {
  return [{ type: 'int32', data: [channels] }, { type: 'float32', data: [eps] }, { type: 'int32', data: [rows] }];
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
  const mean = runChannelSum(backend, MEAN, [x], rows, channels, eps);
  const variance = runChannelSum(backend, VARIANCE, [x, mean], rows, channels, eps);
  const y = backend.runWebGPUProgram(
    elementwise(`eden_bn_normalize${relu ? '_relu' : ''}`, ['x', 'mean', 'variance', 'gamma', 'beta'], [...x.shape], `
      let scale = inverseSqrt(variance[c] + uniforms.eps) * gamma[c];
      let z = (x[index] - mean[c]) * scale + beta[c];
      result[index] = ${relu ? 'select(z, 0.0, z < 0.0)' : 'z'};`),
    [x, mean, variance, inputs['gamma']!, inputs['beta']!],
    'float32',
    elementwiseUniforms(rows, channels, eps),
  );
  return [y, mean, variance];
}

/** x, gamma, beta, mean, variance, dy -> [dx, dgamma, dbeta] (attrs.relu: dy masked by the ReLU first). */
function backward({ inputs, backend, attrs }: { inputs: Record<string, Info>; backend: WebGpuBackendLike; attrs: Record<string, unknown> }): Info[] {
  const [x, gamma, beta, mean, variance, dy0] = (['x', 'gamma', 'beta', 'mean', 'variance', 'dy'] as const).map((k) => inputs[k]!) as [Info, Info, Info, Info, Info, Info];
  const { rows, channels } = shapeOf(x);
  const eps = attrs['epsilon'] as number;
  const u = elementwiseUniforms(rows, channels, eps);
  // With a fused ReLU: the gradient passes where the pre-activation, recomputed from x, is > 0
  // (TF.js's relu gradient: step with step(0) = 0). One dispatch, instead of keeping y for a mask.
  const dy = attrs['relu'] === true
    ? backend.runWebGPUProgram(
        elementwise('eden_bn_relu_mask', ['x', 'dy', 'mean', 'variance', 'gamma', 'beta'], [...x.shape], `
          let z = (x[index] - mean[c]) * (inverseSqrt(variance[c] + uniforms.eps) * gamma[c]) + beta[c];
          result[index] = select(0.0, dy[index], z > 0.0);`),
        [x, dy0, mean, variance, gamma, beta], 'float32', u)
    : dy0;
  const dbeta = runChannelSum(backend, DBETA, [dy], rows, channels, eps);
  const dgamma = runChannelSum(backend, DGAMMA, [x, dy, mean, variance], rows, channels, eps);
  const dx = backend.runWebGPUProgram(
    elementwise('eden_bn_dx', ['x', 'dy', 'mean', 'variance', 'gamma', 'dbeta', 'dgamma'], [...x.shape], `
      let rstd = inverseSqrt(variance[c] + uniforms.eps);
      let m = f32(uniforms.rows);
      let xhat = (x[index] - mean[c]) * rstd;
      result[index] = gamma[c] * rstd * (dy[index] - dbeta[c] / m - xhat * (dgamma[c] / m));`),
    [x, dy, mean, variance, gamma, dbeta, dgamma], 'float32', u);
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
