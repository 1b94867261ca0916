/**
 * `eden finetune`: from "I labelled a few images" to a model file. Segmentation trains a U-Net on
 * a labelled folder with the few-shot evaluation's protocol (train/segmenter.ts: augmentation,
 * encoder at a lower learning rate, early stopping on a validation split drawn from the labelled
 * images); classification fine-tunes encoder + linear head on a label CSV (train/classifier.ts).
 * Both write one self-describing file (models/task-model-file.ts) with what was trained on and the
 * validation scores, and save their training state as they go so that `--resume` can go on after
 * an interruption (finetune-state.ts).
 */
import type { RunOrder } from '../data/mask-table.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { deriveSeed, Rng } from '../core/rng.js';
import { DEFAULT_VIEW_OPTIONS } from '../config/views.js';
import { DEFAULT_PAIRED_AUGMENT } from '../data/paired-transforms.js';
import { formatBytes, freeBytes, memoryRefusal, processMemoryBytes } from '../data/cache-plan.js';
import { SampleStore } from '../data/sample-store.js';
import { checkSegmentationSamples, decodedSampleBytes, inFolderOrder, planSegmentationData, type SegmentationData, type SegmentationPlan } from '../data/segmentation-data.js';
import { loadEncoder } from '../models/encoder-file.js';
import { createBackbone, type ResNet } from '../models/resnet.js';
import { saveClassifier, saveSegmenter, type TaskModelMeta } from '../models/task-model-file.js';
import { hasBuiltinModel } from '../models/builtin.js';
import { VERSION } from '../version.js';
import { trainSegmenter, type SegmentationMode, type SegmenterPosition } from '../train/segmenter.js';
import { trainClassifier, type ClassifierPosition } from '../train/classifier.js';
import type { EarlyStoppingPosition, ResumableTraining } from '../train/early-stopping.js';
import { loadClassificationData, scores } from '../eval/classify.js';
import { checkSameImages, readFinetuneState, saveFinetuneState, stateTensors, trainingStatePath, type FinetuneSettings, type FinetuneStateMeta } from './finetune-state.js';

export interface EncoderSpec {
  /** A checkpoint file or run directory, 'builtin', or 'random' (He init of `backbone`/`width`). */
  checkpoint: string;
  backbone?: string;
  width?: number;
}

/** Default encoder: the shipped pretrained Eve when installed, else a random ResNet-18. */
export function defaultEncoderSpec(): EncoderSpec {
  return { checkpoint: hasBuiltinModel() ? 'builtin' : 'random', backbone: 'resnet18', width: 64 };
}

export async function createEncoder(spec: EncoderSpec, seed: number): Promise<{ backbone: ResNet; description: string }> {
  if (spec.checkpoint === 'random') {
    const name = spec.backbone ?? 'resnet18';
    const width = spec.width ?? 64;
    return { backbone: createBackbone(name, { width, seed }), description: `random initialisation (${name} width ${width})` };
  }
  const { encoder, meta } = await loadEncoder(spec.checkpoint);
  encoder.head.dispose();
  return { backbone: encoder.backbone, description: meta.source };
}

export interface FinetuneCommon {
  data: string;
  /** Most bytes the decoded images (and masks) may take, held in memory for training: default half of this machine's memory. */
  memoryBytes?: number;
  encoder: EncoderSpec;
  size: number;
  steps: number;
  batchSize: number;
  /** Images per forward/backward pass (segmentation); default: the batch, split automatically when the wasm heap is full. */
  microBatch?: number;
  lr: number;
  evalEvery: number;
  patience: number;
  seed: number;
  onLog?: (line: string) => void;
  onProgress?: (p: { step: number; steps: number; loss: number; valScore?: number }) => void;
  /** Go on from the training state an interrupted run writing the same file saved (finetune-state.ts). */
  resume?: boolean;
  /** Least seconds between saves of the training state, at validation checks (default 60; 0: every check). */
  saveEverySeconds?: number;
  /** Once aborted: the state after the current step is saved, and an 'interrupted' EdenError thrown. */
  signal?: AbortSignal;
}

