/**
 * The memory bank (METHOD.md §4): a FIFO queue of K teacher keys [K, C]. Each step writes the
 * batch's keys over the oldest entries, wrapping around the end; K need not be a multiple of the
 * batch size.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../core/rng.js';
import { gaussian } from '../models/layers.js';
import { configError } from '../core/errors.js';
import { webGpuEnqueue } from '../engine/webgpu-inplace.js';

export class MemoryQueue {
  readonly size: number;
  readonly dim: number;
  /** [K, C], L2-normalised rows. */
  readonly keys: tf.Variable<tf.Rank.R2>;
  /** Row the next key is written to. */
  pointer = 0;

  constructor(size: number, dim: number, seed: number) {
    if (!Number.isInteger(size) || size < 1) throw configError(`queue size must be a positive integer, got ${size}`);
    this.size = size;
    this.dim = dim;
    // Random unit vectors, as MoCo initialises its queue.
    const init = tf.tidy(() => {
      const x = tf.tensor2d(gaussian(size * dim, new Rng(seed)), [size, dim]);
      return tf.div(x, tf.norm(x, 2, 1, true));
    });
    this.keys = tf.variable(init as tf.Tensor2D, false);
    init.dispose();
  }

  /** Write `k` [B, C] over the oldest rows; B may exceed K (the last K rows are kept). */
  enqueue(k: tf.Tensor2D): void {
    const b = k.shape[0];
    if (k.shape[1] !== this.dim) throw new Error(`queue holds ${this.dim}-d keys, got [${k.shape}]`);
    // On webgpu, one in-place dispatch (the queue keeps its buffer: a captured step can be replayed).
    if (webGpuEnqueue(this.keys, k, this.pointer)) {
      this.pointer = (this.pointer + b) % this.size;
      return;
    }
    tf.tidy(() => {
      let batch: tf.Tensor2D = k;
      let start = this.pointer;
      if (b > this.size) {
        batch = k.slice([b - this.size, 0], [this.size, this.dim]);
        start = (this.pointer + b - this.size) % this.size;
      }
      const n = batch.shape[0];
      const first = Math.min(n, this.size - start); // rows up to the end of the buffer
      const parts: tf.Tensor2D[] = [];
      const rest = n - first; // rows that wrap to the front
      if (rest > 0) parts.push(batch.slice([first, 0], [rest, this.dim]));
      if (start > rest) parts.push(this.keys.slice([rest, 0], [start - rest, this.dim]));
      parts.push(batch.slice([0, 0], [first, this.dim]));
      if (start + first < this.size) parts.push(this.keys.slice([start + first, 0], [this.size - start - first, this.dim]));
      this.keys.assign(tf.concat(parts, 0) as tf.Tensor2D);
    });
    this.pointer = (this.pointer + b) % this.size;
  }

  dispose(): void {
    this.keys.dispose();
  }
}
