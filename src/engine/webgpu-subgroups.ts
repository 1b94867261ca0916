/**
 * WebGPU subgroups (issue 13: "where the adapter offers subgroups, use them behind a feature
 * check"). TF.js 4.22 neither requests the `subgroups` device feature nor lets a program declare
 * the subgroup built-ins, so Eden does both around it (webgpu.ts installs these wrappers before
 * TF.js creates its device):
 *
 *   - requestDevice asks for `subgroups` where the adapter offers it and WGSL has the
 *     `subgroup_id` built-in (Dawn's language feature of that name);
 *   - createShaderModule rewrites a program that carries SUBGROUP_MARKER: `enable subgroups;` on
 *     top, and TF.js's `_start` entry point takes the subgroup built-ins and hands them to
 *     module-scope variables (edenSgLane, edenSgSize, edenSgId, edenNumSg), as TF.js does with
 *     localId and workgroupId.
 *
 * A program asks subgroupsOn() when it is built and uses a distinct shader key for each variant.
 * EDEN_WEBGPU_SUBGROUPS=0 selects the workgroup-memory variants (read per program: tests run both
 * in one process). This module is browser-safe: in a browser TF.js creates its device itself,
 * nothing is wrapped and the workgroup-memory variants run.
 */

import { EdenError } from '../core/errors.js';

export const SUBGROUP_MARKER = '/* eden:subgroups */';

/** What the device got: undefined until a device with `subgroups` was created through the wrapper. */
let subgroupSizes: { min: number; max: number } | undefined;

interface AdapterLike {
  features: { has(name: string): boolean };
  info?: { subgroupMinSize?: number; subgroupMaxSize?: number };
  requestDevice(descriptor?: { requiredFeatures?: Iterable<unknown> } & Record<string, unknown>): Promise<DeviceLike>;
}
interface DeviceLike {
  features: { has(name: string): boolean };
  createShaderModule(descriptor: { code: string } & Record<string, unknown>): unknown;
}

/** The `_start` signature of TF.js 4.22's generated WGSL, and the line where it stores its built-ins. */
const START = 'fn _start(';
const START_BODY = 'localId = LocalId;';

/** A TF.js shader with the subgroup built-ins added (see the module comment); throws if TF.js's entry point changed shape. */
export function withSubgroupBuiltins(code: string): string {
  if (!code.includes(START) || !code.includes(START_BODY)) {
    throw new EdenError('engine', 'TF.js\'s WGSL entry point is not the one the subgroup rewrite knows (TF.js version changed?); set EDEN_WEBGPU_SUBGROUPS=0');
  }
  return [
    'enable subgroups;',
    'var<private> edenSgLane : u32;',
    'var<private> edenSgSize : u32;',
    'var<private> edenSgId : u32;',
    'var<private> edenNumSg : u32;',
    code
      .replace(START, `${START}@builtin(subgroup_invocation_id) EdenSgLane : u32, @builtin(subgroup_size) EdenSgSize : u32, @builtin(subgroup_id) EdenSgId : u32, @builtin(num_subgroups) EdenNumSg : u32, `)
      .replace(START_BODY, `${START_BODY} edenSgLane = EdenSgLane; edenSgSize = EdenSgSize; edenSgId = EdenSgId; edenNumSg = EdenNumSg;`),
  ].join('\n');
}

/**
 * Wraps `adapter.requestDevice` (in place) so that the device gets `subgroups` where the adapter
 * and WGSL offer it, and rewrites marked shaders on that device. `wgslFeatures`: the instance's
 * wgslLanguageFeatures.
 */
