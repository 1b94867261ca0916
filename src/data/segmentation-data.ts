/**
 * A labelled segmentation folder (images/ + masks/<structure>/, masks/ for one structure, the two
 * folders named apart: --masks, or a folder of images and a masks table) loaded at one square size: every image with all requested masks,
 * and a seeded, fixed split into a test set and a train pool.
 * Structures can be united (`combine`, e.g. lungs = left_lung + right_lung) or derived (smaller,
 * harder targets such as lungs:apex, see anatomy/targets.ts). Images lacking a requested mask are
 * reported and left out.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { deriveSeed, Rng } from '../core/rng.js';
import { deriveMask, parseDerived, parseLabelValue } from './derived-structures.js';
import { formatBytes, memoryRefusal } from './cache-plan.js';
import { isMaskTable, type RunOrder } from './mask-table.js';
import { ImageDataset, type Sample } from './dataset.js';
import { describeMaskTable, masksFolderHint, scanDataset, type ImageEntry } from './scan.js';

/** A masks table this large is said before it is read (148 MB gzipped took 10 s on 2 cores). */
const LARGE_TABLE_BYTES = 100e6;

/** An image and a mask per structure, at one size. */
export interface LabelledSample {
  readonly file: string;
  readonly image: Float32Array;
  readonly masks: Float32Array[];
}

export interface SegmentationData {
  root: string;
  structures: string[];
  /** The folder's labelled images (usable or not), when `maxImages` drew fewer of them. */
  labelled?: number;
  /** Samples with every structure's mask, at the evaluation size. */
  samples: LabelledSample[];
  test: number[];
  trainPool: number[];
}

/** What a segmentation folder's loading needs to know (the options of loadSegmentationData and planSegmentationData). */
export interface SegmentationOptions {
  masks?: string;
  /** How a masks table's runs number the pixels, and the condition its rows must meet (scan.ts ScanOptions.rleOrder, maskRows). */
  rleOrder?: RunOrder;
  maskRows?: string;
  structures?: string[];
  combine?: Record<string, string[]>;
  keepCombined?: boolean;
  onSkip?: (m: string) => void;
  onWarning?: (m: string) => void;
  /** What is worth saying on the way (a masks table's rows and the images they name). */
  onLog?: (m: string) => void;
}

/** A labelled folder before decoding: its structures, and the images holding a mask for each. */
export interface SegmentationPlan {
  root: string;
  structures: string[];
  /** The images with every mask the structures need, in the folder's order. */
  entries: ImageEntry[];
  /** How a structure's pixels are marked in its masks (for messages). */
  marks(structure: string): string;
  /**
   * The entries at `order` (indices into `entries`), decoded at `size`, unusable ones reported and
   * passed over, until `enough` are usable (default all); each sample as `keep` makes it (default
   * as it is; a SampleStore's put keeps it on disk).
   */
  decode(size: number, order?: readonly number[], enough?: number, keep?: (sample: LabelledSample) => LabelledSample): Promise<LabelledSample[]>;
}

/**
 * Load a segmentation folder: `structures` filters, `combine` unites masks into a new structure
 * (e.g. lungs = left_lung + right_lung). A structure whose masks are label maps is split by value:
 * 'labels:2' is the pixels holding 2 (in `structures`, in `combine`: left_lung = labels:1, or as
 * the base of a derived structure). By default the structures are the combined ones and the folder's
 * others (all of the folder's too with `keepCombined`). Images lacking any requested mask are left out.
 */
export async function loadSegmentationData(root: string, size: number, o: SegmentationOptions & LoadLimits & { testFraction: number; maxTestImages: number; seed: number }): Promise<SegmentationData> {
  const plan = await planSegmentationData(root, o);
  const n = Math.min(plan.entries.length, o.maxImages ?? Infinity);
  // Held in memory: refused before decoding when they would not fit.
  const perImage = decodedSampleBytes(size, plan.structures.length);
  if (o.memory && n * perImage > o.memory.bytes) {
    throw memoryRefusal(`${root}: ${n} labelled images at ${size} px`, n * perImage, 'as float32 with their masks', o.memory.bytes, o.memory.remedy(Math.floor(o.memory.bytes / perImage)));
  }
  const drawn = n < plan.entries.length;
  // maxImages of them: drawn by the seed, decoded until that many are usable, kept in the folder's order.
  const samples = drawn ? inFolderOrder(plan, await plan.decode(size, new Rng(deriveSeed(o.seed, 23)).shuffle([...plan.entries.keys()]), n)) : await plan.decode(size);
  checkSegmentationSamples(plan, samples, size);
  const order = new Rng(deriveSeed(o.seed, 21)).shuffle([...samples.keys()]);
  const nTest = Math.min(o.maxTestImages, Math.max(1, Math.round(samples.length * o.testFraction)));
  return { root, structures: plan.structures, ...(drawn && { labelled: plan.entries.length }), samples, test: order.slice(0, nTest).sort((a, b) => a - b), trainPool: order.slice(nTest).sort((a, b) => a - b) };
}

