/**
 * Training a segmenter on a few labelled images: the protocol shared by `eden evaluate` (few-shot
 * segmentation) and `eden finetune`. Three ways to use an encoder, from most to least adaptive:
 *
 *   finetune  U-Net on the encoder; decoder and encoder trained together, the encoder at
 *             `encoderLrMultiplier` x the learning rate (default 0.1), so that a few hundred
 *             steps on three images adapt what the encoder brought rather than overwrite it;
 *   frozen    the same U-Net with the encoder frozen (inference mode): only the decoder learns;
 *   linear    a 1x1 convolution on the encoder's multi-scale features (stem and four stages, each
 *             standardised per channel, upsampled bilinearly and summed — equal to one 1x1 conv on
 *             their concatenation, as bilinear upsampling is linear): the dense analogue of a
 *             linear probe. No augmentation, no decoder: what the features hold, and no more.
 *
 * Before `frozen` and `linear`, the encoder's batch-norm running statistics are re-estimated on
 * augmented training images (see models/recalibrate.ts): a random encoder's 0/1 statistics or a
 * pretrained one's view statistics would otherwise decide the result.
 *
 * Early stopping: every `evalEvery` steps the mean Dice on a validation split (drawn from the
 * labelled pool, never the test images) is measured; the best weights are kept, and training stops
 * after `patience` evaluations without improvement or at `maxSteps`.
 * Loss: BCE with logits + soft Dice, one sigmoid per structure. Augmentation: one seeded geometric
 * draw applied to image and masks alike. Every random draw comes from `seed`, so two encoders
 * trained with the same seed see the same batches and augmentations.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { isOutOfWasmMemory } from '../engine/native.js';
import { StepReplay } from '../engine/webgpu-replay.js';
import { tuneWebGpuConvolutions } from '../engine/webgpu-conv-tune.js';
import { accumulatedGradients } from './accumulate.js';
import { Adam } from './optimizer.js';
import { deriveSeed, Rng } from '../core/rng.js';
import type { SegmentationMode } from '../config/evaluate.js';
import { augmentPair, type PairedAugmentOptions } from '../data/paired-transforms.js';
import { recalibrateBatchNorm } from '../models/recalibrate.js';
import type { EncoderFeatures, ResNet } from '../models/resnet.js';
import { UNet } from '../models/unet.js';
import { imageBatch, normaliseInput } from '../models/input.js';
import { earlyStopping, positionOf, prefixed, restoreTraining, trainingTensors, type EarlyStoppingOptions, type EarlyStoppingPosition, type EarlyStoppingRecord, type ResumableTraining, type TrainingParts, type TrainingState } from './early-stopping.js';

export { SEGMENTATION_MODES, type SegmentationMode } from '../config/evaluate.js';

/** An image in [0, 1] and one binary mask per structure, all [size * size]. */
export interface LabelledImage {
  image: Float32Array;
  masks: Float32Array[];
}

export interface SegmenterTrainingOptions {
  mode: SegmentationMode;
  size: number;
  batchSize: number;
  /** Adam learning rate of the decoder (finetune, frozen) and of the linear head (linear: `linearLr`). */
  lr: number;
  encoderLrMultiplier: number;
  linearLr: number;
  maxSteps: number;
  evalEvery: number;
  patience: number;
  /** Batches of augmented training images for the batch-norm re-estimation (frozen, linear). */
  bnBatches: number;
  augment: PairedAugmentOptions;
  seed: number;
  /** Decoder channels, deepest first (default U-Net: 256, 128, 64, 32, 16). */
  decoderChannels?: number[];
  /**
   * Images per forward/backward pass (U-Net modes): a step of `batchSize` images accumulates the
   * gradients of ceil(batchSize / microBatch) passes. Default: the whole batch, halved automatically
   * while a pass does not fit in the 4 GiB wasm heap (ResNet-50 at 224 px fits 4 images a pass).
   */
  microBatch?: number;
  /** Messages worth telling the user (e.g. that the batch was split into passes). */
  onNotice?: (message: string) => void;
  onProgress?: (p: { step: number; maxSteps: number; loss: number; valDice?: number }) => void;
  /** Save the training state as it goes, go on from a saved one, stop on a signal (finetune and frozen). */
  resumable?: ResumableTraining<SegmenterPosition>;
}