export function offerSubgroups(adapter: AdapterLike, wgslFeatures: { has(name: string): boolean } | undefined): void {
  if (!adapter.features.has('subgroups') || !wgslFeatures?.has('subgroup_id')) return;
  const requestDevice = adapter.requestDevice.bind(adapter);
  adapter.requestDevice = async (descriptor = {}) => {
    // EDEN_WEBGPU_SUBGROUPS=0 when the device is created: not even requested (an escape hatch
    // from a driver's subgroup bugs); set later, it only selects the programs' variants.
    if (!subgroupsWanted()) return requestDevice(descriptor);
    const features = [...(descriptor.requiredFeatures ?? [])];
    if (!features.includes('subgroups')) features.push('subgroups');
    const device = await requestDevice({ ...descriptor, requiredFeatures: features });
    if (device.features.has('subgroups')) {
      const createShaderModule = device.createShaderModule.bind(device);
      device.createShaderModule = (d) => createShaderModule(d.code.includes(SUBGROUP_MARKER) ? { ...d, code: withSubgroupBuiltins(d.code) } : d);
      subgroupSizes = { min: adapter.info?.subgroupMinSize ?? 0, max: adapter.info?.subgroupMaxSize ?? 0 };
    }
    return device;
  };
}

function subgroupsWanted(): boolean {
  return globalThis.process?.env['EDEN_WEBGPU_SUBGROUPS'] !== '0';
}

/** Whether programs built now should use subgroup operations (the device has them; EDEN_WEBGPU_SUBGROUPS is not 0). */
export function subgroupsOn(): boolean {
  return subgroupSizes !== undefined && subgroupsWanted();
}

/** The device's subgroup sizes, when it has subgroups (for reports). */
export function webGpuSubgroupSizes(): { min: number; max: number } | undefined {
  return subgroupSizes;
}

/** One value reduced over a workgroup: `value` (this thread's, an expression) combined by `op` into `let out`. */
export interface Reduction {
  /** A `var<workgroup>` array of the workgroup's size, free to overwrite. */
  slot: string;
  value: string;
  op: 'sum' | 'max';
  out: string;
}

const COMBINE = { sum: (a: string, b: string) => `${a} + ${b}`, max: (a: string, b: string) => `max(${a}, ${b})` };
const SUBGROUP_OP = { sum: 'subgroupAdd', max: 'subgroupMax' };
/** Identities: 0, and the most negative finite f32 (a literal of it is not exact in WGSL). */
const IDENTITY = { sum: '0.0', max: 'bitcast<f32>(0xff7fffffu)' };

/**
 * WGSL that reduces each of `items` over a workgroup of `threads` (a power of two; `t` the
 * thread's index) and declares `let <out>` with the total in every thread; it ends with a barrier,
 * so the slots are free again. Must be reached in uniform control flow. With subgroups: one
 * subgroup operation, the subgroups' partials through workgroup memory (one barrier), and a second
 * subgroup operation over them (each subgroup adds them up itself: no third barrier). Without: a
 * tree in workgroup memory (log2(threads) barriers). The two orders of addition differ in
 * rounding; each is deterministic on a given device.
 */
export function workgroupReduce(items: Reduction[], threads: number, t: string, subgroups: boolean): string {
  if (subgroups) {
    return `
      ${items.map((r) => `let ${r.out}_partial = ${SUBGROUP_OP[r.op]}(${r.value});`).join('\n      ')}
      if (edenSgLane == 0u) { ${items.map((r) => `${r.slot}[edenSgId] = ${r.out}_partial;`).join(' ')} }
      workgroupBarrier();
      ${items.map((r) => `var ${r.out}_gathered = ${IDENTITY[r.op]};`).join('\n      ')}
      for (var sg = edenSgLane; sg < edenNumSg; sg += edenSgSize) {
        ${items.map((r) => `${r.out}_gathered = ${COMBINE[r.op](`${r.out}_gathered`, `${r.slot}[sg]`)};`).join(' ')}
      }
      ${items.map((r) => `let ${r.out} = ${SUBGROUP_OP[r.op]}(${r.out}_gathered);`).join('\n      ')}
      workgroupBarrier();`;
  }
  return `
      ${items.map((r) => `${r.slot}[${t}] = ${r.value};`).join(' ')}
      workgroupBarrier();
      for (var w = ${threads / 2}; w > 0; w = w >> 1u) {
        if (${t} < w) { ${items.map((r) => `${r.slot}[${t}] = ${COMBINE[r.op](`${r.slot}[${t}]`, `${r.slot}[${t} + w]`)};`).join(' ')} }
        workgroupBarrier();
      }
      ${items.map((r) => `let ${r.out} = ${r.slot}[0];`).join(' ')}
      workgroupBarrier();`;
}
