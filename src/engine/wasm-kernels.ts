/**
 * Kernels Eden adds to, or fixes in, TF.js 4.22's wasm backend (ENGINE.md, "Gaps and bugs"):
 *
 *  1. Conv2DBackpropFilter is missing (and on webgpu, TF.js's own takes two thirds of a training
 *     step's GPU time: measured on an H200). dW is computed as one forward wasm Conv2D: x transposed to
 *     [Ci, H, W, B] convolved with dy transposed to [OH, OW, B, Co] as the filter, strides = the
 *     forward dilation (1), dilations = the forward stride, then transposed back to [kh, kw, Ci, Co].
 *  2. Conv2DBackpropInput is slow on large layers. For stride 1 it equals a forward Conv2D of the
 *     zero-padded dy with the filter reversed in space and its channel axes swapped (2-9x faster);
 *     other strides keep the built-in kernel.
 *  3. MaxPoolGrad starts its running maximum at the smallest positive float, so a window whose
 *     values are all <= 0 routes its gradient to the wrong element. Replaced by a correct kernel
 *     (first maximum in row-major window order wins, as in the cpu backend).
 *  4. SplitV (the gradient of every concat, e.g. the U-Net's skip connections) slices each piece in
 *     JS with one typed-array copy per pixel: splitting a [8, 128, 128, 48] gradient into channel
 *     groups took ~30 ms a piece, a quarter of a frozen U-Net step. One pass over the input copying
 *     every piece's run per outer index, with a plain loop for short runs, is ~10x faster. (With the
 *     native kernels a native copy serves SplitV and Slice, native.ts; this is their fallback.)
 *
 * Kernels are composed from the backend's own kernel functions (not tf ops), as TF.js's backends do
 * internally: intermediates are TensorInfos released with `disposeData`.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;

let registered = false;
let builtinBackpropInput: tf.KernelConfig | undefined;
let builtinSplitV: tf.KernelConfig | undefined;

/** A backend's kernel, called directly (as TF.js backends compose their own kernels). */
function backendKernel(name: string, backendName: string): tf.KernelFunc {
  const config = tf.getKernel(name, backendName);
  if (!config) throw new Error(`TF.js ${backendName} backend has no '${name}' kernel`);
  return config.kernelFunc;
}

type AnyBackend = BackendWasm | tf.KernelBackend;

function backendName(backend: AnyBackend): string {
  return (backend as unknown) === tf.findBackend('webgpu') ? 'webgpu' : 'wasm';
}

function call(backend: AnyBackend, name: string, inputs: Record<string, Info>, attrs: Attrs): Info {
  return backendKernel(name, backendName(backend))({ inputs: inputs as tf.NamedTensorInfoMap, backend: backend as tf.KernelBackend, attrs: attrs as tf.NamedAttrMap }) as Info;
}

