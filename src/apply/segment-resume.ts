/**
 * Resuming `eden segment` on a folder of thousands of images: OUT/segment.json records which model
 * and threshold wrote OUT, and a run with `resume` keeps every image of measurements.csv whose mask
 * PNGs exist, segmenting only the rest. A different model, threshold or set of structures is refused
 * (mixed outputs would look like one run's).
 */
import { parse } from 'csv-parse/sync';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { changedSettings, completeLines } from '../core/resume.js';
import type { TaskModelMeta } from '../models/task-model-file.js';
import { writeFileAtomic } from '../engine/tensor-file.js';

/** What makes two runs' outputs belong together. */
export interface SegmentRunRecord {
  model: { format: string; createdAt: string; backbone: string; inputSize: number; structures: string[] };
  threshold: number;
  dicomSeg: boolean;
}

export const RUN_RECORD = 'segment.json';

export function segmentRunRecord(meta: TaskModelMeta, threshold: number, dicomSeg: boolean): SegmentRunRecord {
  return { model: { format: meta.format, createdAt: meta.createdAt, backbone: `${meta.backbone.name} width ${meta.backbone.width}`, inputSize: meta.inputSize, structures: meta.structures ?? [] }, threshold, dicomSeg };
}

export async function writeRunRecord(out: string, record: SegmentRunRecord): Promise<void> {
  await writeFileAtomic(path.join(out, RUN_RECORD), `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * The rows of an earlier run in `out` by their file (each as its CSV fields), for a run that resumes
 * it; empty when `out` holds no measurements yet. Throws when `out` was written by another model,
 * threshold or version of the table.
 */
export async function earlierRows(out: string, record: SegmentRunRecord, header: string[]): Promise<Map<string, string[]>> {
  const csvFile = path.join(out, 'measurements.csv');
  const csv = await fs.readFile(csvFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (csv === undefined) return new Map();
  const recordFile = path.join(out, RUN_RECORD);
  const earlier = await fs.readFile(recordFile, 'utf8').catch(() => undefined);
  if (earlier === undefined) throw new EdenError('config', `--resume: ${out} has measurements but no ${RUN_RECORD} saying which model wrote them (an older Eden, or another tool); segment into a new --out`);
  let was: SegmentRunRecord;
  try {
    was = JSON.parse(earlier) as SegmentRunRecord;
  } catch (err) {
    throw new EdenError('config', `--resume: ${recordFile} is not valid JSON (${(err as Error).message}); segment into a new --out`);
  }
  const changed = changedSettings(was, record, ['model', 'threshold', 'dicomSeg']);
  if (changed) throw new EdenError('config', `--resume: ${out} was written with ${changed}; segment into a new --out, or run without --resume to start over`);
  const records = parse(completeLines(csv), { relax_column_count: true }) as string[][];
  if (records[0]?.join(',') !== header.join(',')) throw new EdenError('config', `--resume: ${csvFile} has other columns than this run writes; segment into a new --out`);
  return new Map(records.slice(1).filter((r) => r.length === header.length).map((r) => [r[0]!, r]));
}

/** Whether the mask PNGs and the overlay of output `name` exist (not deleted since). */
export async function outputsExist(out: string, folders: string[], name: string): Promise<boolean> {
  const files = [...folders.map((f) => path.join(out, 'masks', f, `${name}.png`)), path.join(out, 'overlays', `${name}.png`)];
  const found = await Promise.all(files.map((f) => fs.access(f).then(() => true, () => false)));
  return found.every(Boolean);
}
