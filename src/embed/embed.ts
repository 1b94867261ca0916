/**
 * Eve extraction: pooled (global) embeddings [N, D], or dense feature maps [N, h, w, D], of images
 * under an encoder in evaluation mode (batch-norm running statistics).
 *
 * Preprocessing:
 *  - 'default': per-image intensity window (DICOM VOI or 1st-99th percentile), resized to the
 *    encoder's input size, normalised as in pretraining ((x - 0.5) / 0.25);
 *  - 'none': pixel / (2^bitDepth - 1) (pixel / 255 for 8-bit images) at each image's own size,
 *    nothing else, so outputs can be compared with another framework's on the same input.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { normaliseInput } from '../models/input.js';
import { decodeImageFile } from '../data/decode.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import type { Encoder } from '../models/encoder.js';

export type Preprocess = 'default' | 'none';

export interface EmbedOptions {
  preprocess?: Preprocess;
  /** Square input size for 'default' (default: the encoder's training view size, else 224). */
  size?: number;
  dense?: boolean;
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface Embeddings {
  /** [N, D] or, dense, [N, h, w, D]. */
  shape: number[];
  data: Float32Array;
}

/** One image as the network input [h * w] and its size. */
export async function prepareImage(file: string, preprocess: Preprocess, size: number): Promise<{ data: Float32Array; width: number; height: number }> {
  const img = await decodeImageFile(file);
  if (preprocess === 'none') return { data: normalizeIntensity(img, { mode: 'none' }), width: img.width, height: img.height };
  return { data: normaliseInput(resizeGrey(normalizeIntensity(img), img.width, img.height, size, size)), width: size, height: size };
}

/** Run the backbone in evaluation mode on one batch [B, H, W, 1]. */
export function embedBatch(encoder: Encoder, x: tf.Tensor4D, dense: boolean): tf.Tensor {
  return tf.tidy(() => {
    const out = encoder.backbone.forward(x, { training: false });
    return dense ? out.featureMap : out.pooled;
  });
}

export async function embedFiles(encoder: Encoder, files: string[], options: EmbedOptions & { inputSize?: number } = {}): Promise<Embeddings> {
  if (files.length === 0) throw new EdenError('config', 'no images to embed');
  const preprocess = options.preprocess ?? 'default';
  const size = options.size ?? options.inputSize ?? 224;
  const batchSize = preprocess === 'none' ? 1 : (options.batchSize ?? 16);
  const parts: Float32Array[] = [];
  let itemShape: number[] | undefined;
  for (let start = 0; start < files.length; start += batchSize) {
    const batch = files.slice(start, start + batchSize);
    const images = await Promise.all(batch.map((f) => prepareImage(f, preprocess, size)));
    const { width, height } = images[0]!;
    const x = tf.tensor4d(Float32Array.from(images.flatMap((i) => Array.from(i.data))), [images.length, height, width, 1]);
    const y = embedBatch(encoder, x, options.dense ?? false);
    const shape = y.shape.slice(1);
    if (itemShape && itemShape.join(',') !== shape.join(',')) {
      tf.dispose([x, y]);
      throw new EdenError('data', `${batch[0]}: its dense features are [${shape}], earlier images gave [${itemShape}]; dense output needs images of one size (use --preprocess default)`);
    }
    itemShape = shape;
    parts.push((await y.data()) as Float32Array);
    tf.dispose([x, y]);
    options.onProgress?.(Math.min(start + batchSize, files.length), files.length);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const data = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return { shape: [files.length, ...itemShape!], data };
}
