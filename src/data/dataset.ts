/**
 * A dataset of images (and masks) decoded, converted to grey, resized to a square working size and
 * normalised to [0, 1], served as Float32Arrays. Decoding runs ahead of the consumer (`prefetch`
 * items in flight; sharp decodes on libuv's thread pool) and decoded samples are cached in memory
 * or on disk, so later epochs decode nothing. A file that fails to decode is reported through
 * `onSkip` once and left out from then on; nothing else stops.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describeError, EdenError } from '../core/errors.js';
import { decodeImageFile } from './decode.js';
import { framesNote, type GreyImage } from './grey-image.js';
import { orientMaskLike } from './orientation.js';
import { normalizeIntensity, type IntensityOptions } from './intensity.js';
import { resizeGrey } from './resize.js';
import { describeMask, skippedBy, skippedMask, type ImageEntry, type MaskSource, type SkippedFile } from './scan.js';
import { decodeRunLengthMask } from './mask-table.js';

export type CacheMode = 'memory' | 'disk' | 'none';

export interface ImageDatasetOptions {
  /** Side of the square working size in pixels (images are resized to size x size). */
  size: number;
  intensity?: IntensityOptions;
  /** Where decoded samples are kept: 'memory' (default), 'disk' (cacheDir), or 'none'. */
  cache?: CacheMode;
  /** Folder for the disk cache (default `.eden-cache` in the working directory). */
  cacheDir?: string;
  /** Called once per file that cannot be used. */
  onSkip?: (file: SkippedFile) => void;
  /**
   * Label values to read apart, per structure whose masks are label maps: `{ labels: [1, 2] }` adds
   * the masks 'labels:1' and 'labels:2' (the pixels holding exactly that value) beside 'labels'.
   */
  labelValues?: Record<string, number[]>;
  /**
   * Called once if the disk cache cannot be written (full disk, no permission; the images are still
   * served), and once per structure whose masks hold several label values (a label map).
   */
  onWarning?: (message: string) => void;
}

export interface Sample {
  index: number;
  entry: ImageEntry;
  /** [size * size] in [0, 1], row-major. */
  image: Float32Array;
  /** Binary masks [size * size] (0 or 1) per structure present for this image, and 'structure:value' per labelValues. */
  masks: Record<string, Float32Array>;
}

/**
 * The value a mask's structure pixels exceed. Masks drawn at full scale (0 / 255, edges
 * anti-aliased) hold the structure where the value is > 127 of 255 (scaled to the bit depth).
 * Masks written as label values — 0 / 1, as most segmentation tools save them, or another small
 * label — never reach that level and would read as empty: when no pixel does, every nonzero pixel
 * is the structure.
 */
export function maskThreshold(values: ArrayLike<number>, bitDepth: number): number {
  return maskValueRange(values, bitDepth).threshold;
}

/** A mask's largest value and its threshold (maskThreshold), in one pass. */
export function maskValueRange(values: ArrayLike<number>, bitDepth: number): { max: number; threshold: number } {
  const halfScale = (127 / 255) * (2 ** bitDepth - 1);
  let max = 0;
  for (let i = 0; i < values.length; i++) if (values[i]! > max) max = values[i]!;
  return { max, threshold: max > halfScale ? halfScale : 0 };
}

/** maskValueRange of a decoded mask: a palette or colour mask's values are labels, read at nonzero. */
export function decodedMaskRange(mask: GreyImage): { max: number; threshold: number } {
  const range = maskValueRange(mask.data, mask.bitDepth);
  return mask.labelValues ? { max: range.max, threshold: 0 } : range;
}

/**
 * Whether a mask lays on an image: the same size, or the same shape at another resolution
 * (annotations are often drawn on a downsampled copy; both are resized to the working size
 * anyway), within one pixel of rounding on the shorter side of a downsampled mask, and 1% at least.
 */
export function sameShape(mask: { width: number; height: number }, image: { width: number; height: number }): boolean {
  if (mask.width === image.width && mask.height === image.height) return true;
  const aspect = mask.width / mask.height / (image.width / image.height);
  const tolerance = Math.max(0.01, 1 / Math.min(mask.width, mask.height));
  return Math.abs(aspect - 1) <= tolerance;
}

