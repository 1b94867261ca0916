/**
 * Labels from a CSV manifest: one row per image, a key column that names the image (a relative
 * path, a file name, or a stem), and label columns. The key column is the first of `path`, `file`,
 * `filename`, `image`, `image_id`, `id` present, else the first column.
 */
import { parse } from 'csv-parse/sync';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { dataError } from '../core/errors.js';
import { fileStem } from './formats.js';

export interface Manifest {
  file: string;
  keyColumn: string;
  labelColumns: string[];
  /** Rows by their key as written ('/'-separated, a leading './' dropped). */
  rows: Map<string, Record<string, string>>;
  /**
   * The keys of the rows by every tail of their path, with and without the extension ('p1/s1/v.jpg'
   * under 'p1/s1/v.jpg', 's1/v.jpg', 'v.jpg', 'p1/s1/v', 's1/v', 'v'): several where rows share one
   * ('view1_frontal.jpg' in every CheXpert study).
   */
  byTail: Map<string, string[]>;
  /** The keys by themselves and without their extension. */
  byForm: Map<string, string[]>;
  rowCount: number;
}

const KEY_CANDIDATES = ['path', 'file', 'filename', 'file_name', 'image', 'image_path', 'image_id', 'id'];

/** The column naming the images, of a table with these columns: the first KEY_CANDIDATES present, else the first. */
export function keyColumnOf(columns: string[]): string {
  return KEY_CANDIDATES.find((c) => columns.includes(c)) ?? columns[0]!;
}

