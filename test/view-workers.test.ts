/**
 * Views drawn in worker threads (train/view-workers.ts) are the main thread's views to the bit, in
 * the same order, whatever the number of workers and however the batch splits between them; a
 * consumer that stops early leaves no failure behind; a closed pool refuses work by name.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_VIEW_OPTIONS } from '../src/data/views.js';
import { ImageDataset } from '../src/data/dataset.js';
import { drawViews, viewBatches, type ViewBatch, type ViewDraw } from '../src/train/view-batches.js';
import { defaultViewWorkers, ViewWorkerPool } from '../src/train/view-workers.js';
import { scanDataset } from '../src/data/scan.js';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const side = 96;
const images = Array.from({ length: 7 }, (_, s) => Float32Array.from({ length: side * side }, (_, i) => (Math.sin(i * 0.01 * (s + 1)) + 1) / 2));
const indices = images.map((_, i) => 40 + 3 * i);

function bitwiseEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

describe('view worker threads', () => {
  it('draw the same views as the main thread, to the bit, for 1-3 workers and uneven splits; report a failed draw', async () => {
    const draws: ViewDraw[] = [0, 2, 4].map((level) => ({ level, views: { ...DEFAULT_VIEW_OPTIONS, size: 32 }, anchor: {}, seed: 11, stage: 1, epoch: 3 }));
    const expected = draws.map((d) => drawViews(images, indices, side, d));
    for (const workers of [1, 2, 3]) {
      const pool = new ViewWorkerPool(workers);
      try {
        for (const [i, draw] of draws.entries()) {
          const got = await pool.draw(images, indices, side, draw);
          assert.ok(bitwiseEqual(got.queries, expected[i]!.queries), `level ${draw.level}, ${workers} workers: queries differ`);
          assert.ok(bitwiseEqual(got.keys, expected[i]!.keys), `level ${draw.level}, ${workers} workers: keys differ`);
        }
        if (workers === 1) {
          // An image that views a larger buffer is sent alone, and drawn the same.
          const big = new Float32Array(side * side * 2);
          big.set(images[0]!, side * side);
          const got = await pool.draw([big.subarray(side * side)], [5], side, draws[0]!);
          assert.ok(bitwiseEqual(got.queries, drawViews([images[0]!], [5], side, draws[0]!).queries));
          // A draw that fails in the worker rejects with its reason; the pool goes on working.
          await assert.rejects(pool.draw([new Float32Array(9)], [0], 3, draws[2]!), /drawing views in a worker: .*too small for level 4/);
          assert.ok(bitwiseEqual((await pool.draw(images, indices, side, draws[1]!)).keys, expected[1]!.keys));
        }
      } finally {
        await pool.close();
      }
    }
  });

  it('give viewBatches the batches of the main thread; stopping early is clean; a closed pool says so', async () => {
    const scan = await scanDataset([path.join(import.meta.dirname, '..', 'samples', 'hannover_covid19')]);
    const dataset = new ImageDataset(scan.images, { size: 96 });
    const order = [...dataset.entries.keys()].reverse();
    const args = { dataset, order, batchSize: 4, level: 2, views: { ...DEFAULT_VIEW_OPTIONS, size: 32 }, anchor: {}, seed: 2, stage: 1, epoch: 0, startBatch: 1 };
    const collect = async (workers?: ViewWorkerPool, stopAfter = Infinity): Promise<ViewBatch[]> => {
      const out: ViewBatch[] = [];
      for await (const b of viewBatches({ ...args, workers })) {
        out.push(b);
        if (out.length >= stopAfter) break;
      }
      return out;
    };
    const expected = await collect();
    assert.equal(expected.length, Math.floor(order.length / 4) - 1);
    const pool = new ViewWorkerPool(2);
    const got = await collect(pool);
    assert.equal(got.length, expected.length);
    got.forEach((b, i) => {
      assert.deepEqual(b.indices, expected[i]!.indices);
      assert.ok(bitwiseEqual(b.queries, expected[i]!.queries) && bitwiseEqual(b.keys, expected[i]!.keys), `batch ${i} differs`);
    });
    // Stop after one batch with the next in flight: nothing rejects unhandled, the pool still works.
    assert.equal((await collect(pool, 1)).length, 1);
    assert.equal((await collect(pool)).length, expected.length);
    await pool.close();
    await assert.rejects(pool.draw(images, indices, side, { ...args, views: { ...args.views } }), /view worker pool was closed/);
  });

  it('keep a process with nothing else to wait on alive while drawing and closing, and let it exit after', () => {
    // Idle workers are unreferenced; busy or closing ones must not be, or Node ends the process
    // under a pending promise (exit code 13). Three workers: their exits overlap while closing.
    const module = (f: string): string => JSON.stringify(pathToFileURL(path.join(import.meta.dirname, '..', 'src', ...f.split('/'))).href);
    const script = `
      const { ViewWorkerPool } = await import(${module('train/view-workers.ts')});
      const { DEFAULT_VIEW_OPTIONS } = await import(${module('data/views.ts')});
      const pool = new ViewWorkerPool(3);
      const img = new Float32Array(96 * 96).fill(0.5);
      const draw = { level: 0, views: { ...DEFAULT_VIEW_OPTIONS, size: 32 }, anchor: {}, seed: 1, stage: 0, epoch: 0 };
      for (let i = 0; i < 3; i++) await pool.draw([img, img, img, img], [0, 1, 2, 3], 96, draw);
      await pool.close();
      console.log('closed');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'closed');
  });

  it('default to none below 4 cores, where a worker would take a core from the step', () => {
    assert.deepEqual([1, 2, 3, 4, 8, 16, 64].map((c) => defaultViewWorkers(c)), [0, 0, 0, 1, 1, 2, 4]);
  });
});
