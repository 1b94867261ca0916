/**
 * Apply a fine-tuned classifier (`eden finetune --task classify`) to files and folders: one CSV row
 * per image with the probability of each class and the most probable class. Unreadable files are
 * reported and skipped.
 */
import * as tf from '@tensorflow/tfjs';
import { csvField } from '../core/csv.js';
import { decodeImageFile } from '../data/decode.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import { scanDataset, skippedBy, type SkippedFile } from '../data/scan.js';
import type { Classifier } from '../models/task-model-file.js';

export interface ClassifiedImage {
  file: string;
  probabilities: number[];
  predicted: string;
}

export async function classifyFiles(model: Classifier, inputs: string[], o: { batchSize?: number; onSkip?: (s: SkippedFile) => void; onProgress?: (done: number, total: number) => void } = {}): Promise<ClassifiedImage[]> {
  const classes = model.meta.classes!;
  const size = model.meta.inputSize;
  const { mean, std } = model.meta.normalisation;
  const scan = await scanDataset(inputs, { imagesOnly: true });
  for (const s of scan.skipped) o.onSkip?.(s);
  const out: ClassifiedImage[] = [];
  const batchSize = o.batchSize ?? 16;
  const px = size * size;
  // One image as the model's input, normalised as in training.
  const prepare = async (file: string): Promise<Float32Array> => {
    const grey = await decodeImageFile(file);
    const x = resizeGrey(normalizeIntensity(grey, model.meta.intensity, grey.data), grey.width, grey.height, size, size);
    for (let i = 0; i < x.length; i++) x[i] = (x[i]! - mean) / std;
    return x;
  };
  for (let start = 0; start < scan.images.length; start += batchSize) {
    // A batch's images decoded together (sharp works on the thread pool), kept in order.
    const entries = scan.images.slice(start, start + batchSize);
    const decoded = await Promise.allSettled(entries.map((e) => prepare(e.path)));
    const batch: { file: string; x: Float32Array }[] = [];
    decoded.forEach((d, j) => {
      if (d.status === 'fulfilled') batch.push({ file: entries[j]!.path, x: d.value });
      else o.onSkip?.(skippedBy(entries[j]!.path, d.reason));
    });
    o.onProgress?.(Math.min(start + batchSize, scan.images.length), scan.images.length);
    if (!batch.length) continue;
    const xs = new Float32Array(batch.length * px);
    batch.forEach((b, j) => xs.set(b.x, j * px));
    const x = tf.tensor4d(xs, [batch.length, size, size, 1]);
    const p = tf.tidy(() => tf.softmax(tf.add(tf.matMul(model.backbone.forward(x, { training: false }).pooled, model.head.get('head.weight')), model.head.get('head.bias'))));
    const probs = (await p.data()) as Float32Array;
    tf.dispose([x, p]);
    batch.forEach((b, j) => {
      const row = Array.from(probs.subarray(j * classes.length, (j + 1) * classes.length));
      out.push({ file: b.file, probabilities: row, predicted: classes[row.indexOf(Math.max(...row))]! });
    });
  }
  return out;
}

export function classificationCsv(rows: ClassifiedImage[], classes: string[]): string {
  return `${['file', ...classes.map((c) => `p_${c}`), 'predicted'].map(csvField).join(',')}\n${rows.map((r) => [csvField(r.file), ...r.probabilities.map((p) => p.toFixed(6)), csvField(r.predicted)].join(',')).join('\n')}\n`;
}