/**
 * Why a mask cannot be laid on its image, or undefined when it can (sameShape). A different shape
 * is a mask of another image.
 */
export function maskSizeProblem(mask: { width: number; height: number }, image: { width: number; height: number }, imageFile: string): string | undefined {
  if (sameShape(mask, image)) return undefined;
  return `mask size ${mask.width}x${mask.height} differs from its image's ${image.width}x${image.height} in shape, not only in resolution (${imageFile})`;
}

/**
 * Decode the mask `file` of `image` (decoded from `imageFile`) as it lays on the image: turned with
 * the image's EXIF rotation when it was drawn on the stored pixels (orientMaskLike). A mask of
 * another shape is a problem, not an error: the caller reports it and keeps the image.
 */
export async function readMaskOf(source: MaskSource, image: GreyImage, imageFile: string): Promise<{ mask: GreyImage; turned: boolean; problem?: undefined } | { problem: string }> {
  const read = typeof source === 'string' ? { mask: await decodeImageFile(source, { mask: true }) } : await decodeRunLengthMask(source, image);
  if (read.problem !== undefined) return read;
  const decoded = read.mask;
  const mask = orientMaskLike(decoded, image, sameShape);
  const problem = maskSizeProblem(mask, image, imageFile);
  return problem ? { problem } : { mask, turned: mask !== decoded };
}

/** Label values a label-map warning lists at most. */
const LISTED_LABELS = 8;

/** The distinct nonzero values of a mask, ascending, at most `limit` of them. */
export function nonzeroValues(values: ArrayLike<number>, limit = LISTED_LABELS): number[] {
  const seen = new Set<number>();
  let last = 0; // runs of one value (a mask's regions) skip the set
  for (let i = 0; i < values.length && seen.size < limit; i++) {
    const v = values[i]!;
    if (v !== 0 && v !== last) seen.add((last = v));
  }
  return [...seen].sort((a, b) => a - b);
}

/**
 * A mask of label values holding more than one (1 = left lung, 2 = right lung ...) is a label map:
 * read as one structure, every nonzero pixel. The message that says so, or undefined.
 */
export function labelMapWarning(values: ArrayLike<number>, bitDepth: number, file: string, structure: string, threshold = maskThreshold(values, bitDepth), names: Pick<GreyImage, 'colours' | 'segments'> = {}): string | undefined {
  if (threshold !== 0) return undefined;
  // A colour mask's labels are its colours (anti-aliased edges between them are values too), a SEG's its segments.
  const { colours, segments } = names;
  const named = colours ?? segments;
  const labels = named ? Object.keys(named).map(Number).sort((a, b) => a - b).slice(0, LISTED_LABELS) : nonzeroValues(values);
  if (labels.length < 2) return undefined;
  const what = colours
    ? `a colour mask (${labels.map((v) => `${colours[v]} as ${v}`).join(', ')}`
    : segments
      ? `a DICOM SEG of several segments (${labels.map((v) => `'${segments[v]}' as ${v}`).join(', ')}`
      : `a label map (values ${labels.join(', ')}`;
  return `${file}: ${what}${labels.length === LISTED_LABELS ? ', ...' : ''}): every nonzero pixel is read as '${structure}'; to train the labels apart, select them as ${labels.slice(0, 2).map((v) => `${structure}:${v}`).join(', ')} (--structures), or name them with --combine, e.g. --combine left_lung=${structure}:${labels[0]}`;
}

/** The pixels of a label map that hold exactly `value`, as 0 / 1. */
export function labelValueMask(values: Float32Array, value: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] === value ? 1 : 0;
  return out;
}

/** Resize a 0 / 1 mask to size x size and binarise it again at one half. */
function resizeMask(mask: Float32Array, width: number, height: number, size: number): Float32Array {
  const resized = resizeGrey(mask, width, height, size, size);
  for (let i = 0; i < resized.length; i++) resized[i] = resized[i]! >= 0.5 ? 1 : 0;
  return resized;
}

/** A decoded mask as 0 / 1 (see maskThreshold; pass it when already known), into `out` (may be `values`). */
export function binarizeMask(values: Float32Array, bitDepth: number, threshold = maskThreshold(values, bitDepth), out: Float32Array = new Float32Array(values.length)): Float32Array {
  for (let i = 0; i < values.length; i++) out[i] = values[i]! > threshold ? 1 : 0;
  return out;
}

