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

export async function classifyFiles(model: Classifier, inputs: string[], o: { batchSize?: number; onSkip?: (s: SkippedFile) => void } = {}): Promise<ClassifiedImage[]> {
  const classes = model.meta.classes!;
  const size = model.meta.inputSize;
  const { mean, std } = model.meta.normalisation;
  const scan = await scanDataset(inputs, { imagesOnly: true });
  for (const s of scan.skipped) o.onSkip?.(s);
  const out: ClassifiedImage[] = [];
  const batchSize = o.batchSize ?? 16;
  for (let start = 0; start < scan.images.length; start += batchSize) {
    const batch: { file: string; x: Float32Array }[] = [];
    for (const e of scan.images.slice(start, start + batchSize)) {
      try {
        const grey = await decodeImageFile(e.path);
        const x = resizeGrey(normalizeIntensity(grey, model.meta.intensity, grey.data), grey.width, grey.height, size, size).map((v) => (v - mean) / std);
        batch.push({ file: e.path, x });
      } catch (err) {
        o.onSkip?.(skippedBy(e.path, err));
      }
    }
    if (!batch.length) continue;
    const x = tf.tensor4d(Float32Array.from(batch.flatMap((b) => Array.from(b.x))), [batch.length, size, size, 1]);
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
