/**
 * Masks as run-length codes in a table (`--masks masks.csv`): how CheXmask ships heart and lung
 * masks for CheXpert, MIMIC-CXR, ChestX-ray8, PadChest and VinDr-CXR, and how Kaggle's segmentation
 * sets ship theirs. A row per image: a key column naming it (a path, a file name or a stem, matched
 * as a label manifest's keys are: manifest.ts), a column of runs per structure ('Left Lung',
 * 'Right Lung', 'Heart'; structures named left_lung, right_lung, heart), and optionally Height and
 * Width columns giving the mask's size (else the image's). Rows repeating a key add their runs to
 * the first (Kaggle's one row per object).
 *
 * Runs are '<start> <length> ...', starts counted from 1. Whether pixels are numbered along rows
 * (left to right, then down: CheXmask, numpy's flatten) or along columns (top to bottom, then right:
 * Kaggle's usual encoding) cannot be told from the runs of a square image (one reads as the other
 * transposed), so it is asked for (`--rle-order`). Tables as large as CheXmask's (gigabytes, .csv.gz)
 * are streamed: only the rows that may name an image of the folder are kept.
 */
import { parse } from 'csv-parse';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { configError, dataError } from '../core/errors.js';
import type { GreyImage } from './grey-image.js';
import { indexManifest, labelsForAll, normalKey, pathForms, sniffDelimiter } from './manifest.js';

/** How a table's runs number the pixels: along rows (row-major) or along columns (column-major). */
export const RUN_ORDERS = ['rows', 'columns'] as const;
export type RunOrder = (typeof RUN_ORDERS)[number];

/** One structure's mask of one image, as the runs of a table's cell. */
export interface RunLengthMask {
  table: string;
  /** The row's key, as written (for messages). */
  key: string;
  column: string;
  /** '<start> <length> ...', a cell per row of its key (Kaggle's rows per object), united. */
  runs: string[];
  order: RunOrder;
  /** The mask's size, when the table gives it (Height and Width columns); else its image's. */
  width?: number;
  height?: number;
}

/** A table of masks rather than a folder of them: a CSV or TSV, gzipped or not. */
export function isMaskTable(file: string): boolean {
  return /\.(csv|tsv)(\.gz)?$/i.test(file);
}

/** A cell of runs: integers, an even number of them; empty (or -1, Kaggle's "none") for an empty mask. */
const RUNS = /^\d+(\s+\d+)*$/;
const EMPTY = /^(|-1|nan|none)$/i;

function looksLikeRuns(value: string): boolean {
  return RUNS.test(value) && value.split(/\s+/).length % 2 === 0;
}

/** A structure's name from its column's: 'Left Lung' -> left_lung. */
export function structureOfColumn(column: string): string {
  return (
    column
      .trim()
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '') || 'mask'
  );
}

/** Rows of a (gzipped) CSV or TSV, streamed, as objects by header. */
async function* tableRows(file: string): AsyncGenerator<Record<string, string>> {
  const open = (): Readable => {
    const raw = createReadStream(file);
    return /\.gz$/i.test(file) ? raw.pipe(createGunzip()) : raw;
  };
  // The header line alone, for its delimiter (comma, semicolon or tab).
  let header = '';
  for await (const chunk of open()) {
    header += (chunk as Buffer).toString('utf8');
    if (header.includes('\n') || header.length > 1 << 20) break;
  }
  const parser = open().pipe(parse({ columns: true, skip_empty_lines: true, trim: true, bom: true, delimiter: sniffDelimiter(header), relax_column_count: true }));
  yield* parser as AsyncIterable<Record<string, string>>;
}

export interface MaskTable {
  /** The structures its columns of runs hold (named by structureOfColumn). */
  structures: string[];
  /** Per image (in the order given), its masks by structure; undefined where no row names it. */
  masks: (Record<string, RunLengthMask> | undefined)[];
  /** Images that rows name only ambiguously (several rows alike, or one row by file name for several images). */
  ambiguous: string[];
  keyColumn: string;
  rows: number;
}

