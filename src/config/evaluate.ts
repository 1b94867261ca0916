/**
 * Evaluation configuration (METHOD.md §6), merged like the pretraining config: preset -> flags.
 */
import { configError } from '../core/errors.js';

export interface EvaluateConfig {
  preset: string;
  seed: number;
  segmentation: {
    /** Input side in pixels (a multiple of 32). */
    size: number;
    /** Fine-tuning steps per run, batch size, Adam learning rate. */
    steps: number;
    batchSize: number;
    lr: number;
    shots: number[];
    /** Number of seeds (different few-shot draws and decoder inits) per setting. */
    seeds: number;
    /** Share of the folder held out as the fixed test split, and a cap on its size. */
    testFraction: number;
    maxTestImages: number;
  };
  locality: { images: number; size: number; patchFraction: number };
  compositionality: { wholes: number; size: number; wholeFraction: number };
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
  };
}

const PRESETS: Record<string, EvaluateConfig> = {
  // Tests: seconds.
  tiny: {
    preset: 'tiny',
    seed: 0,
    segmentation: { size: 64, steps: 4, batchSize: 2, lr: 1e-3, shots: [3], seeds: 1, testFraction: 0.2, maxTestImages: 6 },
    locality: { images: 6, size: 64, patchFraction: 1 / 8 },
    compositionality: { wholes: 12, size: 64, wholeFraction: 0.5 },
    classification: { size: 64, probeEpochs: 50, fineTuneSteps: 3, batchSize: 4, lr: 3e-4, maxTrain: 24, maxTest: 16 },
  },
  // 3/6/12/24 shots x 3 seeds x 3 checkpoints on a ~259-image folder in about an hour on 2 cores
  // with the native kernels (measured figures in the evaluation issue's note).
  cpu: {
    preset: 'cpu',
    seed: 0,
    segmentation: { size: 160, steps: 100, batchSize: 8, lr: 1e-3, shots: [3, 6, 12, 24], seeds: 3, testFraction: 0.2, maxTestImages: 60 },
    locality: { images: 120, size: 128, patchFraction: 1 / 8 },
    compositionality: { wholes: 300, size: 128, wholeFraction: 0.5 },
    classification: { size: 128, probeEpochs: 300, fineTuneSteps: 200, batchSize: 16, lr: 3e-4, maxTrain: 1000, maxTest: 500 },
  },
  // The paper's protocol (METHOD.md §6): 224 px, 3/6/12/24 shots; longer fine-tuning.
  paper: {
    preset: 'paper',
    seed: 0,
    segmentation: { size: 224, steps: 1000, batchSize: 8, lr: 1e-3, shots: [3, 6, 12, 24], seeds: 3, testFraction: 0.2, maxTestImages: 1000 },
    locality: { images: 500, size: 224, patchFraction: 1 / 8 },
    compositionality: { wholes: 1000, size: 224, wholeFraction: 0.5 },
    classification: { size: 224, probeEpochs: 500, fineTuneSteps: 2000, batchSize: 32, lr: 3e-4, maxTrain: 0, maxTest: 0 },
  },
};

export const EVALUATE_PRESETS = Object.keys(PRESETS);

export function resolveEvaluateConfig(preset: string, overrides: { seed?: number; shots?: number[]; seeds?: number; size?: number; steps?: number } = {}): EvaluateConfig {
  const base = PRESETS[preset];
  if (!base) throw configError(`unknown evaluation preset '${preset}': expected one of ${EVALUATE_PRESETS.join(', ')}`);
  const c: EvaluateConfig = structuredClone(base);
  if (overrides.seed !== undefined) c.seed = overrides.seed;
  if (overrides.shots) c.segmentation.shots = overrides.shots;
  if (overrides.seeds !== undefined) c.segmentation.seeds = overrides.seeds;
  if (overrides.size !== undefined) c.segmentation.size = overrides.size;
  if (overrides.steps !== undefined) c.segmentation.steps = overrides.steps;
  if (c.segmentation.size % 32 !== 0) throw configError(`segmentation size must be a multiple of 32 (the encoder's stride), got ${c.segmentation.size}`);
  for (const k of c.segmentation.shots) if (!Number.isInteger(k) || k < 1) throw configError(`shots must be positive integers, got ${k}`);
  if (!Number.isInteger(c.segmentation.seeds) || c.segmentation.seeds < 1) throw configError(`seeds must be a positive integer, got ${c.segmentation.seeds}`);
  return c;
}
