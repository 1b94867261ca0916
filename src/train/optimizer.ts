/**
 * SGD with momentum and weight decay, PyTorch semantics (dampening 0, decay added to the gradient):
 *   g <- g + wd * p;  v <- mu * v + g;  p <- p - lr * v
 * Written here rather than using tf.train.momentum so that the velocity buffers are plain named
 * state (checkpointed by parameter name) and the learning rate can change every step.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedAdam, fusedSgdEma } from '../engine/native.js';
import { webGpuAdam, webGpuSgdEma } from '../engine/webgpu-inplace.js';

/** A non-trainable zero variable shaped like `p` that alone owns its buffer (so fused kernels may write it in place). */
function ownedZeros(p: tf.Variable): tf.Variable {
  const zeros = tf.zerosLike(p);
  const v = tf.variable(zeros, false);
  zeros.dispose();
  return v;
}

export class SgdMomentum {
  readonly momentum: number;
  readonly weightDecay: number;
  /** Velocity per parameter name. */
  readonly velocity = new Map<string, tf.Variable>();
  /** Parameter updates done in place (one fused kernel) / with tensor ops (for tests and profiling). */
  readonly counts = { inPlace: 0, tensorOps: 0 };

  constructor(args: { momentum: number; weightDecay: number }) {
    this.momentum = args.momentum;
    this.weightDecay = args.weightDecay;
  }

  /**
   * One step over `params`; with `teacher` and `ema`, also the teacher's EMA update of each
   * parameter right after it (fused into one pass over memory by the native kernels when active, and
   * into one dispatch per parameter on webgpu).
   */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number, teacher?: { params: Map<string, tf.Variable>; ema: number }): void {
    tf.tidy(() => {
      for (const [name, p] of params) {
        const g0 = grads.get(name);
        if (!g0) continue;
        const t = teacher?.params.get(name);
        if (teacher && !t) throw new Error(`parameter '${name}' has no teacher counterpart`);
        const first = !this.velocity.has(name);
        if (first) this.velocity.set(name, ownedZeros(p));
        const v = this.velocity.get(name)!;
        const settings = { lr, momentum: this.momentum, weightDecay: this.weightDecay, ema: teacher?.ema ?? 1, first };
        if (fusedSgdEma(p, g0, v, t, settings) || webGpuSgdEma(p, g0, v, t, settings)) {
          this.counts.inPlace++;
          continue;
        }
        this.counts.tensorOps++;
        const g = this.weightDecay ? tf.add(g0, tf.mul(p, this.weightDecay)) : g0;
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

/**
 * Adam with TF.js's semantics (tf.train.adam: epsilon 1e-7 added to sqrt of the bias-corrected
 * second moment), updating each parameter in one pass over memory (the native kernels' fused
 * kernel) when its buffers are its own:
 *   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  p <- p - lr (m / c1) / (sqrt(v / c2) + eps)
 * with c1 = 1 - b1^t, c2 = 1 - b2^t. TF.js's own optimizer runs ~10 tensor ops per parameter: on
 * the wasm backend a quarter of a few-shot U-Net step (docs/PERFORMANCE.md). Where a buffer is shared
 * (e.g. with an early-stopping snapshot) the step falls back to tensor ops for that parameter.
 */
export class Adam {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private t = 0;
  /** Parameter updates done in place / with tensor ops (for tests and profiling). */
  readonly counts = { inPlace: 0, tensorOps: 0 };

  constructor(public learningRate: number, o: { beta1?: number; beta2?: number; epsilon?: number } = {}) {
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.epsilon = o.epsilon ?? 1e-7;
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.t;
  }

  /**
   * Count a step taken outside applyGradients (a replayed step, engine/webgpu-replay.ts, whose
   * in-place updates need the bias corrections of this step count); returns the new count.
   */
  advance(): number {
    return ++this.t;
  }

  /** One step over `vars` with `grads` (by variable name, as tf.variableGrads returns them). */
  applyGradients(vars: tf.Variable[], grads: tf.NamedTensorMap): void {
    this.t++;
    const c1 = 1 - this.beta1 ** this.t;
    const c2 = 1 - this.beta2 ** this.t;
    tf.tidy(() => {
      for (const p of vars) {
        const g = grads[p.name];
        if (!g) continue;
        const m = this.state(this.m, p);
        const v = this.state(this.v, p);
        const settings = { lr: this.learningRate, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon, c1, c2 };
        if (fusedAdam(p, g, m, v, settings) || webGpuAdam(p, g, m, v, settings)) {
          this.counts.inPlace++;
          continue;
        }
        this.counts.tensorOps++;
        const m1 = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const v1 = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        m.assign(m1);
        v.assign(v1);
        p.assign(tf.sub(p, tf.mul(tf.div(tf.div(m1, c1), tf.add(tf.sqrt(tf.div(v1, c2)), this.epsilon)), this.learningRate)));
      }
    });
  }

  /**
   * The moments of `params` (by the caller's stable names: TF.js's variable names differ from run to
   * run), as `m/<name>` and `v/<name>`, with the step count: what a resumed run needs to go on with
   * the same updates. The tensors are the optimiser's own (read them before the next step).
   */
  exportState(params: Map<string, tf.Variable>): { steps: number; tensors: Map<string, tf.Tensor> } {
    const tensors = new Map<string, tf.Tensor>();
    for (const [name, p] of params) {
      const [m, v] = [this.m.get(p.name), this.v.get(p.name)];
      if (m && v) tensors.set(`m/${name}`, m).set(`v/${name}`, v);
    }
    return { steps: this.t, tensors };
  }

  /** Take over moments saved by exportState (copied into buffers of the optimiser's own) and its step count. */
  importState(params: Map<string, tf.Variable>, state: { steps: number; tensors: Map<string, tf.Tensor> }): void {
    this.dispose();
    for (const [name, p] of params) {
      const [m, v] = [state.tensors.get(`m/${name}`), state.tensors.get(`v/${name}`)];
      if (!m || !v) continue;
      for (const [map, value] of [[this.m, m], [this.v, v]] as const) {
        if (value.shape.join(',') !== p.shape.join(',')) throw new Error(`Adam state of '${name}' is [${value.shape}], the parameter [${p.shape}]`);
        map.set(p.name, tf.tidy(() => tf.variable(tf.mul(value, 1), false)));
      }
    }
    this.t = state.steps;
  }

  private state(map: Map<string, tf.Variable>, p: tf.Variable): tf.Variable {
    let s = map.get(p.name);
    if (!s) map.set(p.name, (s = ownedZeros(p)));
    return s;
  }

  dispose(): void {
    for (const s of [...this.m.values(), ...this.v.values()]) s.dispose();
    this.m.clear();
    this.v.clear();
  }
}
