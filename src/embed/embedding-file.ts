/**
 * `eden embed`'s output written as it is computed, so that an archive of any size fits (dense maps
 * of 100,000 images are tens of gigabytes: never held in memory) and an interrupted run resumes:
 *
 *   OUT.partial              the .npy so far: a header of fixed length, rewritten with the final
 *                            row count at the end, then each batch's rows appended
 *   OUT.files.csv.partial    row,file of the rows written so far (appended after their data)
 *   OUT.partial.json         what the rows were computed with (checkpoint, preprocessing)
 *
 * At the end OUT.partial becomes OUT and the row file OUT.files.csv. A resumed run keeps the rows
 * of the row file (data beyond them, from a batch cut off, is truncated) and embeds the rest.
 */
import { parse } from 'csv-parse/sync';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { csvField } from '../core/csv.js';
import { EdenError } from '../core/errors.js';
import { changedSettings, completeLines } from '../core/resume.js';
import { removeLeftTemporaries, writeFileAtomic } from '../engine/tensor-file.js';
import { embedBatches, type EmbedOptions } from './embed.js';
import type { Encoder } from '../models/encoder.js';

/** Bytes of the .npy header: a multiple of 64 (the format's alignment), room for any shape Eden writes. */
const HEADER_BYTES = 128;

/** The header of a float32 C-order .npy of `shape`, HEADER_BYTES long (format version 1.0). */
export function npyHeader(shape: number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const room = HEADER_BYTES - 10;
  if (dict.length + 1 > room) throw new Error(`shape [${shape}] does not fit a ${HEADER_BYTES}-byte .npy header`);
  const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, room & 0xff, room >> 8]); // \x93NUMPY 1.0, header length
  return Buffer.concat([prefix, Buffer.from(`${dict.padEnd(room - 1, ' ')}\n`, 'latin1')]);
}

/** The row file of an embedding file: x.npy -> x.files.csv. */
export function rowsFileOf(out: string): string {
  return `${out.replace(/\.npy$/i, '')}.files.csv`;
}

/** What the rows of a run depend on; a resumed run must match it. */
export interface EmbedSettings {
  checkpoint: string;
  preprocess: string;
  size?: number;
  dense: boolean;
}

interface PartialState extends EmbedSettings {
  /** The shape of one row (known after the first batch). */
  itemShape?: number[];
}

export interface EmbedToFileResult {
  shape: number[];
  /** Rows kept from an interrupted run (resume). */
  kept: number;
}

/**
 * Embed `files` into the .npy `out` and its row file, streaming (embedding-file.ts's layout).
 * With `resume`, an interrupted run of the same settings is continued; without, its partial files
 * are replaced.
 */
export async function embedToFile(encoder: Encoder, files: string[], out: string, settings: EmbedSettings, options: EmbedOptions & { inputSize?: number; resume?: boolean } = {}): Promise<EmbedToFileResult> {
  if (files.length === 0) throw new EdenError('config', 'no images to embed');
  const [dataFile, rowsFile, stateFile] = [`${out}.partial`, `${rowsFileOf(out)}.partial`, `${out}.partial.json`];
  const earlier = options.resume ? await readPartial(dataFile, rowsFile, stateFile, settings) : undefined;
  if (options.resume) await removeLeftTemporaries([path.dirname(path.resolve(out))], [dataFile, rowsFile, stateFile, out, rowsFileOf(out)].map((f) => path.basename(f)));
  const done = earlier?.files ?? [];
  let itemShape = earlier?.itemShape;
  const itemFloats = (): number => itemShape!.reduce((a, b) => a * b, 1);
  const handle = await fs.open(dataFile, earlier ? 'r+' : 'w');
  try {
    // Kept rows only: the data of a batch cut off, and any row after them, go.
    await handle.truncate(HEADER_BYTES + (itemShape ? done.length * itemFloats() * 4 : 0));
    await handle.write(npyHeader([0]), 0, HEADER_BYTES, 0);
    await writeFileAtomic(rowsFile, `row,file\n${rowLines(done, 0)}`);
    await writeFileAtomic(stateFile, JSON.stringify({ ...settings, itemShape }));
    let rows = done.length;
    let at = HEADER_BYTES + rows * (itemShape ? itemFloats() * 4 : 0);
    const doneSet = new Set(done);
    for await (const b of embedBatches(encoder, files.filter((f) => !doneSet.has(f)), options)) {
      if (!itemShape) {
        itemShape = b.itemShape;
        await writeFileAtomic(stateFile, JSON.stringify({ ...settings, itemShape }));
      } else if (itemShape.join(',') !== b.itemShape.join(',')) {
        throw new EdenError('data', `${b.files[0]}: its embeddings are [${b.itemShape}], the earlier rows [${itemShape}]`);
      }
      const bytes = Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength);
      await handle.write(bytes, 0, bytes.length, at);
      at += bytes.length;
      // The rows after their data: a row in the row file always has its data on disk.
      await handle.datasync();
      await fs.appendFile(rowsFile, rowLines(b.files, rows));
      rows += b.files.length;
    }
    if (!itemShape) {
      await Promise.all([dataFile, rowsFile, stateFile].map((f) => fs.rm(f, { force: true })));
      throw new EdenError('data', `none of the ${files.length} image(s) could be read`);
    }
    const shape = [rows, ...itemShape];
    await handle.write(npyHeader(shape), 0, HEADER_BYTES, 0);
    await handle.sync();
    await handle.close();
    await fs.rename(dataFile, out);
    await fs.rename(rowsFile, rowsFileOf(out));
    await fs.rm(stateFile, { force: true });
    return { shape, kept: done.length };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Lines 'row,file' of the row file (embeddingRowsCsv's), numbered from `first`. */
function rowLines(files: string[], first: number): string {
  return files.map((f, k) => `${first + k},${csvField(f)}\n`).join('');
}

/** An interrupted run's rows and row shape, checked against this run's settings; undefined when there is none. */
async function readPartial(dataFile: string, rowsFile: string, stateFile: string, settings: EmbedSettings): Promise<{ files: string[]; itemShape?: number[] } | undefined> {
  const state = await fs.readFile(stateFile, 'utf8').catch(() => undefined);
  if (state === undefined) return undefined;
  const was = JSON.parse(state) as PartialState;
  const changed = changedSettings<EmbedSettings>(was, settings, ['checkpoint', 'preprocess', 'size', 'dense']);
  if (changed) throw new EdenError('config', `--resume: ${dataFile} was computed with ${changed}; run without --resume to start over`);
  const [csv, stat] = await Promise.all([fs.readFile(rowsFile, 'utf8').catch(() => undefined), fs.stat(dataFile).catch(() => undefined)]);
  if (csv === undefined || !stat) return undefined;
  // The rows numbered 0, 1, 2 ... from the top, up to the first that is not.
  const files: string[] = [];
  for (const r of parse(completeLines(csv), { from_line: 2, relax_column_count: true }) as string[][]) {
    if (r.length !== 2 || r[0] !== String(files.length)) break;
    files.push(r[1]!);
  }
  const itemBytes = (was.itemShape ?? []).reduce((a, b) => a * b, 4);
  if (was.itemShape && stat.size < HEADER_BYTES + files.length * itemBytes) throw new EdenError('data', `--resume: ${dataFile} holds fewer rows than ${rowsFile} lists; run without --resume to start over`);
  return { files: was.itemShape ? files : [], itemShape: was.itemShape };
}
