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
import { infoNceLoss, l2Normalize } from '../ssl/loss.js';
import type { MemoryQueue } from '../ssl/queue.js';
import type { SgdMomentum } from './optimizer.js';
import { StepReplay } from '../engine/webgpu-replay.js';
import { tuneWebGpuConvolutions } from '../engine/webgpu-conv-tune.js';

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
  /** Mean cosine of each query with its positive key. */
  positive: number;
  /** Mean and 99.9th percentile of the raw cosines of the queries with the queue (before pruning). */
  negativeMean: number;
  negativeP999: number;
  /**
   * Spread of the teacher's keys: the std over the batch of each dimension of the L2-normalised keys,
   * averaged over dimensions, times sqrt(dim). Keys spread uniformly over the sphere give ~1; keys
   * that all point one way (collapse) give ~0.
   */
  keySpread: number;
}

/** keySpread of L2-normalised keys [B, C] (see StepMetrics). */
export function keySpread(k: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => tf.mul(tf.mean(tf.sqrt(tf.moments(k, 0).variance)), Math.sqrt(k.shape[1])) as tf.Scalar);
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
  let diagnostics: tf.Tensor1D | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const q = l2Normalize(student.project(inputs.queries, { training: true }));
    const r = infoNceLoss(q, k, queue.keys, { temperature: s.temperature, pruneThreshold: s.pruneThreshold });
    diagnostics = tf.keep(tf.concat([tf.reshape(r.loss, [1]), r.diagnostics, tf.reshape(keySpread(k), [1])]) as tf.Tensor1D);
    return r.loss;
  }, [...params.values()]);
  const byName = new Map<string, tf.Tensor>();
  for (const [name, v] of params) {
    const g = grads[v.name];
    if (g) byName.set(name, g);
  }
  // One read-back for every number of the step.
  const metrics = stepMetrics(await diagnostics!.data());
  if (Number.isFinite(metrics.loss)) {
    // SGD and the EMA teacher update in one pass (METHOD.md §3, §5).
    optimizer.step(params, byName, s.learningRate, { params: teacher.trainableVariables(), ema: s.momentum });
    queue.enqueue(k);
  }
  tf.dispose([value, diagnostics!, k, ...Object.values(grads)]);
  return metrics;
}

/** StepMetrics from the step's diagnostics vector (the order adamStep stacks them in). */
function stepMetrics(d: ArrayLike<number>): StepMetrics {
  const [loss, prunedFraction, positive, negativeMean, negativeP999, keySpread] = Array.from(d).slice(0, 6) as [number, number, number, number, number, number];
  return { loss, prunedFraction, positive, negativeMean, negativeP999, keySpread };
}

/**
 * The same loss without any update: validation. BN uses batch statistics without updating them.
 * Also a cheap learning signal: the fraction of queries whose own key is the most similar among
 * the batch's keys (chance: 1 / batch).
 */
export async function adamLoss(student: Encoder, teacher: Encoder, queue: MemoryQueue, inputs: StepInputs, s: Pick<StepSettings, 'temperature' | 'pruneThreshold'>): Promise<{ loss: number; retrieval: number }> {
  const out = tf.tidy(() => {
    const k = teacherKeys(teacher, inputs.keys, false);
    const q = l2Normalize(student.project(inputs.queries, { training: true, updateStats: false }));
    const own = tf.equal(tf.argMax(tf.matMul(q, k, false, true), 1), tf.range(0, q.shape[0], 1, 'int32'));
    return tf.stack([infoNceLoss(q, k, queue.keys, s).loss, tf.mean(tf.cast(own, 'float32'))]);
  });
  const [loss, retrieval] = Array.from(await out.data()) as [number, number];
  out.dispose();
  return { loss, retrieval };
}

/**
 * adamStep for a stage's steps: on webgpu, the first step of each input shape after the stage's
 * first step is captured and later steps of that shape are replayed without TF.js ops
 * (engine/webgpu-replay.ts); a step of another shape (e.g. a last partial batch) runs normally and
 * is captured in turn. Elsewhere, or where a capture is refused, plain adamStep. A new stage or any
 * reassignment of the models' variables (loading a checkpoint) needs a new instance.
 */
export class AdamStepRunner {
  /** Per input shape: its replay once captured, and the captures tried. */
  private readonly byShape = new Map<string, { replay?: StepReplay; attempts: number }>();
  private calls = 0;
  private last?: StepReplay;
  /** Why the last capture was refused, if it was (for diagnostics and tests). */
  refused?: string;

  constructor(
    private readonly student: Encoder,
    private readonly teacher: Encoder,
    private readonly queue: MemoryQueue,
    private readonly optimizer: SgdMomentum,
  ) {}

  /** Whether the last step was replayed. */
  get replaying(): boolean {
    return this.last !== undefined;
  }

  /** The last replayed step's dispatches and its wait for the GPU (benchmarks). */
  get replayStats(): { dispatches: number; waitMs: number } | undefined {
    return this.last && { dispatches: this.last.dispatches, waitMs: this.last.lastWaitMs };
  }

  async step(inputs: StepInputs, s: StepSettings): Promise<StepMetrics> {
    const { student, teacher, queue, optimizer } = this;
    // EDEN_WEBGPU_CONV=tune: the convolutions of the steps so far measured on this device first.
    await tuneWebGpuConvolutions();
    this.calls++;
    this.last = undefined;
    const key = `${inputs.queries.shape}|${inputs.keys.shape}`;
    let entry = this.byShape.get(key);
    if (!entry) this.byShape.set(key, (entry = { attempts: 0 }));
    if (entry.replay) {
      const pointer = queue.pointer;
      // The update (SGD, EMA teacher, enqueue) only for a finite loss, as adamStep.
      const { values, updated } = await entry.replay.run([inputs.queries, inputs.keys], { learningRate: s.learningRate, queuePointer: pointer }, ([d]) => Number.isFinite(d![0]));
      if (updated) queue.pointer = (pointer + inputs.keys.shape[0]) % queue.size;
      this.last = entry.replay;
      return stepMetrics(values[0]!);
    }
    // Capture from the stage's second step on (the first creates the velocity), a few tries at most.
    if (this.calls < 2 || entry.attempts >= 3) return adamStep(student, teacher, queue, optimizer, inputs, s);
    entry.attempts++;
    const { result, replay, refused } = await StepReplay.capture([inputs.queries, inputs.keys], () => adamStep(student, teacher, queue, optimizer, inputs, s));
    this.refused = refused;
    // A step that skipped its update (non-finite loss) is not the step to replay.
    if (replay && Number.isFinite(result.loss)) entry.replay = replay;
    else replay?.dispose();
    return result;
  }

  dispose(): void {
    for (const e of this.byShape.values()) e.replay?.dispose();
    this.byShape.clear();
    this.last = undefined;
  }
}
