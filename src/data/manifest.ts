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
  /** The keys of the rows by their file name and by their stem (several where rows share one: 'view1_frontal.jpg' in every CheXpert study). */
  byName: Map<string, string[]>;
  rowCount: number;
}

const KEY_CANDIDATES = ['path', 'file', 'filename', 'file_name', 'image', 'image_path', 'image_id', 'id'];

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
  const columns = Object.keys(records[0]!);
  const keyColumn = options.keyColumn ?? KEY_CANDIDATES.find((c) => columns.includes(c)) ?? columns[0]!;
  if (!columns.includes(keyColumn)) throw dataError(`${file}: no column '${keyColumn}'; columns are ${columns.join(', ')}`);
  const labelColumns = options.labelColumns ?? columns.filter((c) => c !== keyColumn);
  for (const c of labelColumns) if (!columns.includes(c)) throw dataError(`${file}: no label column '${c}'; columns are ${columns.join(', ')}`);
  const rows = new Map<string, Record<string, string>>();
  const byName = new Map<string, string[]>();
  for (const r of records) {
    const key = normalKey(r[keyColumn] ?? '');
    if (rows.has(key)) continue; // a repeated row: the first is kept
    rows.set(key, Object.fromEntries(labelColumns.map((c) => [c, r[c] ?? ''])));
    for (const name of new Set([path.posix.basename(key), fileStem(key)])) byName.set(name, [...(byName.get(name) ?? []), key]);
  }
  return { file, keyColumn, labelColumns, rows, byName, rowCount: records.length };
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
function normalKey(key: string): string {
  return key.replace(/\\/g, '/').replace(/^(\.\/)+/, '');
}

/** Whether two '/'-separated paths name one file: equal, or one the other's tail (a manifest written from a folder above or below the dataset's root), with or without the extension. */
function sameTail(a: string, b: string): boolean {
  const tail = (x: string, y: string): boolean => x === y || x.endsWith(`/${y}`) || y.endsWith(`/${x}`);
  const bare = (x: string): string => path.posix.join(path.posix.dirname(x), fileStem(x));
  return tail(a, b) || tail(bare(a), bare(b));
}

/** The row an image's path finds: by its path (as written, or a tail of it), or by its name alone. */
interface RowMatch {
  key: string;
  labels: Record<string, string>;
  byPath: boolean;
}

function matchRow(manifest: Manifest, relPath: string): RowMatch | undefined {
  const normal = normalKey(relPath.split(path.sep).join('/'));
  const exact = manifest.rows.get(normal);
  if (exact) return { key: normal, labels: exact, byPath: true };
  for (const name of [path.posix.basename(normal), fileStem(normal)]) {
    const keys = manifest.byName.get(name);
    if (!keys) continue;
    const along = keys.filter((k) => sameTail(k, normal));
    if (along.length > 1) return undefined; // two rows end as this path does
    const key = along[0] ?? (keys.length === 1 ? keys[0]! : undefined);
    return key === undefined ? undefined : { key, labels: manifest.rows.get(key)!, byPath: along.length === 1 };
  }
  return undefined;
}

/**
 * The labels of an image given its path relative to the dataset root, if the manifest has it: by
 * that path, or a row whose path and the image's end alike ('CheXpert-v1.0-small/train/
 * patient00001/study1/view1_frontal.jpg' for train/patient00001/study1/view1_frontal.jpg;
 * 'a.png' or '/data/cxr/a.png' for sub/a.png); else by the one row of its file name (or stem) in
 * other folders. Rows sharing a name are told apart by their folders only.
 */
export function labelsFor(manifest: Manifest, relPath: string): Record<string, string> | undefined {
  return matchRow(manifest, relPath)?.labels;
}

/**
 * labelsFor for all of a dataset's images, one row for one image: a row found by name alone (in
 * other folders) by several images labels none of them — CheXpert's train.csv names one
 * view1_frontal.jpg of valid/ by chance, not every one.
 */
export function labelsForAll(manifest: Manifest, relPaths: string[]): (Record<string, string> | undefined)[] {
  const matches = relPaths.map((p) => matchRow(manifest, p));
  const claims = new Map<string, number>();
  for (const m of matches) if (m) claims.set(m.key, (claims.get(m.key) ?? 0) + 1);
  return matches.map((m) => (m && (m.byPath || claims.get(m.key) === 1) ? m.labels : undefined));
}
