/**
 * The training state of an `eden finetune` run, saved beside the model it will write
 * (`heart.safetensors` -> `heart.training.safetensors`) while it trains, so that a run killed after
 * an hour goes on with `--resume` from its last save rather than from step 0. One safetensors file
 * (written atomically): weights, Adam's moments and the best weights so far as tensors, and in its
 * metadata the settings that decide the run, the images it trains and validates on, and where it
 * stands (train/early-stopping.ts TrainingState; the trainer's own position). Removed once the
 * model is written.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { changedSettings } from '../core/resume.js';
import { loadTensorFile, saveTensorFile, type TensorFile } from '../engine/tensor-file.js';
import type { EarlyStoppingPosition, TrainingState } from '../train/early-stopping.js';
import { VERSION } from '../version.js';

export const FINETUNE_STATE_FORMAT = 'eden-finetune-state-1';

/** What decides a fine-tuning run: a resumed run must be given the same (absent: not set or not of its task). */
export interface FinetuneSettings {
  task: 'segment' | 'classify';
  /** Absolute path of the labelled folder. */
  data: string;
  /** Segmentation: absolute path of the masks' folder, when given apart from the images' (--masks). */
  masks?: string;
  /** The encoder it started from: 'builtin', 'random' (with backbone and width) or an absolute path. */
  encoder: { checkpoint: string; backbone?: string; width?: number };
  structures?: string[];
  combine?: Record<string, string[]>;
  shots?: number | 'all';
  valImages?: number;
  mode?: string;
  labels?: string;
  labelColumn?: string;
  size: number;
  steps: number;
  batchSize: number;
  microBatch?: number;
  lr: number;
  encoderLrMultiplier?: number;
  evalEvery: number;
  patience: number;
  seed: number;
}

export const SETTING_NAMES = ['task', 'data', 'masks', 'encoder', 'structures', 'combine', 'shots', 'valImages', 'mode', 'labels', 'labelColumn', 'size', 'steps', 'batchSize', 'microBatch', 'lr', 'encoderLrMultiplier', 'evalEvery', 'patience', 'seed'] as const satisfies readonly (keyof FinetuneSettings)[];

export interface FinetuneStateMeta {
  format: typeof FINETUNE_STATE_FORMAT;
  edenVersion: string;
  createdAt: string;
  /** The model file the run writes when it finishes. */
  out: string;
  settings: FinetuneSettings;
  /** The images trained and validated on (as the data's scan names them). */
  files: { train: string[]; val: string[] };
  /** Where the run stands (the trainer's position: train/segmenter.ts, train/classifier.ts). */
  position: EarlyStoppingPosition;
  backend: string;
}

/** Where a run writing `outFile` keeps its training state: beside it, `.training` before the extension. */
export function trainingStatePath(outFile: string): string {
  const ext = path.extname(outFile);
  return ext ? `${outFile.slice(0, -ext.length)}.training${ext}` : `${outFile}.training.safetensors`;
}

export async function saveFinetuneState(file: string, state: TrainingState, meta: Omit<FinetuneStateMeta, 'format' | 'edenVersion' | 'createdAt' | 'position' | 'backend'>): Promise<void> {
  const full: FinetuneStateMeta = { format: FINETUNE_STATE_FORMAT, edenVersion: VERSION, createdAt: new Date().toISOString(), ...meta, position: state.position, backend: tf.getBackend() };
  await saveTensorFile(file, state.tensors, { format: FINETUNE_STATE_FORMAT, eden: JSON.stringify(full) });
}

/** The metadata of a loaded state file; another kind of file is an error naming it. */
export function finetuneStateMeta(content: TensorFile, file: string): FinetuneStateMeta {
  if (content.metadata['format'] !== FINETUNE_STATE_FORMAT) {
    throw new EdenError('checkpoint', `${file} is not the training state of an eden finetune run (format '${content.metadata['format'] ?? 'none'}', expected '${FINETUNE_STATE_FORMAT}')`);
  }
  return JSON.parse(content.metadata['eden']!) as FinetuneStateMeta;
}

/**
 * Read the state `outFile`'s interrupted run saved, checked against the settings of the run that
 * resumes it (the images are checked once they are scanned: `checkSameImages`).
 */
export async function readFinetuneState(outFile: string, settings: FinetuneSettings): Promise<{ file: string; meta: FinetuneStateMeta; content: TensorFile }> {
  const file = trainingStatePath(outFile);
  try {
    await fs.access(file);
  } catch {
    const finished = await fs.access(outFile).then(() => true, () => false);
    throw new EdenError(
      'config',
      finished
        ? `nothing to resume: ${outFile} is written and no training state is left (${file}), so its run finished; start a new run without --resume`
        : `nothing to resume: no training state ${file} (a run saves one at its validation checks, at most once a minute by default); start the run without --resume`,
    );
  }
  const content = await loadTensorFile(file);
  const meta = finetuneStateMeta(content, file);
  const changed = changedSettings(meta.settings, settings, SETTING_NAMES);
  if (changed) throw new EdenError('config', `cannot resume ${file}: it was saved by a run with ${changed}; run with the same settings, or without --resume to start afresh`);
  return { file, meta, content };
}

/** The images a resumed run scanned must be those the interrupted run trained and validated on. */
export function checkSameImages(file: string, saved: FinetuneStateMeta['files'], now: FinetuneStateMeta['files']): void {
  for (const part of ['train', 'val'] as const) {
    const [was, is] = [saved[part], now[part]];
    if (was.length === is.length && was.every((f, i) => f === is[i])) continue;
    const missing = was.find((f) => !is.includes(f));
    const added = is.find((f) => !was.includes(f));
    const what = part === 'train' ? 'training' : 'validation';
    throw new EdenError(
      'data',
      `cannot resume ${file}: the labelled images changed since it was saved (${was.length} ${what} images then, ${is.length} now${missing ? `; ${missing} is gone` : ''}${added ? `; ${added} is new` : ''}); restore them, or run without --resume to start afresh`,
    );
  }
}

/**
 * The saved tensors as TF.js tensors (for TrainingState; training takes them over). The
 * file's records are let go: a whole copy of the state need not stay in memory through the run.
 */
export function stateTensors(content: TensorFile): Map<string, tf.Tensor> {
  const tensors = new Map([...content.tensors].map(([name, r]) => [name, tf.tensor(r.data, r.shape, r.dtype)]));
  content.tensors.clear();
  return tensors;
}
