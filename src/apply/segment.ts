/**
 * Apply a fine-tuned segmentation model (`eden finetune`) to files and folders: for every image,
 * a mask PNG per structure at the image's own size, an overlay PNG, a row of measurements (areas,
 * the cardiothoracic ratio when heart and lungs are segmented; see measure.ts) in one CSV, and for
 * DICOM input a DICOM SEG that references its source image (for NIfTI and MetaImage input, masks
 * in the source's own header). Images are decoded ahead of the model and run in batches;
 * unreadable files are reported and skipped, nothing already written is lost.
 *
 * Output layout (OUT = --out):
 *   OUT/masks/<structure>/<name>.png   0 / 255, the image's size (the dataset layout Eden trains on)
 *   OUT/overlays/<name>.png            the image with the masks drawn over it
 *   OUT/seg/<name>.dcm                 DICOM SEG, for DICOM input
 *   OUT/nifti/<structure>/<name>.nii[.gz]  0 / 1 in the source's header (geometry, spacing), for NIfTI input
 *   OUT/metaimage/<structure>/<name>.mha   likewise, for MetaImage input
 *   OUT/measurements.csv               one row per image
 *   OUT/segment.json                   the model and threshold that wrote OUT (for --resume)
 * <name> is the file's path relative to the folder it was found in, '/' replaced by '__', without extension.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { decodeImageFile } from '../data/decode.js';
import { csvField } from '../core/csv.js';
import { fileStem } from '../data/formats.js';
import { writeSegmentation } from '../data/dicom-seg.js';
import { metaImageMask } from '../data/metaimage.js';
import { niftiMask } from '../data/nifti.js';
import { framesNote, pixelSpacingOf, type GreyImage } from '../data/grey-image.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey, resizeToMask } from '../data/resize.js';
import { scanDataset, skippedBy, type ImageEntry, type SkippedFile } from '../data/scan.js';
import type { Segmenter } from '../models/task-model-file.js';
import { removeLeftTemporaries, writeFileAtomic } from '../engine/tensor-file.js';
import { VERSION } from '../version.js';
import { area, cardiothoracicRatio, lungsOf } from './measure.js';
import { earlierRows, outputsExist, segmentRunRecord, writeRunRecord } from './segment-resume.js';

export interface SegmentOptions {
  out: string;
  /** Images per forward pass (default 8). */
  batchSize?: number;
  /** Probability threshold of a mask pixel (default 0.5). */
  threshold?: number;
  /** Write DICOM SEG files for DICOM input (default true). */
  dicomSeg?: boolean;
  /**
   * Keep the images an earlier run of the same model and threshold measured in `out` (its
   * measurements.csv rows, with their masks on disk) and segment only the rest (segment-resume.ts).
   */
  resume?: boolean;
  onSkip?: (s: SkippedFile) => void;
  /** Something the outputs lack, e.g. a DICOM SEG for a DICOM file without the UIDs a SEG references. */
  onWarning?: (message: string) => void;
  onImage?: (row: MeasurementRow, done: number, total: number) => void;
}

export interface MeasurementRow extends Measurements {
  file: string;
  name: string;
  width: number;
  height: number;
  seg?: string;
}

export interface SegmentResult {
  /** The images segmented by this run. */
  rows: MeasurementRow[];
  /** Images kept from the earlier run (resume). */
  kept: number;
  skipped: SkippedFile[];
  csv: string;
  seconds: number;
}

/** Colours of the overlay, cycled over the structures (RGB). */
const COLOURS: [number, number, number][] = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]];

/** Output files' name: the image's path under its folder, '/' as '__', without its extension (fileStem's rule). */
function outputName(e: ImageEntry): string {
  const dir = path.posix.dirname(e.relPath);
  return [...(dir === '.' ? [] : dir.split('/')), fileStem(e.relPath)].join('__');
}