/** How much of a folder loadSegmentationData may hold. */
export interface LoadLimits {
  /** Use at most this many of the labelled images (drawn with the seed). */
  maxImages?: number;
  /** Refuse, before decoding, what would take more memory than `bytes`, saying what to do (`remedy`, given how many images fit). */
  memory?: { bytes: number; remedy: (fits: number) => string };
}

/** Bytes a decoded sample takes: its image and a mask per structure, float32 at `size` x `size`. */
export function decodedSampleBytes(size: number, structures: number): number {
  return size * size * 4 * (1 + structures);
}

/** Samples sorted as their files lie in the plan (the folder's order). */
export function inFolderOrder<T extends { file: string }>(plan: Pick<SegmentationPlan, 'entries'>, samples: T[]): T[] {
  const place = new Map(plan.entries.map((e, i) => [e.path, i]));
  return [...samples].sort((a, b) => place.get(a.file)! - place.get(b.file)!);
}

/** A folder's samples are usable for training and scoring: at least 2, and every structure marked in one at least. */
export function checkSegmentationSamples(plan: Pick<SegmentationPlan, 'root' | 'structures' | 'marks'>, samples: SegmentationData['samples'], size: number): void {
  const { root, structures } = plan;
  if (samples.length < 2) throw new EdenError('data', `${root}: ${samples.length} usable image(s) with all masks; need at least 2`);
  // A structure no mask marks would train and score a model on nothing (a Dice of 0 with no reason given).
  structures.forEach((s, k) => {
    if (samples.every((x) => !x.masks[k]!.some((v) => v > 0.5))) {
      throw new EdenError('data', `${root}: every mask of '${s}' is empty at ${size} px (${samples.length} images); check that ${plan.marks(s)} (eden inspect shows the masks' values)`);
    }
  });
}

/**
 * A segmentation folder scanned and its structures resolved (loadSegmentationData's rules), nothing
 * decoded: what fine-tuning on a few of thousands of labelled images needs (planned, then only the
 * images drawn decoded).
 */
