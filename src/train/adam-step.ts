/**
 * One Adam training step (METHOD.md §3-5), in four small pieces:
 *   1. teacher keys k = norm(h_xi(f_xi(x_k))), no gradient;
 *   2. student loss: q = norm(h_theta(f_theta(x_q))), pruned InfoNCE against [k, queue], minimised;
 *   3. EMA update of the teacher;
 *   4. enqueue k.
 * Everything is inside tf.tidy; what escapes is two scalars read back and disposed.
 */
import * as tf from '@tensorflow/tfjs';
import type { Encoder } from '../models/encoder.js';
import { infoNce, l2Normalize } from '../ssl/loss.js';
import type { MemoryQueue } from '../ssl/queue.js';
import type { SgdMomentum } from './optimizer.js';

export interface StepInputs {
  /** Query and key views, [B, S, S, 1]. */
  queries: tf.Tensor4D;
  keys: tf.Tensor4D;
}

export interface StepSettings {
  temperature: number;
  pruneThreshold?: number;
  momentum: number;
  learningRate: number;
}

export interface StepMetrics {
  loss: number;
  prunedFraction: number;
}

export function teacherKeys(teacher: Encoder, x: tf.Tensor4D, updateStats = true): tf.Tensor2D {
  return tf.tidy(() => l2Normalize(teacher.project(x, { training: true, updateStats })));
}

/**
 * Async because the loss is read back with data(): WebGPU in Node has no synchronous read path
 * (TF.js's readSync needs OffscreenCanvas).
 */
export async function adamStep(student: Encoder, teacher: Encoder, queue: MemoryQueue, optimizer: SgdMomentum, inputs: StepInputs, s: StepSettings): Promise<StepMetrics> {
  const params = student.trainableVariables();
  const k = teacherKeys(teacher, inputs.keys);
  let pruned: tf.Scalar | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const q = l2Normalize(student.project(inputs.queries, { training: true }));
    const r = infoNce(q, k, queue.keys, { temperature: s.temperature, pruneThreshold: s.pruneThreshold });
    pruned = tf.keep(r.prunedFraction);
    return r.loss;
  }, [...params.values()]);
  const byName = new Map<string, tf.Tensor>();
  for (const [name, v] of params) {
    const g = grads[v.name];
    if (g) byName.set(name, g);
  }
  const [loss, prunedFraction] = [(await value.data())[0]!, (await pruned!.data())[0]!];
  if (Number.isFinite(loss)) {
    // SGD and the EMA teacher update in one pass (METHOD.md §3, §5).
    optimizer.step(params, byName, s.learningRate, { params: teacher.trainableVariables(), ema: s.momentum });
    queue.enqueue(k);
  }
  tf.dispose([value, pruned!, k, ...Object.values(grads)]);
  return { loss, prunedFraction };
}

/** The same loss without any update: validation. BN uses batch statistics without updating them. */
export async function adamLoss(student: Encoder, teacher: Encoder, queue: MemoryQueue, inputs: StepInputs, s: Pick<StepSettings, 'temperature' | 'pruneThreshold'>): Promise<number> {
  const loss = tf.tidy(() => {
    const k = teacherKeys(teacher, inputs.keys, false);
    const q = l2Normalize(student.project(inputs.queries, { training: true, updateStats: false }));
    return infoNce(q, k, queue.keys, s).loss;
  });
  const value = (await loss.data())[0]!;
  loss.dispose();
  return value;
}
