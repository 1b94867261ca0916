/**
 * In-place update kernels on the webgpu backend (issue 13: fewer, larger kernels): the optimisers,
 * the EMA teacher, batch norm's running statistics and the memory queue's write. Updating state in
 * place also keeps every variable in its buffer, which step replay relies on (webgpu-replay.ts).
 *
 * TF.js runs an optimiser as tensor ops: SGD with weight decay and the EMA teacher is 9 dispatches
 * per parameter (mul, add, mul, add, mul, sub, mul, mul, add), Adam about 12, each with its own
 * JavaScript for shapes, uniforms, bind groups and a fresh output buffer. Here one WGSL dispatch per
 * parameter reads the gradient and updates the parameter, its optimiser state and (SGD) its teacher
 * in place, as the native CPU kernels do (engine/native.ts).
 *
 * The dispatch is recorded into TF.js's own command encoder and compute pass, so it is ordered with
 * the ops around it exactly as a TF.js kernel would be; the buffers it touches are marked as owned by
 * the pending command queue, so that a tensor disposed meanwhile keeps its buffer until the submit
 * (TF.js's rule for its own dispatches).
 *
 * In-place writes are safe only when no other tensor shares a buffer (a clone shares its source's
 * until either is reassigned): then the caller falls back to tensor ops. EDEN_WEBGPU_FUSED=0 turns
 * the fused kernels off (tensor ops throughout: an escape hatch, and the benchmark's "before").
 */
import * as tf from '@tensorflow/tfjs';

/** The parts of TF.js's WebGPUBackend (4.22) used here; not public API, so checked at first use. */
interface WebGpuBackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): { resource?: unknown; values?: unknown } | undefined };
  refCount(dataId: object): number;
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  uniformPendingDisposal: GPUBuffer[];
  bufferManager: { acquireBuffer(size: number, usage: number): GPUBuffer };
}

const WORKGROUP = 256;
/** Workgroups per dispatch at most (WebGPU guarantees 65535 per dimension); larger tensors loop. */
const MAX_WORKGROUPS = 4096;

/**
 * A WGSL kernel over n = arrayLength(&lengthOf) elements in a grid-stride loop (index `i`): the
 * tensors at their bindings, the scalars `s` at binding 3.
 */
function gridStrideKernel(scalars: string, tensors: [binding: number, name: string, access: 'read' | 'read_write'][], lengthOf: string, body: string): string {
  return /* wgsl */ `
struct S { ${scalars} }
${tensors.map(([binding, name, access]) => `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<f32>;`).join('\n')}
@group(0) @binding(3) var<uniform> s: S;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&${lengthOf});
  for (var i = gid.x; i < n; i += nwg.x * ${WORKGROUP}u) {
${body}
  }
}`;
}

// p <- p - lr v with v <- mu v + (g + wd p) (PyTorch's SGD; v = g + wd p on the first step), then
// t <- ema t + (1 - ema) p. The order of operations is that of the tensor-op path, so that both
// round alike.
const SGD_EMA = (teacher: boolean): string =>
  gridStrideKernel('lr: f32, mu: f32, wd: f32, ema: f32, first: u32', [[0, 'p', 'read_write'], [1, 'g', 'read'], [2, 'v', 'read_write'], ...(teacher ? [[4, 't', 'read_write'] as [number, string, 'read_write']] : [])], 'p', `
    let pi = p[i];
    let gi = g[i] + pi * s.wd;
    var vi = gi;
    if (s.first == 0u) { vi = v[i] * s.mu + gi; }
    v[i] = vi;
    let pn = pi - vi * s.lr;
    p[i] = pn;
    ${teacher ? 't[i] = t[i] * s.ema + pn * (1.0 - s.ema);' : ''}`);

