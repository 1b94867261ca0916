/**
 * Convolutions on the webgpu backend as tiled implicit-GEMM WGSL programs (issue 13: fast
 * convolutions): the forward pass and both gradients of an NHWC convolution (dilation 1), each one
 * matrix product whose operands are gathered from the tensors as they are, never materialised:
 *
 *   forward        y[m, co]    = sum_k  im2col(x)[m, k] * w[k, co]      m = (b, oy, ox), k = (r, c, ci)
 *   filter grad    dw[k, co]   = sum_m  im2col(x)[m, k] * dy[m, co]
 *   input grad     dx[p, ci]   = sum_t  col(dy)[p, t] * w[(r, c, ci), co]  p = (b, iy, ix), t = (r, c, co)
 *
 * A workgroup is 16 x 16 threads, each computing 4 x 4, 1 x 4 or 4 x 1 outputs (the tile shape
 * that wastes least on partial tiles), stepping through the reduction 16 at a time with both
 * operand tiles in workgroup memory; the loads and the multiply-adds are unrolled in the generated
 * code. When the output has few tiles (the filter gradient always: its output is the small filter,
 * its reduction the whole batch; the deep layers' forward pass at small spatial sizes) the reduction
 * is split over workgroups ("split-K") and a second program adds the partial products, so that the
 * device has work for all its cores.
 *
 * Why: TF.js 4.22's forward convolution leaves a [4, 2, 2, 512] x [3, 3, 512, 512] layer (the last
 * ResNet stage) on a handful of workgroups, and its filter gradient is a direct loop per filter
 * element; Eden's earlier replacement for the latter (a transposed forward convolution,
 * wasm-kernels.ts, still the fallback) took 307 ms there on lavapipe against 102 ms here
 * (`npm run bench -- --backend webgpu --workload convs`, docs/PERFORMANCE.md). Shapes are baked into
 * each shader (one pipeline per layer shape; a training step has a few dozen), so the compiler sees
 * constants. Which of the three run by default, and EDEN_WEBGPU_CONV: see route() below.
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGpuBackendLike, WebGpuProgram as Program } from './webgpu-program.js';

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;

/** 16 x 16 threads per workgroup, stepping through the reduction 16 at a time. */
const LANES = 16;
const THREADS = LANES * LANES;
const STEP = 16;
/** Split the reduction until there are about this many workgroups (a large GPU's cores, twice). */
const TARGET_WORKGROUPS = 256;
/** ...but give every split at least this much of the reduction. */
const MIN_SPLIT_LENGTH = 256;

/**
 * out[s][i][j] = sum over t in split s of A(i, t) * B(t, j), for i < rows, j < cols, t < depth.
 * `a` and `b` are WGSL function bodies of (i, t) and (t, j) reading the program's inputs.
 */
export interface Gemm {
  key: string;
  rows: number;
  cols: number;
  depth: number;
  inputs: [string, string];
  a: string;
  b: string;
  /**
   * Whether consecutive threads load consecutive reduction indices of A (B) rather than
   * consecutive rows (columns): whichever is contiguous in memory, for coalesced loads.
   */
  aAlongDepth: boolean;
  bAlongDepth: boolean;
  /**
   * Vectorised loaders, where the layout allows: WGSL bodies of the same arguments returning the
   * vec4 of A (B) at four consecutive indices along its contiguous axis (the one named by
   * aAlongDepth / bAlongDepth), the first a multiple of 4, from inputs bound as vec4 arrays. Only
   * when that axis's length is a multiple of 4 and the four elements are adjacent in memory (e.g.
   * channels a multiple of 4), so that a group is wholly inside or outside the bounds and padding.
   */
  aVec4?: string;
  bVec4?: string;
  /**
   * Several independent products in one dispatch (workgroupId.z = phase * splits + split): the
   * loaders read the current one from `edenPhase`. Each phase's rows are mapped to output rows by
   * `outRow` (a WGSL body of `i` returning the output row, or -1 for a padding row), into an
   * output of `outRows` rows. Without phases: one product, row i is output row i.
   */
  phases?: number;
  outRow?: string;
  outRows?: number;
  /** The current phase's reduction length (a WGSL expression of edenPhase, at most `depth`): its indices past it are skipped. */
  phaseDepth?: string;
  /** Module-scope WGSL functions the loaders call. */
  helpers?: string;
}

/** Each thread computes ri x rj outputs: a workgroup tile of 16 ri x 16 rj. */
export interface Tiling {
  ri: number;
  rj: number;
  splits: number;
}

