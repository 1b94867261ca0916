/**
 * Pretraining configuration: plain data, merged once (defaults -> preset -> JSON file -> flags),
 * validated with "did you mean" hints, frozen, and saved in every checkpoint.
 * Every default cites METHOD.md (the paper and its reference code) or says why Eden differs.
 */
import { configError } from '../core/errors.js';
import { DEFAULT_VIEW_OPTIONS, type ViewOptions } from './views.js';
// Type-only imports (erased at run time) of the string unions their modules define.
import type { BackendName } from '../engine/backend.js';
import type { CacheSetting } from '../data/cache-plan.js';
import type { IntensityMode } from '../data/intensity.js';

export interface PretrainConfig {
  preset: string;
  /** Seeds every random draw of the run (init, split, order, anchors, views, queue). */
  seed: number;
  backend: BackendName;
  data: {
    paths: string[];
    /** Images are cached at imageSize x imageSize; anchors are cut from that (parts at level 4 are imageSize/4). */
    imageSize: number;
    /** Where decoded images are kept; 'auto' chooses by their size (data/cache-plan.ts). */
    cache: CacheSetting;
    cacheDir: string;
    intensity: IntensityMode;
    /** Fraction of images held out for the validation loss. */
    valFraction: number;
    /** Views decoded / augmented ahead of training, in images. */
    prefetch: number;
  };
  model: {
    backbone: string;
    /** Channels of the stem / first stage (64 = torchvision's full width). */
    width: number;
    /** Output size of the projection head (128, METHOD.md §3). */
    projectionDim: number;
    /** 'none': the paper's Linear-ReLU-Linear head; 'batchnorm': with batch norm (models/encoder.ts says why). */
    headNorm: 'none' | 'batchnorm';
  };
  views: ViewOptions;
  anchor: { mode: 'grid' | 'random'; margin: number };
  contrast: {
    /** tau (METHOD.md §5). */
    temperature: number;
    /** K (METHOD.md §4). */
    queueSize: number;
    /** m of the EMA teacher (METHOD.md §3). */
    momentum: number;
    /** Purposive pruner on for levels > 0 (METHOD.md §4); false gives the ablation / MoCo-v2. */
    prune: boolean;
    pruneThreshold: number;
  };
  curriculum: {
    /** Decomposition level n of each stage (METHOD.md §5: 0 -> 2 -> 4). */
    levels: number[];
    /** Epochs of each stage: one number for all, or one per stage. */
    epochs: number | number[];
  };
  optim: {
    batchSize: number;
    /** Learning rate for batch 256; scaled linearly with batchSize (METHOD.md §5). */
    baseLr: number;
    momentum: number;
    weightDecay: number;
  };
  run: {
    dir: string;
    /** Write `last` every this many steps too (0: only at the end of each epoch). */
    checkpointEverySteps: number;
    /** Stop each epoch after this many steps (0: no limit). For smoke runs. */
    maxStepsPerEpoch: number;
  };
}

export type PresetName = 'tiny' | 'cpu' | 'paper';

/** METHOD.md's values (the paper's recipe); presets say where and why they depart. */
const BASE: PretrainConfig = {
  preset: 'paper',
  seed: 0,
  backend: 'wasm',
  data: { paths: [], imageSize: 384, cache: 'auto', cacheDir: '.eden-cache', intensity: 'auto', valFraction: 0.05, prefetch: 32 },
  model: { backbone: 'resnet18', width: 64, projectionDim: 128, headNorm: 'none' },
  views: { ...DEFAULT_VIEW_OPTIONS, size: 224 },
  anchor: { mode: 'grid', margin: 1 / 16 },
  contrast: { temperature: 0.2, queueSize: 65536, momentum: 0.999, prune: true, pruneThreshold: 0.8 },
  curriculum: { levels: [0, 2, 4], epochs: 200 },
  optim: { batchSize: 256, baseLr: 0.03, momentum: 0.9, weightDecay: 1e-4 },
  run: { dir: 'runs/pretrain', checkpointEverySteps: 0, maxStepsPerEpoch: 0 },
};

