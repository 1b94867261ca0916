/**
 * The optional native kernel provider (issue: close the gap to PyTorch on CPU). An N-API addon
 * over oneDNN (native/, built with `npm run build:native` where g++ and Debian's libdnnl-dev
 * exist) serves the heavy kernels of TF.js's wasm backend: Conv2D, both conv gradients, the
 * inference convolution with bias and ReLU (FusedConv2D), (batched) MatMul, per-channel Mean/Sum,
 * broadcast Add/Sub/Multiply/RealDiv, Concat, Slice, SplitV and MaxPoolGrad; Identity and
 * same-dtype Cast become copy-free. It reads and writes the wasm heap in place: TF.js keeps autograd, memory
 * management and every other kernel. Without the addon (not built, or EDEN_NATIVE=0) Eden runs on
 * the wasm kernels, with the same results within float tolerance.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdenError } from '../core/errors.js';

interface NativeAddon {
  conv2d(heap: ArrayBuffer, params: Int32Array): void;
  conv2dBackpropInput(heap: ArrayBuffer, params: Int32Array): void;
  conv2dBackpropFilter(heap: ArrayBuffer, params: Int32Array): void;
  matmul(heap: ArrayBuffer, params: Int32Array): void;
  reduceRows(heap: ArrayBuffer, params: Int32Array): void;
  binary(heap: ArrayBuffer, params: Int32Array): void;
  maxPoolGrad(heap: ArrayBuffer, params: Int32Array): void;
  batchNormForward(heap: ArrayBuffer, params: Int32Array): void;
  batchNormBackward(heap: ArrayBuffer, params: Int32Array): void;
  sgdEma(heap: ArrayBuffer, params: Int32Array): void;
  /** Absent from addons built before it was added: then Adam uses tensor ops. */
  adam?(heap: ArrayBuffer, params: Int32Array): void;
  /** Absent from addons built before them: then the wasm backend's own kernels serve these ops. */
  fusedConv2d?(heap: ArrayBuffer, params: Int32Array): void;
  concatChannels?(heap: ArrayBuffer, params: Int32Array): void;
  slice?(heap: ArrayBuffer, params: Int32Array): void;
  /** True where batchNormForward / Backward take a fused ReLU (older addons ignore the flag). */
  batchNormRelu?: boolean;
  version(): string;
  /** Calls of each kernel inside the addon since it was loaded. */
  callCounts(): Record<string, number>;
  /** Set the OpenMP threads (n > 0) of oneDNN and the addon's loops; returns those in effect. */
  setThreads(n: number): number;
}

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;
interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs: Attrs;
}

let addon: NativeAddon | null | undefined;
let loadError: string | undefined;
let registered = false;
const fallbacks = new Map<string, tf.KernelConfig>();

/** The addon, or null when it is unavailable (see nativeStatus for why). */
export function loadNative(): NativeAddon | null {
  if (addon !== undefined) return addon;
  if (process.env['EDEN_NATIVE'] === '0') {
    loadError = 'disabled by EDEN_NATIVE=0';
    return (addon = null);
  }
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const file = path.join(root, 'native', 'build', 'Release', 'eden_native.node');
  // OpenMP threads that spin while waiting collapse when another process takes a core (measured:
  // docs/PERFORMANCE.md); passive waiting degrades in proportion. Read by libgomp when it loads,
  // so set before the addon is required; a user's own setting wins.
  if (process.env['OMP_WAIT_POLICY'] === undefined && process.env['GOMP_SPINCOUNT'] === undefined) process.env['OMP_WAIT_POLICY'] = 'PASSIVE';
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
    const threads = threadsFromEnvironment();
    if (threads) addon.setThreads(threads);
  } catch (err) {
    loadError = `not built (${(err as Error).message.split('\n')[0]}); build it with 'npm run build:native' (needs g++ and libdnnl-dev)`;
    addon = null;
  }
  return addon;
}

/** EDEN_THREADS, when set to a positive integer. */
function threadsFromEnvironment(): number | undefined {
  const raw = process.env['EDEN_THREADS'];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new EdenError('config', `EDEN_THREADS must be a positive integer, got '${raw}'`);
  return n;
}