export interface FinetuneSegmentationOptions extends FinetuneCommon {
  /** The masks' folder, when not `data`/masks (then `data` is the images' folder): scan.ts ScanOptions.masks. */
  masks?: string;
  /** How a masks table's runs number the pixels, and the condition its rows must meet (scan.ts ScanOptions.rleOrder, maskRows). */
  rleOrder?: RunOrder;
  maskRows?: string;
  structures?: string[];
  combine?: Record<string, string[]>;
  /** Labelled images to train on: a number (drawn with the seed) or 'all'. */
  shots: number | 'all';
  /** Validation images (drawn from the rest); default: 15% of the labelled images, 2 to 32. */
  valImages?: number;
  mode: Extract<SegmentationMode, 'finetune' | 'frozen'>;
  encoderLrMultiplier: number;
}

/** Bytes the decoded images of a run may take: as given, else half of this process's memory (as pretraining's memory cache). */
function decodedBudget(o: FinetuneCommon): number {
  return o.memoryBytes ?? processMemoryBytes() / 2;
}

/**
 * Where fine-tuning on all labelled images keeps them decoded: in memory while they fit the budget
 * (undefined), else on disk beside the model (a SampleStore, removed when the run ends), when that
 * disk has room; else refused before decoding.
 */
async function storeBeyondMemory(plan: SegmentationPlan, o: FinetuneSegmentationOptions, outFile: string, log: (line: string) => void): Promise<SampleStore | undefined> {
  const n = plan.entries.length;
  const [bytes, budget] = [n * decodedSampleBytes(o.size, plan.structures.length), decodedBudget(o)];
  if (bytes <= budget) return undefined;
  const dir = path.dirname(path.resolve(outFile));
  const free = await freeBytes(dir);
  const subject = `${plan.root}: ${n} labelled images at ${o.size} px`;
  // Room for the store and a margin of a tenth: a full disk fails later runs' writes too.
  if (free !== undefined && free < bytes * 1.1) throw memoryRefusal(subject, bytes, 'as float32 with their masks', budget, `${dir} has ${formatBytes(free)} free, too little to keep them on disk instead; free space there, train on --shots k of them, or at a smaller --size`);
  await fs.mkdir(dir, { recursive: true });
  // A store a killed run left is removed first (two runs writing one model at once are not supported).
  const prefix = `.${path.basename(outFile)}.decoded-`;
  for (const f of await fs.readdir(dir)) if (f.startsWith(prefix) && /^\d+\.tmp$/.test(f.slice(prefix.length))) await fs.rm(path.join(dir, f), { force: true });
  const store = new SampleStore(path.join(dir, `${prefix}${process.pid}.tmp`), o.size * o.size, plan.structures.length);
  log(`${subject} take ${formatBytes(bytes)} decoded, more than the ${formatBytes(budget)} of memory allowed (by default half of this machine's): kept on disk while training, in ${store.file} (removed at the end)`);
  return store;
}

/** The order a seed draws a pool's images in (splitPool takes the shots, then validation, from its front). */
function drawOrder(pool: number[], seed: number): number[] {
  return new Rng(deriveSeed(seed, 101)).shuffle([...pool]);
}

function splitPool(pool: number[], shots: number | 'all', valImages: number | undefined, seed: number): { train: number[]; val: number[] } {
  const order = drawOrder(pool, seed);
  const nVal = valImages ?? Math.min(32, Math.max(2, Math.round(0.15 * pool.length)));
  if (shots === 'all') {
    if (pool.length < 2) throw new EdenError('data', `${pool.length} labelled image(s): need at least 2`);
    const v = Math.min(nVal, pool.length - 1);
    return { val: order.slice(0, v).sort((a, b) => a - b), train: order.slice(v).sort((a, b) => a - b) };
  }
  if (shots > pool.length) throw new EdenError('data', `--shots ${shots}: only ${pool.length} labelled images`);
  return { train: order.slice(0, shots).sort((a, b) => a - b), val: order.slice(shots, shots + Math.min(nVal, pool.length - shots)).sort((a, b) => a - b) };
}

/**
 * The images a segmentation run trains and validates on, decoded. With all of them ('all'), the
 * whole folder (kept on disk when it would not fit in memory: storeBeyondMemory); with k shots,
 * only the images drawn (of thousands labelled, a few), in the order splitPool draws them from the
 * folder's complete images: the same images as from the whole folder decoded, unless some cannot
 * be read (then the next ones drawn take their places).
 */
