/**
 * The Adam pretraining loop (METHOD.md §1-5): a coarse-to-fine curriculum of stages (levels
 * n = 0 -> 2 -> 4 by default); each stage starts from the previous stage's student, teacher and
 * queue, and restarts the optimiser and its cosine schedule. A validation InfoNCE on held-out
 * images each epoch picks the `best` checkpoint; `last` is written every epoch (and every
 * `checkpointEverySteps` steps), and on interruption. Progress, logging and plots are hooks.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { deriveSeed, Rng } from '../core/rng.js';
import { scaledLearningRate, stageEpochs, type PretrainConfig } from '../config/pretrain.js';
import { useBackend } from '../engine/backend.js';
import { ImageDataset } from '../data/dataset.js';
import { scanDataset, type SkippedFile } from '../data/scan.js';
import { planCache, thisMachine, type CachePlan } from '../data/cache-plan.js';
import { Encoder } from '../models/encoder.js';
import { MemoryQueue } from '../ssl/queue.js';
import { copyVariables } from '../ssl/momentum.js';
import { AdamStepRunner, adamLoss } from './adam-step.js';
import { cosineLearningRate, SgdMomentum } from './optimizer.js';
import { readCheckpoint, restoreState, saveCheckpoint, type CheckpointMeta, type TrainingPosition, type TrainingState } from './checkpoint.js';
import { batchesPerEpoch, drawViews, epochOrder, viewBatches } from './view-batches.js';
import { defaultViewWorkers, ViewWorkerPool } from './view-workers.js';
import { LearningWatch, RunningMeans } from './learning-watch.js';
import { convTuningOn, setTunedConvolution, tunedConvolutions } from '../engine/webgpu-conv.js';

export interface StepEvent {
  stage: number;
  level: number;
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  globalStep: number;
  totalSteps: number;
  loss: number;
  lr: number;
  prunedFraction: number;
  positive: number;
  negativeMean: number;
  negativeP999: number;
  keySpread: number;
  imagesPerSecond: number;
}

export interface EpochEvent {
  stage: number;
  level: number;
  epoch: number;
  globalStep: number;
  trainLoss: number;
  valLoss: number | null;
  /** Held-out learning signal: share of validation queries whose own key is the nearest of the batch's (chance 1 / batch). */
  valRetrieval: number | null;
  /** Chance level of valRetrieval. */
  retrievalChance: number | null;
  isBest: boolean;
  seconds: number;
}

/** A batch about to be trained on (see PretrainHooks.onBatch). */
export interface BatchEvent {
  position: TrainingPosition;
  level: number;
  lr: number;
  /** [B * S * S] each, NHWC with one channel: exactly what the step consumes. */
  queries: Float32Array;
  keys: Float32Array;
  /** Dataset indices of the batch's images. */
  indices: number[];
  /** The state before the step (read it, do not change it). */
  state: TrainingState;
}

export interface PretrainHooks {
  /** Before each training step, with its inputs: for exporting batches to another implementation. */
  onBatch?(e: BatchEvent): void | Promise<void>;
  /** Before each validation batch, with its inputs (the same views every epoch of a stage). */
  onValidationBatch?(e: { stage: number; level: number; queries: Float32Array; keys: Float32Array }): void | Promise<void>;
  onSkip?(file: SkippedFile): void;
  /** Where the decoded images will be kept (before they are decoded). */
  onCachePlan?(plan: CachePlan): void;
  onPrepare?(done: number, total: number): void;
  onStart?(info: { trainImages: number; valImages: number; totalSteps: number; resumedAt?: TrainingPosition; parameters: number }): void;
  onStep?(e: StepEvent): void;
  onEpoch?(e: EpochEvent): void;
  onCheckpoint?(file: string, kind: 'last' | 'best' | 'stage'): void;
  onWarning?(message: string): void;
}

export interface PretrainOptions {
  hooks?: PretrainHooks;
  /** Aborting saves a checkpoint at the current step and returns with `interrupted: true`. */
  signal?: AbortSignal;
  /** Resume from this checkpoint file (its config is used, not `config`). */
  resumeFrom?: string;
  /**
   * Worker threads that draw the next batch's views during each step (0: on the main thread).
   * The views are the same either way; default defaultViewWorkers() (none below 4 cores).
   */
  viewWorkers?: number;
}