/** Where a seeded batch stream stands: its generator, the epoch's shuffled order and the position in it. */
export interface BatchStreamPosition {
  rng: number[];
  order: number[];
  cursor: number;
}

/**
 * Everything a U-Net run needs to go on after an interruption as if it had not stopped: the
 * early-stopping record and the optimisers' step count, the images per pass and the batch stream's
 * position, with named tensors (train/early-stopping.ts): the weights and batch-norm statistics
 * (`decoder/<name>`, `encoder/<name>`), Adam's moments (`adam/decoder/m/<name>`, ...) and the best
 * weights so far (`best/decoder/<name>`, ...).
 */
export type SegmenterTrainingState = TrainingState<SegmenterPosition>;
export interface SegmenterPosition extends EarlyStoppingPosition {
  micro: number;
  stream: BatchStreamPosition;
}

export interface TrainedSegmenter {
  mode: SegmentationMode;
  /** Per image, per structure: probabilities [size * size]. */
  predict(images: Float32Array[]): Promise<Float32Array[][]>;
  /** Steps run, the step whose weights were kept, and their validation Dice (NaN without validation). */
  steps: number;
  bestStep: number;
  valDice: number;
  /** Stopped by `resumable.signal`: the state was saved and the weights are the last step's, not the best. */
  interrupted: boolean;
  unet?: UNet;
  dispose(): void;
}

/** BCE with logits + soft Dice (per structure, over the batch). */
export function segmentationLoss(logits: tf.Tensor4D, target: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => {
    const bce = tf.losses.sigmoidCrossEntropy(target, logits);
    const p = tf.sigmoid(logits);
    const inter = tf.sum(tf.mul(p, target), [0, 1, 2]);
    const total = tf.add(tf.sum(p, [0, 1, 2]), tf.sum(target, [0, 1, 2]));
    const diceLoss = tf.sub(1, tf.mean(tf.div(tf.add(tf.mul(inter, 2), 1), tf.add(total, 1))));
    return tf.add(bce, diceLoss) as tf.Scalar;
  });
}

/** Mean hard Dice over images and structures of probabilities against masks. */
function meanDice(probs: Float32Array[][], truth: LabelledImage[]): number {
  let sum = 0;
  let n = 0;
  probs.forEach((perStructure, j) =>
    perStructure.forEach((p, k) => {
      const t = truth[j]!.masks[k]!;
      let inter = 0;
      let a = 0;
      let b = 0;
      for (let i = 0; i < p.length; i++) {
        const pi = p[i]! > 0.5 ? 1 : 0;
        const ti = t[i]! > 0.5 ? 1 : 0;
        inter += pi & ti;
        a += pi;
        b += ti;
      }
      sum += a + b === 0 ? 1 : (2 * inter) / (a + b);
      n++;
    }),
  );
  return n ? sum / n : NaN;
}

/** A trainable variable taking over `init` (which is disposed). */
function variableOf(init: tf.Tensor): tf.Variable {
  const v = tf.variable(init);
  init.dispose();
  return v;
}

/** Split [B, H, W, C] probabilities into per-image, per-structure arrays. */
function splitProbabilities(p: Float32Array, batch: number, px: number, classes: number): Float32Array[][] {
  const out: Float32Array[][] = [];
  for (let j = 0; j < batch; j++) {
    const per: Float32Array[] = [];
    for (let k = 0; k < classes; k++) {
      const m = new Float32Array(px);
      for (let i = 0; i < px; i++) m[i] = p[(j * px + i) * classes + k]!;
      per.push(m);
    }
    out.push(per);
  }
  return out;
}

