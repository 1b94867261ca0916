/**
 * Fine-tuned task models in one self-describing safetensors file each, loadable with no other
 * input: a segmentation U-Net (`eden-segmenter-1`) or an image classifier (`eden-classifier-1`).
 * The metadata carries the architecture, the structures or classes, the input size and intensity
 * handling the model was trained with, and a summary of its training data and validation scores,
 * so that `eden segment` / `eden classify` apply it exactly as it was trained.
 * Tensors: `encoder.<name>` (the ResNet, batch-norm statistics included), then `decoder.<name>`
 * (U-Net) or `head.weight` / `head.bias` (classifier). The encoder of either file can also be used
 * wherever an encoder checkpoint is accepted (e.g. as a supervised reference in `eden evaluate`).
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { loadTensorFile, saveTensorFile, type TensorFile } from '../engine/tensor-file.js';
import { ensureBackend } from '../engine/backend.js';
import type { IntensityOptions } from '../data/intensity.js';
import { createBackbone, type ResNet } from './resnet.js';
import { UNet } from './unet.js';
import { ParameterStore, withoutRandomInit } from './layers.js';

export const SEGMENTER_FORMAT = 'eden-segmenter-1';
export const CLASSIFIER_FORMAT = 'eden-classifier-1';

export interface TaskModelMeta {
  format: typeof SEGMENTER_FORMAT | typeof CLASSIFIER_FORMAT;
  edenVersion: string;
  createdAt: string;
  backbone: { name: string; width: number };
  /** Square input side in pixels; images are resized to it (and masks back to the image's size). */
  inputSize: number;
  intensity: IntensityOptions;
  /** Input normalisation after the [0, 1] window: (x - mean) / std. */
  normalisation: { mean: number; std: number };
  /** Segmentation: one sigmoid output per structure. Classification: one softmax output per class. */
  structures?: string[];
  decoderChannels?: number[];
  classes?: string[];
  /** What it was trained on and how well it did on its validation split. */
  training: {
    data: string;
    images: number;
    validationImages: number;
    files: string[];
    mode?: string;
    steps: number;
    bestStep: number;
    seed: number;
    startedFrom: string;
    [key: string]: unknown;
  };
  validation: Record<string, number>;
}

export interface Segmenter {
  meta: TaskModelMeta;
  unet: UNet;
  dispose(): void;
}

export interface Classifier {
  meta: TaskModelMeta;
  backbone: ResNet;
  head: ParameterStore;
  dispose(): void;
}

export async function saveSegmenter(file: string, unet: UNet, meta: Omit<TaskModelMeta, 'format' | 'decoderChannels'>): Promise<void> {
  const tensors = new Map<string, tf.Tensor>();
  for (const [n, v] of unet.encoder.store.variables) tensors.set(`encoder.${n}`, v);
  for (const [n, v] of unet.decoder.variables) tensors.set(`decoder.${n}`, v);
  const full: TaskModelMeta = { ...meta, format: SEGMENTER_FORMAT, decoderChannels: unet.decoderChannels };
  await saveTensorFile(file, tensors, { format: SEGMENTER_FORMAT, eden: JSON.stringify(full) });
}

export async function saveClassifier(file: string, backbone: ResNet, head: { weight: tf.Tensor; bias: tf.Tensor }, meta: Omit<TaskModelMeta, 'format'>): Promise<void> {
  const tensors = new Map<string, tf.Tensor>();
  for (const [n, v] of backbone.store.variables) tensors.set(`encoder.${n}`, v);
  tensors.set('head.weight', head.weight);
  tensors.set('head.bias', head.bias);
  await saveTensorFile(file, tensors, { format: CLASSIFIER_FORMAT, eden: JSON.stringify({ ...meta, format: CLASSIFIER_FORMAT }) });
}

function assign(content: TensorFile, prefix: string, vars: Map<string, tf.Variable>, file: string): void {
  for (const [name, v] of vars) {
    const rec = content.tensors.get(prefix + name);
    if (!rec) throw new EdenError('checkpoint', `${file}: missing tensor '${prefix + name}'`);
    if (rec.shape.join(',') !== v.shape.join(',')) throw new EdenError('checkpoint', `${file}: '${prefix + name}' is [${rec.shape}], the model has [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(rec.data, rec.shape, rec.dtype)));
  }
}

/** The metadata of a task model file, or undefined when `content` is another kind of file. */
export function taskModelMeta(content: TensorFile): TaskModelMeta | undefined {
  const format = content.metadata['format'];
  if (format !== SEGMENTER_FORMAT && format !== CLASSIFIER_FORMAT) return undefined;
  return JSON.parse(content.metadata['eden'] ?? '{}') as TaskModelMeta;
}

/** The encoder of a task model file (for evaluation, embedding, or as a starting point). */
export function taskModelBackbone(content: TensorFile, file: string): ResNet {
  const meta = taskModelMeta(content)!;
  // Every variable is assigned below (a missing one is an error), so no random draws.
  const backbone = withoutRandomInit(() => createBackbone(meta.backbone.name, { width: meta.backbone.width }));
  try {
    assign(content, 'encoder.', backbone.store.variables, file);
  } catch (err) {
    backbone.dispose();
    throw err;
  }
  return backbone;
}

export async function loadSegmenter(file: string): Promise<Segmenter> {
  await ensureBackend();
  const content = await loadTensorFile(file);
  const meta = taskModelMeta(content);
  if (meta?.format !== SEGMENTER_FORMAT) {
    throw new EdenError('checkpoint', `${file} is not an Eden segmentation model (format '${content.metadata['format'] ?? 'none'}'); make one with 'eden finetune'`);
  }
  const backbone = taskModelBackbone(content, file);
  const unet = withoutRandomInit(() => new UNet(backbone, { classes: meta.structures!.length, decoderChannels: meta.decoderChannels }));
  try {
    assign(content, 'decoder.', unet.decoder.variables, file);
  } catch (err) {
    unet.dispose();
    backbone.dispose();
    throw err;
  }
  return { meta, unet, dispose: () => (unet.dispose(), backbone.dispose()) };
}

export async function loadClassifier(file: string): Promise<Classifier> {
  await ensureBackend();
  const content = await loadTensorFile(file);
  const meta = taskModelMeta(content);
  if (meta?.format !== CLASSIFIER_FORMAT) {
    throw new EdenError('checkpoint', `${file} is not an Eden classification model (format '${content.metadata['format'] ?? 'none'}'); make one with 'eden finetune --task classify'`);
  }
  const backbone = taskModelBackbone(content, file);
  const head = new ParameterStore();
  for (const name of ['head.weight', 'head.bias']) {
    const rec = content.tensors.get(name);
    if (!rec) {
      backbone.dispose();
      head.dispose();
      throw new EdenError('checkpoint', `${file}: missing tensor '${name}'`);
    }
    head.add(name, tf.tensor(rec.data, rec.shape, rec.dtype));
  }
  return { meta, backbone, head, dispose: () => (backbone.dispose(), head.dispose()) };
}
