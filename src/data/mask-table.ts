/**
 * Masks as run-length codes in a table (`--masks masks.csv`): how CheXmask ships heart and lung
 * masks for CheXpert, MIMIC-CXR, ChestX-ray8, PadChest and VinDr-CXR, and how Kaggle's segmentation
 * sets ship theirs. A row per image: a key column naming it (a path, a file name or a stem, matched
 * as a label manifest's keys are: manifest.ts), a column of runs per structure ('Left Lung',
 * 'Right Lung', 'Heart'; structures named left_lung, right_lung, heart), and optionally Height and
 * Width columns giving the mask's size (else the image's). Rows repeating a key add their runs to
 * the first (Kaggle's one row per object). Or Kaggle's long form: a row per image and class, the
 * class in a `class` / `ClassId` / `category` / `label` column beside one column of runs (Severstal's,
 * UW-Madison's): a structure a class, empty for an image without a row of it.
 *
 * Runs are '<start> <length> ...', starts counted from 1 (or, SIIM-ACR's, from the previous run's
 * end). Whether pixels are numbered along rows (left to right, then down: CheXmask, numpy's
 * flatten) or along columns (top to bottom, then right: Kaggle's usual encoding) cannot be told
 * from the runs of a square image (one reads as the other transposed), so it is asked for
 * (`--rle-order`). A condition may choose the rows (`--mask-rows`: CheXmask's quality column).
 * Tables as large as CheXmask's (gigabytes, .csv.gz) are streamed once a process: only the rows
 * that may name an image of the folder are kept, their runs in a temporary file (RunSpill).
 */
import { parse } from 'csv-parse';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { configError, dataError, EdenError } from '../core/errors.js';
import type { GreyImage } from './grey-image.js';
import { indexManifest, keyColumnOf, labelsForAll, normalKey, pathForms, sniffDelimiter } from './manifest.js';

/**
 * How a table's runs number the pixels: along rows (row-major) or along columns (column-major),
 * starts counted from the first pixel (1-based) or, '-relative', from the previous run's end
 * (0 = the next pixel; the first run's from the first pixel, 0-based): SIIM-ACR's pneumothorax
 * masks are 'columns-relative'.
 */
export const RUN_ORDERS = ['rows', 'columns', 'rows-relative', 'columns-relative'] as const;
export type RunOrder = (typeof RUN_ORDERS)[number];

/** Where a kept cell's runs lie in a RunSpill's file. */
export interface SpilledCell {
  file: string;
  offset: number;
  length: number;
}

/** One structure's mask of one image, as the runs of a table's cell. */
export interface RunLengthMask {
  table: string;
  /** The row's key, as written (for messages). */
  key: string;
  column: string;
  /** Its runs ('<start> <length> ...'), a cell per row of its key (Kaggle's rows per object), united. */
  cells: SpilledCell[];
  order: RunOrder;
  /** The mask's size, when the table gives it (Height and Width columns); else its image's. */
  width?: number;
  height?: number;
}

/** A condition on a table's rows ('Dice RCA (Mean)>=0.7'): numbers compared as numbers, else as text (= and != only). */
export interface RowCondition {
  column: string;
  op: '>=' | '<=' | '!=' | '=' | '>' | '<';
  value: string;
}

/** 'COLUMN OP VALUE' read, or an error saying the form. */
export function parseRowCondition(text: string): RowCondition {
  const m = /^(.+?)\s*(>=|<=|!=|=|>|<)\s*(.+)$/.exec(text.trim());
  if (!m) throw configError(`--mask-rows '${text}': expected COLUMN OP VALUE, OP one of >= <= > < = != (e.g. 'Dice RCA (Mean)>=0.7')`);
  return { column: m[1]!.trim(), op: m[2] as RowCondition['op'], value: m[3]!.trim() };
}