/**
 * The CPU recipe: ~1,200 radiographs in about two hours on 2 cores with the native kernels. Each
 * departure from the paper was measured (docs/PRETRAINING.md has the runs and numbers):
 *  - headNorm 'batchnorm': with the paper's head every projection pointed the same way within 40
 *    steps (cosine 0.998 between different images) and the loss drifted to log(K+1), in PyTorch
 *    as in Eden; with batch norm in the head the keys stay spread and the loss falls.
 *  - views.cropScale [0.5, 1], rotation +-10 degrees (paper: [0.2, 1], +-30): at 500-1,200
 *    near-identical chest images, two views under the paper's crops share so little that even raw
 *    pixels find a view's partner among 64 images only 7.5% of the time; 640 steps then left the
 *    loss at log(K+1). With these, 22%, and the loss fell to 4.56 (log(K+1) = 6.24) with
 *    held-out retrieval 22% (chance 1.6%). The decomposer still cuts the image into parts.
 *  - queueSize 2048 (~1.7 epochs of keys); teacher momentum 0.99 (the teacher must follow a
 *    student that moves ~7,500 steps, not 500k); lr 0.03 at batch 32 (baseLr 0.24 for batch 256),
 *    the rate at which the PyTorch reference learned; 112 px views (47 / 39 / 32 images/s at
 *    96 / 112 / 128 px: detail against steps).
 */
const CPU: DeepPartial<PretrainConfig> = {
  preset: 'cpu',
  model: { backbone: 'resnet18', width: 64, headNorm: 'batchnorm' },
  views: { size: 112, cropScale: [0.5, 1], rotationDegrees: 10 },
  contrast: { queueSize: 2048, momentum: 0.99 },
  curriculum: { levels: [0, 2, 4], epochs: 70 },
  optim: { batchSize: 32, baseLr: 0.24 },
};

/** Presets override BASE; each value says where it comes from. */
const PRESETS: Record<PresetName, DeepPartial<PretrainConfig>> = {
  // Tests and smoke runs: seconds on 2 cores. Not a useful model. The CPU recipe, shrunk.
  tiny: {
    ...CPU,
    preset: 'tiny',
    data: { imageSize: 96, valFraction: 0.15, prefetch: 8 },
    model: { backbone: 'resnet-tiny', width: 8, headNorm: 'batchnorm' },
    views: { size: 48, cropScale: [0.5, 1], rotationDegrees: 10 },
    contrast: { queueSize: 64, momentum: 0.99 },
    curriculum: { levels: [0, 2], epochs: 1 },
    optim: { batchSize: 8, baseLr: 0.24 },
  },
  cpu: CPU,
  // The paper (METHOD.md §3-5): ResNet-50, 224 px, batch 256, K = 65536, m = 0.999, tau = 0.2,
  // lr 0.03 for batch 256, 200 epochs for each of n = 0, 2, 4. Needs a GPU (webgpu backend).
  paper: {
    preset: 'paper',
    backend: 'webgpu',
    data: { imageSize: 896, valFraction: 0.05 },
    model: { backbone: 'resnet50', width: 64 },
  },
};

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends (infer U)[] ? U[] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  }
  return d[a.length]![b.length]!;
}

