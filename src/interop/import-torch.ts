/**
 * PyTorch ResNet weights -> an Eden Encoder. Names map one to one (Eden's ResNet uses torchvision's
 * names) after stripping wrapper prefixes (`module.`, `encoder_q.`, `backbone.`, `student.`, ...);
 * conv weights go from OIHW to HWIO; Linear weights from [out, in] to [in, out]; a 3-channel first
 * conv becomes a 1-channel one by summing over its input channels (the response to a grey image
 * replicated on R, G and B is unchanged); MoCo's `fc` MLP becomes the projection head; a
 * classifier `fc` and `num_batches_tracked` are ignored.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { Encoder } from '../models/encoder.js';
import { PyObject, type PyValue } from './pickle.js';
import { isTorchTensor, readTorchFile, type TorchTensor } from './torch-file.js';

const PREFIXES = ['module.', 'encoder_q.', 'base_encoder.', 'backbone.', 'student.', 'encoder.', 'model.'];
/** Containers of a state dict inside a training checkpoint, in order of preference. */
const STATE_KEYS = ['state_dict', 'student', 'model', 'state'];
/** Parts of MoCo-style checkpoints that are not the query encoder. */
const SKIP = [/^encoder_k\./, /^momentum_encoder\./, /^queue/, /^teacher\./, /num_batches_tracked$/];

export interface ImportReport {
  arch: string;
  width: number;
  loaded: number;
  ignored: string[];
  conv1ChannelsSummed: number | null;
  head: 'imported' | 'none' | 'classifier ignored';
}

/** The state dict inside whatever torch.save wrote. */
export function findStateDict(root: PyValue, source: string): Map<string, TorchTensor> {
  const asMap = (v: PyValue): Map<PyValue, PyValue> | undefined => (v instanceof Map ? v : v instanceof PyObject && v.state instanceof Map ? v.state : undefined);
  const isStateDict = (m: Map<PyValue, PyValue>): boolean => [...m.values()].some(isTorchTensor);
  const top = asMap(root);
  if (!top) throw new EdenError('data', `${source}: holds no dict of tensors`);
  let found: Map<PyValue, PyValue> | undefined = isStateDict(top) ? top : undefined;
  for (const k of STATE_KEYS) {
    if (found) break;
    const inner = top.get(k);
    const m = inner !== undefined ? asMap(inner) : undefined;
    if (m && isStateDict(m)) found = m;
  }
  if (!found) throw new EdenError('data', `${source}: no state dict found (looked at the top level and at ${STATE_KEYS.map((k) => `'${k}'`).join(', ')}); keys are ${[...top.keys()].slice(0, 10).join(', ')}`);
  const out = new Map<string, TorchTensor>();
  for (const [k, v] of found) if (typeof k === 'string' && isTorchTensor(v)) out.set(k, v);
  return out;
}

function stripPrefixes(name: string): string {
  for (let changed = true; changed; ) {
    changed = false;
    for (const p of PREFIXES) {
      if (name.startsWith(p)) {
        name = name.slice(p.length);
        changed = true;
      }
    }
  }
  return name;
}

/** OIHW -> HWIO. */
function oihwToHwio(t: TorchTensor): Float32Array {
  const [o, i, h, w] = t.shape as [number, number, number, number];
  const out = new Float32Array(t.data.length);
  for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[((y * w + x) * i + b) * o + a] = t.data[((a * i + b) * h + y) * w + x]!;
  return out;
}

function transpose2d(t: TorchTensor): Float32Array {
  const [r, c] = t.shape as [number, number];
  const out = new Float32Array(t.data.length);
  for (let a = 0; a < r; a++) for (let b = 0; b < c; b++) out[b * r + a] = t.data[a * c + b]!;
  return out;
}

export async function importTorchCheckpoint(file: string, options: { arch: string; projectionDim?: number }): Promise<{ encoder: Encoder; report: ImportReport }> {
  const raw = findStateDict(await readTorchFile(file), file);
  const state = new Map<string, TorchTensor>();
  const ignored: string[] = [];
  for (const [k, v] of raw) {
    if (SKIP.some((r) => r.test(k))) {
      ignored.push(k);
      continue;
    }
    const name = stripPrefixes(k);
    if (SKIP.some((r) => r.test(name))) {
      ignored.push(k);
      continue;
    }
    state.set(name, v);
  }
  const conv1 = state.get('conv1.weight');
  if (!conv1 || conv1.shape.length !== 4) throw new EdenError('data', `${file}: no 'conv1.weight' of a ResNet after removing prefixes (${PREFIXES.join(', ')}); first keys: ${[...raw.keys()].slice(0, 5).join(', ')}`);
  const width = conv1.shape[0]!;
  // MoCo's MLP head: fc.0 [D, D], fc.2 [dim, D]. A single fc is a classifier.
  const fc0 = state.get('fc.0.weight');
  const fc2 = state.get('fc.2.weight');
  const hasHead = !!(fc0 && fc2 && fc0.shape[0] === fc0.shape[1] && fc2.shape[1] === fc0.shape[0]);
  const projectionDim = hasHead ? fc2!.shape[0]! : (options.projectionDim ?? 128);
  const encoder = new Encoder({ backbone: options.arch, width, projectionDim, seed: 0 });
  let conv1Summed: number | null = null;
  const used = new Set<string>();
  try {
    for (const [name, v] of encoder.namedVariables()) {
      const isHead = name.startsWith('head.');
      if (isHead && !hasHead) continue;
      const key = isHead ? name.slice('head.'.length) : name.slice('backbone.'.length);
      const t = state.get(key);
      if (!t) throw new EdenError('data', `${file}: missing '${key}' for ${options.arch} (is --arch right? this file's conv1 has width ${width})`);
      let data: Float32Array;
      if (t.shape.length === 4) {
        let src = t;
        if (key === 'conv1.weight' && t.shape[1] !== v.shape[2]) {
          // Sum the input channels: RGB weights applied to a grey image replicated 3 times.
          const [o, i, h, w] = t.shape as [number, number, number, number];
          const summed = new Float32Array(o * h * w);
          for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) for (let p = 0; p < h * w; p++) summed[a * h * w + p]! += t.data[(a * i + b) * h * w + p]!;
          src = { kind: 'tensor', dtype: 'float32', shape: [o, 1, h, w], data: summed };
          conv1Summed = i;
        }
        data = oihwToHwio(src);
      } else if (t.shape.length === 2) {
        data = transpose2d(t);
      } else {
        data = Float32Array.from(t.data as ArrayLike<number>);
      }
      if (data.length !== v.size) throw new EdenError('data', `${file}: '${key}' has shape [${t.shape}], ${options.arch} width ${width} expects ${v.size} values ([${v.shape}] in Eden's layout); is --arch right?`);
      tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
      used.add(key);
    }
  } catch (err) {
    encoder.dispose();
    throw err;
  }
  for (const k of state.keys()) if (!used.has(k)) ignored.push(k);
  // num_batches_tracked counters are expected noise: left out of the report.
  const reported = ignored.filter((k) => !k.endsWith('num_batches_tracked'));
  const head: ImportReport['head'] = hasHead ? 'imported' : state.has('fc.weight') ? 'classifier ignored' : 'none';
  return { encoder, report: { arch: options.arch, width, loaded: used.size, ignored: reported, conv1ChannelsSummed: conv1Summed, head } };
}
