/**
 * Per-layer tuning of the webgpu convolutions on the device at hand (EDEN_WEBGPU_CONV=tune), as
 * cuDNN's benchmark mode does: the default routing in webgpu-conv.ts was measured on Mesa's
 * lavapipe, where a workgroup is a CPU thread's loop, and says little about a GPU. With `tune`,
 * every convolution a step runs is noted (its kernel, shapes and attributes); the training loops
 * call tuneWebGpuConvolutions() before each step, which times each noted convolution on random
 * data with every candidate — TF.js's kernel (for the filter gradient, Eden's earlier conv-based
 * one) and Eden's implicit GEMM with each tile shape and split count (candidateTilings) — by the
 * GPU's own clock (timestamp queries; wall time where the device has none), and keeps the fastest
 * of those that ran without a device error and gave TF.js's result.
 * Until then a convolution runs the default routing. Every candidate computes the same product
 * (parity-tested against the cpu backend), so a choice changes speed and rounding, not results;
 * since timings vary, two tuned runs may choose differently and are not bitwise reproducible
 * (a resumed pretraining run is: its checkpoint keeps the choices, train/pretrain.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { candidateTilings, convTuningOn, takeUntunedConvolutions, setTunedConvolution, tunedConvolutions, withConvChoice, type ConvChoice, type ConvSignature } from './webgpu-conv.js';
import { timeGpuPasses } from './webgpu-timing.js';

export interface ConvTuning {
  key: string;
  kind: ConvSignature['kind'];
  inputs: Record<string, number[]>;
  /** Each candidate's time per call in ms (median of the repetitions), in the order tried; Infinity and why when rejected. */
  candidates: Array<{ choice: ConvChoice; ms: number; rejected?: string }>;
  chosen: ConvChoice;
}

/** 'tfjs', 'eden 4x4/2' (tile rows x columns per thread / splits of the reduction). */
export function describeConvChoice(choice: ConvChoice): string {
  return typeof choice === 'string' ? choice : `eden ${choice.ri}x${choice.rj}/${choice.splits}`;
}

let seconds = 0;

/** Seconds spent tuning so far in this process (logs, benchmarks). */
export function convTuningSeconds(): number {
  return seconds;
}

/** How many tuned convolutions chose each kernel ('tfjs', 'eden 4x4/1', ...). */
export function convTuningCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const choice of tunedConvolutions().values()) {
    const name = describeConvChoice(choice);
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/** One line for logs: 'convolutions tuned on this device: 33 (Eden's kernels for 20, TF.js's for 13), 12.3 s', or undefined before any. */
export function describeConvTuning(): string | undefined {
  const n = tunedConvolutions().size;
  if (n === 0) return undefined;
  const tfjs = convTuningCounts()['tfjs'] ?? 0;
  return `convolutions tuned on this device: ${n} (Eden's kernels for ${n - tfjs}, TF.js's for ${tfjs}), ${seconds.toFixed(1)} s`;
}

/**
 * Measure and choose for every convolution noted since the last call (nothing when there are
 * none, or when EDEN_WEBGPU_CONV is not `tune`). Each candidate runs once untimed (compiling its
 * pipeline), and is rejected if the device reports an error meanwhile or its result differs from
 * TF.js's kernel's by more than 1e-4 of the largest value (a driver that miscompiles it: ENGINE.md
 * lists such bugs); then `repetitions` timed calls, fewer when the first is over 4x the best so far.
 * `candidates` replaces the tilings tried (tests).
 */
export async function tuneWebGpuConvolutions(options: { repetitions?: number; candidates?: (s: ConvSignature) => ConvChoice[] } = {}): Promise<ConvTuning[]> {
  if (!convTuningOn()) return [];
  const pending = takeUntunedConvolutions();
  if (pending.length === 0) return [];
  if (tf.getBackend() !== 'webgpu') throw new EdenError('engine', `convolution tuning needs the webgpu backend (the backend is ${tf.getBackend()})`);
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  const started = performance.now();
  const repetitions = options.repetitions ?? 3;
  const results: ConvTuning[] = [];
  for (const s of pending) {
    const inputs = Object.fromEntries(Object.entries(s.inputs).map(([name, shape]) => [name, tf.randomNormal(shape, 0, 1, 'float32', 1)]));
    try {
      const run = (choice: ConvChoice): tf.Tensor => withConvChoice(choice, () => tf.engine().runKernel(s.kernelName, inputs, s.attrs as tf.NamedAttrMap) as tf.Tensor);
      const candidates: ConvTuning['candidates'] = [];
      let best = Infinity;
      let reference: Float32Array | undefined;
      for (const choice of ['tfjs' as const, ...(options.candidates?.(s) ?? candidateTilings(s.gemm))]) {
        const checked = await checkedRun(device, () => run(choice));
        const rejected = checked.error ?? (reference ? mismatch(checked.values!, reference) : undefined);
        if (rejected) {
          candidates.push({ choice, ms: Infinity, rejected });
          continue;
        }
        reference ??= checked.values;
        const times: number[] = [];
        for (let r = 0; r < repetitions && (r === 0 || times[0]! <= 4 * best); r++) times.push(await timeOne(() => run(choice)));
        times.sort((a, b) => a - b);
        const ms = times[Math.floor(times.length / 2)]!;
        candidates.push({ choice, ms });
        best = Math.min(best, ms);
      }
      const chosen = candidates.reduce((a, b) => (b.ms < a.ms ? b : a)).choice;
      setTunedConvolution(s.key, chosen);
      results.push({ key: s.key, kind: s.kind, inputs: s.inputs, candidates, chosen });
    } finally {
      tf.dispose(Object.values(inputs));
    }
  }
  seconds += (performance.now() - started) / 1000;
  return results;
}

/** Run a candidate once, its result read back, with the device's errors captured. */
async function checkedRun(device: GPUDevice, call: () => tf.Tensor): Promise<{ values?: Float32Array; error?: string }> {
  const scopes = ['validation', 'out-of-memory', 'internal'] as const;
  for (const f of scopes) device.pushErrorScope(f);
  let values: Float32Array | undefined;
  let thrown: string | undefined;
  try {
    const out = call();
    values = (await out.data()) as Float32Array;
    out.dispose();
  } catch (err) {
    thrown = err instanceof Error ? err.message : String(err);
  }
  const errors = await Promise.all(scopes.map(() => device.popErrorScope()));
  const error = errors.find((e) => e !== null);
  return error ? { error: `device error: ${error.message.split('\n')[0]}` } : thrown ? { error: thrown } : { values };
}

/** Why a candidate's result is not TF.js's, or undefined when it is (within 1e-4 of the largest value). */
function mismatch(got: Float32Array, reference: Float32Array): string | undefined {
  let [diff, scale] = [0, 0];
  for (let i = 0; i < reference.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - reference[i]!));
    scale = Math.max(scale, Math.abs(reference[i]!));
  }
  const relative = diff / Math.max(scale, 1e-30);
  return relative <= 1e-4 ? undefined : `result differs from TF.js's by ${Number.isNaN(relative) ? 'NaN' : relative.toExponential(2)} of the largest value`;
}

/** One call's time in ms: the GPU's time in its compute passes, or the wall time to its result where there are no timestamp queries. */
async function timeOne(call: () => tf.Tensor): Promise<number> {
  const t0 = performance.now();
  const { time } = await timeGpuPasses(async () => {
    const out = call();
    await out.data();
    out.dispose();
  });
  return time ? time.gpuS * 1000 : performance.now() - t0;
}