/**
 * An endless, seeded stream of augmented training batches: epochs of a shuffled order, one
 * geometric draw per image applied to the image and its masks.
 */
class AugmentedBatches {
  private order: number[] = [];
  private cursor = 0;
  constructor(
    private readonly train: LabelledImage[],
    private readonly o: Pick<SegmenterTrainingOptions, 'size' | 'augment'>,
    private readonly rng: Rng,
  ) {}

  /** Where the stream stands: the generator, the epoch's order and the position in it. */
  get position(): BatchStreamPosition {
    return { rng: this.rng.state(), order: [...this.order], cursor: this.cursor };
  }

  set position(p: BatchStreamPosition) {
    if (p.order.some((i) => !Number.isInteger(i) || i < 0 || i >= this.train.length)) throw new EdenError('checkpoint', `the saved batch order names images beyond the ${this.train.length} training images`);
    this.rng.setState(p.rng);
    [this.order, this.cursor] = [[...p.order], p.cursor];
  }

  next(batch: number): { x: tf.Tensor4D; y: tf.Tensor4D } {
    const size = this.o.size;
    const px = size * size;
    const c = this.train[0]!.masks.length;
    const xs = new Float32Array(batch * px);
    const ys = new Float32Array(batch * px * c);
    for (let j = 0; j < batch; j++) {
      if (this.cursor >= this.order.length) {
        this.order = this.rng.shuffle([...this.train.keys()]);
        this.cursor = 0;
      }
      const s = this.train[this.order[this.cursor++]!]!;
      const aug = augmentPair(s.image, s.masks, size, this.o.augment, this.rng);
      xs.set(normaliseInput(aug.image), j * px);
      for (let i = 0; i < px; i++) for (let k = 0; k < c; k++) ys[(j * px + i) * c + k] = aug.masks[k]![i]!;
    }
    return { x: tf.tensor4d(xs, [batch, size, size, 1]), y: tf.tensor4d(ys, [batch, size, size, c]) };
  }
}

/** Re-estimate BN statistics on `bnBatches` batches of augmented training images. */
function recalibrate(backbone: ResNet, train: LabelledImage[], o: SegmenterTrainingOptions): void {
  const stream = new AugmentedBatches(train, o, new Rng(deriveSeed(o.seed, 33)));
  const batch = Math.max(2, Math.min(o.batchSize, 2 * train.length));
  function* batches(): Generator<tf.Tensor4D> {
    for (let i = 0; i < o.bnBatches; i++) {
      const { x, y } = stream.next(batch);
      y.dispose();
      try {
        yield x;
      } finally {
        x.dispose();
      }
    }
  }
  recalibrateBatchNorm(backbone, batches());
}

/**
 * Train on `train`, stop early on `val` (may be empty: then `maxSteps` are run and the last weights
 * kept). The backbone is used in place (fine-tuning changes it); the caller owns and disposes it.
 */
export async function trainSegmenter(backbone: ResNet, train: LabelledImage[], val: LabelledImage[], o: SegmenterTrainingOptions): Promise<TrainedSegmenter> {
  if (train.length === 0) throw new EdenError('data', 'segmentation training needs at least one labelled image');
  if (o.resumable && o.mode === 'linear') throw new EdenError('config', 'the linear probe is not resumable (it trains in seconds): run it again');
  if (o.mode !== 'finetune') recalibrate(backbone, train, o);
  return o.mode === 'linear' ? trainLinear(backbone, train, val, o) : trainUNet(backbone, train, val, o);
}

/** The shared early-stopping loop with the mean validation Dice as its score. */
function stopEarly(
  o: SegmenterTrainingOptions,
  val: LabelledImage[],
  vars: tf.Variable[],
  step: () => Promise<number>,
  predict: (images: Float32Array[]) => Promise<Float32Array[][]>,
  resumable?: EarlyStoppingOptions['resumable'],
): Promise<{ steps: number; bestStep: number; valDice: number; interrupted: boolean }> {
  return earlyStopping({
    maxSteps: o.maxSteps,
    evalEvery: o.evalEvery,
    patience: o.patience,
    step,
    score: val.length ? async () => meanDice(await predict(val.map((v) => v.image)), val) : undefined,
    vars,
    onProgress: (p) => o.onProgress?.({ step: p.step, maxSteps: o.maxSteps, loss: p.loss, valDice: p.score }),
    what: `segmentation training (${o.mode})`,
    resumable,
  }).then(({ best, ...r }) => ({ ...r, valDice: best }));
}

