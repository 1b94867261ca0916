/**
 * Evaluation configuration (METHOD.md §6), merged like the pretraining config: preset -> flags.
 */
import { configError } from '../core/errors.js';

/** Ways to use an encoder for segmentation (train/segmenter.ts). */
export const SEGMENTATION_MODES = ['finetune', 'frozen', 'linear'] as const;
export type SegmentationMode = (typeof SEGMENTATION_MODES)[number];

export interface EvaluateConfig {
  preset: string;
  seed: number;
  segmentation: {
    /** Input side in pixels (a multiple of 32). */
    size: number;
    /** Ways to use each encoder (train/segmenter.ts); the atlas floor is always added. */
    modes: SegmentationMode[];
    /** Most U-Net steps per run (early stopping usually ends sooner), batch size, Adam learning rate of the decoder. */
    steps: number;
    batchSize: number;
    lr: number;
    /** Encoder learning rate = lr x this, in finetune mode. */
    encoderLrMultiplier: number;
    /** Most steps and the Adam learning rate of the dense linear probe. */
    linearSteps: number;
    linearLr: number;
    /** Early stopping: validation Dice every `evalEvery` steps; stop after `patience` checks without improvement. */
    evalEvery: number;
    patience: number;
    /** Labelled images drawn from the train pool (besides the k shots) for early stopping. */
    valImages: number;
    /** Batches of augmented training images on which frozen and linear probes re-estimate batch-norm statistics. */
    bnBatches: number;
    shots: number[];
    /** Number of seeds (different few-shot draws and decoder inits) per setting. */
    seeds: number;
    /** Share of the folder held out as the fixed test split, and a cap on its size. */
    testFraction: number;
    maxTestImages: number;
  };
  /** Bootstrap replicates of every paired interval. */
  bootstrap: number;
  locality: { images: number; size: number; patchFraction: number };
  /** `retrieval`: other wholes each whole's parts are ranked against; `centring`: random crops per scale for the mean Eve. */
  compositionality: { wholes: number; size: number; wholeFraction: number; retrieval: number; centring: number };
  classification: {
    size: number;
    /** Full-batch epochs of the linear probe (logistic regression on frozen Eve). */
    probeEpochs: number;
    /** Steps, batch and learning rate of full fine-tuning. */
    fineTuneSteps: number;
    batchSize: number;
    lr: number;
    /** Caps on the images used (a seeded subsample), 0 for no cap. */
    maxTrain: number;
    maxTest: number;
    /** Seeds of each (training subsample, head init, augmentation order). */
    seeds: number;
  };
}