function release(backend: AnyBackend, ...infos: Info[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

function asPair(v: unknown): [number, number] {
  if (typeof v === 'number') return [v, v];
  const a = v as number[];
  return [a[0]!, a[1]!];
}

function assertNhwc(dataFormat: unknown, kernel: string): void {
  if (dataFormat !== undefined && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm supports NHWC only, got dataFormat=${String(dataFormat)}`);
  }
}

/** dW for an NHWC conv with dilation 1: see point 1 above. */
export function conv2DBackpropFilter({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: AnyBackend; attrs: Attrs }): Info {
  const x = inputs['x']!;
  const dy = inputs['dy']!;
  const filterShape = attrs['filterShape'] as [number, number, number, number];
  assertNhwc(attrs['dataFormat'], 'Conv2DBackpropFilter');
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    asPair(attrs['strides']),
    1,
    attrs['pad'] as 'same' | 'valid' | number,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
  );
  const [, h, w] = x.shape as number[];
  const [kh, kw] = filterShape;
  const { strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  const { top, left } = info.padInfo;
  // The rows and columns the forward pass actually read: (out - 1) * stride + kernel.
  const needH = (oh - 1) * sh + kh;
  const needW = (ow - 1) * sw + kw;
  const padBottom = Math.max(0, needH - h! - top);
  const padRight = Math.max(0, needW - w! - left);
  const temps: Info[] = [];
  let xp = x;
  if (top || left || padBottom || padRight) {
    xp = call(backend, 'PadV2', { x }, { paddings: [[0, 0], [top, padBottom], [left, padRight], [0, 0]], constantValue: 0 });
    temps.push(xp);
  }
  if (xp.shape[1] !== needH || xp.shape[2] !== needW) {
    const cropped = call(backend, 'Slice', { x: xp }, { begin: [0, 0, 0, 0], size: [-1, needH, needW, -1] });
    temps.push(cropped);
    xp = cropped;
  }
  const xT = call(backend, 'Transpose', { x: xp }, { perm: [3, 1, 2, 0] }); // [Ci, needH, needW, B]
  const dyT = call(backend, 'Transpose', { x: dy }, { perm: [1, 2, 0, 3] }); // [OH, OW, B, Co]
  const r = call(backend, 'Conv2D', { x: xT, filter: dyT }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [sh, sw] }); // [Ci, kh, kw, Co]
  const dw = call(backend, 'Transpose', { x: r }, { perm: [1, 2, 0, 3] }); // [kh, kw, Ci, Co]
  release(backend, ...temps, xT, dyT, r);
  return dw;
}

/** dx for an NHWC conv: see point 2 above. */
export function conv2DBackpropInput(args: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm; attrs: Attrs }): Info {
  const { inputs, backend, attrs } = args;
  const dy = inputs['dy']!;
  const filter = inputs['filter']!;
  const inputShape = attrs['inputShape'] as [number, number, number, number];
  const [sh, sw] = asPair(attrs['strides']);
  const dataFormat = attrs['dataFormat'];
  const nhwc = dataFormat === undefined || dataFormat === 'NHWC' || dataFormat === 'channelsLast';
  const fallback = (): Info => builtinBackpropInput!.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as Info;
  if (sh !== 1 || sw !== 1 || !nhwc) return fallback();
  const [kh, kw] = filter.shape as number[];
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    1,
    1,
    attrs['pad'] as 'same' | 'valid' | number,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
  );
  const padTop = kh! - 1 - info.padInfo.top;
  const padLeft = kw! - 1 - info.padInfo.left;
  const padBottom = inputShape[1] - info.outHeight + info.padInfo.top;
  const padRight = inputShape[2] - info.outWidth + info.padInfo.left;
  if (padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0) return fallback();
  const dyPadded = call(backend, 'PadV2', { x: dy }, { paddings: [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]], constantValue: 0 });
  const reversed = call(backend, 'Reverse', { x: filter }, { dims: [0, 1] });
  const swapped = call(backend, 'Transpose', { x: reversed }, { perm: [0, 1, 3, 2] }); // [kh, kw, Co, Ci]
  const dx = call(backend, 'Conv2D', { x: dyPadded, filter: swapped }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] });
  release(backend, dyPadded, reversed, swapped);
  return dx;
}

/** Correct max-pool gradient: see point 3 above. */
export function maxPoolGrad({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm; attrs: Attrs }): Info {
  const dy = inputs['dy']!;
  const input = inputs['input']!;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs['filterSize'] as [number, number] | number,
    attrs['strides'] as [number, number] | number,
    1,
    attrs['pad'] as 'same' | 'valid' | number,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
  );
  const dx = backend.makeOutput(input.shape, 'float32');
  // Views are taken after makeOutput: allocating can grow (and so detach) the wasm heap.
  const xs = backend.typedArrayFromHeap(input) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const dxs = backend.typedArrayFromHeap(dx) as Float32Array;
  dxs.fill(0);
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const best = new Float32Array(c);
  const bestAt = new Int32Array(c);
  for (let b = 0; b < batchSize; b++) {
    const xBase = b * inHeight * inWidth * c;
    for (let oy = 0; oy < outHeight; oy++) {
      const y0 = oy * strideHeight - top;
      for (let ox = 0; ox < outWidth; ox++) {
        const x0 = ox * strideWidth - left;
        best.fill(-Infinity);
        bestAt.fill(-1);
        for (let ky = 0; ky < fh; ky++) {
          const y = y0 + ky;
          if (y < 0 || y >= inHeight) continue;
          for (let kx = 0; kx < fw; kx++) {
            const xx = x0 + kx;
            if (xx < 0 || xx >= inWidth) continue;
            const at = xBase + (y * inWidth + xx) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = xs[at + ch]!;
              if (v > best[ch]! || bestAt[ch] === -1) {
                best[ch] = v;
                bestAt[ch] = at + ch;
              }
            }
          }
        }
        const dyAt = ((b * outHeight + oy) * outWidth + ox) * c;
        for (let ch = 0; ch < c; ch++) {
          const at = bestAt[ch]!;
          if (at >= 0) dxs[at] = dxs[at]! + dys[dyAt + ch]!;
        }
      }
    }
  }
  return dx;
}

/** SplitV on the wasm heap in one pass (point 4); other dtypes keep the built-in kernel. */
export function splitV({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm; attrs: Attrs }): Info[] {
  const x = inputs['x']!;
  // Registered only where the built-in kernel exists (registerWasmKernels).
  if (x.dtype !== 'float32') return builtinSplitV!.kernelFunc({ inputs, backend: backend as unknown as tf.KernelBackend, attrs: attrs as tf.NamedAttrMap }) as Info[];
  const axis = tf.util.parseAxisParam(attrs['axis'] as number, x.shape)[0]!;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs['numOrSizeSplits'] as number | number[], axis);
  const outer = tf.util.sizeFromShape(x.shape.slice(0, axis));
  const inner = tf.util.sizeFromShape(x.shape.slice(axis + 1));
  const row = x.shape[axis]! * inner;
  const outs = sizes.map((s) => backend.makeOutput(x.shape.map((d, i) => (i === axis ? s : d)), 'float32'));
  // Views after every allocation: a growing heap detaches earlier ones.
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  let begin = 0;
  sizes.forEach((s, j) => {
    const out = backend.typedArrayFromHeap(outs[j]!) as Float32Array;
    const run = s * inner;
    if (run >= 64) {
      for (let o = 0; o < outer; o++) out.set(xs.subarray(o * row + begin, o * row + begin + run), o * run);
    } else {
      for (let o = 0, from = begin, to = 0; o < outer; o++, from += row - run) for (let i = 0; i < run; i++) out[to++] = xs[from++]!;
    }
    begin += run;
  });
  return outs;
}

let registeredWebGpu = false;

/**
 * On webgpu, the conv-based Conv2DBackpropFilter replaces TF.js's slow direct kernel; it is in turn
 * the fallback of webgpu-conv.ts's implicit GEMM (EDEN_WEBGPU_CONV=0, NCHW).
 */
export function registerWebGpuKernels(): void {
  if (registeredWebGpu || !tf.getKernel('Conv2DBackpropFilter', 'webgpu')) return;
  registeredWebGpu = true;
  tf.unregisterKernel('Conv2DBackpropFilter', 'webgpu');
  tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'webgpu', kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc });
}

/** Register the kernels above on the wasm backend (idempotent). */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  const replace = (name: string, kernelFunc: unknown, setupFunc?: tf.KernelSetupFunc): void => {
    if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as tf.KernelFunc, setupFunc });
  };
  builtinBackpropInput = tf.getKernel('Conv2DBackpropInput', 'wasm');
  replace('Conv2DBackpropFilter', conv2DBackpropFilter);
  // The built-in kernel binds its wasm function in setupFunc; keep that so the fallback works.
  if (builtinBackpropInput) replace('Conv2DBackpropInput', conv2DBackpropInput, builtinBackpropInput.setupFunc);
  replace('MaxPoolGrad', maxPoolGrad);
  builtinSplitV = tf.getKernel('SplitV', 'wasm');
  if (builtinSplitV) replace('SplitV', splitV);
}