export async function readManifest(file: string, options: { keyColumn?: string; labelColumns?: string[] } = {}): Promise<Manifest> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw dataError(`${file}: cannot read the label manifest (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let records: Record<string, string>[];
  try {
    records = parse(text, { columns: true, skip_empty_lines: true, trim: true, bom: true, delimiter: sniffDelimiter(text) }) as Record<string, string>[];
  } catch (err) {
    throw dataError(`${file}: not a valid CSV file (${(err as Error).message})`);
  }
  if (records.length === 0) throw dataError(`${file}: the label manifest has no rows`);
  return indexManifest(file, records, options);
}

/** A manifest of rows already read (readManifest's, or a masks table's rows that may name an image: mask-table.ts). */
export function indexManifest(file: string, records: Record<string, string>[], options: { keyColumn?: string; labelColumns?: string[] } = {}): Manifest {
  const columns = Object.keys(records[0] ?? {});
  const keyColumn = options.keyColumn ?? keyColumnOf(columns);
  if (!columns.includes(keyColumn)) throw dataError(`${file}: no column '${keyColumn}'; columns are ${columns.join(', ')}`);
  const labelColumns = options.labelColumns ?? columns.filter((c) => c !== keyColumn);
  for (const c of labelColumns) if (!columns.includes(c)) throw dataError(`${file}: no label column '${c}'; columns are ${columns.join(', ')}`);
  const rows = new Map<string, Record<string, string>>();
  const [byTail, byForm] = [new Map<string, string[]>(), new Map<string, string[]>()];
  const add = (index: Map<string, string[]>, at: string, key: string): void => {
    const list = index.get(at);
    if (!list) index.set(at, [key]);
    else if (list.at(-1) !== key) list.push(key);
  };
  for (const r of records) {
    const key = normalKey(r[keyColumn] ?? '');
    if (rows.has(key)) continue; // a repeated row: the first is kept
    rows.set(key, Object.fromEntries(labelColumns.map((c) => [c, r[c] ?? ''])));
    for (const form of new Set([key, bare(key)])) {
      add(byForm, form, key);
      for (const t of tails(form)) add(byTail, t, key);
    }
  }
  return { file, keyColumn, labelColumns, rows, byTail, byForm, rowCount: records.length };
}

/**
 * The field separator of a label file: the one of comma, semicolon (spreadsheets in locales with a
 * decimal comma) and tab that its header line holds most often, outside quotes; comma when none.
 */
export function sniffDelimiter(text: string): string {
  const header = text.replace(/^\uFEFF/, '').split(/\r?\n/, 1)[0]!.replace(/"[^"]*"/g, '');
  const counts = [',', ';', '\t'].map((d) => [d, header.split(d).length - 1] as const);
  const [best, n] = counts.reduce((a, b) => (b[1] > a[1] ? b : a));
  return n > 0 ? best : ',';
}

/** A path as written in a manifest, '/'-separated: Windows' backslashes and a leading './' taken away. */
export function normalKey(key: string): string {
  return key.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
}

/**
 * Every form by which matchRow may find a path (its tails, with and without the extension): a row
 * and an image can match only when their forms meet (what lets a masks table keep, of a large
 * table, only the rows that may name one of the images).
 */
export function pathForms(p: string): string[] {
  const normal = normalKey(p.split(path.sep).join('/'));
  return [...new Set([...tails(normal), ...tails(bare(normal))])];
}

/** A '/'-separated path without its file's extension. */
function bare(p: string): string {
  const i = p.lastIndexOf('/');
  return p.slice(0, i + 1) + fileStem(p.slice(i + 1));
}

/** A path's tails, longest first: 'a/b/c.png', 'b/c.png', 'c.png'. */
function tails(p: string): string[] {
  const out = [p];
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) out.push(p.slice(i + 1));
  return out;
}

/** The one key the lists hold between them, 'several', or undefined for none. */
function single(...lists: (string[] | undefined)[]): string | 'several' | undefined {
  let found: string | undefined;
  for (const list of lists) {
    for (const k of list ?? []) {
      if (found === undefined) found = k;
      else if (k !== found) return 'several';
    }
  }
  return found;
}

/** The row an image's path finds: by its path (as written, or a tail of either), or by its name alone. */
interface RowMatch {
  key: string;
  labels: Record<string, string>;
  byPath: boolean;
}

/** The row an image's path finds, 'several' where rows name it alike, undefined where none does. */
function matchRow(manifest: Manifest, relPath: string): RowMatch | 'several' | undefined {
  const normal = normalKey(relPath.split(path.sep).join('/'));
  const row = (key: string | undefined, byPath: boolean): RowMatch | 'several' | undefined => (key === undefined || key === 'several' ? key : { key, labels: manifest.rows.get(key)!, byPath });
  if (manifest.rows.has(normal)) return row(normal, true);
  // A row whose path ends with the image's (written from a folder above the data's): the one there is.
  const above = single(manifest.byTail.get(normal), manifest.byTail.get(bare(normal)));
  if (above !== undefined) return row(above, true);
  // The image's path ends with a row's (written from a folder below), longest first; a row of a
  // file name alone names an image by name only.
  for (const t of tails(normal).slice(1)) {
    const below = single(manifest.byForm.get(t), manifest.byForm.get(bare(t)));
    if (below !== undefined) return row(below, below !== 'several' && below.includes('/'));
  }
  // The one row of its name, in other folders (rows of its name in several: none names it).
  const base = path.posix.basename(normal);
  const named = single(manifest.byTail.get(base), manifest.byTail.get(fileStem(base)));
  return named === 'several' ? undefined : row(named, false);
}

/**
 * The labels of an image given its path relative to the dataset root, if the manifest has it: by
 * that path, or a row whose path and the image's end alike ('CheXpert-v1.0-small/train/
 * patient00001/study1/view1_frontal.jpg' for train/patient00001/study1/view1_frontal.jpg;
 * 'a.png' or '/data/cxr/a.png' for sub/a.png); else by the one row of its file name (or stem) in
 * other folders. Rows sharing a name are told apart by their folders only.
 */
export function labelsFor(manifest: Manifest, relPath: string): Record<string, string> | undefined {
  const m = matchRow(manifest, relPath);
  return m === 'several' ? undefined : m?.labels;
}

/**
 * labelsFor for all of a dataset's images, one row for one image: a row found by name alone (in
 * other folders) by several images labels none of them — CheXpert's train.csv names one
 * view1_frontal.jpg of valid/ by chance, not every one. `ambiguous`: the images left unlabelled so
 * (or named alike by several rows), to be said.
 */
export function labelsForAll(manifest: Manifest, relPaths: string[]): { labels: (Record<string, string> | undefined)[]; ambiguous: string[] } {
  const matches = relPaths.map((p) => matchRow(manifest, p));
  const claims = new Map<string, number>();
  for (const m of matches) if (m && m !== 'several') claims.set(m.key, (claims.get(m.key) ?? 0) + 1);
  const told = (m: RowMatch | 'several' | undefined): m is RowMatch => m !== undefined && m !== 'several' && (m.byPath || claims.get(m.key) === 1);
  return { labels: matches.map((m) => (told(m) ? m.labels : undefined)), ambiguous: relPaths.filter((_, i) => matches[i] !== undefined && !told(matches[i])) };
}