/**
 * Threads of the native kernels (oneDNN and the addon's loops): `--threads` / EDEN_THREADS, default
 * all cores. Returns the number in effect, or undefined without the addon (plain wasm runs on one
 * thread).
 */
export function setNativeThreads(n: number): number | undefined {
  if (!Number.isInteger(n) || n < 1) throw new EdenError('config', `threads must be a positive integer, got ${n}`);
  return loadNative()?.setThreads(n);
}

export function nativeThreads(): number | undefined {
  return loadNative()?.setThreads(0);
}

/**
 * How often each native kernel has run, counted inside the addon (empty when it is not loaded):
 * the proof that the native code, not a stock kernel of the same name, did the work.
 */
export function nativeCallCounts(): Record<string, number> {
  const a = loadNative();
  return a ? a.callCounts() : {};
}

/** 'oneDNN 2.6.3' when the native kernels are active, else the reason they are not. */
export function nativeStatus(): { active: boolean; detail: string } {
  const a = loadNative();
  return a ? { active: registered, detail: a.version() } : { active: false, detail: loadError ?? 'unavailable' };
}

const OUT_OF_MEMORY = 'out of wasm memory';

/** Whether `err` is the native kernels' report of an exhausted wasm heap (the caller may retry smaller). */
export function isOutOfWasmMemory(err: unknown): boolean {
  return err instanceof EdenError && err.message.startsWith(OUT_OF_MEMORY);
}

function offset(backend: BackendWasm, t: Info): number {
  const at = backend.dataIdMap.get(t.dataId)!.memoryOffset;
  // TF.js does not check its wasm malloc: offset 0 means the 4 GiB wasm32 heap is exhausted, and
  // writing there would corrupt the heap.
  if (at === 0 && tf.util.sizeFromShape(t.shape) > 0) {
    throw new EdenError('engine', `${OUT_OF_MEMORY}: the ${t.shape.join('x')} tensor does not fit in the 4 GiB wasm heap; use a smaller batch or image size`);
  }
  return at;
}

function heap(backend: BackendWasm): ArrayBuffer {
  return backend.wasm.HEAPU8.buffer as ArrayBuffer;
}

/** Rows of an NHWC tensor seen as [rows, C]: every axis but the last. */
function rowsOf(t: Info): number {
  return tf.util.sizeFromShape(t.shape.slice(0, -1));
}

function pair(v: unknown): [number, number] {
  return typeof v === 'number' ? [v, v] : [(v as number[])[0]!, (v as number[])[1]!];
}

function isNhwc(f: unknown): boolean {
  return f === undefined || f === 'NHWC' || f === 'channelsLast';
}

function fallback<T extends Info | Info[] = Info>(name: string, args: KernelArgs): T {
  return fallbacks.get(name)!.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as T;
}

/** Dtypes the native copies (Concat, Slice, SplitV) move: 4-byte elements. */
function copiedNatively(dtype: tf.DataType): boolean {
  return dtype === 'float32' || dtype === 'int32';
}

/** The 20 conv parameters the addon expects (see eden_native.cc). */
function convParams(info: tf.backend_util.Conv2DInfo, xOff: number, wOff: number, yOff: number): Int32Array {
  const p = info.padInfo;
  return Int32Array.from([
    xOff, wOff, yOff,
    info.batchSize, info.inHeight, info.inWidth, info.inChannels,
    info.filterHeight, info.filterWidth, info.outChannels,
    info.outHeight, info.outWidth,
    info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    p.top, p.left, p.bottom, p.right,
  ]);
}

function conv2d(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const filter = inputs['filter']!;
  if (!isNhwc(attrs['dataFormat']) || x.dtype !== 'float32') return fallback('Conv2D', args);
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], pair(attrs['strides']), pair(attrs['dilations'] ?? 1), attrs['pad'] as 'same', attrs['dimRoundingMode'] as 'floor' | undefined);
  const out = backend.makeOutput(info.outShape, 'float32');
  addon!.conv2d(heap(backend), convParams(info, offset(backend, x), offset(backend, filter), offset(backend, out)));
  return out;
}