export class ImageDataset {
  readonly entries: ImageEntry[];
  readonly options: Required<Omit<ImageDatasetOptions, 'onSkip' | 'onWarning'>> & Pick<ImageDatasetOptions, 'onSkip' | 'onWarning'>;
  private readonly memory = new Map<number, Sample>();
  private readonly failed = new Map<number, SkippedFile>();
  /** Set when a disk-cache write failed: no further writes are tried. */
  private cacheWriteError: string | undefined;
  /** Structures whose label-map warning was given. */
  private readonly labelMapsReported = new Set<string>();
  /** Multi-frame files are said once (eden inspect counts them). */
  private framesReported = false;

  constructor(entries: ImageEntry[], options: ImageDatasetOptions) {
    if (!Number.isInteger(options.size) || options.size < 8) throw new EdenError('config', `image size must be an integer >= 8, got ${options.size}`);
    this.entries = entries;
    this.options = { intensity: {}, cache: 'memory', cacheDir: '.eden-cache', labelValues: {}, ...options };
  }

  get length(): number {
    return this.entries.length;
  }

  /** Files found unusable so far. */
  get skippedFiles(): SkippedFile[] {
    return [...this.failed.values()];
  }

  /** The sample at `index`, or undefined if its file cannot be used (reported once through onSkip). */
  async get(index: number): Promise<Sample | undefined> {
    if (this.failed.has(index)) return undefined;
    const cached = this.memory.get(index);
    if (cached) return cached;
    const entry = this.entries[index];
    if (!entry) throw new RangeError(`sample ${index} out of range [0, ${this.length})`);
    let sample: Sample;
    try {
      sample = (await this.readDiskCache(index, entry)) ?? (await this.load(index, entry));
    } catch (err) {
      const record = skippedBy(entry.path, err);
      this.failed.set(index, record);
      this.options.onSkip?.(record);
      return undefined;
    }
    if (this.options.cache === 'memory') this.memory.set(index, sample);
    return sample;
  }

  /**
   * Samples in `order`, decoded up to `prefetch` ahead of the consumer. Unusable files are skipped.
   */
  async *iterate(order: readonly number[] = [...this.entries.keys()], prefetch = 8): AsyncGenerator<Sample> {
    const inFlight: Promise<Sample | undefined>[] = [];
    let next = 0;
    const fill = (): void => {
      while (inFlight.length < Math.max(1, prefetch) && next < order.length) inFlight.push(this.get(order[next++]!));
    };
    fill();
    while (inFlight.length) {
      const sample = await inFlight.shift()!;
      fill();
      if (sample) yield sample;
    }
  }