async function segmentationSplit(o: FinetuneSegmentationOptions, outFile: string, log: (line: string) => void): Promise<{ data: Pick<SegmentationData, 'structures' | 'samples'>; split: { train: number[]; val: number[] }; labelled: number; store?: SampleStore }> {
  const options = { masks: o.masks, rleOrder: o.rleOrder, maskRows: o.maskRows, structures: o.structures, combine: o.combine, onSkip: (m: string) => log(`skipped ${m}`), onWarning: (m: string) => log(`warning: ${m}`), onLog: log };
  const plan = await planSegmentationData(o.data, options);
  if (o.shots === 'all') {
    const store = await storeBeyondMemory(plan, o, outFile, log);
    try {
      const samples = await plan.decode(o.size, undefined, undefined, store && ((x) => store.put(x)));
      checkSegmentationSamples(plan, samples, o.size);
      const split = splitPool([...samples.keys()], o.shots, o.valImages, o.seed);
      // Validation images are scored every few steps: held in memory, read from the store once.
      for (const i of split.val) samples[i] = { file: samples[i]!.file, image: samples[i]!.image, masks: samples[i]!.masks };
      return { data: { structures: plan.structures, samples }, split, labelled: samples.length, store };
    } catch (err) {
      store?.close();
      throw err;
    }
  }
  const drawn = splitPool([...plan.entries.keys()], o.shots, o.valImages, o.seed);
  const order = drawOrder([...plan.entries.keys()], o.seed);
  // Train images first, then validation: decoded in the draw's order until both are full.
  const samples = await plan.decode(o.size, order, drawn.train.length + drawn.val.length);
  checkSegmentationSamples(plan, samples, o.size);
  if (samples.length < drawn.train.length + 1) throw new EdenError('data', `--shots ${o.shots}: only ${samples.length} of the ${plan.entries.length} labelled images drawn could be read`);
  const train = samples.slice(0, drawn.train.length);
  const val = samples.slice(drawn.train.length);
  // As splitPool's: each split in the folder's order.
  const ordered = [...inFolderOrder(plan, train), ...inFolderOrder(plan, val)];
  return { data: { structures: plan.structures, samples: ordered }, split: { train: train.map((_, i) => i), val: val.map((_, i) => train.length + i) }, labelled: plan.entries.length };
}

/** The settings every fine-tuning run shares with the run it resumes: data, encoder and schedule. */
function commonSettings(o: FinetuneCommon): Omit<FinetuneSettings, 'task'> {
  const { checkpoint, backbone, width } = o.encoder;
  const encoder = checkpoint === 'builtin' ? { checkpoint } : checkpoint === 'random' ? { checkpoint, backbone, width } : { checkpoint: path.resolve(checkpoint) };
  const { size, steps, batchSize, microBatch, lr, evalEvery, patience, seed } = o;
  return { data: path.resolve(o.data), encoder, size, steps, batchSize, microBatch, lr, evalEvery, patience, seed };
}

/**
 * The resumable side of a fine-tuning run: with `resume`, the state its interrupted run saved
 * (checked against `settings`; the images are checked by `training`); without, a note that a
 * left-over state is being replaced. `training` then gives the trainer what it resumes from and
 * how it saves, once the data are loaded; `finish` removes the state, `interrupted` is the error.
 */
async function resumableRun<P extends EarlyStoppingPosition>(o: FinetuneCommon, outFile: string, settings: FinetuneSettings, log: (line: string) => void) {
  const stateFile = trainingStatePath(outFile);
  const saved = o.resume ? await readFinetuneState(outFile, settings) : undefined;
  if (!o.resume && (await fs.access(stateFile).then(() => true, () => false))) log(`note: ${stateFile} holds an interrupted run's training state, now replaced (--resume goes on from it)`);
  return {
    /** What the trainer resumes from and how it saves, for the run's images (checked against the saved run's). */
    training(files: FinetuneStateMeta['files']): ResumableTraining<P> {
      if (saved) {
        checkSameImages(saved.file, saved.meta.files, files);
        log(`resuming from ${saved.file}: ${saved.meta.position.step} of at most ${o.steps} steps done`);
      }
      return {
        from: saved && { position: saved.meta.position as P, tensors: stateTensors(saved.content) },
        save: (state) => saveFinetuneState(stateFile, state, { out: path.resolve(outFile), settings, files }),
        everySeconds: o.saveEverySeconds,
        signal: o.signal,
      };
    },
    interrupted: (steps: number) => new EdenError('interrupted', `interrupted after step ${steps}: the training state is saved in ${stateFile}; the same command with --resume goes on from there`),
    finish: () => fs.rm(stateFile, { force: true }),
  };
}

