/**
 * Eve extraction: pooled (global) embeddings [N, D], or dense feature maps [N, h, w, D], of images
 * under an encoder in evaluation mode (batch-norm running statistics).
 *
 * Preprocessing:
 *  - 'default': per-image intensity window (DICOM VOI or 1st-99th percentile), resized to the
 *    encoder's input size, normalised as in pretraining ((x - 0.5) / 0.25);
 *  - 'none': pixel / (2^bitDepth - 1) (pixel / 255 for 8-bit images; a float image's values in
 *    [0, 1], clipped) at each image's own size, nothing else, so outputs can be compared with another
 *    framework's on the same input.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { csvField } from '../core/csv.js';
import { normaliseInput } from '../models/input.js';
import { decodeImageFile } from '../data/decode.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import { skippedBy, type SkippedFile } from '../data/scan.js';
import type { Encoder } from '../models/encoder.js';

export type Preprocess = 'default' | 'none';

export interface EmbedOptions {
  preprocess?: Preprocess;
  /** Square input size for 'default' (default: the encoder's training view size, else 224). */
  size?: number;
  dense?: boolean;
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** A file that cannot be read is reported here and left out; without it, it is an error. */
  onSkip?: (file: SkippedFile) => void;
}

export interface Embeddings {
  /** [N, D] or, dense, [N, h, w, D]. */
  shape: number[];
  data: Float32Array;
  /** The image of each row, in order (files reported through onSkip are not among them). */
  files: string[];
}

/** One image as the network input [h * w] and its size. */
export async function prepareImage(file: string, preprocess: Preprocess, size: number): Promise<{ data: Float32Array; width: number; height: number }> {
  const img = await decodeImageFile(file);
  if (preprocess === 'none') return { data: normalizeIntensity(img, { mode: 'none' }, img.data), width: img.width, height: img.height };
  return { data: normaliseInput(resizeGrey(normalizeIntensity(img, {}, img.data), img.width, img.height, size, size)), width: size, height: size };
}

/** Run the backbone in evaluation mode on one batch [B, H, W, 1]. */
export function embedBatch(encoder: Encoder, x: tf.Tensor4D, dense: boolean): tf.Tensor {
  return tf.tidy(() => {
    const out = encoder.backbone.forward(x, { training: false });
    return dense ? out.featureMap : out.pooled;
  });
}

/** One batch's embeddings: the files embedded (in order) and their rows. */
export interface EmbeddedBatch {
  files: string[];
  /** [files.length, ...itemShape] */
  data: Float32Array;
  itemShape: number[];
}

/**
 * The embeddings of `files` batch by batch, in order: what embedFiles collects and eden embed
 * streams to disk. Unreadable files go to onSkip (without it, they are errors); every batch's
 * items have one shape (dense maps of images of another size are an error).
 */
export async function* embedBatches(encoder: Encoder, files: string[], options: EmbedOptions & { inputSize?: number } = {}): AsyncGenerator<EmbeddedBatch> {
  const preprocess = options.preprocess ?? 'default';
  const size = options.size ?? options.inputSize ?? 224;
  const batchSize = preprocess === 'none' ? 1 : (options.batchSize ?? 16);
  let itemShape: number[] | undefined;
  for (let start = 0; start < files.length; start += batchSize) {
    const batch: string[] = [];
    const images: Awaited<ReturnType<typeof prepareImage>>[] = [];
    // Decoded together (sharp works on the thread pool), kept in order.
    const chunk = files.slice(start, start + batchSize);
    const decoded = await Promise.allSettled(chunk.map((f) => prepareImage(f, preprocess, size)));
    decoded.forEach((d, j) => {
      const file = chunk[j]!;
      if (d.status === 'fulfilled') {
        images.push(d.value);
        batch.push(file);
        return;
      }
      // Without onSkip (a library call on chosen files) a bad file is an error, as it was.
      if (!options.onSkip) throw d.reason;
      options.onSkip(skippedBy(file, d.reason));
    });
    const done = Math.min(start + batchSize, files.length);
    if (!images.length) {
      options.onProgress?.(done, files.length);
      continue;
    }
    const { width, height } = images[0]!;
    const xs = new Float32Array(images.length * width * height);
    images.forEach((im, j) => xs.set(im.data, j * width * height));
    const x = tf.tensor4d(xs, [images.length, height, width, 1]);
    const y = embedBatch(encoder, x, options.dense ?? false);
    const shape = y.shape.slice(1);
    if (itemShape && itemShape.join(',') !== shape.join(',')) {
      tf.dispose([x, y]);
      throw new EdenError('data', `${batch[0]}: its dense features are [${shape}], earlier images gave [${itemShape}]; dense output needs images of one size (use --preprocess default)`);
    }
    itemShape = shape;
    const data = (await y.data()) as Float32Array;
    tf.dispose([x, y]);
    yield { files: batch, data, itemShape };
    options.onProgress?.(done, files.length);
  }
}

export async function embedFiles(encoder: Encoder, files: string[], options: EmbedOptions & { inputSize?: number } = {}): Promise<Embeddings> {
  if (files.length === 0) throw new EdenError('config', 'no images to embed');
  const parts: Float32Array[] = [];
  const embedded: string[] = [];
  let itemShape: number[] | undefined;
  for await (const b of embedBatches(encoder, files, options)) {
    parts.push(b.data);
    embedded.push(...b.files);
    itemShape = b.itemShape;
  }
  if (!itemShape) throw new EdenError('data', `none of the ${files.length} image(s) could be read`);
  const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return { shape: [embedded.length, ...itemShape], data, files: embedded };
}

/** The rows of an embedding file as a CSV: row (from 0), file. */
export function embeddingRowsCsv(files: string[]): string {
  return `row,file\n${files.map((f, i) => `${i},${csvField(f)}`).join('\n')}\n`;
}