export interface PretrainResult {
  runDir: string;
  lastCheckpoint: string;
  bestCheckpoint: string | null;
  interrupted: boolean;
  position: TrainingPosition;
}

export function checkpointPaths(runDir: string): { dir: string; last: string; best: string; stage: (stage: number, level: number) => string } {
  const dir = path.join(runDir, 'checkpoints');
  return { dir, last: path.join(dir, 'last.safetensors'), best: path.join(dir, 'best.safetensors'), stage: (s, l) => path.join(dir, `stage${s + 1}-level${l}.safetensors`) };
}

function buildState(config: PretrainConfig): TrainingState {
  const encoderArgs = { backbone: config.model.backbone, width: config.model.width, projectionDim: config.model.projectionDim, headNorm: config.model.headNorm ?? 'none', seed: deriveSeed(config.seed, 11) };
  const student = new Encoder(encoderArgs);
  const teacher = new Encoder(encoderArgs);
  copyVariables(teacher.namedVariables(), student.namedVariables());
  return {
    student,
    teacher,
    queue: new MemoryQueue(config.contrast.queueSize, config.model.projectionDim, deriveSeed(config.seed, 12)),
    optimizer: new SgdMomentum({ momentum: config.optim.momentum, weightDecay: config.optim.weightDecay }),
  };
}

function disposeState(s: TrainingState): void {
  s.student.dispose();
  s.teacher.dispose();
  s.queue.dispose();
  s.optimizer.dispose();
}

/** Split usable images into train and validation sets with a seeded shuffle. */
function splitImages(relPaths: string[], valFraction: number, seed: number): { train: string[]; val: string[] } {
  const shuffled = new Rng(deriveSeed(seed, 13)).shuffle([...relPaths]);
  const nVal = valFraction > 0 ? Math.max(2, Math.round(relPaths.length * valFraction)) : 0;
  return { val: shuffled.slice(0, nVal).sort(), train: shuffled.slice(nVal).sort() };
}

