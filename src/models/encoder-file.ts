/**
 * Encoder checkpoints: the weights downstream work needs (backbone, and the projection head when
 * there is one) in one safetensors file with its architecture in the metadata, so that
 * `loadEncoder` rebuilds the model with no other input. `loadEncoder` also reads pretraining
 * checkpoints (their student, as MoCo and Adam use the query encoder downstream).
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { loadTensorFile, saveTensorFile, type TensorFile } from '../engine/tensor-file.js';
import { ensureBackend } from '../engine/backend.js';
import { Encoder, type EncoderArgs } from './encoder.js';
import { withoutRandomInit } from './layers.js';
import { taskModelMeta } from './task-model-file.js';
import { resolveModelSpec } from './builtin.js';

export const ENCODER_FORMAT = 'eden-encoder-1';

export interface EncoderFileMeta {
  format: string;
  args: EncoderArgs;
  /** False when the file has no projection head (e.g. imported from a supervised model). */
  hasHead: boolean;
  /** Side of the views the encoder was trained on, when known. */
  inputSize?: number;
  /** Where the weights came from (file, run, checkpoint position...). */
  source: string;
}

/** `float16`: weights stored at half precision (half the file; read back as float32). */
export async function saveEncoder(file: string, encoder: Encoder, meta: Omit<EncoderFileMeta, 'format' | 'args'>, o: { float16?: boolean } = {}): Promise<void> {
  const tensors = new Map<string, tf.Tensor>();
  for (const [n, v] of encoder.namedVariables()) if (meta.hasHead || !n.startsWith('head.')) tensors.set(n, v);
  const full: EncoderFileMeta = { format: ENCODER_FORMAT, args: encoder.args, ...meta };
  await saveTensorFile(file, tensors, { format: ENCODER_FORMAT, eden: JSON.stringify(full) }, o);
}

function assignFrom(content: TensorFile, encoder: Encoder, prefix: string, withHead: boolean, file: string, rename: (name: string) => string = (n) => n): void {
  for (const [name, v] of encoder.namedVariables()) {
    if (!withHead && name.startsWith('head.')) continue;
    const rec = content.tensors.get(prefix + rename(name));
    if (!rec) throw new EdenError('checkpoint', `${file}: missing tensor '${prefix + rename(name)}'`);
    if (rec.shape.join(',') !== v.shape.join(',')) throw new EdenError('checkpoint', `${file}: '${prefix + rename(name)}' is [${rec.shape}], the encoder expects [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(rec.data, rec.shape, rec.dtype)));
  }
}

/** Load an encoder from an encoder file, a pretraining checkpoint, or a fine-tuned task model (its encoder, no head). */
export async function loadEncoder(spec: string): Promise<{ encoder: Encoder; meta: EncoderFileMeta }> {
  await ensureBackend();
  const file = resolveModelSpec(spec);
  const content = await loadTensorFile(file);
  const format = content.metadata['format'];
  const eden = JSON.parse(content.metadata['eden'] ?? '{}') as Record<string, unknown>;
  let meta: EncoderFileMeta;
  let prefix = '';
  let rename: ((name: string) => string) | undefined;
  const task = taskModelMeta(content);
  if (task) {
    meta = {
      format: format!,
      args: { backbone: task.backbone.name, width: task.backbone.width, projectionDim: 128, seed: 0 },
      hasHead: false,
      inputSize: task.inputSize,
      source: `${file} (the encoder of a fine-tuned ${task.format === 'eden-segmenter-1' ? 'segmentation' : 'classification'} model)`,
    };
    // Task models store the backbone as encoder.<name>.
    rename = (name) => name.replace(/^backbone\./, '');
    prefix = 'encoder.';
  } else if (format === ENCODER_FORMAT) {
    meta = eden as unknown as EncoderFileMeta;
  } else if (format === 'eden-pretrain-1') {
    const config = eden['config'] as { model: { backbone: string; width: number; projectionDim: number; headNorm?: 'none' | 'batchnorm' }; views: { size: number }; seed: number };
    const position = eden['position'] as { globalStep: number };
    meta = {
      format,
      args: { backbone: config.model.backbone, width: config.model.width, projectionDim: config.model.projectionDim, headNorm: config.model.headNorm ?? 'none', seed: 0 },
      hasHead: true,
      inputSize: config.views.size,
      source: `${file} (student, step ${position.globalStep})`,
    };
    prefix = 'student/';
  } else {
    throw new EdenError('checkpoint', `${file} is not an Eden encoder, pretraining checkpoint or fine-tuned model (format '${format ?? 'none'}'); import PyTorch weights with 'eden import-torch'`);
  }
  // Every variable is read from the file (a missing one is an error) unless the head is not in it.
  const encoder = meta.hasHead ? withoutRandomInit(() => new Encoder(meta.args)) : new Encoder(meta.args);
  try {
    assignFrom(content, encoder, prefix, meta.hasHead, file, rename);
  } catch (err) {
    encoder.dispose();
    throw err;
  }
  return { encoder, meta };
}