// TF.js's Adam (see train/optimizer.ts): m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
// p <- p - lr (m / c1) / (sqrt(v / c2) + eps).
const ADAM = gridStrideKernel('lr: f32, b1: f32, b2: f32, eps: f32, c1: f32, c2: f32', [[0, 'p', 'read_write'], [1, 'g', 'read'], [2, 'm', 'read_write'], [4, 'v', 'read_write']], 'p', `
    let gi = g[i];
    let mi = m[i] * s.b1 + gi * (1.0 - s.b1);
    let vi = v[i] * s.b2 + (gi * gi) * (1.0 - s.b2);
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] - ((mi / s.c1) / (sqrt(vi / s.c2) + s.eps)) * s.lr;`);

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();
let dispatches = 0;

/** In-place update dispatches recorded so far (for benchmarks and tests). */
export function webGpuInPlaceDispatches(): number {
  return dispatches;
}

function backendInternals(): WebGpuBackendInternals | undefined {
  if (tf.getBackend() !== 'webgpu' || globalThis.process?.env['EDEN_WEBGPU_FUSED'] === '0') return undefined;
  const b = tf.backend() as unknown as Partial<WebGpuBackendInternals>;
  // A TF.js version whose internals differ: use tensor ops rather than guess.
  if (!b.device || !b.tensorMap || typeof b.uploadToGPU !== 'function' || typeof b.ensureCommandEncoderReady !== 'function' || !b.commandQueueOwnedIds) return undefined;
  return b as WebGpuBackendInternals;
}

function pipeline(device: GPUDevice, key: string, code: string): GPUComputePipeline {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  let p = cache.get(key);
  if (!p) {
    p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
    cache.set(key, p);
  }
  return p;
}

/**
 * The GPU buffers of `owned` (written in place; the parameter first) and `read`, or undefined when
 * an in-place write is not safe: a written tensor shares its buffer or is not float32, or the sizes
 * differ.
 */
function buffers(b: WebGpuBackendInternals, owned: tf.Tensor[], ...read: tf.Tensor[]): GPUBuffer[] | undefined {
  const n = owned[0]!.size;
  for (const x of owned) if (b.refCount(x.dataId) !== 1 || x.dtype !== 'float32' || x.size !== n) return undefined;
  for (const x of read) if (x.dtype !== 'float32' || x.size !== n || n === 0) return undefined;
  return gpuBuffers(b, [...owned, ...read]);
}

/** The GPU buffers of distinct tensors (uploaded first), or undefined if two share one. */
function gpuBuffers(b: WebGpuBackendInternals, all: tf.Tensor[]): GPUBuffer[] | undefined {
  if (new Set(all.map((x) => x.dataId)).size !== all.length) return undefined;
  for (const x of all) b.uploadToGPU(x.dataId);
  const out = all.map((x) => b.tensorMap.get(x.dataId)?.resource);
  if (!out.every((r) => r instanceof GPUBuffer)) return undefined;
  return out as GPUBuffer[];
}

/**
 * Forget TF.js's host copy of a tensor that lives on the GPU (the next read downloads it again).
 * Needed after any write TF.js does not see: the in-place kernels here, replayed steps.
 */
export function dropHostCopy(b: { tensorMap: { get(dataId: object): { resource?: unknown; values?: unknown } | undefined } }, dataId: object): void {
  const data = b.tensorMap.get(dataId);
  if (data?.resource) data.values = null;
}

/** What a recorded in-place dispatch was, for step capture (webgpu-replay.ts). */
export interface InPlaceDispatch {
  kind: 'sgd' | 'sgd-ema' | 'adam' | 'running-stats' | 'enqueue';
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: number;
  /** The uniform buffer and the scalars written to it (the step-dependent ones are rewritten on replay). */
  uniforms: GPUBuffer;
  scalars: ArrayBuffer;
  /** Every buffer bound. */
  buffers: GPUBuffer[];
  /** Adam's betas as the optimiser holds them (doubles), for a replay to recompute the bias corrections. */
  betas?: [number, number];
}

let observer: ((d: InPlaceDispatch) => void) | undefined;

/** Called with every in-place dispatch recorded from now on (undefined: stop). */
export function observeInPlaceDispatches(fn: ((d: InPlaceDispatch) => void) | undefined): void {
  observer = fn;
}

