/** Option parsers shared by the commands; they throw commander errors so misuse exits with one line. */
import { InvalidArgumentError, Option } from 'commander';
import { parseRowCondition, RUN_ORDERS } from '../data/mask-table.js';

export function parseList(value: string): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expected a comma-separated list');
  return items;
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

export function parseNonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got '${value}'`);
  return n;
}

/** For repeatable options: each use appends its value. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** --masks of finetune, evaluate and inspect (scan.ts ScanOptions.masks). */
export const MASKS_HELP = "segmentation: the masks' folder (<structure>/ folders of masks, or one structure's masks in it, named as their images), when the data are not DATA/images + DATA/masks: then DATA is the images' folder (e.g. Montgomery's CXR_png with --masks ManualMask); the images' own folder when masks lie among them (DICOM SEGs beside their images); or a table of run-length masks (.csv, .tsv, .csv.gz: CheXmask's, Kaggle's), a row per image, a column of runs per structure (with --rle-order)";

/** --mask-rows beside --masks: a condition a masks table's rows must meet (mask-table.ts parseRowCondition). */
export function maskRowsOption(): Option {
  return new Option('--mask-rows <condition>', "with a masks table: use only its rows meeting COLUMN OP VALUE (OP: >= <= > < = !=), e.g. 'Dice RCA (Mean)>=0.7' for CheXmask's masks of good quality").argParser((v: string) => {
    try {
      parseRowCondition(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
    return v;
  });
}

/** --rle-order beside --masks: how a masks table's runs number the pixels (mask-table.ts). */
export function rleOrderOption(): Option {
  return new Option('--rle-order <order>', "with a masks table: whether its runs number the pixels along rows (left to right, then down: CheXmask) or along columns (top to bottom, then right: Kaggle's usual), starts counted from 1; -relative: each start counted from the previous run's end (SIIM-ACR's pneumothorax masks: columns-relative)").choices(RUN_ORDERS);
}

/** `--threads N` on the commands that compute: the native kernels' threads (also EDEN_THREADS). */
export const THREADS_HELP = 'threads of the native CPU kernels (default: all cores; also EDEN_THREADS); lower it on a shared machine';