export async function finetuneSegmentation(o: FinetuneSegmentationOptions, outFile: string): Promise<TaskModelMeta> {
  const log = o.onLog ?? (() => undefined);
  const { structures, combine, shots, valImages, mode, encoderLrMultiplier, rleOrder, maskRows } = o;
  const masks = o.masks && path.resolve(o.masks);
  const run = await resumableRun<SegmenterPosition>(o, outFile, { task: 'segment', ...commonSettings(o), masks, ...(rleOrder && { rleOrder }), ...(maskRows !== undefined && { maskRows }), structures, combine, shots, valImages, mode, encoderLrMultiplier }, log);
  const { data, split, labelled, store } = await segmentationSplit(o, outFile, log);
  try {
    return await trainSegmentation(o, outFile, run, data, split, labelled, log);
  } finally {
    store?.close();
  }
}

/** finetuneSegmentation once its images are decoded. */
async function trainSegmentation(o: FinetuneSegmentationOptions, outFile: string, run: Awaited<ReturnType<typeof resumableRun<SegmenterPosition>>>, data: Pick<SegmentationData, 'structures' | 'samples'>, split: { train: number[]; val: number[] }, labelled: number, log: (line: string) => void): Promise<TaskModelMeta> {
  log(`${labelled} labelled images (${data.structures.join(', ')}): training on ${split.train.length}, validating on ${split.val.length}, at ${o.size} px`);
  const { backbone, description } = await createEncoder(o.encoder, deriveSeed(o.seed, 102));
  log(`encoder: ${description}`);
  try {
    const resumable = run.training({ train: split.train.map((i) => data.samples[i]!.file), val: split.val.map((i) => data.samples[i]!.file) });
    const trained = await trainSegmenter(backbone, split.train.map((i) => data.samples[i]!), split.val.map((i) => data.samples[i]!), {
      mode: o.mode,
      size: o.size,
      batchSize: o.batchSize,
      lr: o.lr,
      encoderLrMultiplier: o.encoderLrMultiplier,
      linearLr: o.lr,
      maxSteps: o.steps,
      evalEvery: o.evalEvery,
      patience: o.patience,
      bnBatches: 8,
      augment: DEFAULT_PAIRED_AUGMENT,
      seed: o.seed,
      microBatch: o.microBatch,
      onNotice: log,
      onProgress: (p) => o.onProgress?.({ step: p.step, steps: p.maxSteps, loss: p.loss, valScore: p.valDice }),
      resumable,
    });
    try {
      if (trained.interrupted) throw run.interrupted(trained.steps);
      // Validation Dice per structure, with the kept weights.
      const validation: Record<string, number> = {};
      if (split.val.length) {
        const probs = await trained.predict(split.val.map((i) => data.samples[i]!.image));
        data.structures.forEach((s, k) => {
          let sum = 0;
          split.val.forEach((idx, j) => {
            const [p, t] = [probs[j]![k]!, data.samples[idx]!.masks[k]!];
            let [inter, a, b] = [0, 0, 0];
            for (let i = 0; i < p.length; i++) {
              const [pi, ti] = [p[i]! > 0.5 ? 1 : 0, t[i]! > 0.5 ? 1 : 0];
              inter += pi & ti;
              a += pi;
              b += ti;
            }
            sum += a + b === 0 ? 1 : (2 * inter) / (a + b);
          });
          validation[`dice_${s}`] = sum / split.val.length;
        });
      }
      const meta: Omit<TaskModelMeta, 'format' | 'decoderChannels'> = {
        edenVersion: VERSION,
        createdAt: new Date().toISOString(),
        backbone: { name: backboneName(backbone), width: backbone.args.width },
        inputSize: o.size,
        intensity: { mode: 'auto' },
        normalisation: { mean: DEFAULT_VIEW_OPTIONS.mean, std: DEFAULT_VIEW_OPTIONS.std },
        structures: data.structures,
        training: {
          data: o.data,
          ...(o.masks && { masks: o.masks }),
          ...(o.rleOrder && { rleOrder: o.rleOrder }),
          ...(o.maskRows !== undefined && { maskRows: o.maskRows }),
          images: split.train.length,
          validationImages: split.val.length,
          files: split.train.map((i) => data.samples[i]!.file),
          validationFiles: split.val.map((i) => data.samples[i]!.file),
          mode: o.mode,
          steps: trained.steps,
          bestStep: trained.bestStep,
          seed: o.seed,
          startedFrom: description,
          lr: o.lr,
          encoderLrMultiplier: o.encoderLrMultiplier,
          batchSize: o.batchSize,
        },
        validation,
      };
      await saveSegmenter(outFile, trained.unet!, meta);
      await run.finish();
      return { ...meta, format: 'eden-segmenter-1', decoderChannels: trained.unet!.decoderChannels };
    } finally {
      trained.dispose();
    }
  } finally {
    backbone.dispose();
  }
}