/**
 * Inference convolution + per-channel bias [+ ReLU] in one oneDNN primitive (tf.fused.conv2d; the
 * models' folded batch norms, layers.ts). Other activations, a PReLU or a broadcast bias go to wasm.
 */
function fusedConv2d(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const filter = inputs['filter']!;
  const bias = inputs['bias'];
  const activation = (attrs['activation'] as string | undefined) ?? 'linear';
  const outChannels = filter.shape[3]!;
  const biasOk = !bias || (bias.shape.length === 1 && bias.shape[0] === outChannels && bias.dtype === 'float32');
  if (!isNhwc(attrs['dataFormat']) || x.dtype !== 'float32' || inputs['preluActivationWeights'] || !biasOk || (activation !== 'linear' && activation !== 'relu')) {
    return fallback('FusedConv2D', args);
  }
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], pair(attrs['strides']), pair(attrs['dilations'] ?? 1), attrs['pad'] as 'same', attrs['dimRoundingMode'] as 'floor' | undefined);
  const out = backend.makeOutput(info.outShape, 'float32');
  const params = convParams(info, offset(backend, x), offset(backend, filter), offset(backend, out));
  addon!.fusedConv2d!(heap(backend), Int32Array.from([...params, bias ? offset(backend, bias) : 0, bias ? 1 : 0, activation === 'relu' ? 1 : 0]));
  return out;
}

/** Concatenation of float32 / int32 tensors along any axis, as rows of each input's inner block. */
function concat(args: KernelArgs): Info {
  const { backend, attrs } = args;
  const all = args.inputs as unknown as Info[];
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, all[0]!.shape)[0]!;
  const parts = all.filter((t) => tf.util.sizeFromShape(t.shape) > 0);
  const dtype = all[0]!.dtype;
  if (parts.length < 2 || !copiedNatively(dtype) || parts.some((t) => t.dtype !== dtype)) return fallback('Concat', args);
  tf.backend_util.assertParamsConsistent(all.map((t) => t.shape), axis);
  const out = backend.makeOutput(tf.backend_util.computeOutShape(all.map((t) => t.shape), axis), dtype);
  const rows = tf.util.sizeFromShape(parts[0]!.shape.slice(0, axis));
  const params = [offset(backend, out), rows, parts.length];
  for (const t of parts) params.push(offset(backend, t), tf.util.sizeFromShape(t.shape.slice(axis)));
  addon!.concatChannels!(heap(backend), Int32Array.from(params));
  return out;
}

/** A box of x (4-byte dtypes) into `out`, in place on the heap. */
function sliceInto(backend: BackendWasm, x: Info, out: Info, begin: number[], size: number[]): void {
  addon!.slice!(heap(backend), Int32Array.from([offset(backend, x), offset(backend, out), x.shape.length, ...x.shape, ...begin, ...size]));
}

/** Slice of float32 / int32 tensors of rank <= 8 (the gradient of a pad: the stem's max pool). */
function slice(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  if (!copiedNatively(x.dtype) || x.shape.length > 8) return fallback('Slice', args);
  const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs['begin'] as number[], attrs['size'] as number[]) as [number[], number[]];
  const out = backend.makeOutput(size, x.dtype);
  if (tf.util.sizeFromShape(size) > 0) sliceInto(backend, x, out, begin, size);
  return out;
}

/** SplitV (the gradient of every concat: the U-Net's skips) as one native slice per piece. */
function splitV(args: KernelArgs): Info[] {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  if (!copiedNatively(x.dtype) || x.shape.length > 8) return fallback<Info[]>('SplitV', args);
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, x.shape)[0]!;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs['numOrSizeSplits'] as number | number[], axis);
  const begin = x.shape.map(() => 0);
  return sizes.map((s) => {
    const size = x.shape.map((d, i) => (i === axis ? s : d));
    const out = backend.makeOutput(size, x.dtype);
    if (tf.util.sizeFromShape(size) > 0) sliceInto(backend, x, out, begin, size);
    begin[axis]! += s;
    return out;
  });
}

