/**
 * SGD with momentum and weight decay, PyTorch semantics (dampening 0, decay added to the gradient):
 *   g <- g + wd * p;  v <- mu * v + g;  p <- p - lr * v
 * Written here rather than using tf.train.momentum so that the velocity buffers are plain named
 * state (checkpointed by parameter name) and the learning rate can change every step.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedSgdEma } from '../engine/native.js';

export class SgdMomentum {
  readonly momentum: number;
  readonly weightDecay: number;
  /** Velocity per parameter name. */
  readonly velocity = new Map<string, tf.Variable>();

  constructor(args: { momentum: number; weightDecay: number }) {
    this.momentum = args.momentum;
    this.weightDecay = args.weightDecay;
  }

  /**
   * One step over `params`; with `teacher` and `ema`, also the teacher's EMA update of each
   * parameter right after it (fused into one pass over memory by the native kernels when active).
   */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number, teacher?: { params: Map<string, tf.Variable>; ema: number }): void {
    tf.tidy(() => {
      for (const [name, p] of params) {
        const g0 = grads.get(name);
        if (!g0) continue;
        const t = teacher?.params.get(name);
        if (teacher && !t) throw new Error(`parameter '${name}' has no teacher counterpart`);
        const first = !this.velocity.has(name);
        if (first) {
          const zeros = tf.zerosLike(p);
          this.velocity.set(name, tf.variable(zeros, false));
          zeros.dispose(); // the variable alone owns the buffer: the fused kernel may write it in place
        }
        if (fusedSgdEma(p, g0, this.velocity.get(name)!, t, { lr, momentum: this.momentum, weightDecay: this.weightDecay, ema: teacher?.ema ?? 1, first })) continue;
        const g = this.weightDecay ? tf.add(g0, tf.mul(p, this.weightDecay)) : g0;
        const v = this.velocity.get(name)!;
        // PyTorch initialises the buffer to the first gradient.
        v.assign(first ? g : tf.add(tf.mul(v, this.momentum), g));
        p.assign(tf.sub(p, tf.mul(v, lr)));
        if (t && teacher!.ema !== 1) t.assign(tf.add(tf.mul(t, teacher!.ema), tf.mul(p, 1 - teacher!.ema)));
      }
    });
  }

  /** Forget the velocity (a new curriculum stage restarts the optimiser, METHOD.md §5). */
  reset(): void {
    for (const v of this.velocity.values()) v.dispose();
    this.velocity.clear();
  }

  dispose(): void {
    this.reset();
  }
}

/** Cosine decay from `base` to 0 over `total` steps (METHOD.md §5: within each stage). */
export function cosineLearningRate(step: number, total: number, base: number): number {
  if (total <= 0) return base;
  return base * 0.5 * (1 + Math.cos((Math.PI * Math.min(step, total)) / total));
}
