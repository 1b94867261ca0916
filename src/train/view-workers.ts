/**
 * Worker threads that draw the views of a batch while the main thread runs the previous training
 * step (viewBatches, `workers`). A batch is split into one contiguous share per worker; views are
 * seeded per image, so the split and the thread change nothing in the result. Images are copied to
 * the workers (structured clone, ~19 MB per batch of 32 at 384 px: milliseconds against a step of
 * hundreds) and the views come back without a copy.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { EdenError } from '../core/errors.js';
import type { ViewDraw, ViewJob, ViewJobResult } from './view-batches.js';

interface Pending {
  resolve: (views: { queries: Float32Array; keys: Float32Array }) => void;
  reject: (err: Error) => void;
}

/**
 * The default number of view workers: none on machines with fewer than 4 cores, where a worker
 * only takes a core from the step's own kernels (measured in docs/PRETRAINING.md), else one per 8
 * cores, at most 4.
 */
export function defaultViewWorkers(cores = availableParallelism()): number {
  return cores < 4 ? 0 : Math.min(4, Math.max(1, Math.floor(cores / 8)));
}

export class ViewWorkerPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failure: Error | null = null;
  private closed = false;

  constructor(count: number) {
    if (!Number.isInteger(count) || count < 1) throw new EdenError('config', `view workers must be a positive integer, got ${count}`);
    this.workers = Array.from({ length: count }, () => {
      const w = startWorker();
      // Idle workers must not keep the process alive (a pool left open); busy ones must, or a
      // process with nothing else to wait on would exit under a pending draw (see send/settle).
      w.unref();
      w.on('message', (r: ViewJobResult) => this.settle(r));
      const hint = '; draw the views on the main thread instead with --view-workers 0 (the run resumes with --resume)';
      w.on('error', (err) => this.fail(new EdenError('engine', `a view worker failed: ${err.message}${hint}`)));
      w.on('exit', (code) => {
        // terminate() (close) exits with 1: not a failure.
        if (code !== 0 && !this.closed) this.fail(new EdenError('engine', `a view worker exited with code ${code}${hint}`));
      });
      return w;
    });
  }

  /** The two views of each image (as drawViews), drawn in the workers. */
  async draw(images: readonly Float32Array[], indices: readonly number[], side: number, draw: ViewDraw): Promise<{ queries: Float32Array; keys: Float32Array }> {
    if (this.failure) throw this.failure;
    const shares = Math.min(this.workers.length, images.length);
    const per = Math.ceil(images.length / shares);
    const parts = await Promise.all(
      Array.from({ length: shares }, (_, w) => {
        const from = w * per;
        const to = Math.min(images.length, from + per);
        return this.send(this.workers[w]!, { id: this.nextId++, images: images.slice(from, to).map(ownBuffer), indices: indices.slice(from, to), side, draw });
      }),
    );
    if (parts.length === 1) return parts[0]!;
    const pixels = draw.views.size * draw.views.size;
    const queries = new Float32Array(images.length * pixels);
    const keys = new Float32Array(images.length * pixels);
    parts.forEach((p, w) => {
      queries.set(p.queries, w * per * pixels);
      keys.set(p.keys, w * per * pixels);
    });
    return { queries, keys };
  }

  /** Stop the workers; jobs still in flight are rejected. */
  async close(): Promise<void> {
    this.fail(new EdenError('engine', 'the view worker pool was closed'));
    this.closed = true;
    // Referenced until they have exited: else a process with nothing else to do ends mid-close.
    await Promise.all(
      this.workers.map((w) => {
        w.ref();
        return w.terminate();
      }),
    );
  }

  private send(worker: Worker, job: ViewJob): Promise<{ queries: Float32Array; keys: Float32Array }> {
    return new Promise((resolve, reject) => {
      this.pending.set(job.id, { resolve, reject });
      for (const w of this.workers) w.ref();
      worker.postMessage(job);
    });
  }

  private settle(r: ViewJobResult): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if (this.pending.size === 0) for (const w of this.workers) w.unref();
    if ('error' in r) p.reject(new EdenError('engine', `drawing views in a worker: ${r.error}`));
    else p.resolve({ queries: r.queries, keys: r.keys });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    for (const w of this.workers) w.unref();
  }
}

/**
 * The worker is this module's sibling with this module's extension: .js when built; .ts when run
 * from source (tests, benchmarks) under tsx, whose loader Node 20 does not carry into worker
 * threads, so the worker registers it before importing its entry.
 */
function startWorker(): Worker {
  const here = fileURLToPath(import.meta.url);
  const entry = path.join(path.dirname(here), `view-worker${path.extname(here)}`);
  if (path.extname(here) !== '.ts') return new Worker(entry);
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(pathToFileURL(entry).href)}); });`;
  return new Worker(boot, { eval: true });
}

/** An image that is a view into a larger buffer would clone all of that buffer: copy it alone. */
function ownBuffer(image: Float32Array): Float32Array {
  return image.byteOffset === 0 && image.byteLength === image.buffer.byteLength ? image : image.slice();
}