function conv2dBackpropInput(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const dy = inputs['dy']!;
  const filter = inputs['filter']!;
  if (!isNhwc(attrs['dataFormat'])) return fallback('Conv2DBackpropInput', args);
  const inputShape = attrs['inputShape'] as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], pair(attrs['strides']), 1, attrs['pad'] as 'same', attrs['dimRoundingMode'] as 'floor' | undefined);
  const dx = backend.makeOutput(inputShape, 'float32');
  addon!.conv2dBackpropInput(heap(backend), convParams(info, offset(backend, dx), offset(backend, filter), offset(backend, dy)));
  return dx;
}

function conv2dBackpropFilter(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const dy = inputs['dy']!;
  if (!isNhwc(attrs['dataFormat'])) return fallback('Conv2DBackpropFilter', args);
  const filterShape = attrs['filterShape'] as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, pair(attrs['strides']), 1, attrs['pad'] as 'same', attrs['dimRoundingMode'] as 'floor' | undefined);
  const dw = backend.makeOutput(filterShape, 'float32');
  addon!.conv2dBackpropFilter(heap(backend), convParams(info, offset(backend, x), offset(backend, dw), offset(backend, dy)));
  return dw;
}

function batchMatMul(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const a = inputs['a']!;
  const b = inputs['b']!;
  const ta = attrs['transposeA'] === true;
  const tb = attrs['transposeB'] === true;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback('BatchMatMul', args);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = ta ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = ta ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const n = tb ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const kb = tb ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const sameOuter = a.shape.slice(0, -2).join(',') === b.shape.slice(0, -2).join(',');
  // Same batch dims, or one side without batch (broadcast); anything else goes to wasm.
  if (k !== kb || !(sameOuter || batchA === 1 || batchB === 1)) return fallback('BatchMatMul', args);
  const batch = Math.max(batchA, batchB);
  const outer = batchA >= batchB ? a.shape.slice(0, -2) : b.shape.slice(0, -2);
  const out = backend.makeOutput([...outer, m, n], 'float32');
  addon!.matmul(heap(backend), Int32Array.from([offset(backend, a), offset(backend, b), offset(backend, out), batch, m, k, n, ta ? 1 : 0, tb ? 1 : 0, batchA === 1 && batch > 1 ? 0 : 1, batchB === 1 && batch > 1 ? 0 : 1]));
  return out;
}

/** Mean / Sum over every axis but the last (batch-norm statistics and their gradients). */
function reduceChannels(name: 'Mean' | 'Sum', args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const rank = x.shape.length;
  const axes = (Array.isArray(attrs['axis']) ? (attrs['axis'] as number[]) : [attrs['axis'] as number]).map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
  const allButLast = rank >= 2 && axes.length === rank - 1 && axes.every((a, i) => a === i);
  if (!allButLast || x.dtype !== 'float32') return fallback(name, args);
  const c = x.shape[rank - 1]!;
  const rows = rowsOf(x);
  const out = backend.makeOutput(attrs['keepDims'] ? [...new Array<number>(rank - 1).fill(1), c] : [c], 'float32');
  addon!.reduceRows(heap(backend), Int32Array.from([offset(backend, x), offset(backend, out), rows, c, name === 'Mean' ? 1 : 0]));
  return out;
}

const BINARY_OPS = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3 } as const;