/**
 * What a U-Net run saves and restores (train/early-stopping.ts): decoder and encoder variables by
 * stable names; the best snapshot holds every weight and batch-norm statistic the run changes (the
 * encoder's only when it trains, i.e. has an optimiser).
 */
export function unetTrainingParts(unet: UNet, decoderOpt: Adam, encoderOpt?: Adam): TrainingParts {
  const [decoder, encoder] = [prefixed('decoder', unet.decoder.variables), prefixed('encoder', unet.encoder.store.variables)];
  return {
    named: new Map([...decoder, ...encoder]),
    snapshotNames: [...decoder.keys(), ...(encoderOpt ? encoder.keys() : [])],
    optimisers: [
      { name: 'decoder', opt: decoderOpt, params: unet.decoder.variables },
      ...(encoderOpt ? [{ name: 'encoder', opt: encoderOpt, params: unet.encoder.store.variables }] : []),
    ],
  };
}

async function trainUNet(backbone: ResNet, train: LabelledImage[], val: LabelledImage[], o: SegmenterTrainingOptions): Promise<TrainedSegmenter> {
  const classes = train[0]!.masks.length;
  const unet = new UNet(backbone, { classes, seed: o.seed, decoderChannels: o.decoderChannels });
  const frozen = o.mode === 'frozen';
  // Eden's Adam: TF.js's update, fused into one pass per parameter on the native kernels.
  const decoderOpt = new Adam(o.lr);
  const encoderOpt = frozen ? undefined : new Adam(o.lr * o.encoderLrMultiplier);
  const decoderVars = unet.decoder.trainable();
  const encoderVars = frozen ? [] : backbone.store.trainable();
  const stream = new AugmentedBatches(train, o, new Rng(deriveSeed(o.seed, 31)));
  const batch = Math.min(o.batchSize, Math.max(2, train.length));
  const size = o.size;
  const px = size * size;
  if (o.microBatch !== undefined && (!Number.isInteger(o.microBatch) || o.microBatch < 1)) throw new EdenError('config', `micro-batch must be a positive integer, got ${o.microBatch}`);
  let micro = Math.min(o.microBatch ?? batch, batch);

  const predict = async (images: Float32Array[]): Promise<Float32Array[][]> => {
    const out: Float32Array[][] = [];
    const chunkSize = Math.min(8, Math.max(micro, 4));
    for (let start = 0; start < images.length; start += chunkSize) {
      const chunk = images.slice(start, start + chunkSize);
      const x = imageBatch(chunk, size);
      const prob = tf.tidy(() => tf.sigmoid(unet.forward(x, { training: false })));
      const p = (await prob.data()) as Float32Array;
      tf.dispose([x, prob]);
      out.push(...splitProbabilities(p, chunk.length, px, classes));
    }
    return out;
  };

  const trainable = [...decoderVars, ...encoderVars];
  const lossOf = (x: tf.Tensor4D, y: tf.Tensor4D): tf.Scalar => {
    // A frozen encoder runs in inference mode, off the tape's gradient path.
    const features = backbone.forwardFeatures(x, { training: !frozen });
    return segmentationLoss(unet.decode(features, { training: true }), y);
  };
  /** One step's gradients; a pass that runs out of heap is retried in halves (unless the user fixed its size). */
  const gradients = (x: tf.Tensor4D, y: tf.Tensor4D): { loss: tf.Scalar; grads: tf.NamedTensorMap } => {
    for (;;) {
      try {
        return accumulatedGradients(lossOf, x, y, micro, trainable);
      } catch (err) {
        if (!isOutOfWasmMemory(err) || o.microBatch !== undefined || micro === 1) throw err;
        const failed = micro;
        micro = Math.ceil(micro / 2);
        o.onNotice?.(`a pass of ${failed} images at ${size} px does not fit in the 4 GiB wasm heap: each step of ${batch} now accumulates the gradients of ${Math.ceil(batch / micro)} passes of ${micro} (--micro-batch sets this)`);
      }
    }
  };
  const normalStep = async (x: tf.Tensor4D, y: tf.Tensor4D): Promise<number> => {
    const { loss, grads } = gradients(x, y);
    decoderOpt.applyGradients(decoderVars, grads);
    encoderOpt?.applyGradients(encoderVars, grads);
    const value = (await loss.data())[0]!;
    tf.dispose([loss, ...Object.values(grads)]);
    return value;
  };
  // On webgpu every step after the second replays the captured second one (the first creates
  // Adam's state): no per-op JavaScript (engine/webgpu-replay.ts). The batch shape never changes.
  let replay: StepReplay | undefined;
  let [calls, captures] = [0, 0];
  const step = async (): Promise<number> => {
    // EDEN_WEBGPU_CONV=tune: the convolutions of the steps so far measured on this device first.
    await tuneWebGpuConvolutions();
    const { x, y } = stream.next(batch);
    try {
      calls++;
      if (replay) {
        const t = decoderOpt.advance();
        if (encoderOpt && encoderOpt.advance() !== t) throw new Error('the encoder and decoder optimisers are out of step');
        const { values } = await replay.run([x, y], { adamStep: t });
        return values[0]![0]!;
      }
      if (calls < 2 || captures >= 3) return await normalStep(x, y);
      captures++;
      const captured = await StepReplay.capture([x, y], () => normalStep(x, y));
      if (captured.replay && Number.isFinite(captured.result)) replay = captured.replay;
      else captured.replay?.dispose();
      return captured.result;
    } finally {
      tf.dispose([x, y]);
    }
  };

  try {
    const parts = unetTrainingParts(unet, decoderOpt, encoderOpt);
    const vars = parts.snapshotNames.map((n) => parts.named.get(n)!);
    const res = o.resumable;
    let start: EarlyStoppingRecord | undefined;
    if (res?.from) {
      start = restoreTraining(parts, res.from);
      stream.position = res.from.position.stream;
      micro = res.from.position.micro;
    }
    const save = (r: EarlyStoppingRecord): Promise<void> =>
      res!.save({ position: { ...positionOf(r, decoderOpt.steps), micro, stream: stream.position }, tensors: trainingTensors(parts, r) });
    const r = await stopEarly(o, val, vars, step, predict, res && { start, save, everySeconds: res.everySeconds ?? 60, signal: res.signal });
    return { mode: o.mode, predict, ...r, unet, dispose: () => unet.dispose() };
  } catch (err) {
    unet.dispose();
    throw err;
  } finally {
    replay?.dispose();
    decoderOpt.dispose();
    encoderOpt?.dispose();
  }
}