/**
 * Record one dispatch over `n` elements into TF.js's pending compute pass. `bound` are the tensors'
 * buffers with their sizes in floats, for bindings 0, 1, 2, 4 (3 is the scalars).
 */
function record(b: WebGpuBackendInternals, kind: InPlaceDispatch['kind'], pipe: GPUComputePipeline, bound: [GPUBuffer, number][], n: number, scalars: ArrayBuffer, tensors: tf.Tensor[], betas?: [number, number]): void {
  const uniforms = b.bufferManager.acquireBuffer(scalars.byteLength, GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM);
  b.queue.writeBuffer(uniforms, 0, scalars);
  b.uniformPendingDisposal.push(uniforms);
  // Explicit binding sizes: pooled buffers may be larger than their tensors.
  const slots = [0, 1, 2, 4];
  const entries: GPUBindGroupEntry[] = bound.map(([buffer, floats], i) => ({ binding: slots[i]!, resource: { buffer, offset: 0, size: floats * 4 } }));
  entries.push({ binding: 3, resource: { buffer: uniforms, offset: 0, size: scalars.byteLength } });
  const bindGroup = b.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
  for (const t of tensors) {
    b.commandQueueOwnedIds.add(t.dataId);
    // TF.js keeps a host copy of what it read back (data()) and serves later reads and small CPU-
    // forwarded ops from it; after an in-place write that copy is stale: drop it.
    dropHostCopy(b, t.dataId);
  }
  const workgroups = Math.min(Math.ceil(n / WORKGROUP), MAX_WORKGROUPS);
  b.ensureCommandEncoderReady();
  b.computePassEncoder ??= b.commandEncoder!.beginComputePass({});
  b.computePassEncoder.setPipeline(pipe);
  b.computePassEncoder.setBindGroup(0, bindGroup);
  b.computePassEncoder.dispatchWorkgroups(workgroups);
  dispatches++;
  observer?.({ kind, pipeline: pipe, bindGroup, workgroups, uniforms, scalars, buffers: [...bound.map(([buffer]) => buffer), uniforms], ...(betas ? { betas } : {}) });
  b.dispatchCountInPass++;
  // TF.js submits every WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches; keep to its rhythm.
  if ((tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
}

/**
 * SGD with momentum and weight decay, then the teacher's EMA, for one parameter in one dispatch, in
 * place. Returns false (nothing done) when not on webgpu or not safe in place.
 */
export function webGpuSgdEma(p: tf.Variable, g: tf.Tensor, v: tf.Variable, t: tf.Variable | undefined, s: { lr: number; momentum: number; weightDecay: number; ema: number; first: boolean }): boolean {
  const b = backendInternals();
  if (!b) return false;
  const teacher = t !== undefined && s.ema !== 1;
  const owned = teacher ? [p, v, t] : [p, v];
  const bufs = buffers(b, owned, g);
  if (!bufs) return false;
  // Bind order: p, g, v, (t).
  const n = p.size;
  const bound: [GPUBuffer, number][] = (teacher ? [bufs[0]!, bufs[3]!, bufs[1]!, bufs[2]!] : [bufs[0]!, bufs[2]!, bufs[1]!]).map((x) => [x, n]);
  const scalars = new ArrayBuffer(32);
  new Float32Array(scalars, 0, 4).set([s.lr, s.momentum, s.weightDecay, s.ema]);
  new Uint32Array(scalars, 16, 1)[0] = s.first ? 1 : 0;
  const key = teacher ? 'sgd-ema' : 'sgd';
  record(b, key, pipeline(b.device, key, SGD_EMA(teacher)), bound, n, scalars, [...owned, g]);
  return true;
}

/** TF.js-semantics Adam for one parameter in one dispatch, in place (see webGpuSgdEma). */
export function webGpuAdam(p: tf.Variable, g: tf.Tensor, m: tf.Variable, v: tf.Variable, s: { lr: number; beta1: number; beta2: number; epsilon: number; c1: number; c2: number }): boolean {
  const b = backendInternals();
  if (!b) return false;
  const bufs = buffers(b, [p, m, v], g);
  if (!bufs) return false;
  const scalars = new ArrayBuffer(32);
  new Float32Array(scalars, 0, 6).set([s.lr, s.beta1, s.beta2, s.epsilon, s.c1, s.c2]);
  record(b, 'adam', pipeline(b.device, 'adam', ADAM), [bufs[0]!, bufs[3]!, bufs[1]!, bufs[2]!].map((x) => [x, p.size] as [GPUBuffer, number]), p.size, scalars, [p, m, v, g], [s.beta1, s.beta2]);
  return true;
}

// Batch norm's running averages, PyTorch's rule (layers.ts): r <- (1 - m) r + m s, with the
// unbiased variance for the running variance.
const RUNNING_STATS = gridStrideKernel('keep: f32, momentum: f32, unbias: f32', [[0, 'rm', 'read_write'], [1, 'mean', 'read'], [2, 'rv', 'read_write'], [4, 'variance', 'read']], 'rm', `
    rm[i] = rm[i] * s.keep + mean[i] * s.momentum;
    rv[i] = rv[i] * s.keep + (variance[i] * s.unbias) * s.momentum;`);

/**
 * Batch norm's running mean and variance updated in place in one dispatch (7 tensor ops otherwise).
 * `unbias` = count / (count - 1) turns the batch's biased variance into the unbiased one. Returns
 * false (nothing done) when not on webgpu or not safe in place.
 */
export function webGpuRunningStats(runningMean: tf.Variable, runningVar: tf.Variable, mean: tf.Tensor, variance: tf.Tensor, momentum: number, unbias: number): boolean {
  const b = backendInternals();
  if (!b) return false;
  const bufs = buffers(b, [runningMean, runningVar], mean, variance);
  if (!bufs) return false;
  const scalars = new ArrayBuffer(16);
  new Float32Array(scalars, 0, 3).set([1 - momentum, momentum, unbias]);
  const n = runningMean.size;
  record(b, 'running-stats', pipeline(b.device, 'running-stats', RUNNING_STATS), [bufs[0]!, bufs[2]!, bufs[1]!, bufs[3]!].map((x) => [x, n] as [GPUBuffer, number]), n, scalars, [runningMean, runningVar, mean, variance]);
  return true;
}

// The memory bank's FIFO write (ssl/queue.ts): key row r of the batch goes to row (pointer + r) mod K.
const ENQUEUE = gridStrideKernel('pointer: u32, size: u32, dim: u32', [[0, 'keys', 'read_write'], [1, 'k', 'read']], 'k', `
    let r = i / s.dim;
    keys[((s.pointer + r) % s.size) * s.dim + i % s.dim] = k[i];`);

/**
 * Write the keys `k` [B, C] into the queue `keys` [K, C] from row `pointer` on (wrapping), in place,
 * in one dispatch. Returns false (nothing done) when not on webgpu, not safe in place, or B > K.
 */
export function webGpuEnqueue(keys: tf.Variable, k: tf.Tensor2D, pointer: number): boolean {
  const b = backendInternals();
  if (!b) return false;
  const [size, dim] = keys.shape as [number, number];
  if (b.refCount(keys.dataId) !== 1 || keys.dtype !== 'float32' || k.dtype !== 'float32' || k.shape[1] !== dim || k.shape[0] > size || k.size === 0) return false;
  const bufs = gpuBuffers(b, [keys, k]);
  if (!bufs) return false;
  const scalars = new ArrayBuffer(16);
  new Uint32Array(scalars, 0, 3).set([pointer, size, dim]);
  record(b, 'enqueue', pipeline(b.device, 'enqueue', ENQUEUE), [[bufs[0]!, keys.size], [bufs[1]!, k.size]], k.size, scalars, [keys, k]);
  return true;
}
