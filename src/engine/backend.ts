/**
 * Backend selection. Eden runs on TensorFlow.js with one of three backends:
 *  - `wasm`   (default on CPU): XNNPACK kernels with SIMD, plus the kernels Eden adds (./wasm-kernels.ts);
 *  - `cpu`    (pure JavaScript): slow, but the numerical reference every other backend is tested against;
 *  - `webgpu` (Dawn through the npm `webgpu` package): the GPU path; also runs on CPU Vulkan drivers.
 * See ../shared/docs/ENGINE.md for the measurements behind the default.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { registerWasmKernels } from './wasm-kernels.js';
import { initWebGpu } from './webgpu.js';
import { registerGradientFixes } from './gradients.js';
import { registerNativeKernels } from './native.js';

export const BACKENDS = ['wasm', 'cpu', 'webgpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendOptions {
  /** Which TF.js backend runs the kernels. Default `wasm`. */
  backend?: BackendName;
}

let wasmPathsSet = false;

/** Point the wasm backend at the .wasm binaries shipped inside its npm package (no download). */
function configureWasm(): void {
  if (wasmPathsSet) return;
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
  setWasmPaths(dir);
  wasmPathsSet = true;
}

/**
 * For the library's loaders: keeps the backend chosen with useBackend (or set through TF.js), and
 * sets up wasm when there is none — a model loaded before any useBackend call failed with TF.js's
 * "backend 'wasm' has not yet been initialized".
 */
export async function ensureBackend(): Promise<void> {
  // TF.js names its backend once one is set, by useBackend or by the caller through TF.js.
  if (tf.engine().backendName) return;
  await useBackend('wasm');
}

/**
 * Make `name` the active TF.js backend, registering Eden's kernel additions and fixes first.
 * Safe to call repeatedly; switching back and forth keeps each backend's tensors alive.
 */
export async function useBackend(name: BackendName = 'wasm'): Promise<BackendName> {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new EdenError('config', `unknown backend '${String(name)}': expected one of ${BACKENDS.join(', ')}`);
  }
  registerGradientFixes();
  if (name === 'wasm') {
    configureWasm();
    registerWasmKernels();
    // Native oneDNN kernels where the addon is built; the wasm kernels otherwise.
    registerNativeKernels();
  } else if (name === 'webgpu') {
    await initWebGpu();
  }
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw new EdenError('engine', `TensorFlow.js could not initialise the '${name}' backend`);
  }
  await tf.ready();
  if (name === 'cpu') {
    // The cpu backend's first write prints a banner recommending tfjs-node, which cannot install
    // here (ENGINE.md); Eden uses cpu on purpose (reference, small jobs).
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  }
  return name;
}

export { tf };
