/**
 * Worker-thread entry of ViewWorkerPool (view-workers.ts): draws the two views of each image it is
 * sent, exactly as the main thread would (imageViews: every draw seeded by the image's index), and
 * sends them back without copying.
 */
import { parentPort } from 'node:worker_threads';
import { describeError } from '../core/errors.js';
import { drawViews, type ViewJob, type ViewJobResult } from './view-batches.js';

const port = parentPort;
if (!port) throw new Error('view-worker.ts is a worker thread entry; it is started by ViewWorkerPool');
port.on('message', (job: ViewJob) => {
  let reply: ViewJobResult;
  let transfer: ArrayBuffer[] = [];
  try {
    const { queries, keys } = drawViews(job.images, job.indices, job.side, job.draw);
    reply = { id: job.id, queries, keys };
    transfer = [queries.buffer as ArrayBuffer, keys.buffer as ArrayBuffer];
  } catch (err) {
    reply = { id: job.id, error: describeError(err) };
  }
  port.postMessage(reply, transfer);
});
