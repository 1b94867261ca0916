/**
 * GPU time on the webgpu backend, from timestamp queries: how long the device spent executing the
 * compute passes encoded while a piece of work ran (a training step), against the wall time of that
 * work. Their ratio is the share of a step spent in kernels (issue 13): near 1 the step is bound by
 * the GPU; far below it the GPU waits for the JavaScript that encodes its work.
 *
 * Every compute pass encoded meanwhile (TF.js's, Eden's in-place kernels, replayed steps) gets a
 * pair of timestamp writes, at its beginning and end; the time between passes (the GPU idle while
 * the host encodes, submits or reads back) is what is not counted. It needs the adapter's
 * `timestamp-query` feature (TF.js requests it where offered); without it the time is undefined.
 * Dawn quantizes timestamps for browsers (to 2^16 ns); Eden's Dawn instance turns that off
 * (webgpu.ts), so short passes are timed to the nanosecond.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';

export interface GpuPassTime {
  /** Compute passes timed. */
  passes: number;
  /** Compute passes that could not be timed: more than maxPasses, or timed by someone else (TF.js's profiler). */
  untimedPasses: number;
  /** Seconds the device spent executing the timed passes, summed. */
  gpuS: number;
}

interface Backend {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

let active = false;

/**
 * Runs `work` with every compute pass on the webgpu backend timed; the timestamps are read back after
 * `work` has returned (so a wall time `work` measures itself does not include that). `time` is
 * undefined where the device has no timestamp queries. At most `maxPasses` passes are timed (the
 * WebGPU limit on a query set is 4096 timestamps); later ones are counted as untimed.
 */
export async function timeGpuPasses<T>(work: () => Promise<T>, options: { maxPasses?: number } = {}): Promise<{ result: T; time?: GpuPassTime }> {
  if (tf.getBackend() !== 'webgpu') throw new EdenError('engine', `timeGpuPasses needs the webgpu backend (the backend is ${tf.getBackend()})`);
  if (active) throw new EdenError('engine', 'timeGpuPasses is already timing: it cannot be nested');
  const b = tf.backend() as unknown as Backend;
  const device = b.device;
  if (!device.features.has('timestamp-query')) return { result: await work() };
  const maxPasses = Math.min(options.maxPasses ?? 2048, 2048);
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * maxPasses });
  const resolved = device.createBuffer({ size: 16 * maxPasses, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  let next = 0; // passes given timestamp slots
  let untimed = 0;

  // Only the pass descriptors change: TF.js's command buffers stay as they were (anything invalid
  // in them would drop its work, silently). The timestamps are resolved at the end, in a command
  // buffer of our own: a query set keeps what earlier submissions wrote.
  const watch = (encoder: GPUCommandEncoder): GPUCommandEncoder => {
    const begin = encoder.beginComputePass.bind(encoder);
    encoder.beginComputePass = (descriptor?: GPUComputePassDescriptor) => {
      if (descriptor?.timestampWrites || next >= maxPasses) {
        untimed++;
        return begin(descriptor);
      }
      const slot = next++;
      return begin({ ...descriptor, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * slot, endOfPassWriteIndex: 2 * slot + 1 } });
    };
    return encoder;
  };

  // Work already encoded runs untimed, before: submit it.
  const flush = (): void => {
    b.endComputePassEncoder();
    if (b.commandEncoder) b.submitQueue();
  };
  flush();
  const create = device.createCommandEncoder;
  device.createCommandEncoder = function (this: GPUDevice, descriptor?: GPUCommandEncoderDescriptor) {
    return watch(create.call(this, descriptor));
  };
  active = true;
  let result: T;
  try {
    result = await work();
    flush();
  } finally {
    device.createCommandEncoder = create;
    active = false;
  }
  const staging = device.createBuffer({ size: Math.max(16, 16 * next), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    if (next > 0) {
      const encoder = device.createCommandEncoder();
      encoder.resolveQuerySet(querySet, 0, 2 * next, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, staging, 0, 16 * next);
      device.queue.submit([encoder.finish()]);
    }
    await staging.mapAsync(GPUMapMode.READ);
    const stamps = new BigUint64Array(staging.getMappedRange());
    let ns = 0n;
    for (let s = 0; s < next; s++) {
      const [t0, t1] = [stamps[2 * s]!, stamps[2 * s + 1]!];
      if (t1 > t0) ns += t1 - t0;
    }
    staging.unmap();
    return { result, time: { passes: next, untimedPasses: untimed, gpuS: Number(ns) / 1e9 } };
  } finally {
    staging.destroy();
    resolved.destroy();
    querySet.destroy();
  }
}