/** Same shape, a scalar, or a per-channel vector against an NHWC tensor; others go to wasm. */
function binary(name: keyof typeof BINARY_OPS, args: KernelArgs): Info {
  const { inputs, backend } = args;
  const a = inputs['a']!;
  const b = inputs['b']!;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(name, args);
  const size = tf.util.sizeFromShape;
  const same = (x: number[], y: number[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  const perChannel = (v: number[], full: number[]): boolean => {
    const c = full[full.length - 1]!;
    return v.length <= full.length && v[v.length - 1] === c && size(v) === c;
  };
  let mode: number;
  let outShape: number[];
  if (same(a.shape, b.shape)) [mode, outShape] = [0, a.shape];
  else if (size(a.shape) === 1 && b.shape.length >= a.shape.length) [mode, outShape] = [1, b.shape];
  else if (size(b.shape) === 1 && a.shape.length >= b.shape.length) [mode, outShape] = [2, a.shape];
  else if (perChannel(b.shape, a.shape)) [mode, outShape] = [3, a.shape];
  else if (perChannel(a.shape, b.shape)) [mode, outShape] = [4, b.shape];
  else return fallback(name, args);
  const n = size(outShape);
  const out = backend.makeOutput(outShape, 'float32');
  addon!.binary(heap(backend), Int32Array.from([BINARY_OPS[name], offset(backend, a), offset(backend, b), offset(backend, out), n, outShape[outShape.length - 1] ?? 1, mode]));
  return out;
}

function maxPoolGrad(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const dy = inputs['dy']!;
  const input = inputs['input']!;
  const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], attrs['filterSize'] as [number, number], attrs['strides'] as [number, number], 1, attrs['pad'] as 'same', attrs['dimRoundingMode'] as 'floor' | undefined);
  const dx = backend.makeOutput(input.shape, 'float32');
  addon!.maxPoolGrad(
    heap(backend),
    Int32Array.from([offset(backend, input), offset(backend, dy), offset(backend, dx), info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.strideHeight, info.strideWidth, info.effectiveFilterHeight, info.effectiveFilterWidth, info.padInfo.top, info.padInfo.left]),
  );
  return dx;
}

/** Identity, and Cast to the same dtype, share the input's memory instead of copying it. */
function shareInput(name: 'Identity' | 'Cast', args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  if (name === 'Cast' && attrs['dtype'] !== x.dtype) return fallback(name, args);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Float parameters travel in the Int32Array as their bit patterns. */
function floatBits(x: number): number {
  return new Int32Array(new Float32Array([x]).buffer)[0]!;
}

export const FUSED_BATCH_NORM = 'EdenBatchNormTrain';
export const FUSED_BATCH_NORM_GRAD = 'EdenBatchNormTrainGrad';

/** x [..., C], gamma [C], beta [C] -> [y, mean, variance] (biased), one pass over memory each. */
function batchNormForward(args: KernelArgs): Info[] {
  const { inputs, backend, attrs } = args;
  if (attrs['relu'] && !addon!.batchNormRelu) throw new Error('this build of the native kernels has no fused ReLU in its batch norm (rebuild: npm run build:native)');
  const x = inputs['x']!;
  const c = x.shape[x.shape.length - 1]!;
  const y = backend.makeOutput(x.shape, 'float32');
  const mean = backend.makeOutput([c], 'float32');
  const variance = backend.makeOutput([c], 'float32');
  const o = (t: Info): number => offset(backend, t);
  addon!.batchNormForward(heap(backend), Int32Array.from([o(x), o(inputs['gamma']!), o(inputs['beta']!), o(y), o(mean), o(variance), rowsOf(x), c, floatBits(attrs['epsilon'] as number), attrs['relu'] ? 1 : 0]));
  return [y, mean, variance];
}

function batchNormBackward(args: KernelArgs): Info[] {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const c = x.shape[x.shape.length - 1]!;
  const dx = backend.makeOutput(x.shape, 'float32');
  const dgamma = backend.makeOutput([c], 'float32');
  const dbeta = backend.makeOutput([c], 'float32');
  const o = (t: Info): number => offset(backend, t);
  addon!.batchNormBackward(
    heap(backend),
    Int32Array.from([o(x), o(inputs['gamma']!), o(inputs['mean']!), o(inputs['variance']!), o(inputs['dy']!), o(dx), o(dgamma), o(dbeta), rowsOf(x), c, floatBits(attrs['epsilon'] as number), o(inputs['beta']!), attrs['relu'] ? 1 : 0]),
  );
  return [dx, dgamma, dbeta];
}

/**
 * True when `t` is all zeros and that can be seen without waiting for a device: values on the
 * host (cpu, wasm's heap, or webgpu data not yet uploaded, as TF.js's zero-filled gradients are).
 * False when unknown; used only to skip work whose result would be unchanged.
 */
export function isKnownZero(t: tf.Tensor): boolean {
  const backend = tf.backend() as unknown as { tensorMap?: { get(id: object): { values?: ArrayLike<number> | null; resource?: unknown } | undefined } };
  const name = tf.getBackend();
  let values: ArrayLike<number> | null | undefined;
  if (name === 'cpu' || name === 'wasm') values = t.dataSync();
  else if (name === 'webgpu') {
    const data = backend.tensorMap?.get(t.dataId);
    if (data && !data.resource) values = data.values;
  }
  if (!values) return false;
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) return false;
  return true;
}