/** `names` made unique in order, a clash numbered '-2', '-3' (clashes judged by `key`). */
function uniqueNames(names: string[], key: (name: string) => string = (n) => n): string[] {
  const used = new Set<string>();
  return names.map((base) => {
    let name = base;
    for (let k = 2; used.has(key(name)); k++) name = `${base}-${k}`;
    used.add(key(name));
    return name;
  });
}

/** Per-structure probabilities [size * size] for a batch of images normalised to [0, 1] at `size`. */
async function predict(model: Segmenter, images: Float32Array[]): Promise<Float32Array[][]> {
  const size = model.meta.inputSize;
  const px = size * size;
  const c = model.meta.structures!.length;
  const { mean, std } = model.meta.normalisation;
  const xs = new Float32Array(images.length * px);
  images.forEach((im, j) => {
    for (let i = 0; i < px; i++) xs[j * px + i] = (im[i]! - mean) / std;
  });
  const x = tf.tensor4d(xs, [images.length, size, size, 1]);
  const prob = tf.tidy(() => tf.sigmoid(model.unet.forward(x, { training: false })));
  const p = (await prob.data()) as Float32Array;
  tf.dispose([x, prob]);
  return images.map((_, j) => Array.from({ length: c }, (_, k) => {
    const m = new Float32Array(px);
    for (let i = 0; i < px; i++) m[i] = p[(j * px + i) * c + k]!;
    return m;
  }));
}