function meets(cell: string | undefined, c: RowCondition): boolean {
  const [a, b] = [Number(cell), Number(c.value)];
  const numbers = cell !== undefined && cell.trim() !== '' && Number.isFinite(a) && Number.isFinite(b);
  switch (c.op) {
    case '=':
      return numbers ? a === b : cell === c.value;
    case '!=':
      return numbers ? a !== b : cell !== c.value;
    default:
      if (!numbers) return false; // no number to compare: the row is not kept
      return c.op === '>=' ? a >= b : c.op === '<=' ? a <= b : c.op === '>' ? a > b : a < b;
  }
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
  /** Rows naming images that the condition (`where`) left out. */
  leftOut: number;
}

/** Rows read before the columns of runs are told (by their filled cells). */
const SNIFFED_ROWS = 100;

/** Tables read in this process, by what their reading depends on (readMaskTable). */
const readings = new Map<string, Promise<MaskTable>>();

/**
 * The masks `table` gives the images at `relPaths` (relative to their folder). Errors name the
 * table: unreadable, no columns of runs, no order said (after its first rows, not its last), no
 * row naming any image. The runs kept are spilled to a temporary file (RunSpill): CheXmask's
 * CheXpert table at full resolution holds some 40 KB of runs an image, gigabytes for a folder.
 * A table read again by the same process for the same images, unchanged, is not streamed again
 * (eden evaluate loads its data once for few-shot segmentation and once for the probes).
 */
export async function readMaskTable(table: string, relPaths: string[], o: { order?: RunOrder; where?: string }): Promise<MaskTable> {
  const stamp = await fs.stat(table).catch(() => undefined);
  if (!stamp) return streamMaskTable(table, relPaths, o); // says what is wrong
  const images = createHash('sha1').update(relPaths.join('\n')).digest('hex');
  const key = JSON.stringify([path.resolve(table), stamp.size, stamp.mtimeMs, o.order, o.where, images]);
  let reading = readings.get(key);
  if (!reading) {
    readings.set(key, (reading = streamMaskTable(table, relPaths, o)));
    reading.catch(() => readings.delete(key));
  }
  return reading;
}