let gradientRegistered = false;

/**
 * The gradient of FUSED_BATCH_NORM, for every backend that registers the kernel pair (the native
 * kernels here, WGSL programs in webgpu-batchnorm.ts); idempotent.
 */
export function registerFusedBatchNormGradient(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: FUSED_BATCH_NORM,
    inputsToSave: ['x', 'gamma', 'beta'],
    outputsToSave: [false, true, true],
    gradFunc: (dys, saved, attrs) => {
      const [x, gamma, beta, mean, variance] = saved as tf.Tensor[];
      const [dy, dmean, dvariance] = (Array.isArray(dys) ? dys : [dys]) as (tf.Tensor | null)[];
      const [dx, dgamma, dbeta] = tf.engine().runKernel(FUSED_BATCH_NORM_GRAD, { x, gamma, beta, mean, variance, dy: dy ?? tf.zerosLike(x!) } as unknown as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor[];
      // Gradients reaching the statistics outputs (none in training, where they only feed the
      // running averages): d mean / dx = 1/rows, d var / dx = 2 (x - mean) / rows. TF.js hands
      // zeros, never null, for outputs off the gradient's path: adding them would cost 7 ops per
      // layer, 4 of them over the whole activation (measured: 7 of a batch norm's 9 backward ops).
      const rows = x!.size / x!.shape[x!.shape.length - 1]!;
      let dxTotal = dx!;
      if (dmean && !isKnownZero(dmean)) dxTotal = tf.add(dxTotal, tf.div(dmean, rows));
      if (dvariance && !isKnownZero(dvariance)) dxTotal = tf.add(dxTotal, tf.mul(tf.sub(x!, mean!), tf.div(tf.mul(dvariance, 2), rows)));
      return { x: () => dxTotal, gamma: () => dgamma!, beta: () => dbeta! };
    },
  });
}

/** True when the fused kernels below can run: the wasm backend is active with the addon. */
export function nativeFusedAvailable(): boolean {
  return registered && tf.getBackend() === 'wasm';
}

/** True when the native batch norm can apply the ReLU that follows it (forward and gradient). */
export function nativeBatchNormRelu(): boolean {
  return nativeFusedAvailable() && addon!.batchNormRelu === true;
}

/**
 * Training-mode batch norm as one native kernel with a native gradient (saves x and the
 * statistics only: less memory and time than the version built from primitives).
 */
export function fusedBatchNormTrain(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number, relu = false): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  // `relu` (y = max(0, bn(x)), its gradient masked alike) only where the kernel supports it: webgpu,
  // and the native kernels where nativeBatchNormRelu() says so.
  const attrs = relu ? { epsilon, relu } : { epsilon };
  const [y, mean, variance] = tf.engine().runKernel(FUSED_BATCH_NORM, { x, gamma, beta } as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { y: y!, mean: mean!, variance: variance! };
}

/**
 * Fused SGD step and EMA teacher update for one parameter, in place on the wasm heap:
 *   g' = g + wd p;  v = first ? g' : mu v + g';  p -= lr v;  t = m t + (1 - m) p.
 * Returns false (nothing done) when it cannot run in place: then the caller uses tf ops.
 */
export function fusedSgdEma(p: tf.Variable, g: tf.Tensor, v: tf.Variable, t: tf.Variable | undefined, s: { lr: number; momentum: number; weightDecay: number; ema: number; first: boolean }): boolean {
  if (!nativeFusedAvailable()) return false;
  const backend = tf.backend() as unknown as BackendWasm;
  const o = inPlaceOffsets(backend, t ? [p, v, t] : [p, v], g);
  if (!o) return false;
  addon!.sgdEma(heap(backend), Int32Array.from([o(p), o(g), o(v), t ? o(t) : 0, p.size, floatBits(s.lr), floatBits(s.momentum), floatBits(s.weightDecay), floatBits(s.ema), s.first ? 1 : 0, t ? 1 : 0]));
  return true;
}