const TILE_SHAPES = [[4, 4], [1, 4], [4, 1], [2, 2]] as const;

/** As many splits of the reduction as bring the workgroups near TARGET_WORKGROUPS, each at least MIN_SPLIT_LENGTH long. */
function splitsFor(rows: number, cols: number, depth: number, phases: number, ri: number, rj: number): number {
  const tiles = Math.ceil(rows / (LANES * ri)) * Math.ceil(cols / (LANES * rj)) * phases;
  return Math.max(1, Math.min(Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(depth / MIN_SPLIT_LENGTH)));
}

/**
 * The tile shape that wastes least on partial tiles (a 16-row output, e.g. the last ResNet stage
 * at batch 4, would leave three quarters of a 64-row tile idle), the largest on ties; then as many
 * splits of the reduction as bring the workgroups near TARGET_WORKGROUPS.
 */
export function chooseTiling(rows: number, cols: number, depth: number, phases = 1): Tiling {
  const padded = (ri: number, rj: number): number => Math.ceil(rows / (LANES * ri)) * LANES * ri * Math.ceil(cols / (LANES * rj)) * LANES * rj;
  const [ri, rj] = TILE_SHAPES.reduce((best, s) => (padded(s[0], s[1]) < padded(best[0], best[1]) ? s : best));
  return { ri, rj, splits: splitsFor(rows, cols, depth, phases, ri, rj) };
}

/**
 * The tilings the tuner tries for a GEMM (webgpu-conv-tune.ts): every tile shape with its rule's
 * splits, and unsplit where the rule splits. chooseTiling's pick is first.
 */
export function candidateTilings(g: Gemm): Tiling[] {
  const phases = g.phases ?? 1;
  const all = [chooseTiling(g.rows, g.cols, g.depth, phases)];
  for (const [ri, rj] of TILE_SHAPES) {
    const splits = splitsFor(g.rows, g.cols, g.depth, phases, ri, rj);
    all.push({ ri, rj, splits });
    if (splits > 1) all.push({ ri, rj, splits: 1 });
  }
  const seen = new Set<string>();
  return all.filter((t) => !seen.has(`${t.ri}x${t.rj}/${t.splits}`) && seen.add(`${t.ri}x${t.rj}/${t.splits}`));
}

