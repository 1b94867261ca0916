/**
 * Pretraining checkpoints: one self-describing safetensors file holding the student, the teacher,
 * the memory queue and the optimiser's velocity, with the resolved config, the position (stage,
 * epoch, batch, step), the data split, the queue pointer and the RNG scheme in its metadata.
 * Written atomically (temp file, fsync, rename): a crash leaves the previous checkpoint intact.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import type { PretrainConfig } from '../config/pretrain.js';
import { loadTensorFile, saveTensorFile, type TensorFile } from '../engine/tensor-file.js';
import type { Encoder } from '../models/encoder.js';
import type { MemoryQueue } from '../ssl/queue.js';
import type { SgdMomentum } from './optimizer.js';
import { VERSION } from '../version.js';
import type { ConvChoice } from '../engine/webgpu-conv.js';

export const CHECKPOINT_FORMAT = 'eden-pretrain-1';

/** The next step to run. */
export interface TrainingPosition {
  stage: number;
  /** Epoch within the stage, from 0. */
  epoch: number;
  /** Batch within the epoch, from 0. */
  batch: number;
  /** Steps run so far over all stages. */
  globalStep: number;
}

export interface CheckpointMeta {
  format: string;
  edenVersion: string;
  createdAt: string;
  config: PretrainConfig;
  position: TrainingPosition;
  queuePointer: number;
  /** Training and validation images, as absolute paths. */
  split: { train: string[]; val: string[] };
  best: { valLoss: number; stage: number; globalStep: number } | null;
  /** Every random draw derives from config.seed and the position (see core/rng.ts deriveSeed). */
  rng: { seed: number; scheme: string };
  /** Backend the state was computed on. */
  backend: string;
  /**
   * EDEN_WEBGPU_CONV=tune: the kernel chosen for each convolution so far (engine/webgpu-conv-tune.ts),
   * restored on resume so that a resumed run runs the kernels the interrupted one did.
   */
  convTuning?: Record<string, ConvChoice>;
}

export interface TrainingState {
  student: Encoder;
  teacher: Encoder;
  queue: MemoryQueue;
  optimizer: SgdMomentum;
}

export async function saveCheckpoint(file: string, state: TrainingState, meta: Omit<CheckpointMeta, 'format' | 'edenVersion' | 'createdAt'>): Promise<void> {
  const tensors = new Map<string, tf.Tensor>();
  for (const [n, v] of state.student.namedVariables()) tensors.set(`student/${n}`, v);
  for (const [n, v] of state.teacher.namedVariables()) tensors.set(`teacher/${n}`, v);
  tensors.set('queue/keys', state.queue.keys);
  for (const [n, v] of state.optimizer.velocity) tensors.set(`optimizer/velocity/${n}`, v);
  const full: CheckpointMeta = { format: CHECKPOINT_FORMAT, edenVersion: VERSION, createdAt: new Date().toISOString(), ...meta };
  await saveTensorFile(file, tensors, { format: CHECKPOINT_FORMAT, eden: JSON.stringify(full) });
}

/** Read a checkpoint's metadata and tensors (no model needed). */
export async function readCheckpoint(file: string): Promise<{ meta: CheckpointMeta; content: TensorFile }> {
  const content = await loadTensorFile(file);
  return { meta: checkpointMeta(content, file), content };
}

/** The metadata of a loaded pretraining checkpoint; another kind of file is an error naming it. */
export function checkpointMeta(content: TensorFile, file: string): CheckpointMeta {
  if (content.metadata['format'] !== CHECKPOINT_FORMAT) {
    throw new EdenError('checkpoint', `${file} is not an Eden pretraining checkpoint (format '${content.metadata['format'] ?? 'none'}', expected '${CHECKPOINT_FORMAT}')`);
  }
  return JSON.parse(content.metadata['eden']!) as CheckpointMeta;
}

function assign(content: TensorFile, prefix: string, vars: Map<string, tf.Variable>, file: string): void {
  for (const [name, v] of vars) {
    const rec = content.tensors.get(`${prefix}/${name}`);
    if (!rec) throw new EdenError('checkpoint', `${file}: missing tensor '${prefix}/${name}'`);
    if (rec.shape.join(',') !== v.shape.join(',')) throw new EdenError('checkpoint', `${file}: '${prefix}/${name}' is [${rec.shape}], the model has [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(rec.data, rec.shape, rec.dtype)));
  }
}

/** Restore a training state built from the checkpoint's own config. */
export function restoreState(file: string, content: TensorFile, meta: CheckpointMeta, state: TrainingState): void {
  assign(content, 'student', state.student.namedVariables(), file);
  assign(content, 'teacher', state.teacher.namedVariables(), file);
  assign(content, 'queue', new Map([['keys', state.queue.keys as tf.Variable]]), file);
  state.queue.pointer = meta.queuePointer;
  state.optimizer.reset();
  for (const [name, rec] of content.tensors) {
    if (!name.startsWith('optimizer/velocity/')) continue;
    const value = tf.tensor(rec.data, rec.shape, rec.dtype);
    state.optimizer.velocity.set(name.slice('optimizer/velocity/'.length), tf.variable(value, false));
    value.dispose();
  }
}
