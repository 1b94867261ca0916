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
  /** Rows by every key they can be matched with: relative path, base name and stem. */
  rows: Map<string, Record<string, string>>;
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
  for (const r of records) {
    const key = r[keyColumn] ?? '';
    const labels = Object.fromEntries(labelColumns.map((c) => [c, r[c] ?? '']));
    for (const k of manifestKeys(key)) if (!rows.has(k)) rows.set(k, labels);
  }
  return { file, keyColumn, labelColumns, rows, rowCount: records.length };
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

function manifestKeys(key: string): string[] {
  const normal = normalKey(key);
  return [normal, path.posix.basename(normal), fileStem(normal)];
}

/** The labels of an image given its path relative to the dataset root, if the manifest has it. */
export function labelsFor(manifest: Manifest, relPath: string): Record<string, string> | undefined {
  const normal = normalKey(relPath.split(path.sep).join('/'));
  return manifest.rows.get(normal) ?? manifest.rows.get(path.posix.basename(normal)) ?? manifest.rows.get(fileStem(normal));
}
