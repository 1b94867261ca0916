/**
 * WebGPU in Node through Dawn (the npm `webgpu` package). TF.js's webgpu backend registers itself
 * only when `navigator.gpu` exists at import time, so the globals are installed first and the
 * backend is imported afterwards.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { registerWebGpuKernels } from './wasm-kernels.js';
import { registerWebGpuBatchNorm } from './webgpu-batchnorm.js';
import { registerWebGpuConvolutions } from './webgpu-conv.js';
import { registerWebGpuInfoNce } from './webgpu-infonce.js';
import { offerSubgroups, subgroupsOn, webGpuSubgroupSizes } from './webgpu-subgroups.js';

let ready: Promise<void> | undefined;
let adapterDescription: string | undefined;

/**
 * Dawn options; `EDEN_DAWN_BACKEND=opengl` selects Dawn's GL backend for surfaceless Mesa. Timestamp
 * quantization (a browser's defence against timing attacks: timestamps rounded down to 2^16 ns)
 * is off: in Node it only blurs the GPU times of short kernels (webgpu-timing.ts, TF.js's profile).
 */
function dawnOptions(): string[] {
  const backend = process.env['EDEN_DAWN_BACKEND'];
  return [...(backend ? [`backend=${backend}`] : []), 'disable-dawn-features=timestamp_quantization'];
}

/**
 * Whether WebGPU works here: the first adapter's description, or why not — told apart: the
 * `webgpu` package failing to load (a broken install) is not the same as a machine without an
 * adapter (no GPU driver, no Mesa >= 24 lavapipe).
 */
