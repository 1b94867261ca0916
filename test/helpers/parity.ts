/**
 * Cross-backend parity: run the same function and its full gradient (with a random cotangent, not
 * just a sum) on the reference `cpu` backend and on another backend, and report the relative error
 * max|a - b| / max|b| for the value and each gradient.
 */
import * as tf from '@tensorflow/tfjs';
import { useBackend, type BackendName } from '../../src/engine/backend.js';
import { Rng } from '../../src/core/rng.js';
import { gaussian } from '../../src/models/layers.js';

export interface ParityResult {
  value: number;
  grads: number[];
  worst: number;
}

export interface InputSpec {
  shape: number[];
  /** Values are gaussian * scale + shift. */
  scale?: number;
  shift?: number;
}

/** max |a - b| / max |b| (Infinity where a difference is not finite). */
export function relError(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array): number {
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    ref = Math.max(ref, Math.abs(b[i]!));
  }
  if (!Number.isFinite(diff)) return Infinity;
  return diff / Math.max(ref, 1e-12);
}

/** The largest relError over tensors compared pairwise. */
export function worstRelError(a: Float32Array[], b: Float32Array[]): number {
  return Math.max(...b.map((ref, k) => relError(a[k]!, ref)));
}

async function evaluate(
  backend: BackendName,
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: Float32Array[],
  specs: InputSpec[],
  cotangent: Float32Array | undefined,
): Promise<{ value: Float32Array; grads: Float32Array[]; outShape: number[] }> {
  await useBackend(backend);
  const xs = inputs.map((v, i) => tf.tensor(v, specs[i]!.shape));
  const value = fn(...xs);
  const outShape = value.shape;
  const valueData = (await value.data()) as Float32Array;
  value.dispose();
  const dy = tf.tensor(cotangent ?? new Float32Array(valueData.length).fill(1), outShape);
  const grads = tf.grads((...args: tf.Tensor[]) => fn(...args))(xs, dy);
  const gradData = await Promise.all(grads.map(async (g) => (await g.data()) as Float32Array));
  tf.dispose([...xs, dy, ...grads]);
  return { value: valueData, grads: gradData, outShape };
}

/** Compares `fn` on `backend` against the cpu backend; inputs drawn from a seeded generator. */
export async function parity(backend: BackendName, fn: (...xs: tf.Tensor[]) => tf.Tensor, specs: InputSpec[], seed = 1): Promise<ParityResult> {
  const rng = new Rng(seed);
  const inputs = specs.map((s) => {
    const v = gaussian(s.shape.reduce((a, b) => a * b, 1), rng, s.scale ?? 1);
    if (s.shift) for (let i = 0; i < v.length; i++) v[i] = v[i]! + s.shift;
    return v;
  });
  // First pass on cpu tells the output size, so the cotangent can be drawn once for both.
  const probe = await evaluate('cpu', fn, inputs, specs, undefined);
  const cotangent = gaussian(probe.value.length, rng);
  const ref = await evaluate('cpu', fn, inputs, specs, cotangent);
  const got = await evaluate(backend, fn, inputs, specs, cotangent);
  const value = relError(got.value, ref.value);
  const grads = got.grads.map((g, i) => relError(g, ref.grads[i]!));
  return { value, grads, worst: Math.max(value, ...grads) };
}

export function formatParity(name: string, r: ParityResult): string {
  return `${name.padEnd(44)} value ${r.value.toExponential(2)}  grads ${r.grads.map((g) => g.toExponential(2)).join(' ')}`;
}
