/**
 * InfoNCE with the purposive pruner on the webgpu backend as a few WGSL programs (issue 13: fewer,
 * larger kernels). The tensor-op version (ssl/loss.ts) is about 140 dispatches for the loss, its
 * gradient and the step's diagnostics (the 99.9th percentile alone is a TopK); here:
 *
 *   forward:  lneg = q queue^T               TF.js's matmul (its gradient is TF.js's too)
 *             rows  [B, 4]                   one workgroup per query: lpos = q.k, then over the
 *                                            queries' negatives the pruned count, the sum of the raw
 *                                            cosines and logZ = logsumexp of the kept logits
 *                                            (max, then sum of exp: two passes, no overflow)
 *             loss  []                       mean(logZ - lpos / tau) over the rows
 *             diagnostics [4]                pruned fraction, mean positive, mean negative and the
 *                                            99.9th percentile of lneg, by an exact radix select
 *                                            (4 passes of 8-bit histograms in workgroup memory)
 *   backward: dlneg [B, K]                   p_ij dy / (B tau) where kept, 0 where pruned
 *             dq (through lpos) [B, C]       (p_i0 - 1) dy / (B tau) k_i  (and dk alike, if needed)
 *
 * 4 dispatches forward and 2-3 backward (plus TF.js's matmul gradient). The diagnostics carry no
 * gradient: they describe the step, they are not part of a loss. Non-finite values are made
 * explicit (WGSL lets drivers assume there are none): a row that saw one gets logZ = NaN, so the
 * loss is NaN and the training step skips its update as on the tensor-op path.
 */
import * as tf from '@tensorflow/tfjs';
import { elementwiseProgram, type WebGpuBackendLike, type WebGpuProgram as Program, type Uniforms } from './webgpu-program.js';
import { SUBGROUP_MARKER, subgroupsOn, workgroupReduce, type Reduction } from './webgpu-subgroups.js';

export const FUSED_INFONCE = 'EdenInfoNce';
const GRAD_LOGITS = 'EdenInfoNceGradLogits';
const GRAD_POSITIVE = 'EdenInfoNceGradPositive';

const THREADS = 256;
/** Columns of the per-row output: logZ, lpos, pruned count, sum of the raw negative cosines. */
const ROW_STATS = 4;
const P999 = 0.999;

interface Attrs {
  temperature: number;
  /** Raw-cosine threshold; negatives at or above it are pruned when `prune` is set. */
  threshold: number;
  prune: boolean;
}

type KernelArgs = { inputs: Record<string, tf.TensorInfo>; backend: WebGpuBackendLike; attrs: Record<string, unknown> };

// Shared WGSL: a non-finite test (on the bits: WGSL lets compilers assume no NaN / inf) and the order-preserving
// map of a float's bits to an unsigned key (for the radix select).
const HELPERS = /* wgsl */ `
  fn edenNonFinite(v : f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }
  fn edenKey(v : f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
  }
  fn edenFromKey(u : u32) -> f32 {
    return bitcast<f32>(select(~u, u & 0x7fffffffu, (u & 0x80000000u) != 0u));
  }`;

/**
 * One of the reducing programs: workgroups of THREADS threads, HELPERS and `slots` f32 workgroup
 * arrays (sa, sb, ...) declared, `code(reduce)` the rest (more declarations, then main), where
 * reduce() is the workgroup reduction of the variant built now — subgroup operations where the
 * device has them (webgpu-subgroups.ts), with its own shader key and marker.
 */
function reducingProgram(o: {
  name: string;
  variableNames: string[];
  outputShape: number[];
  dispatchLayout: { x: number[] };
  workgroups: number;
  uniforms: string;
  slots: number;
  code: (reduce: (items: Reduction[]) => string) => string;
}): Program {
  const subgroups = subgroupsOn();
  const slots = ['sa', 'sb', 'sc', 'sd'].slice(0, o.slots).map((n) => `var<workgroup> ${n} : array<f32, ${THREADS}>;`);
  return {
    variableNames: o.variableNames,
    outputShape: o.outputShape,
    shaderKey: `eden_infonce_${o.name}${subgroups ? '_sg' : ''}`,
    dispatchLayout: o.dispatchLayout,
    dispatch: [o.workgroups, 1, 1],
    workgroupSize: [THREADS, 1, 1],
    uniforms: o.uniforms,
    getUserCode: () => /* wgsl */ `${subgroups ? SUBGROUP_MARKER : ''}
      ${HELPERS}
      ${slots.join('\n      ')}
      ${o.code((items) => workgroupReduce(items, THREADS, 't', subgroups))}`,
  };
}

