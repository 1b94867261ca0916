/**
 * The part of TF.js 4.22's WebGPU program interface that Eden's own WGSL programs fill in
 * (webgpu-batchnorm.ts, webgpu-conv.ts), and the backend method that runs them. TF.js generates
 * the bindings (inputs by `variableNames`, `result`, `uniforms`), the `main(index)` entry and the
 * `localId` / `workgroupId` built-ins around getUserCode(); a program reading no uniform still gets
 * TF.js's uniform buffer bound, so it must declare and read one.
 */
import type * as tf from '@tensorflow/tfjs';

export interface WebGpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size?: boolean;
  /** Per input, 4 to bind it as array<vec4<f32>> (its length a multiple of 4), else 1. */
  variableComponents?: number[];
  uniforms?: string;
  getUserCode(): string;
}

export type Uniforms = { type: string; data: number[] }[];

export interface WebGpuBackendLike {
  runWebGPUProgram(program: WebGpuProgram, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: Uniforms): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

/**
 * A one-thread-per-element program over `shape` (workgroups of 256): `index` is the flat element,
 * guarded by TF.js's uniforms.size; `prelude` declares per-element values `body` uses (a channel, a
 * row); `uniforms` are the program's own (TF.js adds `size`).
 */
export function elementwiseProgram(o: { shaderKey: string; variableNames: string[]; shape: number[]; uniforms: string; prelude: string; body: string }): WebGpuProgram {
  const size = o.shape.reduce((a, b) => a * b, 1);
  return {
    variableNames: o.variableNames,
    outputShape: o.shape,
    shaderKey: o.shaderKey,
    dispatchLayout: { x: o.shape.map((_, i) => i) },
    dispatch: [Math.ceil(size / 256), 1, 1],
    workgroupSize: [256, 1, 1],
    size: true,
    uniforms: o.uniforms,
    getUserCode: () => /* wgsl */ `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${o.prelude}
          ${o.body}
        }
      }`,
  };
}
