/**
 * What reading a masks table costs (src/data/mask-table.ts): a CheXmask-form .csv.gz of N rows
 * (the fixture's six rows of real runs, repeated under new keys) streamed for a folder whose
 * images a few rows name, and for one that every row names (the runs then spilled to a temporary
 * file, not held); beside gunzip alone, the floor of any reader. Prints one JSON line per
 * workload: seconds, MB/s of the uncompressed table, heap after a collection. A benchmark, not a test.
 *
 *   node --expose-gc --import tsx bench/data/mask-table.ts [--rows 40000]
 */
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createGunzip, gunzipSync, gzipSync } from 'node:zlib';
import { readMaskTable } from '../../src/data/mask-table.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '40000' } } });
const rows = Number(values.rows);
const fixture = gunzipSync(readFileSync(path.join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'mask-table', 'chexmask.csv.gz'))).toString().trim().split('\n');
const [header, ...real] = fixture;
const keys = Array.from({ length: rows }, (_, i) => (i < real.length ? real[i]!.slice(0, real[i]!.indexOf(',')) : `synthetic${String(i).padStart(7, '0')}`));
const dir = mkdtempSync(path.join(tmpdir(), 'eden-bench-table-'));
const table = path.join(dir, 'chexmask.csv.gz');
/** The table written (gzipped), its text not kept: the heap measured is the reader's. Its size in MB. */
function writeTable(): number {
  const text = [header, ...keys.map((k, i) => k + real[i % real.length]!.slice(real[i % real.length]!.indexOf(',')))].join('\n') + '\n';
  writeFileSync(table, gzipSync(text, { level: 6 }));
  return Buffer.byteLength(text) / 1e6;
}
const mb = writeTable();

async function timed(workload: string, run: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  const extra = await run();
  const seconds = (performance.now() - t0) / 1000;
  globalThis.gc?.();
  console.log(JSON.stringify({ workload, rows, table_mb: +mb.toFixed(1), seconds: +seconds.toFixed(2), mb_per_s: +(mb / seconds).toFixed(1), heap_mb: Math.round(process.memoryUsage().heapUsed / 2 ** 20), ...(extra as object) }));
}

try {
  await timed('gunzip alone', async () => {
    for await (const chunk of createReadStream(table).pipe(createGunzip())) void chunk;
  });
  const few = keys.slice(0, real.length).map((k) => `${k}.png`);
  await timed('rows naming 6 images', async () => ({ matched: (await readMaskTable(table, few, { order: 'rows' })).masks.filter(Boolean).length }));
  const all = keys.map((k) => `${k}.png`);
  await timed('rows naming every image', async () => ({ matched: (await readMaskTable(table, all, { order: 'rows' })).masks.filter(Boolean).length }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