// NaNs are written from TF.js's own uniforms.NAN (a NaN constant does not compile in WGSL).
const ATTR_UNIFORMS = 'negatives : i32, dim : i32, batch : i32, temperature : f32, threshold : f32, prune : i32,';

function attrUniforms(batch: number, negatives: number, dim: number, a: Attrs): Uniforms {
  return [
    { type: 'int32', data: [negatives] },
    { type: 'int32', data: [dim] },
    { type: 'int32', data: [batch] },
    { type: 'float32', data: [a.temperature] },
    { type: 'float32', data: [a.threshold] },
    { type: 'int32', data: [a.prune ? 1 : 0] },
  ];
}

const KEPT = 'select(true, v < uniforms.threshold, uniforms.prune != 0)';

/** q, k [B, C], lneg [B, K] -> rows [B, 4]: one workgroup per query. */
function rowsProgram(batch: number): Program {
  return reducingProgram({
    name: 'rows',
    variableNames: ['q', 'k', 'lneg'],
    outputShape: [batch, ROW_STATS],
    dispatchLayout: { x: [0, 1] },
    workgroups: batch,
    uniforms: ATTR_UNIFORMS,
    slots: 4,
    code: (reduce) => /* wgsl */ `
      fn main(index : i32) {
        let i = i32(workgroupId.x);
        let t = i32(localId.x);
        let K = uniforms.negatives;
        let C = uniforms.dim;
        let tau = uniforms.temperature;
        var s = 0.0;
        for (var c = t; c < C; c += ${THREADS}) { s += q[i * C + c] * k[i * C + c]; }
        ${reduce([{ slot: 'sa', value: 's', op: 'sum', out: 'lpos' }])}
        let pos = lpos / tau;
        // Pass 1: the largest kept logit (the positive is always kept), the pruned count, the
        // sum of the cosines, and whether any value is not finite.
        var m = pos;
        var pruned = 0.0;
        var cosines = 0.0;
        var bad = select(0.0, 1.0, edenNonFinite(lpos));
        for (var j = t; j < K; j += ${THREADS}) {
          let v = lneg[i * K + j];
          cosines += v;
          if (edenNonFinite(v)) { bad = 1.0; }
          if (${KEPT}) { m = max(m, v / tau); } else { pruned += 1.0; }
        }
        ${reduce([
          { slot: 'sa', value: 'm', op: 'max', out: 'top' },
          { slot: 'sb', value: 'pruned', op: 'sum', out: 'prunedTotal' },
          { slot: 'sc', value: 'cosines', op: 'sum', out: 'cosineTotal' },
          { slot: 'sd', value: 'bad', op: 'max', out: 'badAny' },
        ])}
        // Pass 2: the sum of exp(logit - max) over the kept logits.
        var e = select(0.0, exp(pos - top), t == 0);
        for (var j = t; j < K; j += ${THREADS}) {
          let v = lneg[i * K + j];
          if (${KEPT}) { e += exp(v / tau - top); }
        }
        ${reduce([{ slot: 'sa', value: 'e', op: 'sum', out: 'expTotal' }])}
        if (t == 0) {
          result[i * ${ROW_STATS}] = select(top + log(expTotal), uniforms.NAN, badAny > 0.0);
          result[i * ${ROW_STATS} + 1] = lpos;
          result[i * ${ROW_STATS} + 2] = prunedTotal;
          result[i * ${ROW_STATS} + 3] = cosineTotal;
        }
      }`,
  });
}

/** rows [B, 4] -> the loss, mean(logZ - lpos / tau), as [1] (NaN if any row saw a non-finite value). */
function lossProgram(): Program {
  return reducingProgram({
    name: 'loss',
    variableNames: ['rows'],
    outputShape: [1],
    dispatchLayout: { x: [0] },
    workgroups: 1,
    uniforms: ATTR_UNIFORMS,
    slots: 2,
    code: (reduce) => /* wgsl */ `
      fn main(index : i32) {
        let t = i32(localId.x);
        var s = 0.0;
        var bad = 0.0;
        for (var i = t; i < uniforms.batch; i += ${THREADS}) {
          let z = rows[i * ${ROW_STATS}];
          if (edenNonFinite(z)) { bad = 1.0; } else { s += z - rows[i * ${ROW_STATS} + 1] / uniforms.temperature; }
        }
        ${reduce([{ slot: 'sa', value: 's', op: 'sum', out: 'total' }, { slot: 'sb', value: 'bad', op: 'max', out: 'badAny' }])}
        if (t == 0) { result[0] = select(total / f32(uniforms.batch), uniforms.NAN, badAny > 0.0); }
      }`,
  });
}

