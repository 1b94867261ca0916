/**
 * The loop the supervised trainers share (train/segmenter.ts, train/classifier.ts): steps until
 * `maxSteps`, a validation score every `evalEvery` steps, the best weights kept, a stop after
 * `patience` checks without improvement; and what makes it resumable: its record (steps, best
 * score, checks since, best weights) and the run's weights and Adam moments saved as named tensors
 * at validation checks and on a signal, restored to go on as if the run had not stopped.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import type { Adam } from './optimizer.js';

/** Where an early-stopping run stands after a step. */
export interface EarlyStoppingRecord {
  step: number;
  best: number;
  bestStep: number;
  sinceBest: number;
  /** The best weights so far (in the order of the run's snapshot variables). */
  kept?: tf.Tensor[];
}

/** The record as a saved state holds it (JSON: the best score is null before the first check). */
export interface EarlyStoppingPosition {
  step: number;
  best: number | null;
  bestStep: number;
  sinceBest: number;
  /** Steps the optimisers have taken. */
  adamSteps: number;
}

/** A run's state: where it stands (JSON) and its named tensors. */
export interface TrainingState<P extends EarlyStoppingPosition = EarlyStoppingPosition> {
  position: P;
  tensors: Map<string, tf.Tensor>;
}

/** Training that can be interrupted and resumed. */
export interface ResumableTraining<P extends EarlyStoppingPosition = EarlyStoppingPosition> {
  /** A saved state to go on from; training takes over (and disposes) its tensors. */
  from?: TrainingState<P>;
  /** Saves a state; its tensors are the run's own, valid until the promise resolves. */
  save(state: TrainingState<P>): Promise<void>;
  /** Least seconds between saves at validation checks (default 60; 0 saves at every check). */
  everySeconds?: number;
  /** Once aborted, the state after the current step is saved and training returns, `interrupted`. */
  signal?: AbortSignal;
}

export interface EarlyStoppingOptions {
  maxSteps: number;
  evalEvery: number;
  patience: number;
  /** One training step; its loss. */
  step: () => Promise<number>;
  /** The validation score (higher is better); absent without validation images. */
  score?: () => Promise<number>;
  /** What the best snapshot holds: every weight and statistic the kept model needs. */
  vars: tf.Variable[];
  onProgress?: (p: { step: number; loss: number; score?: number }) => void;
  /** Names the training in the error a diverged loss raises. */
  what: string;
  resumable?: { start?: EarlyStoppingRecord; save: (r: EarlyStoppingRecord) => Promise<void>; everySeconds: number; signal?: AbortSignal };
}

/**
 * Copies of the variables' values, in buffers of their own: tf.clone would share the variables'
 * buffers, which in-place updates (the fused Adam, a replayed step on webgpu) would then change
 * under the snapshot, or refuse to make.
 */
export function snapshot(vars: tf.Variable[]): tf.Tensor[] {
  return vars.map((v) => tf.mul(v, 1));
}

/**
 * Train until `maxSteps` or until `patience` checks pass without improvement; the best weights are
 * restored at the end. With `resumable`, it starts from `start` (taking over its `kept` tensors),
 * saves its record at validation checks (at most every `everySeconds`), and on `signal` saves the
 * record after the current step and returns, interrupted (the weights the last step's).
 */
export async function earlyStopping(o: EarlyStoppingOptions): Promise<{ steps: number; bestStep: number; best: number; interrupted: boolean }> {
  const r: EarlyStoppingRecord = o.resumable?.start ?? { step: 0, best: -Infinity, bestStep: 0, sinceBest: 0 };
  const res = o.resumable;
  let lastSave = Date.now();
  try {
    for (let s = r.step + 1; s <= o.maxSteps; s++) {
      // A turn of the event loop: a step's awaits resolve as microtasks, so without it a Ctrl-C
      // (the signal's handler), timers and I/O callbacks would wait for the whole run.
      await new Promise((resolve) => setImmediate(resolve));
      const loss = await o.step();
      r.step = s;
      if (!Number.isFinite(loss)) throw new EdenError('non-finite-loss', `${o.what} diverged at step ${s} (loss ${loss}); lower the learning rate`);
      const check = o.score !== undefined && (s % o.evalEvery === 0 || s === o.maxSteps);
      const score = check ? await o.score!() : undefined;
      o.onProgress?.({ step: s, loss, score });
      if (score !== undefined) {
        if (score > r.best + 1e-4) {
          [r.best, r.bestStep, r.sinceBest] = [score, s, 0];
          tf.dispose(r.kept ?? []);
          r.kept = snapshot(o.vars);
        } else if (++r.sinceBest >= o.patience) break;
      }
      if (res?.signal?.aborted) {
        await res.save(r);
        return { steps: s, bestStep: r.bestStep, best: r.best, interrupted: true };
      }
      if (res && score !== undefined && s < o.maxSteps && Date.now() - lastSave >= res.everySeconds * 1000) {
        await res.save(r);
        lastSave = Date.now();
      }
    }
    if (r.kept) o.vars.forEach((v, i) => v.assign(r.kept![i]!));
    return { steps: r.step, bestStep: r.kept ? r.bestStep : r.step, best: r.kept ? r.best : NaN, interrupted: false };
  } finally {
    tf.dispose(r.kept ?? []);
  }
}

