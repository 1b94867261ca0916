/**
 * Apply a fine-tuned classifier (`eden finetune --task classify`) to files and folders: one CSV row
 * per image with the probability of each class and the most probable class. Unreadable files are
 * reported and skipped.
 */
import * as tf from '@tensorflow/tfjs';
import { parse } from 'csv-parse/sync';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { csvField } from '../core/csv.js';
import { EdenError } from '../core/errors.js';
import { completeLines } from '../core/resume.js';
import { removeLeftTemporaries, writeFileAtomic } from '../engine/tensor-file.js';
import { decodeImageFile } from '../data/decode.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import { scanDataset, skippedBy, type SkippedFile } from '../data/scan.js';
import type { Classifier, TaskModelMeta } from '../models/task-model-file.js';

export interface ClassifiedImage {
  file: string;
  probabilities: number[];
  predicted: string;
}

export interface ClassifyOptions {
  batchSize?: number;
  onSkip?: (s: SkippedFile) => void;
  onProgress?: (done: number, total: number) => void;
}

/** The rows of `files`, batch by batch, in order; unreadable files go to onSkip. */
export async function* classifyBatches(model: Classifier, files: string[], o: ClassifyOptions = {}): AsyncGenerator<ClassifiedImage[]> {
  const classes = model.meta.classes!;
  const size = model.meta.inputSize;
  const { mean, std } = model.meta.normalisation;
  const batchSize = o.batchSize ?? 16;
  const px = size * size;
  // One image as the model's input, normalised as in training.
  const prepare = async (file: string): Promise<Float32Array> => {
    const grey = await decodeImageFile(file);
    const x = resizeGrey(normalizeIntensity(grey, model.meta.intensity, grey.data), grey.width, grey.height, size, size);
    for (let i = 0; i < x.length; i++) x[i] = (x[i]! - mean) / std;
    return x;
  };
  for (let start = 0; start < files.length; start += batchSize) {
    // A batch's images decoded together (sharp works on the thread pool), kept in order.
    const chunk = files.slice(start, start + batchSize);
    const decoded = await Promise.allSettled(chunk.map(prepare));
    const batch: { file: string; x: Float32Array }[] = [];
    decoded.forEach((d, j) => {
      if (d.status === 'fulfilled') batch.push({ file: chunk[j]!, x: d.value });
      else o.onSkip?.(skippedBy(chunk[j]!, d.reason));
    });
    if (batch.length) {
      const xs = new Float32Array(batch.length * px);
      batch.forEach((b, j) => xs.set(b.x, j * px));
      const x = tf.tensor4d(xs, [batch.length, size, size, 1]);
      const p = tf.tidy(() => tf.softmax(tf.add(tf.matMul(model.backbone.forward(x, { training: false }).pooled, model.head.get('head.weight')), model.head.get('head.bias'))));
      const probs = (await p.data()) as Float32Array;
      tf.dispose([x, p]);
      yield batch.map((b, j) => {
        const row = Array.from(probs.subarray(j * classes.length, (j + 1) * classes.length));
        return { file: b.file, probabilities: row, predicted: classes[row.indexOf(Math.max(...row))]! };
      });
    }
    o.onProgress?.(Math.min(start + batchSize, files.length), files.length);
  }
}

export async function classifyFiles(model: Classifier, inputs: string[], o: ClassifyOptions = {}): Promise<ClassifiedImage[]> {
  const scan = await scanDataset(inputs, { imagesOnly: true });
  for (const s of scan.skipped) o.onSkip?.(s);
  const out: ClassifiedImage[] = [];
  for await (const rows of classifyBatches(model, scan.images.map((e) => e.path), o)) out.push(...rows);
  return out;
}

function classificationHeader(classes: string[]): string {
  return `${['file', ...classes.map((c) => `p_${c}`), 'predicted'].map(csvField).join(',')}\n`;
}

function classificationLine(r: ClassifiedImage): string {
  return `${[csvField(r.file), ...r.probabilities.map((p) => p.toFixed(6)), csvField(r.predicted)].join(',')}\n`;
}

export function classificationCsv(rows: ClassifiedImage[], classes: string[]): string {
  return classificationHeader(classes) + (rows.length ? rows.map(classificationLine).join('') : '\n');
}

/** What a resumed classification must share with the run it continues: the model. */
export function classifierRecord(meta: TaskModelMeta): string {
  return JSON.stringify({ format: meta.format, createdAt: meta.createdAt, backbone: meta.backbone, inputSize: meta.inputSize, classes: meta.classes });
}

/**
 * Classify into the CSV `out` as the rows come: they are appended to OUT.partial (renamed to OUT at
 * the end), beside OUT.partial.json naming the model, so that a killed run on an archive keeps what
 * it classified and `resume` goes on from it (a different model is refused).
 */
export async function classifyToFile(model: Classifier, inputs: string[], out: string, o: ClassifyOptions & { resume?: boolean } = {}): Promise<{ rows: number; kept: number }> {
  const classes = model.meta.classes!;
  const [partial, stateFile] = [`${out}.partial`, `${out}.partial.json`];
  const record = classifierRecord(model.meta);
  const scan = await scanDataset(inputs, { imagesOnly: true });
  for (const s of scan.skipped) o.onSkip?.(s);
  // The earlier run's rows: their files, and their lines as written (the numbers as they were printed).
  const kept: { file: string; line: string }[] = [];
  if (o.resume) {
    const was = await fs.readFile(stateFile, 'utf8').catch(() => undefined);
    if (was !== undefined && was !== record) throw new EdenError('config', `--resume: ${partial} was written by another model (then ${was}, now ${record}); run without --resume to start over`);
    const csv = was === undefined ? undefined : await fs.readFile(partial, 'utf8').catch(() => undefined);
    if (csv !== undefined) {
      const records = parse(completeLines(csv), { from_line: 2, relax_column_count: true }) as string[][];
      for (const r of records) {
        if (r.length === classes.length + 2) kept.push({ file: r[0]!, line: `${[csvField(r[0]!), ...r.slice(1, -1), csvField(r[r.length - 1]!)].join(',')}\n` });
      }
    }
  }
  await removeLeftTemporaries([path.dirname(path.resolve(out))], [path.basename(stateFile)]);
  await writeFileAtomic(stateFile, record);
  await writeFileAtomic(partial, classificationHeader(classes) + kept.map((k) => k.line).join(''));
  const done = new Set(kept.map((k) => k.file));
  let rows = kept.length;
  for await (const batch of classifyBatches(model, scan.images.map((e) => e.path).filter((f) => !done.has(f)), o)) {
    await fs.appendFile(partial, batch.map(classificationLine).join(''));
    rows += batch.length;
  }
  if (rows === 0) {
    await Promise.all([partial, stateFile].map((f) => fs.rm(f, { force: true })));
    throw new EdenError('data', `no image could be classified in ${inputs.join(', ')}`);
  }
  await fs.rename(partial, out);
  await fs.rm(stateFile, { force: true });
  return { rows, kept: kept.length };
}