function gemmProgram(g: Gemm, tiling: Tiling, shape: number[]): Program {
  const { ri, rj, splits } = tiling;
  const ti = LANES * ri;
  const tj = LANES * rj;
  const chunk = Math.ceil(g.depth / splits / STEP) * STEP;
  const range = (n: number): number[] => Array.from({ length: n }, (_, k) => k);
  // The tile loads, unrolled: thread lid loads elements lid + e * THREADS of a [STEP][width]
  // tile, numbered along the reduction or along the tile's width (alongDepth).
  const loads = (tile: string, width: number, alongDepth: boolean, load: (t: string, u: string) => string): string =>
    range((width * STEP) / THREADS)
      .map((e) => {
        const [t, u] = alongDepth ? [`n % ${STEP}`, `n / ${STEP}`] : [`n / ${width}`, `n % ${width}`];
        return `{ let n = lid + ${e * THREADS}; ${tile}[(${t}) * ${width} + ${u}] = ${load(`t0 + ${t}`, u)}; }`;
      })
      .join('\n          ');
  // The same with vec4 loads (one index computation and one 16-byte load per four elements): vector
  // n covers reduction indices tq..tq+3 of one row (alongDepth) or columns uq..uq+3 of one step.
  const vecLoads = (tile: string, width: number, alongDepth: boolean, load: (t: string, u: string) => string): string => {
    const count = (width * STEP) / 4;
    return range(Math.ceil(count / THREADS))
      .map((e) => {
        const [t, u] = alongDepth ? [`(n % ${STEP / 4}) * 4`, `n / ${STEP / 4}`] : [`n / ${width / 4}`, `(n % ${width / 4}) * 4`];
        const store = range(4).map((q) => (alongDepth ? `${tile}[(tq + ${q}) * ${width} + uq] = v[${q}];` : `${tile}[tq * ${width} + uq + ${q}] = v[${q}];`)).join(' ');
        const guard = (e + 1) * THREADS > count ? `if (n < ${count}) ` : '';
        return `{ let n = lid + ${e * THREADS}; ${guard}{ let tq = ${t}; let uq = ${u}; let v = ${load('t0 + tq', 'uq')}; ${store} } }`;
      })
      .join('\n          ');
  };
  const loadTileA = g.aVec4 ? vecLoads('tileA', ti, g.aAlongDepth, (t, u) => `loadA4(i0 + ${u}, ${t}, tEnd)`) : loads('tileA', ti, g.aAlongDepth, (t, u) => `loadA(i0 + ${u}, ${t}, tEnd)`);
  const loadTileB = g.bVec4 ? vecLoads('tileB', tj, g.bAlongDepth, (t, u) => `loadB4(${t}, j0 + ${u}, tEnd)`) : loads('tileB', tj, g.bAlongDepth, (t, u) => `loadB(${t}, j0 + ${u}, tEnd)`);
  const loader = (name: string, args: string, outOfRange: string, body: string | undefined, vec: boolean): string =>
    body === undefined
      ? ''
      : `fn ${name}(${args}, tEnd : i32) -> ${vec ? 'vec4<f32>' : 'f32'} {
        if (${outOfRange}) { return ${vec ? 'vec4<f32>(0.0)' : '0.0'}; }
        ${body}
      }`;
  // The micro-kernel, unrolled. Thread (tx, ty) owns rows ty + 16 r and columns tx + 16 c: the 16
  // threads of a row read (and store) 16 adjacent columns.
  const micro = [
    ...range(ri).map((r) => `let a${r} = tileA[t * ${ti} + ty + ${LANES * r}];`),
    ...range(rj).map((c) => `let b${c} = tileB[t * ${tj} + tx + ${LANES * c}];`),
    ...range(ri).flatMap((r) => range(rj).map((c) => `acc${r}_${c} += a${r} * b${c};`)),
  ].join('\n            ');
  const phases = g.phases ?? 1;
  const outRows = g.outRows ?? g.rows;
  const stores = range(ri)
    .map((r) => `{ let o = outRow(i0 + ty + ${LANES * r}); if (o >= 0) {
          ${range(rj).map((c) => `if (j0 + tx + ${LANES * c} < ${g.cols}) { result[(s * ${outRows} + o) * ${g.cols} + j0 + tx + ${LANES * c}] = acc${r}_${c}; }`).join('\n          ')}
        } }`)
    .join('\n        ');
  return {
    variableNames: g.inputs,
    outputShape: splits > 1 ? [splits, outRows, g.cols] : shape,
    shaderKey: `eden_conv_gemm_${g.key}_${ri}x${rj}_${splits}${g.aVec4 || g.bVec4 ? `_v${g.aVec4 ? 4 : 1}${g.bVec4 ? 4 : 1}` : ''}`,
    ...(g.aVec4 || g.bVec4 ? { variableComponents: [g.aVec4 ? 4 : 1, g.bVec4 ? 4 : 1] } : {}),
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(g.rows / ti), Math.ceil(g.cols / tj), splits * phases],
    workgroupSize: [THREADS, 1, 1],
    // TF.js binds its uniform buffer to every program, and the layout must then declare it: the
    // reduction length comes from it (the rest is baked into the shader).
    uniforms: 'depth : i32,',
    getUserCode: () => /* wgsl */ `
      var<workgroup> tileA : array<f32, ${ti * STEP}>; // [t][i]
      var<workgroup> tileB : array<f32, ${tj * STEP}>; // [t][j]
      var<private> edenPhase : i32;
      ${g.phaseDepth ? 'var<workgroup> edenSteps : i32;' : ''}
      ${g.helpers ?? ''}
      fn outRow(i : i32) -> i32 {
        if (i >= ${g.rows}) { return -1; }
        ${g.outRow ?? 'return i;'}
      }
      ${loader('loadA', 'i : i32, t : i32', `i >= ${g.rows} || t >= tEnd`, g.aVec4 ? undefined : g.a, false)}
      ${loader('loadA4', 'i : i32, t : i32', `i >= ${g.rows} || t >= tEnd`, g.aVec4, true)}
      ${loader('loadB', 't : i32, j : i32', `j >= ${g.cols} || t >= tEnd`, g.bVec4 ? undefined : g.b, false)}
      ${loader('loadB4', 't : i32, j : i32', `j >= ${g.cols} || t >= tEnd`, g.bVec4, true)}
      fn main(index : i32) {
        let lid = i32(localId.x);
        let tx = lid % ${LANES};
        let ty = lid / ${LANES};
        let i0 = i32(workgroupId.x) * ${ti};
        let j0 = i32(workgroupId.y) * ${tj};
        edenPhase = i32(workgroupId.z) / ${splits};
        let s = i32(workgroupId.z) % ${splits};
        let tBegin = s * ${chunk};
        let tEnd = min(${g.phaseDepth ? `min(uniforms.depth, ${g.phaseDepth})` : 'uniforms.depth'}, tBegin + ${chunk});
        ${range(ri).flatMap((r) => range(rj).map((c) => `var acc${r}_${c} = 0.0;`)).join(' ')}
        // The barriers inside the loop need uniform control flow, and TF.js keeps workgroupId in a
        // private variable that WGSL's analysis cannot prove uniform. So the trip count is a
        // constant (the last split's steps past the end load zeros), or, where phases end at
        // different lengths, goes through workgroupUniformLoad, which makes it uniform.
        ${g.phaseDepth ? `if (lid == 0) { edenSteps = (max(0, tEnd - tBegin) + ${STEP - 1}) / ${STEP}; }
        let steps = workgroupUniformLoad(&edenSteps);` : `let steps = ${chunk / STEP};`}
        for (var step = 0; step < steps; step++) {
          let t0 = tBegin + step * ${STEP};
          ${loadTileA}
          ${loadTileB}
          workgroupBarrier();
          for (var t = 0; t < ${STEP}; t++) {
            ${micro}
          }
          workgroupBarrier();
        }
        ${stores}
      }`,
  };
}