export async function planSegmentationData(root: string, o: SegmentationOptions): Promise<SegmentationPlan> {
  // A large masks table (CheXmask's run to gigabytes) takes a while to stream: said before, not only after.
  const tableBytes = o.masks && isMaskTable(o.masks) ? ((await fs.stat(o.masks).catch(() => undefined))?.size ?? 0) : 0;
  if (tableBytes > LARGE_TABLE_BYTES) o.onLog?.(`reading the masks table ${o.masks} (${formatBytes(tableBytes)}) for the rows naming images of ${root}`);
  const scan = await scanDataset([root], { masks: o.masks, rleOrder: o.rleOrder, maskRows: o.maskRows });
  if (scan.layout !== 'segmentation') throw new EdenError('data', `${root}: segmentation needs images/ + masks/<structure>/ in it, or its images' folder with the masks' folder named apart (--masks DIR)${await hintText(root)}`);
  for (const s of scan.skipped) o.onSkip?.(s.message);
  if (scan.maskTable) o.onLog?.(describeMaskTable(scan.maskTable));
  const masksDir = o.masks ?? path.join(root, 'masks');
  if (!scan.structures.length) throw new EdenError('data', `${masksDir}: no masks; put each structure's masks in <structure>/ folders there (or the masks of a single structure directly in it), named as their images`);
  const combine = o.combine ?? {};
  // A mask is a structure of the folder or one value of one ('labels:2', a label map's label).
  const folderOf = (mask: string): string => parseLabelValue(mask)?.base ?? mask;
  const found = `found ${scan.structures.join(', ')}`;
  for (const [name, parts] of Object.entries(combine)) for (const p of parts) if (!scan.structures.includes(folderOf(p))) throw new EdenError('data', `${root}: --combine ${name}=${parts.join('+')} names '${p}', but there is no structure '${folderOf(p)}'; ${found}`);
  // A structure combined, or a label map split into values, is not also a structure of its own by
  // default (unless keepCombined: the probes look for heart and lungs by their folders' names too).
  const consumed = new Set(o.keepCombined ? [] : Object.values(combine).flat().map(folderOf));
  const structures = o.structures ?? [...Object.keys(combine), ...scan.structures.filter((s) => !consumed.has(s))];
  if (!structures.length) throw new EdenError('config', `${root}: no structures asked for; ${found}`);
  // A derived structure (targets.ts) names its base mask: a structure of the folder or a combined one.
  const derived = new Map(structures.map((s) => [s, parseDerived(s)] as const));
  const baseOf = (s: string): string => derived.get(s)?.base ?? s;
  const partsOf = (s: string): string[] => combine[baseOf(s)] ?? [baseOf(s)];
  for (const s of structures) {
    const b = baseOf(s);
    if (!scan.structures.includes(folderOf(b)) && !combine[b]) throw new EdenError('data', `${root}: no structure '${folderOf(b)}'${folderOf(b) !== s ? ` (in '${s}')` : ''}; ${found}${Object.keys(combine).length ? ` and combined ${Object.keys(combine).join(', ')}` : ''}`);
  }
  const labelValues: Record<string, number[]> = {};
  for (const part of structures.flatMap(partsOf)) {
    const lv = parseLabelValue(part);
    if (lv && !labelValues[lv.base]?.includes(lv.value)) (labelValues[lv.base] ??= []).push(lv.value);
  }
  // Images lacking a mask file of a structure are left out before anything is decoded.
  const folders = [...new Set(structures.flatMap(partsOf).map(folderOf))];
  const entries = scan.images.filter((e) => {
    const complete = folders.every((f) => e.masks?.[f]);
    if (!complete) o.onSkip?.(`${e.path}: left out (missing a mask of ${structures.join(', ')})`);
    return complete;
  });
  return {
    root,
    structures,
    entries,
    marks: (s) =>
      partsOf(s)
        .map((p) => {
          const lv = parseLabelValue(p);
          return lv ? `the masks of '${lv.base}' hold the value ${lv.value}` : `the masks of '${p}' mark the structure with nonzero pixels`;
        })
        .join(' and '),
    async decode(size, order = [...entries.keys()], enough = order.length, keep = (x) => x) {
      const samples: LabelledSample[] = [];
      if (enough <= 0) return samples;
      const dataset = new ImageDataset(entries, { size, cache: 'none', labelValues, onSkip: (x) => o.onSkip?.(x.message), onWarning: o.onWarning });
      // Up to 8 images decoded at once, never more than are still wanted: an image after the last
      // one needed is not read (nor reported), however many the folder holds.
      const inFlight: Promise<Sample | undefined>[] = [];
      let next = 0;
      const fill = (): void => {
        while (inFlight.length < 8 && samples.length + inFlight.length < enough && next < order.length) inFlight.push(dataset.get(order[next++]!));
      };
      for (fill(); inFlight.length; fill()) {
        const sample = await inFlight.shift()!;
        if (!sample) continue;
        const masks = structures.map((s) => {
          const base = unite(sample, partsOf(s));
          const d = derived.get(s);
          return base && d ? deriveMask(base, size, d) : base;
        });
        // A mask that could not be used (reported by the dataset) leaves its image out.
        if (masks.some((m) => m === undefined)) {
          o.onSkip?.(`${sample.entry.path}: left out (missing a mask of ${structures.join(', ')})`);
          continue;
        }
        samples.push(keep({ file: sample.entry.path, image: sample.image, masks: masks as Float32Array[] }));
      }
      return samples;
    },
  };
}

function unite(sample: Sample, parts: string[]): Float32Array | undefined {
  const ms = parts.map((p) => sample.masks[p]);
  if (ms.some((m) => !m)) return undefined;
  const out = new Float32Array(ms[0]!.length);
  for (const m of ms) for (let i = 0; i < out.length; i++) if (m![i]! > 0.5) out[i] = 1;
  return out;
}



async function hintText(root: string): Promise<string> {
  const hint = await masksFolderHint(root);
  return hint ? `; here ${path.basename(hint.images)}/ looks like the images and ${path.basename(hint.masks)}/ like their masks: --data ${hint.images} --masks ${hint.masks}` : '';
}