/** What of a run is saved and restored: its variables by stable name, the snapshot's, and the optimisers. */
export interface TrainingParts {
  /** Every variable of the run (weights and statistics) by a name stable across runs. */
  named: Map<string, tf.Variable>;
  /** The names of the snapshot's variables, in the order of EarlyStoppingOptions.vars. */
  snapshotNames: string[];
  /** Each optimiser with the variables it updates, by the same stable names without its prefix. */
  optimisers: { name: string; opt: Adam; params: Map<string, tf.Variable> }[];
}

/** A store's variables under `<prefix>/<name>`. */
export function prefixed(prefix: string, vars: Map<string, tf.Variable>): Map<string, tf.Variable> {
  return new Map([...vars].map(([n, v]) => [`${prefix}/${n}`, v]));
}

/** The tensors to save: the variables, `adam/<optimiser>/m|v/<name>`, and `best/<name>`. */
export function trainingTensors(parts: TrainingParts, r: EarlyStoppingRecord): Map<string, tf.Tensor> {
  const tensors = new Map<string, tf.Tensor>(parts.named);
  for (const { name, opt, params } of parts.optimisers) for (const [k, t] of opt.exportState(params).tensors) tensors.set(`adam/${name}/${k}`, t);
  r.kept?.forEach((t, i) => tensors.set(`best/${parts.snapshotNames[i]}`, t));
  return tensors;
}

/** The early-stopping part of a position. */
export function positionOf(r: EarlyStoppingRecord, adamSteps: number): EarlyStoppingPosition {
  return { step: r.step, best: Number.isFinite(r.best) ? r.best : null, bestStep: r.bestStep, sinceBest: r.sinceBest, adamSteps };
}

/**
 * Put a saved state back: the variables' values, the optimisers' moments and step count; returns
 * the record to start from. The state's tensors are disposed (the variables keep their values).
 */
export function restoreTraining(parts: TrainingParts, state: TrainingState): EarlyStoppingRecord {
  const { position: p, tensors } = state;
  try {
    for (const [name, v] of parts.named) v.assign(savedTensor(tensors, name, v));
    for (const { name, opt, params } of parts.optimisers) {
      const prefix = `adam/${name}/`;
      const own = new Map([...tensors].filter(([n]) => n.startsWith(prefix)).map(([n, t]) => [n.slice(prefix.length), t]));
      opt.importState(params, { steps: p.adamSteps, tensors: own });
    }
    const kept = p.bestStep > 0 ? parts.snapshotNames.map((n) => tf.mul(savedTensor(tensors, `best/${n}`, parts.named.get(n)!), 1)) : undefined;
    return { step: p.step, best: p.best ?? -Infinity, bestStep: p.bestStep, sinceBest: p.sinceBest, kept };
  } finally {
    tf.dispose([...tensors.values()]);
  }
}

/** A saved state's tensor for `like`, checked to be there and of its shape. */
function savedTensor(tensors: Map<string, tf.Tensor>, name: string, like: tf.Tensor): tf.Tensor {
  const t = tensors.get(name);
  if (!t) throw new EdenError('checkpoint', `the saved training state has no tensor '${name}'`);
  if (t.shape.join(',') !== like.shape.join(',')) throw new EdenError('checkpoint', `the saved training state's '${name}' is [${t.shape}], the model's [${like.shape}]`);
  return t;
}