/**
 * The heap offset of a tensor, for optimiser kernels that write `owned` (parameter first) in place
 * and read `g`: undefined unless every written buffer is float32 and shared with no other tensor
 * (in-place writes are safe only then) and `g` matches the parameter.
 */
function inPlaceOffsets(backend: BackendWasm, owned: tf.Tensor[], g: tf.Tensor): ((x: tf.Tensor) => number) | undefined {
  for (const x of owned) if (backend.refCount(x.dataId) !== 1 || x.dtype !== 'float32') return undefined;
  if (g.dtype !== 'float32' || g.size !== owned[0]!.size) return undefined;
  return (x) => backend.dataIdMap.get(x.dataId)!.memoryOffset;
}

/**
 * Fused Adam step for one parameter, in place on the wasm heap (see train/optimizer.ts for the
 * formula). Returns false (nothing done) when it cannot run in place: then the caller uses tf ops.
 */
export function fusedAdam(p: tf.Variable, g: tf.Tensor, m: tf.Variable, v: tf.Variable, s: { lr: number; beta1: number; beta2: number; epsilon: number; c1: number; c2: number }): boolean {
  if (!nativeFusedAvailable() || !addon!.adam) return false;
  const backend = tf.backend() as unknown as BackendWasm;
  const o = inPlaceOffsets(backend, [p, m, v], g);
  if (!o) return false;
  addon!.adam(heap(backend), Int32Array.from([o(p), o(g), o(m), o(v), p.size, floatBits(s.lr), floatBits(s.beta1), floatBits(s.beta2), floatBits(s.epsilon), floatBits(s.c1), floatBits(s.c2)]));
  return true;
}

/**
 * Register the native kernels on the wasm backend if the addon loads (idempotent). Returns whether
 * they are active. Must run after Eden's wasm kernels are registered (their versions are the
 * fallbacks for unsupported layouts).
 */
export function registerNativeKernels(): boolean {
  if (registered) return true;
  if (!loadNative()) return false;
  const kernels: [string, (a: KernelArgs) => Info | Info[]][] = [
    ['Conv2D', conv2d],
    ['Conv2DBackpropInput', conv2dBackpropInput],
    ['Conv2DBackpropFilter', conv2dBackpropFilter],
    ['BatchMatMul', batchMatMul],
    ['Mean', (a) => reduceChannels('Mean', a)],
    ['Sum', (a) => reduceChannels('Sum', a)],
    ['Add', (a) => binary('Add', a)],
    ['Sub', (a) => binary('Sub', a)],
    ['Multiply', (a) => binary('Multiply', a)],
    ['RealDiv', (a) => binary('RealDiv', a)],
    ['MaxPoolGrad', maxPoolGrad],
    ['Identity', (a) => shareInput('Identity', a)],
    ['Cast', (a) => shareInput('Cast', a)],
  ];
  const a = addon!;
  if (a.fusedConv2d) kernels.push(['FusedConv2D', fusedConv2d]);
  if (a.concatChannels) kernels.push(['Concat', concat]);
  if (a.slice) kernels.push(['Slice', slice], ['SplitV', splitV]);
  for (const [name, fn] of kernels) {
    const previous = tf.getKernel(name, 'wasm');
    if (!previous) continue;
    fallbacks.set(name, previous);
    tf.unregisterKernel(name, 'wasm');
    // Keep the previous kernel's setupFunc: it binds the wasm functions the fallback calls.
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc, setupFunc: previous.setupFunc });
  }
  tf.registerKernel({ kernelName: FUSED_BATCH_NORM, backendName: 'wasm', kernelFunc: batchNormForward as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: FUSED_BATCH_NORM_GRAD, backendName: 'wasm', kernelFunc: batchNormBackward as unknown as tf.KernelFunc });
  registerFusedBatchNormGradient();
  registered = true;
  return true;
}