async function streamMaskTable(table: string, relPaths: string[], o: { order?: RunOrder; where?: string }): Promise<MaskTable> {
  const where = o.where === undefined ? undefined : parseRowCondition(o.where);
  let leftOut = 0;
  const forms = new Set(relPaths.flatMap(pathForms));
  // The rows naming images, by key: the first's key and size (for matching), every one's cells.
  const kept = new Map<string, { row: Record<string, string>; cells: Record<string, SpilledCell[]> }>();
  let columns: string[] = [];
  let keyColumn = '';
  let runColumns: string[] = [];
  let sizeColumns: { height?: string; width?: string } = {};
  // Kaggle's long form: a row per image and class, the class in a column of its own, one column of runs.
  let byClass: { classColumn: string; runColumn: string } | undefined;
  const classes = new Set<string>();
  // Per column, of the first rows' filled cells: how many hold runs and how many something else.
  const cells = new Map<string, { runs: number; other: number }>();
  const sniffed: Record<string, string>[] = [];
  const firstKeys: string[] = [];
  let rows = 0;
  const spill = await RunSpill.create();
  const keep = async (record: Record<string, string>): Promise<void> => {
    const label = byClass && (record[byClass.classColumn] ?? '').trim();
    if (label !== undefined) classes.add(label); // every row's, naming an image of the folder or not: the structures are the table's
    const key = normalKey(record[keyColumn] ?? '');
    if (firstKeys.length < 3) firstKeys.push(key);
    if (!pathForms(key).some((f) => forms.has(f))) return;
    if (where && !meets(record[where.column], where)) {
      leftOut++;
      return;
    }
    // A repeated key: another object of the image (Kaggle's rows per object).
    let entry = kept.get(key);
    if (!entry) {
      const row = Object.fromEntries([keyColumn, sizeColumns.height, sizeColumns.width].filter((c) => c !== undefined).map((c) => [c, record[c] ?? '']));
      kept.set(key, (entry = { row, cells: Object.fromEntries(runColumns.map((c) => [c, []])) }));
    }
    for (const c of runColumns) {
      const value = (record[c] ?? '').trim();
      // By class, the cells of a class's rows together (an image without a row of a class: an empty mask).
      if (!EMPTY.test(value)) (entry.cells[label ?? c] ??= []).push(await spill.append(value));
    }
  };
  // After the first rows: the columns of runs, and what the table cannot be read without.
  const decide = (): void => {
    if (where && !columns.includes(where.column)) throw configError(`--mask-rows '${o.where}': ${table} has no column '${where.column}'; columns are ${columns.join(', ')}`);
    const classColumn = columns.find((c) => c !== keyColumn && /^(class|class_?id|category|label)$/i.test(c.trim()));
    const sizeColumn = (name: string): string | undefined => columns.find((c) => c.trim().toLowerCase() === name);
    sizeColumns = { height: sizeColumn('height'), width: sizeColumn('width') };
    // A column of masks: runs in most of its first filled cells (a malformed one is its mask's problem, said when read).
    runColumns = columns.filter((c) => c !== keyColumn && c !== classColumn && (cells.get(c)?.runs ?? 0) > (cells.get(c)?.other ?? 0) && c !== sizeColumns.height && c !== sizeColumns.width);
    if (!runColumns.length) throw dataError(`${table}: no column of run-length masks ('<start> <length> ...' in most of its first rows) beside the key column '${keyColumn}'; columns are ${columns.join(', ')}`);
    if (classColumn) {
      // Several columns of runs beside a class column: which class a cell is would be a guess.
      if (runColumns.length > 1) throw dataError(`${table}: a row per image and class (column '${classColumn}') takes one column of runs; found ${runColumns.join(', ')}`);
      byClass = { classColumn, runColumn: runColumns[0]! };
    }
    if (!o.order) {
      throw configError(
        `${table}: say how its runs number the pixels: --rle-order rows (left to right, then down: CheXmask, numpy's flatten) or --rle-order columns (top to bottom, then right: Kaggle's usual encoding), or columns-relative (SIIM-ACR's: each start counted from the previous run's end); a square mask read the other way is its transpose, so it cannot be guessed`,
      );
    }
    const structures = runColumns.map(structureOfColumn);
    const repeated = structures.find((s, i) => structures.indexOf(s) !== i);
    if (repeated && !byClass) throw dataError(`${table}: two columns name the structure '${repeated}' (${runColumns.filter((c) => structureOfColumn(c) === repeated).join(', ')})`);
  };
  const decided = async (): Promise<void> => {
    decide();
    for (const r of sniffed) await keep(r);
    sniffed.length = 0;
  };
  try {
    try {
      for await (const record of tableRows(table)) {
        if (rows++ === 0) {
          columns = Object.keys(record);
          keyColumn = keyColumnOf(columns); // as a label manifest's
        }
        if (rows > SNIFFED_ROWS) {
          await keep(record);
          continue;
        }
        for (const c of columns) {
          if (c === keyColumn || EMPTY.test(record[c] ?? '')) continue;
          const n = cells.get(c) ?? { runs: 0, other: 0 };
          n[looksLikeRuns(record[c]!) ? 'runs' : 'other']++;
          cells.set(c, n);
        }
        sniffed.push(record);
        if (rows === SNIFFED_ROWS) await decided();
      }
    } catch (err) {
      if (err instanceof EdenError) throw err;
      const e = err as NodeJS.ErrnoException;
      throw dataError(`${table}: cannot read the masks table (${e.code === 'ENOENT' ? 'no such file' : (e.message ?? String(err)).split('\n')[0]})`, err);
    }
    if (rows === 0) throw dataError(`${table}: the masks table has no rows`);
    if (rows < SNIFFED_ROWS) await decided();
    await spill.close();
  } catch (err) {
    await spill.remove();
    throw err;
  }
  if (kept.size === 0) {
    await spill.remove();
    if (leftOut) throw dataError(`${table}: every row naming an image of the folder (${leftOut}) fails --mask-rows '${o.where}'`);
    throw dataError(`${table}: none of its ${rows} rows names an image of the folder (key column '${keyColumn}', e.g. ${firstKeys.join(', ')}; images such as ${relPaths.slice(0, 2).join(', ') || 'none'}); the key column must hold the images' paths, file names or stems`);
  }
  const order = o.order!;
  // Wide: a structure a column of runs; long: a structure a class ('stomach', or 'classid_3' for Severstal's numbers).
  const sources = byClass ? [...classes].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })) : runColumns;
  const structureOf = (source: string): string => (!byClass ? structureOfColumn(source) : /^[^a-z]/i.test(source) ? structureOfColumn(`${byClass.classColumn}_${source}`) : structureOfColumn(source));
  const structures = sources.map(structureOf);
  const repeated = structures.find((s, i) => structures.indexOf(s) !== i);
  if (repeated) {
    await spill.remove();
    throw dataError(`${table}: the classes ${sources.filter((c) => structureOf(c) === repeated).join(', ')} of column '${byClass!.classColumn}' name one structure, '${repeated}'`);
  }
  const manifest = indexManifest(table, [...kept.values()].map((k) => k.row), { keyColumn, labelColumns: Object.keys([...kept.values()][0]!.row) });
  const { labels, ambiguous } = labelsForAll(manifest, relPaths);
  const dimension = (row: Record<string, string>, column: string | undefined): number | undefined => {
    const v = column === undefined ? NaN : Number(row[column]);
    return Number.isInteger(v) && v > 0 ? v : undefined;
  };
  const masks = labels.map((row) => {
    if (!row) return undefined;
    const [height, width] = [dimension(row, sizeColumns.height), dimension(row, sizeColumns.width)];
    const size = height && width ? { height, width } : {};
    const entry = kept.get(normalKey(row[keyColumn]!))!;
    const column = (source: string): string => (byClass ? `${byClass.runColumn} (${byClass.classColumn} ${source})` : source);
    return Object.fromEntries(sources.map((c, k) => [structures[k]!, { table, key: row[keyColumn]!, column: column(c), cells: entry.cells[c] ?? [], order, ...size } satisfies RunLengthMask]));
  });
  return { structures, masks, ambiguous, keyColumn, rows, leftOut };
}

