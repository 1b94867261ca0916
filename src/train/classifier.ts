/**
 * Fine-tuning an image classifier: the encoder and a linear head on its pooled features (Eve),
 * cross-entropy, Adam, seeded augmentation (one mild geometric and intensity draw per image). With
 * a validation split, the mean one-vs-rest AUC is measured every `evalEvery` steps and the best
 * weights are kept (training stops after `patience` checks without improvement). Shared by
 * `eden evaluate --task classify` (no validation: a fixed number of steps) and
 * `eden finetune --task classify`.
 */
import * as tf from '@tensorflow/tfjs';
import { deriveSeed, Rng } from '../core/rng.js';
import { augmentPair, DEFAULT_PAIRED_AUGMENT } from '../data/paired-transforms.js';
import { linearInit } from '../models/layers.js';
import type { ResNet } from '../models/resnet.js';
import { imageBatch } from '../models/input.js';

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
}

export interface TrainedClassifier {
  weight: tf.Variable;
  bias: tf.Variable;
  steps: number;
  bestStep: number;
  valScore: number;
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
  const opt = tf.train.adam(o.lr);
  const s = o.size;
  const vars = [...backbone.store.trainable(), weight, bias];
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
  // Best weights (every variable of the backbone, statistics included, and the head).
  const all = [...backbone.store.variables.values(), weight, bias];
  let kept: tf.Tensor[] | undefined;
  let best = -Infinity;
  let bestStep = 0;
  let sinceBest = 0;
  let steps = 0;
  try {
    for (let step = 1; step <= o.steps; step++) {
      const batch = Array.from({ length: Math.min(o.batchSize, train.length) }, () => train[rng.int(train.length)]!);
      const x = imageBatch(batch.map((v) => augmentPair(v.image, [], s, DEFAULT_PAIRED_AUGMENT, rng).image), s);
      const y = tf.tidy(() => tf.oneHot(tf.tensor1d(batch.map((v) => v.label), 'int32'), o.classes));
      const cost = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(backbone.forward(x, { training: true }).pooled, weight), bias)) as tf.Scalar, true, vars);
      const loss = (await cost!.data())[0]!;
      tf.dispose([x, y, cost!]);
      steps = step;
      const check = val.length > 0 && o.score && o.evalEvery && (step % o.evalEvery === 0 || step === o.steps);
      const valScore = check ? o.score!(await predict(val.map((v) => v.image)), val.map((v) => v.label)) : undefined;
      o.onProgress?.({ step, steps: o.steps, loss, valScore });
      if (valScore === undefined) continue;
      if (valScore > best + 1e-4) {
        [best, bestStep, sinceBest] = [valScore, step, 0];
        tf.dispose(kept ?? []);
        kept = all.map((v) => tf.clone(v));
      } else if (++sinceBest >= (o.patience ?? Infinity)) break;
    }
    if (kept) all.forEach((v, i) => v.assign(kept![i]!));
  } finally {
    tf.dispose(kept ?? []);
    opt.dispose();
  }
  return { weight, bias, steps, bestStep: kept ? bestStep : steps, valScore: kept ? best : NaN, predict, dispose: () => tf.dispose([weight, bias]) };
}