/**
 * Sum of the splits: [splits, n] -> [n] (the caller's output shape). Only the split count is baked
 * in (n is a uniform), so every layer with as many splits shares one pipeline.
 */
function sumSplitsProgram(splits: number, shape: number[]): Program {
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    variableNames: ['partial'],
    outputShape: shape,
    shaderKey: `eden_conv_sum_${splits}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(n / THREADS), 1, 1],
    workgroupSize: [THREADS, 1, 1],
    uniforms: 'n : i32,',
    getUserCode: () => /* wgsl */ `
      fn main(index : i32) {
        let k = i32(workgroupId.x) * ${THREADS} + i32(localId.x);
        if (k < uniforms.n) {
          var s = 0.0;
          for (var p = 0; p < ${splits}; p++) { s += partial[p * uniforms.n + k]; }
          result[k] = s;
        }
      }`,
  };
}

let gemms = 0;
let vec4Gemms = 0;

/** Convolutions run by these kernels since start (tests and benchmarks check the routing with it). */
export function webGpuConvGemms(): number {
  return gemms;
}

/** Of those, the ones with vec4 loads for at least one operand. */
export function webGpuConvVec4Gemms(): number {
  return vec4Gemms;
}

/** Run a GEMM (split when that helps) and return its output with `shape` ([rows * cols] elements). */
function runGemm(backend: WebGpuBackendLike, g: Gemm, inputs: [Info, Info], shape: number[], tiling = chooseTiling(g.rows, g.cols, g.depth, g.phases)): Info {
  gemms++;
  if (g.aVec4 || g.bVec4) vec4Gemms++;
  const { splits } = tiling;
  const out = backend.runWebGPUProgram(gemmProgram(g, tiling, shape), inputs, 'float32', [{ type: 'int32', data: [g.depth] }]);
  if (splits === 1) return out;
  const sum = backend.runWebGPUProgram(sumSplitsProgram(splits, shape), [out], 'float32', [{ type: 'int32', data: [(g.outRows ?? g.rows) * g.cols] }]);
  backend.disposeData(out.dataId);
  return sum;
}

/** The geometry of an NHWC convolution with dilation 1. */
interface Geometry {
  B: number; H: number; W: number; CI: number;
  KH: number; KW: number; CO: number;
  OH: number; OW: number; SH: number; SW: number; PT: number; PL: number;
}

function geometry(xShape: number[], filterShape: number[], attrs: Attrs): Geometry | null {
  if (attrs['dataFormat'] !== undefined && attrs['dataFormat'] !== 'NHWC' && attrs['dataFormat'] !== 'channelsLast') return null;
  const dil = attrs['dilations'];
  if (dil !== undefined && !(dil === 1 || (Array.isArray(dil) && dil.every((d) => d === 1)))) return null;
  const strides = attrs['strides'] as number | [number, number];
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    typeof strides === 'number' ? [strides, strides] : strides,
    1,
    attrs['pad'] as 'same' | 'valid' | number,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
  );
  return {
    B: info.batchSize, H: info.inHeight, W: info.inWidth, CI: info.inChannels,
    KH: info.filterHeight, KW: info.filterWidth, CO: info.outChannels,
    OH: info.outHeight, OW: info.outWidth, SH: info.strideHeight, SW: info.strideWidth, PT: info.padInfo.top, PL: info.padInfo.left,
  };
}

const keyOf = (g: Geometry): string => Object.values(g).join('_');

/**
 * A gather's last line: `input[index]`, or for a vec4 loader (the index a multiple of 4 into an
 * input bound as vec4s) `input[index / 4]`; `zero` likewise.
 */
const element = (input: string, index: string, vec: boolean): string => (vec ? `return ${input}[(${index}) / 4];` : `return ${input}[${index}];`);
const zero = (vec: boolean): string => (vec ? 'vec4<f32>(0.0)' : '0.0');

/** Whether vec4 loads are on (EDEN_WEBGPU_CONV_VEC4=0 turns them off: tests and measurements). */
function vec4Enabled(): boolean {
  return globalThis.process?.env['EDEN_WEBGPU_CONV_VEC4'] !== '0';
}

/**
 * WGSL: x[b, oy * SH - PT + r, ox * SW - PL + c, ci] for row m = (b, oy, ox) and column k = (r, c, ci); 0 in the padding.
 * vec: ci..ci+3 (CI a multiple of 4, so all four share the position and the padding test).
 */
function im2col(g: Geometry, m: string, k: string, vec = false): string {
  return `
        let b = ${m} / ${g.OH * g.OW};
        let oyx = ${m} % ${g.OH * g.OW};
        let ci = ${k} % ${g.CI};
        let rc = ${k} / ${g.CI};
        let iy = (oyx / ${g.OW}) * ${g.SH} - ${g.PT} + rc / ${g.KW};
        let ix = (oyx % ${g.OW}) * ${g.SW} - ${g.PL} + rc % ${g.KW};
        if (iy < 0 || iy >= ${g.H} || ix < 0 || ix >= ${g.W}) { return ${zero(vec)}; }
        ${element('x', `((b * ${g.H} + iy) * ${g.W} + ix) * ${g.CI} + ci`, vec)}`;
}

/** The vec4 loaders that the channel counts allow (channels are the contiguous axis of NHWC and of HWIO filters). */
function vectorised(a: string | undefined, b: string | undefined): Pick<Gemm, 'aVec4' | 'bVec4'> {
  if (!vec4Enabled()) return {};
  return { ...(a === undefined ? {} : { aVec4: a }), ...(b === undefined ? {} : { bVec4: b }) };
}

/** y = conv(x, w): [B * OH * OW, CO] = im2col(x) [.., KH * KW * CI] x w [KH * KW * CI, CO]. */
export function forwardGemm(g: Geometry): Gemm {
  return {
    key: `fwd_${keyOf(g)}`, rows: g.B * g.OH * g.OW, cols: g.CO, depth: g.KH * g.KW * g.CI, inputs: ['x', 'w'],
    a: im2col(g, 'i', 't'), b: element('w', `t * ${g.CO} + j`, false), aAlongDepth: true, bAlongDepth: false,
    ...vectorised(g.CI % 4 === 0 ? im2col(g, 'i', 't', true) : undefined, g.CO % 4 === 0 ? element('w', `t * ${g.CO} + j`, true) : undefined),
  };
}

/** dw: [KH * KW * CI, CO] = im2col(x)^T x dy [B * OH * OW, CO]. */
export function filterGradGemm(g: Geometry): Gemm {
  return {
    key: `dw_${keyOf(g)}`, rows: g.KH * g.KW * g.CI, cols: g.CO, depth: g.B * g.OH * g.OW, inputs: ['x', 'dy'],
    a: im2col(g, 't', 'i'), b: element('dy', `t * ${g.CO} + j`, false), aAlongDepth: false, bAlongDepth: false,
    ...vectorised(g.CI % 4 === 0 ? im2col(g, 't', 'i', true) : undefined, g.CO % 4 === 0 ? element('dy', `t * ${g.CO} + j`, true) : undefined),
  };
}

/** WGSL: how many of a k-tap filter axis's taps reach output positions from input phase p (pad, stride). */
const PHASE_TAPS = /* wgsl */ `
      fn phaseTaps(p : i32, pad : i32, stride : i32, k : i32) -> i32 {
        let first = (p + pad) % stride;
        return select(0, (k - first + stride - 1) / stride, first < k);
      }`;

/**
 * dx: [B * H * W, CI]; row p = (b, iy, ix), reduction over the taps (r, c) and co: dy[b, oy, ox, co]
 * where oy * SH = iy + PT - r (and likewise ox), times w[r, c, ci, co]. With a stride, most taps
 * miss: only r = (iy + PT) mod SH + SH * a lands on an output row. So the rows are split by their
 * phase (iy mod SH, ix mod SW), SH * SW products in one dispatch, each over only its own taps:
 * row i of phase (py, px) is (b, u, v) with iy = py + SH u, ix = px + SW v, and reduction index
 * t = (ay, ax, co) over the phase's own taps, r = (py + PT) mod SH + SH ay (phaseTaps of them:
 * ceil(KH / SH) at most). Each phase's workgroups stop at its own reduction length (phaseDepth),
 * so a 3 x 3 stride-2 layer reduces over 1, 2, 2 or 4 taps instead of 9, and a 1 x 1 stride-2
 * layer's dx is zero in three phases of four at no cost. Stride 1 is one phase of all the taps.
 */
export function inputGradGemm(g: Geometry): Gemm {
  const [HU, WV] = [Math.ceil(g.H / g.SH), Math.ceil(g.W / g.SW)];
  const [KHA, KWA] = [Math.ceil(g.KH / g.SH), Math.ceil(g.KW / g.SW)];
  // The phase's row (b, u, v), and the tap (r, c) of reduction index t: t stays below the phase's
  // own length (phaseDepth), so every t names one of its taps.
  const phase = `
        let py = edenPhase / ${g.SW};
        let px = edenPhase % ${g.SW};`;
  const rowOf = (i: string): string => `
        let b = ${i} / ${HU * WV};
        let u = (${i} % ${HU * WV}) / ${WV};
        let v = ${i} % ${WV};`;
  const tapOf = (): string => `
        let co = t % ${g.CO};
        let kw = phaseTaps(px, ${g.PL}, ${g.SW}, ${g.KW});
        let r = (py + ${g.PT}) % ${g.SH} + ${g.SH} * ((t / ${g.CO}) / kw);
        let c = (px + ${g.PL}) % ${g.SW} + ${g.SW} * ((t / ${g.CO}) % kw);`;
  // vec: co..co+3 (CO a multiple of 4: one position, one bounds test).
  const a = (vec: boolean): string => `${phase}${rowOf('i')}${tapOf()}
        let ny = py + ${g.SH} * u + ${g.PT} - r;
        let nx = px + ${g.SW} * v + ${g.PL} - c;
        if (ny < 0 || nx < 0) { return ${zero(vec)}; }
        let oy = ny / ${g.SH};
        let ox = nx / ${g.SW};
        if (oy >= ${g.OH} || ox >= ${g.OW}) { return ${zero(vec)}; }
        ${element('dy', `((b * ${g.OH} + oy) * ${g.OW} + ox) * ${g.CO} + co`, vec)}`;
  const b = (vec: boolean): string => `${phase}${tapOf()}
        ${element('w', `((r * ${g.KW} + c) * ${g.CI} + j) * ${g.CO} + co`, vec)}`;
  const outRow = `${phase}${rowOf('i')}
        let iy = py + ${g.SH} * u;
        let ix = px + ${g.SW} * v;
        if (iy >= ${g.H} || ix >= ${g.W}) { return -1; }
        return (b * ${g.H} + iy) * ${g.W} + ix;`;
  return {
    key: `dx_${keyOf(g)}`, rows: g.B * HU * WV, cols: g.CI, depth: KHA * KWA * g.CO, inputs: ['dy', 'w'], a: a(false), b: b(false), aAlongDepth: true, bAlongDepth: true,
    phases: g.SH * g.SW, outRow, outRows: g.B * g.H * g.W, helpers: PHASE_TAPS,
    phaseDepth: `phaseTaps(edenPhase / ${g.SW}, ${g.PT}, ${g.SH}, ${g.KH}) * phaseTaps(edenPhase % ${g.SW}, ${g.PL}, ${g.SW}, ${g.KW}) * ${g.CO}`,
    ...(g.CO % 4 === 0 ? vectorised(a(true), b(true)) : {}),
  };
}

type KernelArgs = { inputs: Record<string, Info>; backend: WebGpuBackendLike; attrs: Attrs };

/**
 * Which convolutions run here (EDEN_WEBGPU_CONV): '0' none; 'all' all three; otherwise (default)
 * those measured faster than the fallback on lavapipe (`npm run bench -- --backend webgpu
 * --workload convs`, docs/PERFORMANCE.md): every filter gradient (1.1-58x), and forward passes
 * with a 1 x 1 filter or an output of at most 16 of TF.js's 32 x 32 tiles (the deep layers at
 * small spatial size, where TF.js leaves the device idle and split-K does not: 1.0-3.3x); TF.js's
 * tiled forward kernel was faster on the larger outputs (0.4-0.5x here), and its input gradient at
 * nearly every shape measured (stride 1: 0.5-0.85x; stride 2, since the phase split: 0.3-1.3x), so
 * the input gradient stays TF.js's; forward outputs narrower
 * than 16 channels too (they would idle most of a tile: the stem's input gradient, 1 channel wide,
 * took 3.5 s against 76 ms). 'all' runs everything here, for tests and for measuring on a GPU.
 * 'tune' measures, per convolution, TF.js's kernel and Eden's with every tiling on the device at
 * hand and keeps the fastest (webgpu-conv-tune.ts); until a convolution is tuned, this routing.
 */
type Route = 'none' | 'all' | 'measured' | 'tune';
function route(): Route {
  const v = globalThis.process?.env['EDEN_WEBGPU_CONV'];
  return v === '0' ? 'none' : v === 'all' ? 'all' : v === 'tune' ? 'tune' : 'measured';
}
/** Whether convolutions are tuned per layer on this device (EDEN_WEBGPU_CONV=tune). */
export function convTuningOn(): boolean {
  return route() === 'tune';
}
const SMALL_OUTPUT = 16 * 32 * 32;
const MIN_COLUMNS = 16;

/** The forward passes measured faster here than TF.js's own kernel (see route()). */
function forwardMeasuredFaster(g: Geometry): boolean {
  return g.CO >= MIN_COLUMNS && ((g.KH === 1 && g.KW === 1) || g.B * g.OH * g.OW * g.CO <= SMALL_OUTPUT);
}

/** What runs a convolution: TF.js's kernel (the fallback), or Eden's GEMM with chooseTiling's tiling or the one given. */
export type ConvChoice = 'tfjs' | 'eden' | Tiling;
export type ConvKind = 'forward' | 'filter' | 'input';

/** A convolution seen with EDEN_WEBGPU_CONV=tune and not yet tuned: what the tuner needs to run it again. */
export interface ConvSignature {
  key: string;
  kind: ConvKind;
  kernelName: 'Conv2D' | 'Conv2DBackpropFilter' | 'Conv2DBackpropInput';
  /** The kernel's inputs by name, as shapes. */
  inputs: Record<string, number[]>;
  attrs: Attrs;
  /** Its GEMM (for the candidate tilings). */
  gemm: Gemm;
}

// EDEN_WEBGPU_CONV=tune: choices measured on this device per convolution (webgpu-conv-tune.ts),
// convolutions seen and not yet measured (they run the measured routing meanwhile), and the choice
// the tuner forces while it measures.
const tuned = new Map<string, ConvChoice>();
const untuned = new Map<string, ConvSignature>();
let forced: ConvChoice | undefined;

/** The convolutions seen since the last call that have no tuned choice yet (EDEN_WEBGPU_CONV=tune), removed from the list. */
export function takeUntunedConvolutions(): ConvSignature[] {
  const list = [...untuned.values()];
  untuned.clear();
  return list;
}

/** Record the tuner's choice for a convolution (by its signature's key). */
export function setTunedConvolution(key: string, choice: ConvChoice): void {
  tuned.set(key, choice);
}

/** The tuned choices so far, by signature key (logs, tests). */
export function tunedConvolutions(): ReadonlyMap<string, ConvChoice> {
  return tuned;
}

/** Forget every tuned choice (tests). */
export function clearTunedConvolutions(): void {
  tuned.clear();
  untuned.clear();
}

/** Run `work` with every convolution here run by `choice` (the tuner's measurements, tests). */
export function withConvChoice<T>(choice: ConvChoice, work: () => T): T {
  const before = forced;
  forced = choice;
  try {
    return work();
  } finally {
    forced = before;
  }
}

/**
 * The choice for one convolution: forced, 'all', tuned, or the measured routing (`edenByDefault`);
 * with EDEN_WEBGPU_CONV=tune an untuned convolution is noted for the tuner.
 */
function choose(key: () => string, signature: (key: string) => ConvSignature, edenByDefault: boolean): ConvChoice {
  if (forced) return forced;
  const r = route();
  if (r === 'all') return 'eden';
  if (r === 'tune') {
    const k = key();
    const choice = tuned.get(k);
    if (choice) return choice;
    if (!untuned.has(k)) untuned.set(k, signature(k));
  }
  return edenByDefault ? 'eden' : 'tfjs';
}

type Fallback = (args: KernelArgs) => Info;
const asFallback = (f: tf.KernelFunc): Fallback => f as unknown as Fallback;

/**
 * One of the three kernels: the geometry (null: NCHW or dilated, TF.js's), the choice, then the
 * fallback or Eden's GEMM. The GEMM's WGSL bodies are built only when they are needed.
 */
function convKernel(
  kind: ConvKind,
  kernelName: ConvSignature['kernelName'],
  fallback: Fallback,
  parts: (args: KernelArgs) => { g: Geometry | null; gemm: (g: Geometry) => Gemm; operands: [Info, Info]; shape: (g: Geometry) => number[]; edenByDefault: (g: Geometry) => boolean },
) {
  return (args: KernelArgs): Info => {
    const r = route();
    // The measured routing never runs Eden's input gradient: no geometry to compute.
    if (!forced && (r === 'none' || (r === 'measured' && kind === 'input'))) return fallback(args);
    const { g, gemm, operands, shape, edenByDefault } = parts(args);
    if (!g) return fallback(args);
    const signature = (key: string): ConvSignature => ({
      key,
      kind,
      kernelName,
      inputs: Object.fromEntries(Object.entries(args.inputs).map(([name, t]) => [name, [...t.shape]])),
      attrs: { ...args.attrs },
      gemm: gemm(g),
    });
    const choice = choose(() => `${kind}_${keyOf(g)}`, signature, edenByDefault(g));
    if (choice === 'tfjs') return fallback(args);
    return runGemm(args.backend, gemm(g), operands, shape(g), choice === 'eden' ? undefined : choice);
  };
}

const conv2D = (fallback: tf.KernelFunc) =>
  convKernel('forward', 'Conv2D', asFallback(fallback), ({ inputs, attrs }) => {
    const { x, filter } = inputs as { x: Info; filter: Info };
    return { g: geometry(x.shape, filter.shape, attrs), gemm: forwardGemm, operands: [x, filter], shape: (g) => [g.B, g.OH, g.OW, g.CO], edenByDefault: forwardMeasuredFaster };
  });

const conv2DBackpropFilter = (fallback: tf.KernelFunc) =>
  convKernel('filter', 'Conv2DBackpropFilter', asFallback(fallback), ({ inputs, attrs }) => {
    const { x, dy } = inputs as { x: Info; dy: Info };
    const filterShape = attrs['filterShape'] as number[];
    return { g: geometry(x.shape, filterShape, attrs), gemm: filterGradGemm, operands: [x, dy], shape: () => [...filterShape], edenByDefault: () => true };
  });

const conv2DBackpropInput = (fallback: tf.KernelFunc) =>
  convKernel('input', 'Conv2DBackpropInput', asFallback(fallback), ({ inputs, attrs }) => {
    const { dy, filter } = inputs as { dy: Info; filter: Info };
    const inputShape = attrs['inputShape'] as number[];
    return { g: geometry(inputShape, filter.shape, attrs), gemm: inputGradGemm, operands: [dy, filter], shape: () => [...inputShape], edenByDefault: () => false };
  });

let registered = false;

/**
 * Put the implicit-GEMM kernels in front of the webgpu backend's Conv2D, Conv2DBackpropFilter and
 * Conv2DBackpropInput (after the backend and wasm-kernels' registerWebGpuKernels: those become the
 * fallback for NCHW and dilated convolutions, and with EDEN_WEBGPU_CONV=0). Idempotent.
 */
export function registerWebGpuConvolutions(): void {
  if (registered) return;
  const make = { Conv2D: conv2D, Conv2DBackpropFilter: conv2DBackpropFilter, Conv2DBackpropInput: conv2DBackpropInput };
  const previous = Object.keys(make).map((name) => [name, tf.getKernel(name, 'webgpu')] as const);
  if (previous.some(([, k]) => !k)) return;
  registered = true;
  for (const [name, config] of previous) {
    tf.unregisterKernel(name, 'webgpu');
    tf.registerKernel({ kernelName: name, backendName: 'webgpu', kernelFunc: make[name as keyof typeof make](config!.kernelFunc) as unknown as tf.KernelFunc, setupFunc: config!.setupFunc });
  }
}
