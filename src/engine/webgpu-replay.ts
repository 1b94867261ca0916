/**
 * Step capture and replay on the webgpu backend (issue 13).
 *
 * A training step's shapes never change, so neither does its GPU work: the same pipelines over the
 * same buffers with the same dispatch sizes. TF.js nevertheless spends most of a step in per-op
 * JavaScript (shape logic, uniforms, bind groups, buffer pool). Here one step runs normally while
 * every dispatch is recorded (pipeline, bind group, workgroups); later steps re-encode that list in
 * one compute pass, with no TF.js op at all. What changes from step to step is written first:
 *   - the input images, into the buffers the captured step read them from;
 *   - the per-step scalars of Eden's in-place kernels (webgpu-inplace.ts): the learning rate of the
 *     SGD+EMA dispatches and the memory queue's write pointer;
 * and the values the captured step read back (its diagnostics) are copied out and read after it.
 *
 * Why this is sound: every buffer a captured dispatch binds is pinned (never returned to TF.js's
 * pool, so no other work can overwrite a constant or reuse an intermediate); parameters, optimiser
 * state, the teacher, batch-norm running statistics and the queue are all updated in place by Eden's
 * kernels, so they keep their buffers. The capture is refused (undefined: the caller keeps running
 * normal steps) when a variable changes buffer during the step (a tensor-op fallback somewhere), an
 * input does not live in a GPU buffer, or TF.js is profiling.
 *
 * What the captured step did after reading its values back (its update) is replayed only when the
 * caller accepts the values (run's `proceed`: adamStep's rule, no update on a non-finite loss), at
 * the cost of one wait for the GPU mid-step, as the normal step has.
 *
 * Limits: a shape change (a new stage, another batch size) or any reassignment of a captured
 * variable (loading a checkpoint) needs a new capture: dispose the replay first. A tensor that shares
 * a captured variable's buffer (tf.clone does, until either is reassigned) sees the replayed
 * in-place updates: copy a variable that must keep its value (a best-so-far snapshot).
 */
import * as tf from '@tensorflow/tfjs';
import { dropHostCopy, observeInPlaceDispatches, type InPlaceDispatch } from './webgpu-inplace.js';

interface Backend {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): { resource?: unknown; values?: ArrayLike<number> | null } | undefined };
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: GPUCommandEncoder | null;
  recordAndSubmit: (program: { pipeline: unknown; dispatch: [number, number, number]; pixelsOpType?: unknown }, ...rest: unknown[]) => void;
  read: (dataId: object) => Promise<unknown>;
  activeTimers?: unknown;
  bufferManager: { releaseBuffer: (buffer: GPUBuffer, reuse?: boolean) => void };
}

interface Op {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
  /** Eden's in-place dispatches: their uniform buffer and scalars (rewritten per step). */
  inPlace?: InPlaceDispatch;
}

/**
 * Per-step values a replay writes before re-encoding the step; each is required when the captured
 * step has the update that uses it.
 */
export interface ReplaySettings {
  /** SGD's learning rate (pretraining's cosine schedule). */
  learningRate?: number;
  /** The memory queue's write pointer at the start of the step. */
  queuePointer?: number;
  /** Adam's step count for this step (1-based, as Adam.advance returns it): its bias corrections. Adam's learning rate stays the captured one. */
  adamStep?: number;
}

function required(value: number | undefined, name: string, kind: string): number {
  if (value === undefined) throw new Error(`this replay has ${kind} updates: settings.${name} is required`);
  return value;
}

// Buffers bound by a live capture, and those TF.js released meanwhile (returned to its pool when the
// last replay holding them is disposed).
const pinned = new Map<GPUBuffer, number>();
let replayed = 0;

/** Steps replayed so far in this process (for tests and logs). */
export function replayedSteps(): number {
  return replayed;
}

/**
 * Bytes held by live captures: every buffer they bind, and of those the ones TF.js released
 * meanwhile (which, without the capture, its pool would have reused).
 */