/** Where a table's mask is, for messages: 'masks.csv (row a.png, column Heart)'. */
export function describeRunLengthMask(m: RunLengthMask): string {
  return `${m.table} (row ${m.key}, column ${m.column})`;
}

/**
 * A table's mask decoded at its size (the table's, else `image`'s): 0 / 255, 8-bit. A problem (runs
 * that are not integers, out of order or overlapping, or past the mask's end) is returned, not thrown.
 */
export async function decodeRunLengthMask(m: RunLengthMask, image: { width: number; height: number }): Promise<{ mask: GreyImage; problem?: undefined } | { problem: string }> {
  const [width, height] = [m.width ?? image.width, m.height ?? image.height];
  const data = new Float32Array(width * height);
  const mask: GreyImage = { width, height, data, bitDepth: 8, encoding: `rle/${m.order}` };
  for (const cell of m.cells) {
    const problem = paintRuns(await readCell(cell), m.order, data, width, height, m.width ? '' : ' (the size of its image; give Height and Width columns if the masks were drawn at another)');
    if (problem) return { problem };
  }
  return { mask };
}

/** One cell's runs painted (255) into `data`; the problem with them, if any. */
function paintRuns(runs: string, order: RunOrder, data: Float32Array, width: number, height: number, sizeFrom: string): string | undefined {
  if (!looksLikeRuns(runs)) return `not run-length codes ('<start> <length> ...', integers in pairs): '${runs.slice(0, 40)}${runs.length > 40 ? '...' : ''}'`;
  const numbers = runs.split(/\s+/).map(Number);
  const n = width * height;
  const relative = order.endsWith('-relative');
  let end = 0; // where the previous run ended (0-based, exclusive)
  for (let i = 0; i < numbers.length; i += 2) {
    const [start, length] = relative ? [end + numbers[i]!, numbers[i + 1]!] : [numbers[i]! - 1, numbers[i + 1]!];
    if (start < 0) return `run ${i / 2 + 1} starts at 0: starts count from 1 (the first pixel is 1)`;
    // SIIM-ACR's runs count each start from the previous run's end: an absolute start before it says so.
    if (start < end) return `run ${i / 2 + 1} starts at ${start + 1}, before the previous run's end (${end}): absolute starts increase (runs whose starts count from the previous run's end, as SIIM-ACR's, are read with --rle-order ${order.replace(/-relative$/, '')}-relative)`;
    if (start + length > n) return `run ${i / 2 + 1} (${start + 1} ${length}) ends past the ${width}x${height} mask's ${n} pixels${sizeFrom}`;
    if (order.startsWith('rows')) data.fill(255, start, start + length);
    else for (let p = start; p < start + length; p++) data[(p % height) * width + Math.floor(p / height)] = 255;
    end = start + length;
  }
  return undefined;
}