export async function pretrain(configIn: PretrainConfig, options: PretrainOptions = {}): Promise<PretrainResult> {
  const hooks = options.hooks ?? {};
  let resumed: { meta: CheckpointMeta; content: Awaited<ReturnType<typeof readCheckpoint>>['content'] } | undefined;
  if (options.resumeFrom) resumed = await readCheckpoint(options.resumeFrom);
  const config = resumed ? resumed.meta.config : configIn;
  if (config.data.paths.length === 0) throw new EdenError('config', 'no training data: give one or more image folders');
  await useBackend(config.backend);
  const runDir = config.run.dir;
  const paths = checkpointPaths(runDir);
  await fs.mkdir(paths.dir, { recursive: true });
  if (!resumed) {
    if (await exists(paths.last)) {
      throw new EdenError('config', `${runDir} already holds a run (${paths.last}); continue it with --resume ${runDir}, or choose another --out`);
    }
    await fs.writeFile(path.join(runDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    await fs.writeFile(path.join(runDir, 'metrics.jsonl'), '');
  }

  // Data: decode every image once (reporting and leaving out unusable files), then split.
  // Pretraining sees images only: a labelled folder's masks (three per image in a heart-and-lungs
  // set) are neither decoded, cached nor reported.
  const scan = await scanDataset(config.data.paths, { imagesOnly: true });
  for (const s of scan.skipped) hooks.onSkip?.(s);
  // Where the decoded images are kept, decided before any is decoded (data/cache-plan.ts).
  const cache = planCache(config.data.cache, { images: scan.images.length, side: config.data.imageSize, cacheDir: config.data.cacheDir }, await thisMachine(config.data.cacheDir));
  hooks.onCachePlan?.(cache);
  if (cache.warning) hooks.onWarning?.(cache.warning);
  const dataset = new ImageDataset(scan.images, { size: config.data.imageSize, intensity: { mode: config.data.intensity }, cache: cache.mode, cacheDir: config.data.cacheDir, onSkip: hooks.onSkip, onWarning: hooks.onWarning });
  const usable = await dataset.validate(hooks.onPrepare, config.data.prefetch);
  if (usable.length === 0) throw new EdenError('data', `no usable images in ${config.data.paths.join(', ')}`);
  // Images are identified by absolute path in the split, so a resume works from any directory.
  const indexOf = new Map(usable.map((i) => [path.resolve(scan.images[i]!.path), i]));
  const relOf = (i: number): string => path.resolve(scan.images[i]!.path);
  const split = resumed ? resumed.meta.split : splitImages(usable.map(relOf), config.data.valFraction, config.seed);
  const toIndices = (files: string[]): number[] =>
    files.map((f) => {
      const i = indexOf.get(f);
      if (i === undefined) throw new EdenError('data', `${f} was part of this run's data but is missing or unreadable now; resume needs the same images`);
      return i;
    });
  const train = toIndices(split.train);
  const val = toIndices(split.val);
  const batch = config.optim.batchSize;
  if (train.length < batch) throw new EdenError('data', `${train.length} training images${val.length ? ` (of ${usable.length}: ${val.length} held out for validation)` : ''} are fewer than one batch of ${batch}; lower the batch (--batch-size, optim.batchSize in a config) or add images`);
  if (val.length === 1) hooks.onWarning?.('only one validation image: validation is skipped');

  const levels = config.curriculum.levels;
  const epochs = stageEpochs(config);
  const fullBatches = batchesPerEpoch(train.length, batch);
  const stepsPerEpoch = config.run.maxStepsPerEpoch > 0 ? Math.min(fullBatches, config.run.maxStepsPerEpoch) : fullBatches;
  const totalSteps = epochs.reduce((n, e) => n + e * stepsPerEpoch, 0);
  const baseLr = scaledLearningRate(config);

  const state = buildState(config);
  let position: TrainingPosition = { stage: 0, epoch: 0, batch: 0, globalStep: 0 };
  let best: CheckpointMeta['best'] = null;
  if (resumed) {
    restoreState(options.resumeFrom!, resumed.content, resumed.meta, state);
    restoreTunedConvolutions(resumed.meta.convTuning);
    position = resumed.meta.position;
    best = resumed.meta.best;
    await truncateMetrics(path.join(runDir, 'metrics.jsonl'), position.globalStep);
  }
  hooks.onStart?.({ trainImages: train.length, valImages: val.length, totalSteps, resumedAt: resumed ? position : undefined, parameters: state.student.backbone.store.parameterCount() });

  const metricsFile = await fs.open(path.join(runDir, 'metrics.jsonl'), 'a');
  const save = async (file: string, kind: 'last' | 'best' | 'stage', at: TrainingPosition): Promise<void> => {
    await saveCheckpoint(file, state, {
      config,
      position: at,
      queuePointer: state.queue.pointer,
      split,
      best,
      rng: { seed: config.seed, scheme: 'deriveSeed(seed, salt, stage, epoch, image index) per draw' },
      backend: config.backend,
      ...tunedConvolutionsToSave(),
    });
    hooks.onCheckpoint?.(file, kind);
  };

  let interrupted = false;
  const watch = new LearningWatch();
  let runner: AdamStepRunner | undefined;
  const viewWorkers = options.viewWorkers ?? defaultViewWorkers();
  const workers = viewWorkers > 0 ? new ViewWorkerPool(viewWorkers) : undefined;
  try {
    for (let stage = position.stage; stage < levels.length && !interrupted; stage++) {
      const level = levels[stage]!;
      const stageSteps = epochs[stage]! * stepsPerEpoch;
      const settings = { temperature: config.contrast.temperature, pruneThreshold: config.contrast.prune && level > 0 ? config.contrast.pruneThreshold : undefined, momentum: config.contrast.momentum };
      // A new stage restarts the optimiser (METHOD.md §5); a mid-stage resume keeps the restored one.
      if (position.stage !== stage || (position.epoch === 0 && position.batch === 0)) {
        state.optimizer.reset();
        if (position.stage !== stage) best = null;
      }
      // On webgpu the stage's steps after its first are replayed from one captured step
      // (engine/webgpu-replay.ts; EDEN_WEBGPU_REPLAY=0 turns it off); elsewhere plain steps.
      runner?.dispose();
      runner = new AdamStepRunner(state.student, state.teacher, state.queue, state.optimizer);
      for (let epoch = position.stage === stage ? position.epoch : 0; epoch < epochs[stage]! && !interrupted; epoch++) {
        const started = Date.now();
        const order = epochOrder(train, config.seed, stage, epoch);
        const firstBatch = position.stage === stage && position.epoch === epoch ? position.batch : 0;
        let lossSum = 0;
        let lossCount = 0;
        const epochStats = new RunningMeans();
        let b = firstBatch;
        let tick = Date.now();
        if (b < stepsPerEpoch) {
          for await (const views of viewBatches({ dataset, order, batchSize: batch, level, views: config.views, anchor: config.anchor, seed: config.seed, stage, epoch, startBatch: firstBatch, prefetch: config.data.prefetch, workers })) {
            const s = config.views.size;
            const lr = cosineLearningRate(epoch * stepsPerEpoch + b, stageSteps, baseLr);
            await hooks.onBatch?.({ position, level, lr, queries: views.queries, keys: views.keys, indices: views.indices, state });
            const queries = tf.tensor4d(views.queries, [batch, s, s, 1]);
            const keys = tf.tensor4d(views.keys, [batch, s, s, 1]);
            const m = await runner.step({ queries, keys }, { ...settings, learningRate: lr });
            tf.dispose([queries, keys]);
            if (!Number.isFinite(m.loss)) {
              throw new EdenError(
                'non-finite-loss',
                `the loss became ${m.loss} at stage ${stage + 1} (level ${level}), epoch ${epoch + 1}, step ${position.globalStep + 1} (learning rate ${lr.toExponential(3)}); ` +
                  `training stopped and ${paths.last} still holds the last good state. Lower optim.baseLr or check the input images, then resume with --resume ${runDir}`,
              );
            }
            b++;
            position = { stage, epoch, batch: b, globalStep: position.globalStep + 1 };
            const now = Date.now();
            const event: StepEvent = { stage, level, epoch, epochs: epochs[stage]!, batch: b, batches: stepsPerEpoch, globalStep: position.globalStep, totalSteps, lr, ...m, imagesPerSecond: (batch * 1000) / Math.max(1, now - tick) };
            tick = now;
            lossSum += m.loss;
            lossCount++;
            epochStats.add(m);
            await metricsFile.write(`${JSON.stringify({ type: 'step', stage: stage + 1, level, epoch: epoch + 1, step: position.globalStep, loss: m.loss, lr, pruned: m.prunedFraction, pos: m.positive, neg: m.negativeMean, neg_p999: m.negativeP999, key_spread: m.keySpread, images_per_s: event.imagesPerSecond })}\n`);
            hooks.onStep?.(event);
            const atEpochEnd = b >= stepsPerEpoch;
            if (!atEpochEnd && config.run.checkpointEverySteps > 0 && position.globalStep % config.run.checkpointEverySteps === 0) await save(paths.last, 'last', position);
            if (options.signal?.aborted && !atEpochEnd) {
              await save(paths.last, 'last', position);
              interrupted = true;
              break;
            }
            if (atEpochEnd) break;
          }
        }
        if (interrupted) break;
        // End of epoch: validation, then `last` (and `best`) pointing at the next epoch.
        const validation = val.length >= 2 ? await validate(state, dataset, val, { level, config, stage, batch, onBatch: hooks.onValidationBatch }) : null;
        const valLoss = validation?.loss ?? null;
        const next: TrainingPosition = { stage: epoch + 1 < epochs[stage]! ? stage : stage + 1, epoch: epoch + 1 < epochs[stage]! ? epoch + 1 : 0, batch: 0, globalStep: position.globalStep };
        const isBest = valLoss !== null && (best === null || best.stage !== stage || valLoss < best.valLoss);
        if (isBest) best = { valLoss: valLoss!, stage, globalStep: position.globalStep };
        position = next;
        const means = epochStats.means();
        await metricsFile.write(
          `${JSON.stringify({ type: 'epoch', stage: stage + 1, level, epoch: epoch + 1, step: position.globalStep, train_loss: lossCount ? lossSum / lossCount : null, val_loss: valLoss, val_retrieval: validation?.retrieval ?? null, retrieval_chance: validation?.chance ?? null, pos: means?.positive ?? null, neg: means?.negativeMean ?? null, neg_p999: means?.negativeP999 ?? null, key_spread: means?.keySpread ?? null, pruned: means?.prunedFraction ?? null })}\n`,
        );
        if (means) for (const w of watch.check({ stage, level, epoch, epochs: epochs[stage]!, queueSize: config.contrast.queueSize, loss: lossSum / lossCount, ...means, valRetrieval: validation?.retrieval ?? null, retrievalChance: validation?.chance ?? null })) hooks.onWarning?.(w);
        await save(paths.last, 'last', position);
        if (isBest) await save(paths.best, 'best', position);
        if (next.stage !== stage) await save(paths.stage(stage, level), 'stage', position);
        hooks.onEpoch?.({ stage, level, epoch, globalStep: position.globalStep, trainLoss: lossCount ? lossSum / lossCount : NaN, valLoss, valRetrieval: validation?.retrieval ?? null, retrievalChance: validation?.chance ?? null, isBest, seconds: (Date.now() - started) / 1000 });
        if (options.signal?.aborted) interrupted = true;
      }
    }
  } finally {
    runner?.dispose();
    await workers?.close();
    await metricsFile.close();
    disposeState(state);
  }
  return { runDir, lastCheckpoint: paths.last, bestCheckpoint: best ? paths.best : null, interrupted, position };
}

/** With EDEN_WEBGPU_CONV=tune, the convolutions' tuned kernels, for the checkpoint. */
function tunedConvolutionsToSave(): Pick<CheckpointMeta, 'convTuning'> {
  if (!convTuningOn() || tunedConvolutions().size === 0) return {};
  return { convTuning: Object.fromEntries(tunedConvolutions()) };
}

/** On resume with EDEN_WEBGPU_CONV=tune: the interrupted run's kernels, not a new tuning (which may choose others). */
function restoreTunedConvolutions(saved: CheckpointMeta['convTuning']): void {
  if (!convTuningOn() || !saved) return;
  for (const [key, choice] of Object.entries(saved)) setTunedConvolution(key, choice);
}

/**
 * Validation InfoNCE and the retrieval learning signal: fixed views of held-out images at the
 * stage's level, no updates.
 */
async function validate(state: TrainingState, dataset: ImageDataset, val: number[], a: { level: number; config: PretrainConfig; stage: number; batch: number; onBatch?: PretrainHooks['onValidationBatch'] }): Promise<{ loss: number; retrieval: number; chance: number }> {
  const s = a.config.views.size;
  const size = Math.min(a.batch, val.length);
  let sum = 0;
  let retrieved = 0;
  let count = 0;
  for (let start = 0; start + size <= val.length; start += size) {
    const indices = val.slice(start, start + size);
    const images: Float32Array[] = [];
    for (const idx of indices) {
      const sample = await dataset.get(idx);
      if (!sample) throw new EdenError('data', `validation image ${dataset.entries[idx]!.path} is not decoded`);
      images.push(sample.image);
    }
    // Epoch 0xffff: the same views every epoch of a stage, so validation losses are comparable.
    const { queries: qs, keys: ks } = drawViews(images, indices, dataset.options.size, { level: a.level, views: a.config.views, anchor: a.config.anchor, seed: a.config.seed, stage: a.stage, epoch: 0xffff });
    await a.onBatch?.({ stage: a.stage, level: a.level, queries: qs, keys: ks });
    const queries = tf.tensor4d(qs, [size, s, s, 1]);
    const keys = tf.tensor4d(ks, [size, s, s, 1]);
    const pruneThreshold = a.config.contrast.prune && a.level > 0 ? a.config.contrast.pruneThreshold : undefined;
    const r = await adamLoss(state.student, state.teacher, state.queue, { queries, keys }, { temperature: a.config.contrast.temperature, pruneThreshold });
    sum += r.loss * size;
    retrieved += r.retrieval * size;
    count += size;
    tf.dispose([queries, keys]);
  }
  return { loss: sum / count, retrieval: retrieved / count, chance: 1 / size };
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** On resume, drop metric lines written after the checkpoint (they will be written again). */
async function truncateMetrics(file: string, globalStep: number): Promise<void> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return;
  }
  const kept = text
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step: number }).step <= globalStep;
      } catch {
        return false; // a line cut off by a kill
      }
    })
    .join('\n');
  await fs.writeFile(file, kept ? `${kept}\n` : '');
}