export function pinnedBytes(): { pinned: number; retained: number } {
  let [all, kept] = [0, 0];
  for (const b of pinned.keys()) all += b.size;
  for (const b of retained) kept += b.size;
  return { pinned: all, retained: kept };
}

const retained = new Set<GPUBuffer>();
let originalRelease: Backend['bufferManager']['releaseBuffer'] | undefined;

function backend(): Backend | undefined {
  if (tf.getBackend() !== 'webgpu' || globalThis.process?.env['EDEN_WEBGPU_REPLAY'] === '0') return undefined;
  const b = tf.backend() as unknown as Partial<Backend>;
  if (!b.device || typeof b.recordAndSubmit !== 'function' || typeof b.read !== 'function' || !b.bufferManager) return undefined;
  return b as Backend;
}

/** Keep pinned buffers out of TF.js's pool (installed once, for the backend's lifetime). */
function guardReleases(b: Backend): void {
  if (originalRelease) return;
  const release = b.bufferManager.releaseBuffer.bind(b.bufferManager);
  originalRelease = release;
  b.bufferManager.releaseBuffer = (buffer: GPUBuffer, reuse = true) => {
    if (pinned.has(buffer)) retained.add(buffer);
    else release(buffer, reuse);
  };
}

function pin(buffers: Iterable<GPUBuffer>): void {
  for (const x of buffers) pinned.set(x, (pinned.get(x) ?? 0) + 1);
}

function unpin(buffers: Iterable<GPUBuffer>): void {
  for (const x of buffers) {
    const n = (pinned.get(x) ?? 1) - 1;
    if (n > 0) {
      pinned.set(x, n);
      continue;
    }
    pinned.delete(x);
    if (retained.delete(x)) originalRelease!(x);
  }
}

function variableBuffers(b: Backend): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [name, v] of Object.entries(tf.engine().state.registeredVariables)) out.set(name, b.tensorMap.get(v.dataId)?.resource ?? v.dataId);
  return out;
}

export class StepReplay {
  private constructor(
    private readonly b: Backend,
    private readonly ops: Op[],
    private readonly inputs: GPUBuffer[],
    private readonly outputs: { buffer: GPUBuffer; bytes: number; staging: GPUBuffer }[],
    private readonly buffers: Set<GPUBuffer>,
    /** Ops from this index on ran after the step's last read-back: its update (see run's `proceed`). */
    private readonly updateFrom: number,
    /** The variables whose buffers the step binds (and may write): their host copies go stale. */
    private readonly variables: object[],
  ) {}

  /** Milliseconds the last run waited for the GPU (its read-back), for benchmarks. */
  lastWaitMs = 0;

  /** Dispatches per replayed step. */
  get dispatches(): number {
    return this.ops.length;
  }