function suggest(key: string, options: string[]): string {
  const best = options.map((o) => [o, distance(key, o)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= Math.max(2, key.length / 3) ? ` (did you mean '${best[0]}'?)` : ` (known: ${options.join(', ')})`;
}

/** Merge `override` into `base`, checking every key and type against `base`. */
function merge(base: unknown, override: unknown, where: string): unknown {
  if (override === undefined) return base;
  if (isPlainObject(base)) {
    if (!isPlainObject(override)) throw configError(`${where || 'config'} must be an object, got ${JSON.stringify(override)}`);
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(override)) {
      const path = where ? `${where}.${k}` : k;
      if (!(k in base)) throw configError(`unknown config field '${path}'${suggest(k, Object.keys(base))}`);
      out[k] = merge(base[k], v, path);
    }
    return out;
  }
  if (Array.isArray(base)) {
    if (!Array.isArray(override)) throw configError(`${where} must be a list, got ${JSON.stringify(override)}`);
    return override;
  }
  if (where === 'curriculum.epochs') return override; // number or list
  if (typeof override !== typeof base) throw configError(`${where} must be a ${typeof base}, got ${JSON.stringify(override)}`);
  return override;
}

/** Checks of values, once merged. */
export function validatePretrainConfig(c: PretrainConfig): void {
  const positiveInt = (v: number, name: string): void => {
    if (!Number.isInteger(v) || v <= 0) throw configError(`${name} must be a positive integer, got ${v}`);
  };
  positiveInt(c.data.imageSize, 'data.imageSize');
  positiveInt(c.views.size, 'views.size');
  positiveInt(c.model.width, 'model.width');
  positiveInt(c.contrast.queueSize, 'contrast.queueSize');
  positiveInt(c.optim.batchSize, 'optim.batchSize');
  if (c.optim.batchSize < 2) throw configError('optim.batchSize must be at least 2 (batch norm needs two samples)');
  if (!(c.contrast.temperature > 0)) throw configError(`contrast.temperature must be > 0, got ${c.contrast.temperature}`);
  if (!(c.contrast.momentum >= 0 && c.contrast.momentum <= 1)) throw configError(`contrast.momentum must be in [0, 1], got ${c.contrast.momentum}`);
  if (!(c.data.valFraction >= 0 && c.data.valFraction < 1)) throw configError(`data.valFraction must be in [0, 1), got ${c.data.valFraction}`);
  if (c.curriculum.levels.length === 0) throw configError('curriculum.levels must name at least one level');
  for (const n of c.curriculum.levels) if (!Number.isInteger(n) || n < 0 || n > 10) throw configError(`curriculum levels must be integers in [0, 10], got ${n}`);
  const epochs = Array.isArray(c.curriculum.epochs) ? c.curriculum.epochs : [c.curriculum.epochs];
  if (Array.isArray(c.curriculum.epochs) && epochs.length !== c.curriculum.levels.length) {
    throw configError(`curriculum.epochs lists ${epochs.length} stages but curriculum.levels has ${c.curriculum.levels.length}`);
  }
  for (const e of epochs) if (!Number.isInteger(e) || e < 1) throw configError(`curriculum.epochs must be positive integers, got ${e}`);
  const maxLevel = Math.max(...c.curriculum.levels);
  const partSide = c.data.imageSize / 2 ** Math.ceil(maxLevel / 2);
  if (partSide < 8) throw configError(`data.imageSize ${c.data.imageSize} leaves ${partSide.toFixed(1)} px parts at level ${maxLevel}; raise it`);
  if (!['none', 'batchnorm'].includes(c.model.headNorm)) throw configError(`model.headNorm must be 'none' or 'batchnorm', got '${c.model.headNorm}'`);
  if (!['grid', 'random'].includes(c.anchor.mode)) throw configError(`anchor.mode must be 'grid' or 'random', got '${c.anchor.mode}'`);
  // Every CacheSetting, checked complete by the compiler (this module imports no code from data/).
  const cacheSettings = Object.keys({ auto: 1, memory: 1, disk: 1, none: 1 } satisfies Record<CacheSetting, 1>);
  if (!cacheSettings.includes(c.data.cache)) throw configError(`data.cache must be ${cacheSettings.join(', ')}, got '${c.data.cache}'`);
}

/** Resolve defaults -> preset -> each override in turn; validated and frozen. */
export function resolvePretrainConfig(preset: string, ...overrides: unknown[]): PretrainConfig {
  const p = PRESETS[preset as PresetName];
  if (!p) throw configError(`unknown preset '${preset}'${suggest(preset, PRESET_NAMES)}`);
  let config = merge(BASE, p, '') as PretrainConfig;
  for (const o of overrides) config = merge(config, o, '') as PretrainConfig;
  validatePretrainConfig(config);
  return deepFreeze(config);
}

/** `a.b.c=value` -> { a: { b: { c: value } } }, value parsed as JSON when it parses, else a string. */
export function parseAssignment(assignment: string): Record<string, unknown> {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw configError(`--set expects key=value, got '${assignment}'`);
  const keys = assignment.slice(0, eq).split('.');
  const raw = assignment.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  return keys.reduceRight<unknown>((acc, k) => ({ [k]: acc }), value) as Record<string, unknown>;
}

/** Stage epochs as a list. */
export function stageEpochs(c: PretrainConfig): number[] {
  return Array.isArray(c.curriculum.epochs) ? c.curriculum.epochs : c.curriculum.levels.map(() => c.curriculum.epochs as number);
}

/** lr = baseLr * batch / 256 (METHOD.md §5). */
export function scaledLearningRate(c: PretrainConfig): number {
  return (c.optim.baseLr * c.optim.batchSize) / 256;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