/** Temporary files of runs start so; the process id follows (a file of a process no longer running is removed). */
const SPILL_PREFIX = 'eden-mask-runs-';
const spills = new Set<string>();

/**
 * A temporary file (in the system's, TMPDIR) of the runs a table's rows gave the folder's images,
 * appended as the table streams by and read back a cell at a time: memory holds a few numbers an
 * image, not its runs. Removed when the process exits; one a killed process left, by the next.
 */
class RunSpill {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private size = 0;
  private constructor(
    readonly file: string,
    private readonly handle: FileHandle,
  ) {}

  static async create(): Promise<RunSpill> {
    const dir = tmpdir();
    await removeOrphanSpills(dir);
    const file = path.join(dir, `${SPILL_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}.runs`);
    const handle = await fs.open(file, 'w');
    if (spills.size === 0) process.once('exit', () => spills.forEach((f) => rmSync(f, { force: true })));
    spills.add(file);
    return new RunSpill(file, handle);
  }

  async append(runs: string): Promise<SpilledCell> {
    const bytes = Buffer.from(runs, 'latin1'); // digits and spaces
    const cell = { file: this.file, offset: this.size, length: bytes.length };
    this.chunks.push(bytes);
    this.size += bytes.length;
    if ((this.buffered += bytes.length) >= 4 << 20) await this.flush();
    return cell;
  }

  private async flush(): Promise<void> {
    if (!this.chunks.length) return;
    await this.handle.write(Buffer.concat(this.chunks));
    [this.chunks, this.buffered] = [[], 0];
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle.close();
  }

  /** Removed at once (the table was refused): nothing of it is read. */
  async remove(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.file, { force: true });
    spills.delete(this.file);
  }
}

async function readCell(c: SpilledCell): Promise<string> {
  const handle = await fs.open(c.file, 'r');
  try {
    const bytes = Buffer.alloc(c.length);
    await handle.read(bytes, 0, c.length, c.offset);
    return bytes.toString('latin1');
  } finally {
    await handle.close();
  }
}

/** Spill files of processes no longer running (killed before their exit could remove them). */
async function removeOrphanSpills(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const pid = name.startsWith(SPILL_PREFIX) ? parseInt(name.slice(SPILL_PREFIX.length), 10) : NaN;
    if (!pid || pid === process.pid || isRunning(pid)) continue;
    await fs.rm(path.join(dir, name), { force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // another user's: running
  }
}
