/**
 * Fine-tuning an image classifier: the encoder and a linear head on its pooled features (Eve),
 * cross-entropy, Adam, seeded augmentation (one mild geometric and intensity draw per image). With
 * a validation split, the mean one-vs-rest AUC is measured every `evalEvery` steps and the best
 * weights are kept (training stops after `patience` checks without improvement: the resumable loop
 * of train/early-stopping.ts). Shared by `eden evaluate --task classify` (no validation: a fixed
 * number of steps) and `eden finetune --task classify`.
 */
import * as tf from '@tensorflow/tfjs';
import { deriveSeed, Rng } from '../core/rng.js';
import { augmentPair, DEFAULT_PAIRED_AUGMENT } from '../data/paired-transforms.js';
import { linearInit } from '../models/layers.js';
import type { ResNet } from '../models/resnet.js';
import { imageBatch } from '../models/input.js';
import { Adam } from './optimizer.js';
import { earlyStopping, positionOf, prefixed, restoreTraining, trainingTensors, type EarlyStoppingPosition, type EarlyStoppingRecord, type ResumableTraining, type TrainingParts } from './early-stopping.js';

export interface LabelledClassImage {
  /** [size * size] in [0, 1]. */
  image: Float32Array;
  label: number;
}

export interface ClassifierTrainingOptions {
  classes: number;
  size: number;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  evalEvery?: number;
  patience?: number;
  /** Scores validation probabilities [images x classes] (higher is better), e.g. mean AUC. */
  score?: (probabilities: Float32Array, labels: number[]) => number;
  onProgress?: (p: { step: number; steps: number; loss: number; valScore?: number }) => void;
  /** Save the training state as it goes, go on from a saved one, stop on a signal. */
  resumable?: ResumableTraining<ClassifierPosition>;
}

/**
 * Where a classifier run stands: the early-stopping record, Adam's step count and the generator
 * that draws batches and augmentations; with the tensors `encoder/<name>`, `head/weight`,
 * `head/bias`, Adam's moments (`adam/model/m/<name>`, ...) and the best weights (`best/<name>`).
 */
export interface ClassifierPosition extends EarlyStoppingPosition {
  rng: number[];
}

export interface TrainedClassifier {
  weight: tf.Variable;
  bias: tf.Variable;
  steps: number;
  bestStep: number;
  valScore: number;
  /** Stopped by `resumable.signal`: the state was saved, the weights are the last step's. */
  interrupted: boolean;
  /** Softmax probabilities [images x classes], row-major, with the backbone in inference mode. */
  predict(images: Float32Array[]): Promise<Float32Array>;
  dispose(): void;
}

function variableOf(init: tf.Tensor): tf.Variable {
  const v = tf.variable(init);
  init.dispose();
  return v;
}

export async function trainClassifier(backbone: ResNet, train: LabelledClassImage[], val: LabelledClassImage[], o: ClassifierTrainingOptions): Promise<TrainedClassifier> {
  const rng = new Rng(deriveSeed(o.seed, 81));
  const init = linearInit(backbone.featureDim, o.classes, rng);
  const weight = variableOf(init.weight);
  const bias = variableOf(init.bias);
  // Eden's Adam (TF.js's update, fused in place on the native kernels): its moments are named
  // state a resumed run takes over.
  const opt = new Adam(o.lr);
  const s = o.size;
  const trainable = [...backbone.store.trainable(), weight, bias];
  const predict = async (images: Float32Array[]): Promise<Float32Array> => {
    const out = new Float32Array(images.length * o.classes);
    for (let i = 0; i < images.length; i += 32) {
      const batch = images.slice(i, i + 32);
      const x = imageBatch(batch, s);
      const p = tf.tidy(() => tf.softmax(tf.add(tf.matMul(backbone.forward(x, { training: false }).pooled, weight), bias)));
      out.set((await p.data()) as Float32Array, i * o.classes);
      tf.dispose([x, p]);
    }
    return out;
  };
  const step = async (): Promise<number> => {
    const batch = Array.from({ length: Math.min(o.batchSize, train.length) }, () => train[rng.int(train.length)]!);
    const x = imageBatch(batch.map((v) => augmentPair(v.image, [], s, DEFAULT_PAIRED_AUGMENT, rng).image), s);
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d(batch.map((v) => v.label), 'int32'), o.classes));
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(backbone.forward(x, { training: true }).pooled, weight), bias)) as tf.Scalar, trainable);
    opt.applyGradients(trainable, grads);
    const loss = (await value.data())[0]!;
    tf.dispose([x, y, value, ...Object.values(grads)]);
    return loss;
  };
  // The best snapshot (and the saved state) hold every variable: the backbone's statistics too.
  const named = new Map([...prefixed('encoder', backbone.store.variables), ...prefixed('head', new Map([['weight', weight], ['bias', bias]]))]);
  const parts: TrainingParts = { named, snapshotNames: [...named.keys()], optimisers: [{ name: 'model', opt, params: named }] };
  const res = o.resumable;
  try {
    let start: EarlyStoppingRecord | undefined;
    if (res?.from) {
      start = restoreTraining(parts, res.from);
      rng.setState(res.from.position.rng);
    }
    const save = (r: EarlyStoppingRecord): Promise<void> => res!.save({ position: { ...positionOf(r, opt.steps), rng: rng.state() }, tensors: trainingTensors(parts, r) });
    const r = await earlyStopping({
      maxSteps: o.steps,
      evalEvery: o.evalEvery ?? o.steps,
      patience: o.patience ?? Infinity,
      step,
      score: val.length && o.score && o.evalEvery ? async () => o.score!(await predict(val.map((v) => v.image)), val.map((v) => v.label)) : undefined,
      vars: [...named.values()],
      onProgress: (p) => o.onProgress?.({ step: p.step, steps: o.steps, loss: p.loss, valScore: p.score }),
      what: 'classification training',
      resumable: res && { start, save, everySeconds: res.everySeconds ?? 60, signal: res.signal },
    });
    return { weight, bias, steps: r.steps, bestStep: r.bestStep, valScore: r.best, interrupted: r.interrupted, predict, dispose: () => tf.dispose([weight, bias]) };
  } catch (err) {
    tf.dispose([weight, bias]);
    throw err;
  } finally {
    opt.dispose();
  }
}
