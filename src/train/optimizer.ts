/**
 * SGD with momentum and weight decay, PyTorch semantics (dampening 0, decay added to the gradient):
 *   g <- g + wd * p;  v <- mu * v + g;  p <- p - lr * v
 * Written here rather than using tf.train.momentum so that the velocity buffers are plain named
 * state (checkpointed by parameter name) and the learning rate can change every step.
 */
import * as tf from '@tensorflow/tfjs';

export class SgdMomentum {
  readonly momentum: number;
  readonly weightDecay: number;
  /** Velocity per parameter name. */
  readonly velocity = new Map<string, tf.Variable>();

  constructor(args: { momentum: number; weightDecay: number }) {
    this.momentum = args.momentum;
    this.weightDecay = args.weightDecay;
  }

  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    tf.tidy(() => {
      for (const [name, p] of params) {
        const g0 = grads.get(name);
        if (!g0) continue;
        const g = this.weightDecay ? tf.add(g0, tf.mul(p, this.weightDecay)) : g0;
        let v = this.velocity.get(name);
        if (!v) {
          // PyTorch initialises the buffer to the first gradient.
          v = tf.variable(g.clone(), false);
          this.velocity.set(name, v);
        } else {
          v.assign(tf.add(tf.mul(v, this.momentum), g));
        }
        p.assign(tf.sub(p, tf.mul(v, lr)));
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