  /**
   * Run `step` (one normal training step over `inputs`) while recording its GPU work. Returns the
   * step's own result and, when the step can be replayed, the replay; otherwise why not. The
   * inputs' buffers become the replay's: the captured step's input tensors must not be read
   * afterwards (each replay writes its own inputs there).
   */
  static async capture<T>(inputs: tf.Tensor[], step: () => Promise<T>): Promise<{ result: T; replay?: StepReplay; refused?: string }> {
    const b = backend();
    if (!b || b.activeTimers) return { result: await step(), refused: 'not on webgpu, replay turned off, or profiling' };
    guardReleases(b);
    const ops: Op[] = [];
    const bound = new Set<GPUBuffer>();
    const reads: { buffer: GPUBuffer; bytes: number }[] = [];
    let updateFrom = 0;
    let refused: string | undefined;

    // Pinned from the moment they are bound: TF.js must not hand a buffer to a later op of the same
    // step, since the replay re-runs every op over the buffers it was captured with (a uniform
    // buffer or an uploaded constant reused for something else would be overwritten).
    const bind = (buffer: GPUBuffer): void => {
      if (bound.has(buffer)) return;
      bound.add(buffer);
      pin([buffer]);
    };
    const device = b.device;
    const createBindGroup = device.createBindGroup;
    const recordAndSubmit = b.recordAndSubmit;
    const read = b.read;
    // The bind group created inside recordAndSubmit is the one it dispatches. Its buffers are
    // pinned here, before recordAndSubmit may submit and release the op's uniform buffer.
    let lastBindGroup: GPUBindGroup | undefined;
    device.createBindGroup = function (this: GPUDevice, descriptor: GPUBindGroupDescriptor) {
      for (const e of descriptor.entries) bind((e.resource as GPUBufferBinding).buffer);
      lastBindGroup = createBindGroup.call(this, descriptor);
      return lastBindGroup;
    };
    b.recordAndSubmit = function (this: Backend, program, ...rest) {
      lastBindGroup = undefined;
      recordAndSubmit.call(this, program, ...rest);
      if (program.pixelsOpType != null || !lastBindGroup) refused ??= 'a program outside the compute path';
      else ops.push({ pipeline: program.pipeline as GPUComputePipeline, bindGroup: lastBindGroup, workgroups: [...program.dispatch] });
    };
    // Eden's in-place dispatches create their bind groups through the wrapper above too.
    observeInPlaceDispatches((d) => ops.push({ pipeline: d.pipeline, bindGroup: d.bindGroup, workgroups: [d.workgroups, 1, 1], inPlace: d }));
    // What the step reads back is what a replay returns: it must be computed by a captured dispatch.
    b.read = async function (this: Backend, dataId: object) {
      const resource = b.tensorMap.get(dataId)?.resource;
      if (resource instanceof GPUBuffer && bound.has(resource)) reads.push({ buffer: resource, bytes: resource.size });
      else refused ??= 'a read-back of data no captured dispatch computed';
      updateFrom = ops.length;
      return read.call(this, dataId);
    };
    const before = variableBuffers(b);
    let result: T;
    try {
      result = await step();
    } catch (err) {
      unpin(bound);
      throw err;
    } finally {
      device.createBindGroup = createBindGroup;
      b.recordAndSubmit = recordAndSubmit;
      b.read = read;
      observeInPlaceDispatches(undefined);
    }
    const after = variableBuffers(b);
    for (const [name, buffer] of after) {
      // A variable created in the step (e.g. optimiser state at a stage's first step) would be
      // re-initialised by every replay; one that changed buffer would be stale.
      if (!before.has(name)) refused ??= `variable '${name}' created during the step`;
      else if (before.get(name) !== buffer) refused ??= `variable '${name}' changed buffer during the step`;
    }
    const inputBuffers = inputs.map((t) => b.tensorMap.get(t.dataId)?.resource);
    if (!inputBuffers.every((x): x is GPUBuffer => x instanceof GPUBuffer && bound.has(x))) refused ??= 'an input not read from a GPU buffer';
    if (refused) {
      unpin(bound);
      return { result, refused };
    }
    const outputs = reads.map((r) => ({ ...r, staging: device.createBuffer({ size: r.bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) }));
    const variables = Object.values(tf.engine().state.registeredVariables)
      .filter((v) => bound.has(b.tensorMap.get(v.dataId)?.resource as GPUBuffer))
      .map((v) => v.dataId);
    return { result, replay: new StepReplay(b, ops, inputBuffers as GPUBuffer[], outputs, bound, updateFrom, variables) };
  }

  /**
   * One step over new `inputs` (same shapes as the captured ones): returns the values the captured
   * step read back, in order (for adamStep: its diagnostics), and whether the step's update ran.
   * The dispatches up to the captured step's last read-back run first; the rest (what the step did
   * after seeing those values: for adamStep, SGD, the EMA teacher and the enqueue) only if
   * `proceed` accepts the values, as the captured step decided on the host (adamStep skips its
   * update when the loss is not finite). Without `proceed`, everything runs in one submit.
   */
  async run(inputs: tf.Tensor[], settings: ReplaySettings, proceed?: (values: Float32Array[]) => boolean): Promise<{ values: Float32Array[]; updated: boolean }> {
    const b = this.b;
    if (inputs.length !== this.inputs.length) throw new Error(`replay expects ${this.inputs.length} inputs, got ${inputs.length}`);
    // Submit what TF.js has encoded but not submitted (e.g. the end of the captured step) first:
    // the writes below go to the queue at once and must not overtake those commands.
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    b.submitQueue();
    b.ensureCommandEncoderReady();
    inputs.forEach((t, i) => {
      const data = b.tensorMap.get(t.dataId);
      if (data?.values) b.queue.writeBuffer(this.inputs[i]!, 0, Float32Array.from(data.values));
      else {
        b.uploadToGPU(t.dataId);
        const source = b.tensorMap.get(t.dataId)!.resource as GPUBuffer;
        if (source !== this.inputs[i]) b.commandEncoder!.copyBufferToBuffer(source, 0, this.inputs[i]!, 0, t.size * 4);
      }
    });
    for (const op of this.ops) {
      const d = op.inPlace;
      if (!d) continue;
      if (d.kind === 'sgd' || d.kind === 'sgd-ema') {
        const scalars = d.scalars.slice(0);
        new Float32Array(scalars, 0, 1)[0] = required(settings.learningRate, 'learningRate', 'SGD');
        new Uint32Array(scalars, 16, 1)[0] = 0; // not a stage's first step: the velocity exists
        b.queue.writeBuffer(d.uniforms, 0, scalars);
      } else if (d.kind === 'enqueue') {
        const scalars = d.scalars.slice(0);
        new Uint32Array(scalars, 0, 1)[0] = required(settings.queuePointer, 'queuePointer', 'memory-queue');
        b.queue.writeBuffer(d.uniforms, 0, scalars);
      } else if (d.kind === 'adam') {
        // Scalars [lr, beta1, beta2, eps, c1, c2]: the bias corrections of this step, computed as
        // the optimiser does (train/optimizer.ts), from its betas in double precision.
        const t = required(settings.adamStep, 'adamStep', 'Adam');
        const scalars = d.scalars.slice(0);
        new Float32Array(scalars, 16, 2).set([1 - d.betas![0] ** t, 1 - d.betas![1] ** t]);
        b.queue.writeBuffer(d.uniforms, 0, scalars);
      }
    }
    const split = proceed ? this.updateFrom : this.ops.length;
    this.encode(0, split);
    for (const o of this.outputs) b.commandEncoder!.copyBufferToBuffer(o.buffer, 0, o.staging, 0, o.bytes);
    b.submitQueue();
    const t0 = performance.now();
    const values = await Promise.all(
      this.outputs.map(async (o) => {
        await o.staging.mapAsync(GPUMapMode.READ);
        const v = new Float32Array(o.staging.getMappedRange().slice(0));
        o.staging.unmap();
        return v;
      }),
    );
    this.lastWaitMs = performance.now() - t0;
    replayed++;
    const updated = split === this.ops.length || proceed!(values);
    if (split < this.ops.length && updated) {
      b.ensureCommandEncoderReady();
      this.encode(split, this.ops.length);
      b.submitQueue();
    }
    // TF.js's host copies of the variables (from reads between steps, e.g. a checkpoint) are stale now.
    for (const id of this.variables) dropHostCopy(b, id);
    return { values, updated };
  }

  /** Encode ops [from, to) in one compute pass of TF.js's command encoder. */
  private encode(from: number, to: number): void {
    if (from === to) return;
    const pass = this.b.commandEncoder!.beginComputePass();
    for (const op of this.ops.slice(from, to)) {
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, op.bindGroup);
      pass.dispatchWorkgroups(...op.workgroups);
    }
    pass.end();
  }

  /** Release the captured buffers (to TF.js's pool, where no tensor holds them) and the staging buffers. */
  dispose(): void {
    unpin(this.buffers);
    for (const o of this.outputs) o.staging.destroy();
    this.ops.length = 0;
  }
}