const PRESETS: Record<string, EvaluateConfig> = {
  // Tests: seconds.
  tiny: {
    preset: 'tiny',
    seed: 0,
    segmentation: { size: 64, modes: ['frozen', 'finetune'], steps: 6, batchSize: 2, lr: 1e-3, encoderLrMultiplier: 0.1, linearSteps: 6, linearLr: 1e-2, evalEvery: 3, patience: 2, valImages: 2, bnBatches: 2, shots: [3], seeds: 1, testFraction: 0.2, maxTestImages: 6 },
    bootstrap: 200,
    locality: { images: 6, size: 64, patchFraction: 1 / 8 },
    compositionality: { wholes: 12, size: 64, wholeFraction: 0.5, retrieval: 8, centring: 8 },
    classification: { size: 64, probeEpochs: 50, fineTuneSteps: 3, batchSize: 4, lr: 3e-4, maxTrain: 24, maxTest: 16, seeds: 1 },
  },
  // Sized so that three models (frozen + finetune, 3 and 12 shots, 5 seeds) on a ~259-image folder
  // take about an hour on 2 cores with the native kernels: `npm run bench -- --workload eval`
  // (docs/PERFORMANCE.md). 6 and 24 shots (the paper's other two) would double that; --shots adds them.
  cpu: {
    preset: 'cpu',
    seed: 0,
    segmentation: { size: 128, modes: ['frozen', 'finetune'], steps: 200, batchSize: 8, lr: 1e-3, encoderLrMultiplier: 0.1, linearSteps: 200, linearLr: 1e-2, evalEvery: 20, patience: 3, valImages: 8, bnBatches: 8, shots: [3, 12], seeds: 5, testFraction: 0.2, maxTestImages: 60 },
    bootstrap: 2000,
    locality: { images: 120, size: 128, patchFraction: 1 / 8 },
    compositionality: { wholes: 300, size: 128, wholeFraction: 0.5, retrieval: 99, centring: 64 },
    classification: { size: 128, probeEpochs: 300, fineTuneSteps: 200, batchSize: 16, lr: 3e-4, maxTrain: 1000, maxTest: 500, seeds: 3 },
  },
  // The paper's protocol (METHOD.md §6): 224 px, 3/6/12/24 shots; longer fine-tuning.
  paper: {
    preset: 'paper',
    seed: 0,
    segmentation: { size: 224, modes: ['frozen', 'finetune', 'linear'], steps: 2000, batchSize: 8, lr: 1e-3, encoderLrMultiplier: 0.1, linearSteps: 1000, linearLr: 1e-2, evalEvery: 50, patience: 5, valImages: 16, bnBatches: 16, shots: [3, 6, 12, 24], seeds: 5, testFraction: 0.2, maxTestImages: 1000 },
    bootstrap: 2000,
    locality: { images: 500, size: 224, patchFraction: 1 / 8 },
    compositionality: { wholes: 1000, size: 224, wholeFraction: 0.5, retrieval: 99, centring: 256 },
    classification: { size: 224, probeEpochs: 500, fineTuneSteps: 2000, batchSize: 32, lr: 3e-4, maxTrain: 0, maxTest: 0, seeds: 3 },
  },
};

export const EVALUATE_PRESETS = Object.keys(PRESETS);


/** The preset with the command line's overrides, checked for the tasks that will run (all when not given). */
export function resolveEvaluateConfig(preset: string, overrides: { seed?: number; shots?: number[]; seeds?: number; size?: number; steps?: number; modes?: string[] } = {}, tasks?: readonly string[]): EvaluateConfig {
  const base = PRESETS[preset];
  if (!base) throw configError(`unknown evaluation preset '${preset}': expected one of ${EVALUATE_PRESETS.join(', ')}`);
  const c: EvaluateConfig = structuredClone(base);
  if (overrides.seed !== undefined) c.seed = overrides.seed;
  if (overrides.shots) c.segmentation.shots = overrides.shots;
  // --seeds, --size and --steps set both tasks' figures (a run evaluates one kind of folder).
  if (overrides.seeds !== undefined) c.segmentation.seeds = c.classification.seeds = overrides.seeds;
  if (overrides.size !== undefined) c.segmentation.size = c.classification.size = overrides.size;
  if (overrides.steps !== undefined) c.segmentation.steps = c.classification.fineTuneSteps = overrides.steps;
  if (overrides.modes) {
    for (const m of overrides.modes) if (!(SEGMENTATION_MODES as readonly string[]).includes(m)) throw configError(`unknown mode '${m}': expected ${SEGMENTATION_MODES.join(', ')}`);
    c.segmentation.modes = [...new Set(overrides.modes)] as SegmentationMode[];
  }
  // Only the U-Net's skip connections need a multiple of the encoder's stride; classification pools any size.
  if ((!tasks || tasks.includes('fewshot-seg')) && c.segmentation.size % 32 !== 0) throw configError(`segmentation size must be a multiple of 32 (the encoder's stride), got ${c.segmentation.size}`);
  for (const k of c.segmentation.shots) if (!Number.isInteger(k) || k < 1) throw configError(`shots must be positive integers, got ${k}`);
  if (!Number.isInteger(c.segmentation.seeds) || c.segmentation.seeds < 1) throw configError(`seeds must be a positive integer, got ${c.segmentation.seeds}`);
  return c;
}