/**
 * Dense linear probe: per scale s, W_s [C_s, classes] on channel-standardised features; logits =
 * sum_s upsample(f_s W_s) + b. Features are computed once (the encoder is frozen and there is no
 * augmentation), so this mode costs one encoder pass per image.
 */
async function trainLinear(backbone: ResNet, train: LabelledImage[], val: LabelledImage[], o: SegmenterTrainingOptions): Promise<TrainedSegmenter> {
  const classes = train[0]!.masks.length;
  const size = o.size;
  const px = size * size;
  const features = (images: Float32Array[]): tf.Tensor4D[] =>
    tf.tidy(() => {
      const x = imageBatch(images, size);
      const f: EncoderFeatures = backbone.forwardFeatures(x, { training: false });
      return [f.stem, ...f.stages];
    });
  // Channel statistics of the training features, for standardisation.
  const trainFeatures = features(train.map((t) => t.image));
  const stats = trainFeatures.map((f) => tf.tidy(() => {
    const { mean, variance } = tf.moments(f, [0, 1, 2]);
    return { mean: tf.keep(mean), inv: tf.keep(tf.rsqrt(tf.add(variance, 1e-5))) };
  }));
  const standardise = (fs: tf.Tensor4D[]): tf.Tensor4D[] => fs.map((f, s) => tf.mul(tf.sub(f, stats[s]!.mean), stats[s]!.inv) as tf.Tensor4D);
  const xTrain = tf.tidy(() => standardise(trainFeatures).map((t) => tf.keep(t)));
  tf.dispose(trainFeatures);
  const rng = new Rng(deriveSeed(o.seed, 32));
  const weights = xTrain.map((f) => variableOf(tf.randomNormal([f.shape[3], classes], 0, 0.01 / Math.sqrt(f.shape[3]), 'float32', rng.int(2 ** 31))));
  const bias = variableOf(tf.zeros([classes]));
  const logits = (fs: tf.Tensor4D[]): tf.Tensor4D =>
    tf.tidy(() => {
      let out: tf.Tensor4D | undefined;
      fs.forEach((f, s) => {
        const [b, h, w, c] = f.shape;
        const z = tf.reshape(tf.matMul(tf.reshape(f, [b * h * w, c]), weights[s]!), [b, h, w, classes]) as tf.Tensor4D;
        const up = h === size ? z : tf.image.resizeBilinear(z, [size, size], false, true);
        out = out ? (tf.add(out, up) as tf.Tensor4D) : up;
      });
      return tf.add(out!, bias) as tf.Tensor4D;
    });
  const yTrain = tf.tensor4d(Float32Array.from({ length: train.length * px * classes }, (_, i) => train[Math.floor(i / (px * classes))]!.masks[i % classes]![Math.floor(i / classes) % px]!), [train.length, size, size, classes]);
  const opt = tf.train.adam(o.linearLr);
  const batch = Math.min(train.length, Math.max(o.batchSize, 1));
  let cursor = 0;
  let order: number[] = [];

  const predict = async (images: Float32Array[]): Promise<Float32Array[][]> => {
    const out: Float32Array[][] = [];
    for (let start = 0; start < images.length; start += 8) {
      const chunk = images.slice(start, start + 8);
      const prob = tf.tidy(() => {
        const fs = features(chunk);
        return tf.sigmoid(logits(standardise(fs)));
      });
      out.push(...splitProbabilities((await prob.data()) as Float32Array, chunk.length, px, classes));
      prob.dispose();
    }
    return out;
  };

  const step = async (): Promise<number> => {
    let pick: number[];
    if (batch >= train.length) pick = [...train.keys()];
    else {
      pick = [];
      while (pick.length < batch) {
        if (cursor >= order.length) {
          order = rng.shuffle([...train.keys()]);
          cursor = 0;
        }
        pick.push(order[cursor++]!);
      }
    }
    const cost = opt.minimize(() => {
      const idx = tf.tensor1d(pick, 'int32');
      const fs = xTrain.map((f) => tf.gather(f, idx));
      return segmentationLoss(logits(fs), tf.gather(yTrain, idx));
    }, true, [...weights, bias]);
    const loss = (await cost!.data())[0]!;
    cost!.dispose();
    return loss;
  };

  const release = (): void => {
    tf.dispose([...xTrain, yTrain, ...stats.flatMap((s) => [s.mean, s.inv])]);
    opt.dispose();
  };
  try {
    const r = await stopEarly(o, val, [...weights, bias], step, predict);
    tf.dispose([...xTrain, yTrain]);
    opt.dispose();
    return {
      mode: 'linear',
      predict,
      ...r,
      dispose: () => tf.dispose([...weights, bias, ...stats.flatMap((s) => [s.mean, s.inv])]),
    };
  } catch (err) {
    release();
    tf.dispose([...weights, bias]);
    throw err;
  }
}