/**
 * The masks `table` gives the images at `relPaths` (relative to their folder). Errors name the
 * table: unreadable, no columns of runs, no order said, no row naming any image.
 */
export async function readMaskTable(table: string, relPaths: string[], o: { order?: RunOrder }): Promise<MaskTable> {
  const forms = new Set(relPaths.flatMap(pathForms));
  const kept = new Map<string, Record<string, string>[]>(); // rows by key, in the table's order
  let columns: string[] | undefined;
  let keyColumn = '';
  let runColumns: string[] = [];
  // Per column, of the first rows' filled cells: how many hold runs and how many something else.
  const cells = new Map<string, { runs: number; other: number }>();
  const firstKeys: string[] = [];
  let rows = 0;
  try {
    for await (const record of tableRows(table)) {
      if (!columns) {
        columns = Object.keys(record);
        // The key column as a label manifest's; the columns of runs told by their first rows' values.
        keyColumn = indexManifest(table, [record]).keyColumn;
        runColumns = columns.filter((c) => c !== keyColumn);
      }
      rows++;
      if (rows <= 100) {
        for (const c of runColumns) {
          if (EMPTY.test(record[c] ?? '')) continue;
          const n = cells.get(c) ?? { runs: 0, other: 0 };
          n[looksLikeRuns(record[c]!) ? 'runs' : 'other']++;
          cells.set(c, n);
        }
      }
      const key = normalKey(record[keyColumn] ?? '');
      if (firstKeys.length < 3) firstKeys.push(key);
      if (!pathForms(key).some((f) => forms.has(f))) continue;
      // A repeated key: another object of the image (Kaggle's rows per object).
      const earlier = kept.get(key);
      if (earlier) earlier.push(record);
      else kept.set(key, [record]);
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw dataError(`${table}: cannot read the masks table (${e.code === 'ENOENT' ? 'no such file' : (e.message ?? String(err)).split('\n')[0]})`, err);
  }
  if (!columns || rows === 0) throw dataError(`${table}: the masks table has no rows`);
  // Kaggle's long form (a row per image and class: UW-Madison's, Severstal's) would unite the classes in one structure.
  const classColumn = columns.find((c) => c !== keyColumn && /^(class|class_?id|category|label)$/i.test(c.trim()));
  if (classColumn) throw dataError(`${table}: a row per image and class (column '${classColumn}') is not read: give each structure a column of runs of its own (or a table of its own)`);
  const sizeColumn = (name: string): string | undefined => columns!.find((c) => c.trim().toLowerCase() === name);
  const [heightColumn, widthColumn] = [sizeColumn('height'), sizeColumn('width')];
  // A column of masks: runs in most of its first filled cells (a malformed one is its mask's problem, said when read).
  runColumns = runColumns.filter((c) => (cells.get(c)?.runs ?? 0) > (cells.get(c)?.other ?? 0) && c !== heightColumn && c !== widthColumn);
  if (!runColumns.length) throw dataError(`${table}: no column of run-length masks ('<start> <length> ...' in most of its first rows) beside the key column '${keyColumn}'; columns are ${columns.join(', ')}`);
  if (!o.order) {
    throw configError(
      `${table}: say how its runs number the pixels: --rle-order rows (left to right, then down: CheXmask, numpy's flatten) or --rle-order columns (top to bottom, then right: Kaggle's usual encoding); a square mask read the other way is its transpose, so it cannot be guessed`,
    );
  }
  const order = o.order;
  const structures = runColumns.map(structureOfColumn);
  const repeated = structures.find((s, i) => structures.indexOf(s) !== i);
  if (repeated) throw dataError(`${table}: two columns name the structure '${repeated}' (${runColumns.filter((c) => structureOfColumn(c) === repeated).join(', ')})`);
  if (kept.size === 0) {
    throw dataError(`${table}: none of its ${rows} rows names an image of the folder (key column '${keyColumn}', e.g. ${firstKeys.join(', ')}; images such as ${relPaths.slice(0, 2).join(', ') || 'none'}); the key column must hold the images' paths, file names or stems`);
  }
  const manifest = indexManifest(table, [...kept.values()].map((rs) => rs[0]!), { keyColumn, labelColumns: columns });
  const { labels, ambiguous } = labelsForAll(manifest, relPaths);
  const dimension = (row: Record<string, string>, column: string | undefined): number | undefined => {
    const v = column === undefined ? NaN : Number(row[column]);
    return Number.isInteger(v) && v > 0 ? v : undefined;
  };
  const masks = labels.map((row) => {
    if (!row) return undefined;
    const [height, width] = [dimension(row, heightColumn), dimension(row, widthColumn)];
    const size = height && width ? { height, width } : {};
    const rowsOfKey = kept.get(normalKey(row[keyColumn]!))!;
    return Object.fromEntries(runColumns.map((c, k) => [structures[k]!, { table, key: row[keyColumn]!, column: c, runs: rowsOfKey.map((r) => (r[c] ?? '').trim()).filter((v) => !EMPTY.test(v)), order, ...size } satisfies RunLengthMask]));
  });
  return { structures, masks, ambiguous, keyColumn, rows };
}

/** Where a table's mask is, for messages: 'masks.csv (row a.png, column Heart)'. */
export function describeRunLengthMask(m: RunLengthMask): string {
  return `${m.table} (row ${m.key}, column ${m.column})`;
}

/**
 * A table's mask decoded at its size (the table's, else `image`'s): 0 / 255, 8-bit. A problem (runs
 * that are not integers, out of order or overlapping, or past the mask's end) is returned, not thrown.
 */
export function decodeRunLengthMask(m: RunLengthMask, image: { width: number; height: number }): { mask: GreyImage; problem?: undefined } | { problem: string } {
  const [width, height] = [m.width ?? image.width, m.height ?? image.height];
  const data = new Float32Array(width * height);
  const mask: GreyImage = { width, height, data, bitDepth: 8, encoding: `rle/${m.order}` };
  for (const runs of m.runs) {
    const problem = paintRuns(runs, m.order, data, width, height, m.width ? '' : ' (the size of its image; give Height and Width columns if the masks were drawn at another)');
    if (problem) return { problem };
  }
  return { mask };
}

/** One cell's runs painted (255) into `data`; the problem with them, if any. */
function paintRuns(runs: string, order: RunOrder, data: Float32Array, width: number, height: number, sizeFrom: string): string | undefined {
  if (!looksLikeRuns(runs)) return `not run-length codes ('<start> <length> ...', integers in pairs): '${runs.slice(0, 40)}${runs.length > 40 ? '...' : ''}'`;
  const numbers = runs.split(/\s+/).map(Number);
  const n = width * height;
  let end = 0; // where the previous run ended (0-based, exclusive)
  for (let i = 0; i < numbers.length; i += 2) {
    const [start, length] = [numbers[i]! - 1, numbers[i + 1]!];
    if (start < 0) return `run ${i / 2 + 1} starts at 0: starts count from 1 (the first pixel is 1)`;
    // Kaggle's SIIM-ACR pneumothorax set counts each start from the previous run's end: not these codes.
    if (start < end) return `run ${i / 2 + 1} starts at ${start + 1}, before the previous run's end (${end}): runs must be absolute 1-based starts in increasing order (relative offsets, as in SIIM-ACR's, are not read)`;
    if (start + length > n) return `run ${i / 2 + 1} (${start + 1} ${length}) ends past the ${width}x${height} mask's ${n} pixels${sizeFrom}`;
    if (order === 'rows') data.fill(255, start, start + length);
    else for (let p = start; p < start + length; p++) data[(p % height) * width + Math.floor(p / height)] = 255;
    end = start + length;
  }
  return undefined;
}