/** The registry name of a backbone, from its block kind and depths. */
export function backboneName(b: ResNet): string {
  const key = `${b.args.block}:${b.args.depths.join(',')}`;
  const names: Record<string, string> = { 'basic:2,2,2,2': 'resnet18', 'basic:3,4,6,3': 'resnet34', 'bottleneck:3,4,6,3': 'resnet50', 'basic:1,1,1,1': 'resnet-tiny' };
  const name = names[key];
  if (!name) throw new EdenError('config', `no registered backbone has ${key}`);
  return name;
}

export interface FinetuneClassificationOptions extends FinetuneCommon {
  labels?: string;
  labelColumn?: string;
}

export async function finetuneClassification(o: FinetuneClassificationOptions, outFile: string): Promise<TaskModelMeta> {
  const log = o.onLog ?? (() => undefined);
  const labels = o.labels && path.resolve(o.labels);
  const run = await resumableRun<ClassifierPosition>(o, outFile, { task: 'classify', ...commonSettings(o), labels, labelColumn: o.labelColumn }, log);
  // The folder's own split column decides train and validation; without one, a seeded 80/20 split.
  const data = await loadClassificationData(o.data, o.size, { labels: o.labels, labelColumn: o.labelColumn, seed: o.seed, maxTrain: 0, maxTest: 0, memoryBytes: decodedBudget(o), onSkip: (m) => log(`skipped ${m}`), onWarning: (m) => log(`warning: ${m}`) });
  log(`classes ${data.classes.join(', ')}: training on ${data.train.length} images, validating on ${data.test.length}, at ${o.size} px`);
  const { backbone, description } = await createEncoder(o.encoder, deriveSeed(o.seed, 102));
  log(`encoder: ${description}`);
  try {
    // An image without a name (data built by hand) is named by its position.
    const names = (items: { file?: string }[], part: string): string[] => items.map((x, i) => x.file ?? `${part} image ${i + 1}`);
    const resumable = run.training({ train: names(data.train, 'training'), val: names(data.test, 'validation') });
    const trained = await trainClassifier(backbone, data.train, data.test, {
      classes: data.classes.length,
      size: o.size,
      steps: o.steps,
      batchSize: o.batchSize,
      lr: o.lr,
      seed: o.seed,
      evalEvery: o.evalEvery,
      patience: o.patience,
      score: (p, labels) => scores(p, labels, data.classes).meanAuc,
      onProgress: o.onProgress,
      resumable,
    });
    try {
      if (trained.interrupted) throw run.interrupted(trained.steps);
      const s = scores(await trained.predict(data.test.map((x) => x.image)), data.test.map((x) => x.label), data.classes);
      const meta: Omit<TaskModelMeta, 'format'> = {
        edenVersion: VERSION,
        createdAt: new Date().toISOString(),
        backbone: { name: backboneName(backbone), width: backbone.args.width },
        inputSize: o.size,
        intensity: { mode: 'auto' },
        normalisation: { mean: DEFAULT_VIEW_OPTIONS.mean, std: DEFAULT_VIEW_OPTIONS.std },
        classes: data.classes,
        training: { data: o.data, images: data.train.length, validationImages: data.test.length, files: [], steps: trained.steps, bestStep: trained.bestStep, seed: o.seed, startedFrom: description, lr: o.lr, batchSize: o.batchSize },
        validation: { mean_auc: s.meanAuc, accuracy: s.accuracy, ...Object.fromEntries(Object.entries(s.aucPerClass).map(([k, v]) => [`auc_${k}`, v])) },
      };
      await saveClassifier(outFile, backbone, { weight: trained.weight, bias: trained.bias }, meta);
      await run.finish();
      return { ...meta, format: 'eden-classifier-1' };
    } finally {
      trained.dispose();
    }
  } finally {
    backbone.dispose();
  }
}