  /** Decode every sample once (filling the cache); returns the indices that are usable. */
  async validate(onProgress?: (done: number, total: number) => void, prefetch = 8): Promise<number[]> {
    const usable: number[] = [];
    let done = 0;
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < this.length; i++) {
      inFlight.push(
        this.get(i).then((s) => {
          if (s) usable.push(i);
          onProgress?.(++done, this.length);
        }),
      );
      if (inFlight.length >= prefetch) await inFlight.shift();
    }
    await Promise.all(inFlight);
    return usable.sort((a, b) => a - b);
  }

  private async load(index: number, entry: ImageEntry): Promise<Sample> {
    const { size, intensity } = this.options;
    const grey = await decodeImageFile(entry.path);
    const frames = framesNote(entry.path, grey);
    if (frames && !this.framesReported) {
      this.framesReported = true;
      this.options.onWarning?.(`${frames} (said for the first such file; eden inspect counts them)`);
    }
    // In place: the raw values are not needed again.
    const normalised = normalizeIntensity(grey, intensity, grey.data);
    const image = resizeGrey(normalised, grey.width, grey.height, size, size);
    const masks: Record<string, Float32Array> = {};
    for (const [structure, source] of Object.entries(entry.masks ?? {})) {
      const read = await readMaskOf(source, grey, entry.path);
      if (read.problem !== undefined) {
        // Report the mask, keep the image (with its other structures).
        this.options.onSkip?.(skippedMask(source, read.problem));
        continue;
      }
      const m = read.mask;
      const { threshold } = decodedMaskRange(m);
      const values = this.options.labelValues[structure] ?? [];
      // A label map whose values are read apart needs no warning.
      if (!values.length && !this.labelMapsReported.has(structure)) {
        const warning = labelMapWarning(m.data, m.bitDepth, describeMask(source), structure, threshold, m);
        if (warning) {
          this.labelMapsReported.add(structure);
          this.options.onWarning?.(warning);
        }
      }
      // The label values first: the mask is then binarised in its own array (a full-resolution copy spared).
      const byValue = values.map((v) => resizeMask(m.segmentMasks?.[v] ? Float32Array.from(m.segmentMasks[v]) : labelValueMask(m.data, v), m.width, m.height, size));
      masks[structure] = resizeMask(binarizeMask(m.data, m.bitDepth, threshold, m.data), m.width, m.height, size);
      values.forEach((v, k) => (masks[`${structure}:${v}`] = byValue[k]!));
    }
    const sample = { index, entry, image, masks };
    await this.writeDiskCache(entry, sample);
    return sample;
  }

  /** The masks a complete sample of `entry` holds, in the disk cache's order. */
  private maskNames(entry: ImageEntry): string[] {
    const structures = Object.keys(entry.masks ?? {});
    return [...structures, ...structures.flatMap((s) => (this.options.labelValues[s] ?? []).map((v) => `${s}:${v}`))];
  }

  private async cacheFile(entry: ImageEntry): Promise<string> {
    // A table's mask by its row and column (the table's stamp says whether it changed; where its
    // runs were spilled this time does not).
    const files = [entry.path, ...Object.values(entry.masks ?? {}).map((m) => (typeof m === 'string' ? m : { table: m.table, key: m.key, column: m.column, order: m.order, size: [m.width, m.height] }))];
    const stats = await Promise.all(files.map((f) => fs.stat(typeof f === 'string' ? f : f.table)));
    // v 2: EXIF orientation applied in decoding, palette masks read by index (v 1 entries of such files differ).
    // v 3: masks with transparent pixels read where opaque, float TIFF samples kept (v 2 entries of such files differ).
    const key = createHash('sha1')
      .update(JSON.stringify({ v: 3, files, stamps: stats.map((s) => [s.size, s.mtimeMs]), size: this.options.size, intensity: this.options.intensity, masks: this.maskNames(entry) }))
      .digest('hex');
    return path.join(this.options.cacheDir, `${key}.f32`);
  }

  private async readDiskCache(index: number, entry: ImageEntry): Promise<Sample | undefined> {
    if (this.options.cache !== 'disk') return undefined;
    let buf: Buffer;
    try {
      buf = await fs.readFile(await this.cacheFile(entry));
    } catch {
      return undefined;
    }
    const n = this.options.size * this.options.size;
    const names = this.maskNames(entry);
    const floats = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    if (floats.length !== n * (1 + names.length)) return undefined; // stale or partial: decode again
    const masks: Record<string, Float32Array> = {};
    names.forEach((name, i) => (masks[name] = floats.subarray(n * (i + 1), n * (i + 2))));
    return { index, entry, image: floats.subarray(0, n), masks };
  }

  private async writeDiskCache(entry: ImageEntry, sample: Sample): Promise<void> {
    if (this.options.cache !== 'disk' || this.cacheWriteError) return;
    // Only complete samples (all masks present) are cached; a reported mask is re-checked next time.
    const names = this.maskNames(entry);
    if (Object.keys(sample.masks).length !== names.length) return;
    const parts = [sample.image, ...names.map((k) => sample.masks[k]!)];
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    const file = await this.cacheFile(entry);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(tmp, new Uint8Array(out.buffer));
      await fs.rename(tmp, file);
    } catch (err) {
      // A full disk is not the image's fault: serve it, stop caching, say so once (several
      // writes may be in flight when the first fails).
      if (!this.cacheWriteError) {
        this.cacheWriteError = describeError(err);
        this.options.onWarning?.(`the disk cache in ${this.options.cacheDir} cannot be written (${this.cacheWriteError}); images are decoded again when needed`);
      }
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}