async function overlay(grey01: Float32Array, width: number, height: number, masks: Uint8Array[]): Promise<Buffer> {
  // Every byte is written: no zeroing needed.
  const rgb = Buffer.allocUnsafe(width * height * 3);
  const colours = masks.map((_, k) => COLOURS[k % COLOURS.length]!);
  for (let i = 0; i < width * height; i++) {
    let r = grey01[i]! * 255;
    let g = r;
    let b = r;
    for (let k = 0; k < masks.length; k++) {
      if (!masks[k]![i]) continue;
      const c = colours[k]!;
      r = 0.6 * r + 0.4 * c[0];
      g = 0.6 * g + 0.4 * c[1];
      b = 0.6 * b + 0.4 * c[2];
    }
    rgb[3 * i] = r;
    rgb[3 * i + 1] = g;
    rgb[3 * i + 2] = b;
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/** A 0 / 1 mask as a greyscale PNG of 0 / 255. */
export async function maskPng(mask: Uint8Array, width: number, height: number): Promise<Buffer> {
  // A plain loop: Uint8Array.map calls its function per pixel (210 ms on a 16-megapixel mask, node 20).
  const bytes = Buffer.allocUnsafe(mask.length);
  for (let i = 0; i < mask.length; i++) bytes[i] = mask[i] ? 255 : 0;
  return sharp(bytes, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
}

export function measurementsHeader(structures: string[]): string[] {
  return ['file', 'width', 'height', ...structures.map((s) => `${s}_area_px`), 'pixel_spacing_mm', 'pixel_spacing_source', ...structures.map((s) => `${s}_area_mm2`), 'heart_width_px', 'thorax_width_px', 'ctr', 'seg'];
}

/** One row of the measurements table. */
function measurementLine(r: MeasurementRow, structures: string[]): string {
  return [r.file, r.width, r.height, ...structures.map((s) => r.areaPx[s]), r.pixelSpacing?.join('\\'), r.pixelSpacingSource, ...structures.map((s) => r.areaMm2?.[s]), r.heartWidthPx, r.thoraxWidthPx, r.ctr, r.seg].map(csvField).join(',');
}

export function measurementsCsv(rows: MeasurementRow[], structures: string[]): string {
  return tableOf(structures, rows.map((r) => measurementLine(r, structures)));
}

function tableOf(structures: string[], lines: string[]): string {
  return `${[measurementsHeader(structures).join(','), ...lines].join('\n')}\n`;
}

export interface Measurements {
  areaPx: Record<string, number>;
  pixelSpacing?: [number, number];
  pixelSpacingSource?: string;
  areaMm2?: Record<string, number>;
  heartWidthPx?: number;
  thoraxWidthPx?: number;
  ctr?: number;
  /** The extents behind the CTR, in image columns. */
  heartExtent?: { left: number; right: number };
  thoraxExtent?: { left: number; right: number };
}

/**
 * Masks at each image's own size (probabilities resized bilinearly, then thresholded; masks[k] is
 * model.meta.structures[k], 0 / 1 row-major) and the measurements of measure.ts, for decoded images
 * in one batch. `normalised` ([0, 1], the model's intensity handling) is computed when not given.
 */
export async function segmentImages(model: Segmenter, images: { grey: GreyImage; normalised?: Float32Array }[], threshold = 0.5): Promise<{ masks: Uint8Array[]; measurements: Measurements }[]> {
  const size = model.meta.inputSize;
  const structures = model.meta.structures!;
  const inputs = images.map(({ grey, normalised }) => resizeGrey(normalised ?? normalizeIntensity(grey, model.meta.intensity), grey.width, grey.height, size, size));
  const probs = await predict(model, inputs);
  return images.map(({ grey }, j) => {
    const { width, height } = grey;
    const masks = probs[j]!.map((p) => resizeToMask(p, size, size, width, height, threshold));
    const byName = Object.fromEntries(structures.map((s, k) => [s, masks[k]!]));
    const m: Measurements = { areaPx: Object.fromEntries(structures.map((s, k) => [s, area(masks[k]!)])) };
    const spacing = pixelSpacingOf(grey);
    if (spacing) {
      m.pixelSpacing = spacing.mm;
      m.pixelSpacingSource = spacing.from;
      m.areaMm2 = Object.fromEntries(structures.map((s) => [s, m.areaPx[s]! * spacing.mm[0] * spacing.mm[1]]));
    }
    const lungs = lungsOf(byName);
    if (byName['heart'] && lungs) {
      const c = cardiothoracicRatio(byName['heart'], lungs, width, height);
      if (c) Object.assign(m, { heartWidthPx: c.heartWidth, thoraxWidthPx: c.thoraxWidth, ctr: c.ctr, heartExtent: c.heart, thoraxExtent: c.thorax });
    }
    return { masks, measurements: m };
  });
}

/**
 * Pixels of the images whose outputs are written at once: a 4096 x 4096 radiograph (its overlay
 * alone is 50 MB of RGB) goes alone, a batch of 512 x 512 ones all together. All eight of a batch
 * of 4096 x 4096 images at once took peak RSS from 2.4 to 3.4 GB (16 images; wingspan_ctr's 512 px
 * gain from the concurrency: docs/PERFORMANCE.md).
 */
const WRITE_PIXELS = 4096 * 4096;

/**
 * `work` over `items` in consecutive groups whose pixels add up to at most `budget` (at least one item
 * per group), each group at once, the groups one after another; results in the items' order. A
 * failure is thrown once its whole group has settled.
 */
export async function inGroupsOfPixels<T, R>(items: T[], pixels: (item: T) => number, budget: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < items.length; ) {
    let end = start + 1;
    for (let sum = pixels(items[start]!); end < items.length && sum + pixels(items[end]!) <= budget; end++) sum += pixels(items[end]!);
    // Every item of the group settles before a failure is thrown: nothing runs on behind it.
    const group = await Promise.allSettled(items.slice(start, end).map((item, k) => work(item, start + k)));
    for (const r of group) {
      if (r.status === 'rejected') throw r.reason;
      results.push(r.value);
    }
    start = end;
  }
  return results;
}

/**
 * The folder under masks/ of each structure: its name with the characters Windows refuses in a file
 * name (a label value's ':' in 'labels:2', an NTFS stream separator there) written '_', made unique.
 */
export function structureFolders(structures: string[]): string[] {
  return uniqueNames(
    structures.map((s) => s.replace(/[<>:"/\\|?*\x00-\x1f]/g, '_')),
    (n) => n.toLowerCase(),
  );
}

export async function segmentFiles(model: Segmenter, inputs: string[], o: SegmentOptions): Promise<SegmentResult> {
  const t0 = Date.now();
  const structures = model.meta.structures!;
  const folders = structureFolders(structures);
  const threshold = o.threshold ?? 0.5;
  const batchSize = o.batchSize ?? 8;
  const scan = await scanDataset(inputs, { imagesOnly: true });
  const skippedFiles: SkippedFile[] = [];
  const skip = (s: SkippedFile): void => {
    skippedFiles.push(s);
    o.onSkip?.(s);
  };
  for (const s of scan.skipped) skip(s);
  const record = segmentRunRecord(model.meta, threshold, o.dicomSeg !== false);
  const earlier = o.resume ? await earlierRows(o.out, record, measurementsHeader(structures)) : new Map<string, string[]>();
  if (o.resume) await removeLeftTemporaries([o.out, ...['overlays', 'seg', ...folders.flatMap((f) => ['masks', 'nifti', 'metaimage'].map((d) => path.join(d, f)))].map((d) => path.join(o.out, d))]);
  for (const dir of ['overlays', ...folders.map((f) => path.join('masks', f))]) await fs.mkdir(path.join(o.out, dir), { recursive: true });
  await writeRunRecord(o.out, record);
  const rows: MeasurementRow[] = [];
  // Every image's output name, in the scan's order: the same in a run that resumes this one.
  const names = uniqueNames(scan.images.map(outputName));
  // The table's line of each image (by its place in the scan), whatever order they were measured in.
  const lines: (string | undefined)[] = new Array(scan.images.length);
  const todo: { index: number; entry: ImageEntry; name: string }[] = [];
  const done = await Promise.all(scan.images.map((e, i) => earlier.has(e.path) && outputsExist(o.out, folders, names[i]!)));
  scan.images.forEach((entry, index) => {
    if (done[index]) lines[index] = earlier.get(entry.path)!.map(csvField).join(',');
    else todo.push({ index, entry, name: names[index]! });
  });
  const kept = scan.images.length - todo.length;
  const table = (): string => tableOf(structures, lines.filter((l) => l !== undefined));
  // The table so far: the kept rows now, each batch's rows appended after its files are written (a
  // killed run keeps what it measured, and --resume goes on from it); in the scan's order at the end.
  // Appending, not rewriting: rewriting after every batch is quadratic in a large archive's rows.
  const csv = path.join(o.out, 'measurements.csv');
  await writeFileAtomic(csv, table());
  const total = scan.images.length;

  // Decode ahead of the model (sharp and the DICOM codecs work off the main thread).
  type Decoded = { index: number; entry: ImageEntry; name: string; grey: GreyImage; normalised: Float32Array };
  const decode = async ({ index, entry, name }: { index: number; entry: ImageEntry; name: string }): Promise<Decoded | undefined> => {
    try {
      const grey = await decodeImageFile(entry.path);
      const frames = framesNote(entry.path, grey);
      if (frames) o.onWarning?.(`${frames}: its masks and measurements are the first frame's`);
      // Normalised in place: the raw values are not needed again (SEG and measurements read grey's
      // size and DICOM attributes), and a full-resolution copy is tens of megabytes to touch.
      return { index, entry, name, grey, normalised: normalizeIntensity(grey, model.meta.intensity, grey.data) };
    } catch (err) {
      skip(skippedBy(entry.path, err));
      return undefined;
    }
  };
  const pending = todo.slice(0, batchSize * 2).map(decode);
  let next = pending.length;
  let batch: Decoded[] = [];
  // A batch's files are written while the next batch goes through the model (sharp encodes off the
  // main thread), several images at a time up to WRITE_PIXELS; its rows are appended to the table
  // once its files are on disk, batch after batch.
  let written: Promise<void> = Promise.resolve();
  let writeFailure: unknown;
  const writeBatch = async (segmented: Decoded[], results: Awaited<ReturnType<typeof segmentImages>>, before: Promise<void>): Promise<void> => {
    const writing = inGroupsOfPixels(segmented, ({ grey }) => grey.width * grey.height, WRITE_PIXELS, async ({ entry, name, grey, normalised }, j) => {
      const { width, height } = grey;
      const { masks, measurements } = results[j]!;
      const row: MeasurementRow = { file: entry.path, name, width, height, ...measurements };
      await Promise.all([
        ...folders.map(async (folder, k) => writeFileAtomic(path.join(o.out, 'masks', folder, `${name}.png`), await maskPng(masks[k]!, width, height))),
        overlay(normalised, width, height, masks).then((png) => writeFileAtomic(path.join(o.out, 'overlays', `${name}.png`), png)),
      ]);
      if (entry.format === 'dicom' && !grey.dicom && o.dicomSeg !== false) {
        o.onWarning?.(`${entry.path}: no DICOM SEG written: the file lacks its SOP Class, SOP Instance, Study or Series Instance UID, which a SEG must reference (its masks and measurements are written)`);
      }
      // Beside the PNGs, in the source's own format and geometry: the mask lays on its image in
      // ITK-SNAP or 3D Slicer, and is what challenge pipelines (nnU-Net, grand-challenge.org) take.
      const native = grey.nifti
        ? { dir: 'nifti', ext: grey.nifti.compressed ? '.nii.gz' : '.nii', bytes: (k: number) => niftiMask(grey.nifti!, masks[k]!, `Eden mask: ${structures[k]}`) }
        : grey.metaimage
          ? { dir: 'metaimage', ext: '.mha', bytes: (k: number) => metaImageMask(grey.metaimage!, masks[k]!) }
          : undefined;
      if (native) {
        await Promise.all(folders.map(async (folder, k) => {
          const file = path.join(o.out, native.dir, folder, `${name}${native.ext}`);
          await fs.mkdir(path.dirname(file), { recursive: true });
          await writeFileAtomic(file, native.bytes(k));
        }));
      }
      if (grey.dicom && o.dicomSeg !== false) {
        await fs.mkdir(path.join(o.out, 'seg'), { recursive: true });
        const segFile = path.join(o.out, 'seg', `${name}.dcm`);
        await writeFileAtomic(segFile, writeSegmentation({ source: grey.dicom, rows: height, columns: width, masks, structures, algorithm: { name: `Eden U-Net (${model.meta.backbone.name})`, version: VERSION } }));
        row.seg = segFile;
      }
      return row;
    });
    writing.catch(() => undefined); // awaited below, once the batch before has settled
    // The batch before first: its rows are in the table, or its failure is the one reported.
    await before;
    const batchRows = await writing;
    const appended: string[] = [];
    batchRows.forEach((row, j) => {
      rows.push(row);
      appended.push((lines[segmented[j]!.index] = measurementLine(row, structures)));
      o.onImage?.(row, kept + rows.length, total);
    });
    await fs.appendFile(csv, appended.map((l) => `${l}\n`).join(''));
  };
  const flush = async (): Promise<void> => {
    if (writeFailure !== undefined) throw writeFailure; // a disk that refuses one batch refuses the next
    if (!batch.length) return;
    const results = await segmentImages(model, batch, threshold);
    written = writeBatch(batch, results, written);
    // Thrown where it is awaited (the next batch's write, the next flush, or the end); noted here so
    // that no more batches are computed for nothing, and Node does not call it unhandled meanwhile.
    written.catch((err: unknown) => (writeFailure = err));
    batch = [];
  };
  try {
    while (pending.length) {
      const d = await pending.shift()!;
      if (next < todo.length) pending.push(decode(todo[next++]!));
      if (d) batch.push(d);
      if (batch.length === batchSize) await flush();
    }
    await flush();
  } finally {
    await written.catch(() => undefined); // nothing is still writing when this returns or throws
  }
  await written;
  await writeFileAtomic(csv, table());
  return { rows, kept, skipped: skippedFiles, csv, seconds: (Date.now() - t0) / 1000 };
}