/**
 * rows [B, 4], lneg [B, K] -> [pruned fraction, mean positive, mean negative, 99.9th percentile of
 * lneg]. The percentile is the `rank`-th largest value (as upperQuantile in ssl/loss.ts), found
 * exactly by a most-significant-digit-first radix select over the values' order-preserving keys.
 */
function diagnosticsProgram(): Program {
  return reducingProgram({
    name: 'diagnostics',
    variableNames: ['rows', 'lneg'],
    outputShape: [4],
    dispatchLayout: { x: [0] },
    workgroups: 1,
    uniforms: `${ATTR_UNIFORMS} rank : i32,`,
    slots: 3,
    code: (reduce) => /* wgsl */ `
      var<workgroup> hist : array<atomic<u32>, 256>;
      // The digits chosen so far, the mask of their bits, and the rank still to find below them.
      var<workgroup> chosen : array<u32, 3>;
      fn main(index : i32) {
        let t = i32(localId.x);
        let B = uniforms.batch;
        let n = B * uniforms.negatives;
        var pruned = 0.0;
        var positive = 0.0;
        var cosines = 0.0;
        for (var i = t; i < B; i += ${THREADS}) {
          positive += rows[i * ${ROW_STATS} + 1];
          pruned += rows[i * ${ROW_STATS} + 2];
          cosines += rows[i * ${ROW_STATS} + 3];
        }
        if (t == 0) { chosen[0] = 0u; chosen[1] = 0u; chosen[2] = u32(uniforms.rank); }
        ${reduce([
          { slot: 'sa', value: 'pruned', op: 'sum', out: 'prunedTotal' },
          { slot: 'sb', value: 'positive', op: 'sum', out: 'positiveTotal' },
          { slot: 'sc', value: 'cosines', op: 'sum', out: 'cosineTotal' },
        ])}
        for (var digit = 0; digit < 4; digit++) {
          atomicStore(&hist[t], 0u);
          workgroupBarrier();
          let shift = u32(24 - 8 * digit);
          let prefix = chosen[0];
          let mask = chosen[1];
          for (var e = t; e < n; e += ${THREADS}) {
            let u = edenKey(lneg[e]);
            if ((u & mask) == prefix) { atomicAdd(&hist[(u >> shift) & 255u], 1u); }
          }
          workgroupBarrier();
          if (t == 0) {
            var above = 0u;
            var d = 255u;
            loop {
              let h = atomicLoad(&hist[d]);
              if (above + h >= chosen[2] || d == 0u) { break; }
              above += h;
              d -= 1u;
            }
            chosen[2] -= above;
            chosen[0] = prefix | (d << shift);
            chosen[1] = mask | (255u << shift);
          }
          workgroupBarrier();
        }
        if (t == 0) {
          let total = f32(n);
          result[0] = prunedTotal / total;
          result[1] = positiveTotal / f32(B);
          result[2] = cosineTotal / total;
          result[3] = edenFromKey(chosen[0]);
        }
      }`,
  });
}

/** An elementwise program over `shape` (`index`; `i` its row of width `width`). */
function elementwise(shaderKey: string, variableNames: string[], shape: number[], width: string, body: string): Program {
  return elementwiseProgram({ shaderKey, variableNames, shape, uniforms: ATTR_UNIFORMS, prelude: `let i = index / ${width};`, body });
}

function attrsOf(a: Record<string, unknown>): Attrs {
  return { temperature: a['temperature'] as number, threshold: a['threshold'] as number, prune: a['prune'] === true };
}