export async function probeWebGpu(): Promise<{ adapter: string } | { reason: string }> {
  let webgpu: WebGpuModule;
  try {
    webgpu = (await import('webgpu')) as unknown as WebGpuModule;
  } catch (err) {
    return { reason: `the webgpu package failed to load (${err instanceof Error ? err.message.split('\n')[0] : String(err)})` };
  }
  try {
    const adapter = await requestAdapterCompat(webgpu.create(dawnOptions()));
    if (!adapter) return { reason: 'no WebGPU adapter on this machine (no GPU driver and no Mesa >= 24 lavapipe)' };
    const info = adapter.info ?? {};
    return { adapter: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unnamed adapter' };
  } catch (err) {
    return { reason: `Dawn failed to create a WebGPU instance (${err instanceof Error ? err.message.split('\n')[0] : String(err)})` };
  }
}

/** Returns a description of the first WebGPU adapter, or undefined when there is none. */
export async function probeWebGpuAdapter(): Promise<string | undefined> {
  const r = await probeWebGpu();
  return 'adapter' in r ? r.adapter : undefined;
}

interface WebGpuModule {
  create(options: string[]): GpuLike;
  globals: Record<string, unknown>;
}
type AdapterLike = Parameters<typeof offerSubgroups>[0] & {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
};
interface GpuLike {
  requestAdapter(options?: Record<string, unknown>): Promise<AdapterLike | null>;
  wgslLanguageFeatures?: { has(name: string): boolean };
}

/** Dawn's GL backend needs `featureLevel: 'compatibility'`, which TF.js never asks for. */
async function requestAdapterCompat(gpu: GpuLike, options: Record<string, unknown> = {}): Promise<AdapterLike | null> {
  const adapter = await gpu.requestAdapter(options);
  if (adapter) return adapter;
  return gpu.requestAdapter({ ...options, featureLevel: 'compatibility' });
}

/** The EDEN_WEBGPU_* switches and the values each takes (README); unset is the default. */
const SWITCHES: Record<string, string[]> = {
  EDEN_WEBGPU_FUSED: ['0', '1'],
  EDEN_WEBGPU_REPLAY: ['0', '1'],
  EDEN_WEBGPU_CONV: ['0', '1', 'all', 'tune'],
  EDEN_WEBGPU_CONV_VEC4: ['0', '1'],
  EDEN_WEBGPU_SUBGROUPS: ['0', '1'],
};

/**
 * Refuse a misspelt switch (EDEN_WEBGPU_CONV=tuned would otherwise run the default silently).
 * Checked when the webgpu backend starts and for each engine line.
 */
export function checkWebGpuSwitches(env: NodeJS.ProcessEnv = process.env): void {
  for (const [name, values] of Object.entries(SWITCHES)) {
    const v = env[name];
    if (v !== undefined && v !== '' && !values.includes(v)) throw new EdenError('config', `${name}='${v}' is not one of ${values.join(', ')} (unset: the default)`);
  }
}

export async function initWebGpu(): Promise<void> {
  checkWebGpuSwitches();
  ready ??= (async () => {
    const webgpu = (await import('webgpu')) as unknown as WebGpuModule;
    const gpu = webgpu.create(dawnOptions());
    // TF.js requests its device from the adapter it asks for here: where the adapter offers
    // subgroups, that device gets them (webgpu-subgroups.ts).
    const wrapped: GpuLike = {
      requestAdapter: async (options) => {
        const adapter = await requestAdapterCompat(gpu, options);
        if (adapter) offerSubgroups(adapter, gpu.wgslLanguageFeatures);
        return adapter;
      },
    };
    Object.assign(globalThis, webgpu.globals);
    const nav = (globalThis as { navigator?: object }).navigator;
    // Node 21+ defines navigator; Node 20 does not. Either way `gpu` must be present.
    Object.defineProperty(globalThis, 'navigator', {
      value: Object.assign(Object.create(nav ?? {}) as object, { gpu: Object.assign(Object.create(gpu as object) as object, wrapped) }),
      configurable: true,
      writable: true,
    });
    const adapter = await wrapped.requestAdapter();
    if (!adapter) {
      throw new EdenError(
        'engine',
        'no WebGPU adapter found: install a GPU driver with Vulkan support, or Mesa >= 24 lavapipe ' +
          '(set VK_ICD_FILENAMES to its lvp_icd json) to run WebGPU on the CPU',
      );
    }
    const info = adapter.info ?? {};
    adapterDescription = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
    await import('@tensorflow/tfjs-backend-webgpu');
    registerWebGpuKernels();
    registerWebGpuConvolutions();
    registerWebGpuBatchNorm();
    registerWebGpuInfoNce();
    // ENGINE.md bug 5: split-K matmul with a transposed second operand gives wrong values on every
    // driver. Program type 3 is the plain tiled matmul.
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 3);
  })();
  return ready;
}

/** The adapter the webgpu backend runs on, once initialised. */
export function webGpuAdapterDescription(): string | undefined {
  return adapterDescription;
}

/**
 * One line for logs on what Eden's webgpu path runs with here: the adapter, and which of Eden's
 * kernels, replays and subgroups are on (each has an EDEN_WEBGPU_* switch; README).
 */
export function describeWebGpuEngine(): string {
  const env = process.env;
  checkWebGpuSwitches(env);
  const sizes = webGpuSubgroupSizes();
  const conv = env['EDEN_WEBGPU_CONV'];
  const parts = [
    env['EDEN_WEBGPU_FUSED'] === '0' ? 'fused kernels off' : 'fused kernels',
    env['EDEN_WEBGPU_REPLAY'] === '0' ? 'step replay off' : 'step replay',
    conv === '0'
      ? "TF.js's convolutions"
      : conv === 'all'
        ? 'implicit-GEMM convolutions (all)'
        : conv === 'tune'
          ? 'convolutions tuned per layer on this device'
          : 'implicit-GEMM convolutions (measured routing)',
    sizes && subgroupsOn() ? `subgroups of ${sizes.min === sizes.max ? sizes.min : `${sizes.min}-${sizes.max}`}` : 'no subgroups',
  ];
  return `webgpu on ${adapterDescription || 'an unnamed adapter'} (${parts.join(', ')})`;
}