/** q, k [B, C], lneg [B, K] -> [loss [], diagnostics [4], rows [B, 4]]. */
function forward({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const [q, k, lneg] = [inputs['q']!, inputs['k']!, inputs['lneg']!];
  const [batch, dim] = q.shape as [number, number];
  const negatives = lneg.shape[1]!;
  const a = attrsOf(attrs);
  const u = attrUniforms(batch, negatives, dim, a);
  const rows = backend.runWebGPUProgram(rowsProgram(batch), [q, k, lneg], 'float32', u);
  const loss = backend.runWebGPUProgram(lossProgram(), [rows], 'float32', u);
  // upperQuantile's rank: the smallest of the top ceil((1 - q) n) values.
  const rank = Math.max(1, Math.ceil((1 - P999) * batch * negatives - 1e-9));
  const diagnostics = backend.runWebGPUProgram(diagnosticsProgram(), [rows, lneg], 'float32', [...u, { type: 'int32', data: [rank] }]);
  // The loss as a scalar: the same buffer, shape [] (a reshape).
  return [{ dataId: loss.dataId, shape: [], dtype: 'float32' }, diagnostics, rows];
}

/** lneg [B, K], rows, dy [] -> dlneg: p_ij dy / (B tau) where kept, 0 where pruned. */
function gradLogits({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const [lneg, rows, dy] = [inputs['lneg']!, inputs['rows']!, inputs['dy']!];
  const [batch, negatives] = lneg.shape as [number, number];
  const program = elementwise('eden_infonce_dlneg', ['lneg', 'rows', 'dy'], [batch, negatives], 'uniforms.negatives', `
    let v = lneg[index];
    let g = exp(v / uniforms.temperature - rows[i * ${ROW_STATS}]) * dy[0] / f32(uniforms.batch) / uniforms.temperature;
    result[index] = select(0.0, g, ${KEPT});`);
  return backend.runWebGPUProgram(program, [lneg, rows, dy], 'float32', attrUniforms(batch, negatives, 0, attrsOf(attrs)));
}

/** other [B, C] (k for dq, q for dk), rows, dy [] -> (p_i0 - 1) dy / (B tau) other_i. */
function gradPositive({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const [other, rows, dy] = [inputs['other']!, inputs['rows']!, inputs['dy']!];
  const [batch, dim] = other.shape as [number, number];
  const program = elementwise('eden_infonce_dpos', ['other', 'rows', 'dy'], [batch, dim], 'uniforms.dim', `
    let tau = uniforms.temperature;
    let p0 = exp(rows[i * ${ROW_STATS} + 1] / tau - rows[i * ${ROW_STATS}]);
    result[index] = (p0 - 1.0) * dy[0] / f32(uniforms.batch) / tau * other[index];`);
  return backend.runWebGPUProgram(program, [other, rows, dy], 'float32', attrUniforms(batch, 0, dim, attrsOf(attrs)));
}

let registered = false;

/** Register the InfoNCE kernels on the webgpu backend and their gradient (idempotent; after the backend loads). */
export function registerWebGpuInfoNce(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: FUSED_INFONCE, backendName: 'webgpu', kernelFunc: forward as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: GRAD_LOGITS, backendName: 'webgpu', kernelFunc: gradLogits as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: GRAD_POSITIVE, backendName: 'webgpu', kernelFunc: gradPositive as unknown as tf.KernelFunc });
  tf.registerGradient({
    kernelName: FUSED_INFONCE,
    inputsToSave: ['q', 'k', 'lneg'],
    outputsToSave: [false, false, true],
    gradFunc: (dys, saved, attrs) => {
      const [q, k, lneg, rows] = saved as tf.Tensor[];
      // Only the loss carries a gradient (TF.js hands the other outputs' as zeros, never null).
      const dy = (dys as tf.Tensor[])[0]!;
      const run = (name: string, inputs: Record<string, tf.Tensor>): tf.Tensor => tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor;
      return {
        q: () => run(GRAD_POSITIVE, { other: k!, rows: rows!, dy }),
        k: () => run(GRAD_POSITIVE, { other: q!, rows: rows!, dy }),
        lneg: () => run(GRAD_LOGITS, { lneg: lneg!, rows: rows!, dy }),
      };
    },
  });
}

/** True when the fused InfoNCE runs here: the webgpu backend is active with these kernels (EDEN_WEBGPU_FUSED=0 turns them off). */
export function webGpuInfoNceAvailable(): boolean {
  return registered && tf.getBackend() === 'webgpu' && globalThis.process?.env['EDEN_WEBGPU_FUSED'] !== '0';
}

/**
 * The loss and diagnostics of InfoNCE from q, k [B, C] (L2-normalised) and lneg = q queue^T [B, K]
 * (computed by the caller, so that its gradient is TF.js's matmul's). Webgpu only
 * (webGpuInfoNceAvailable).
 */
export function fusedInfoNce(q: tf.Tensor2D, k: tf.Tensor2D, lneg: tf.Tensor2D, options: { temperature: number; pruneThreshold?: number }): { loss: tf.Scalar; diagnostics: tf.Tensor1D } {
  const attrs = { temperature: options.temperature, threshold: options.pruneThreshold ?? 0, prune: options.pruneThreshold !== undefined };
  const [loss, diagnostics, rows] = tf.engine().runKernel(FUSED_INFONCE, { q, k, lneg } as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  rows!.dispose();
  return { loss: loss as tf.Scalar, diagnostics: diagnostics as tf.Tensor1D };
}
