/**
 * Exporting an encoder:
 *  - 'safetensors': PyTorch's names and layouts (OIHW convs, [out, in] Linear weights), loadable
 *    into torchvision's ResNet with load_state_dict (conv1 has 1 input channel);
 *  - 'tfjs': model.json + weights.bin in TF.js's weights-manifest format, with the architecture, for
 *    the browser (models/encoder-tfjs.ts loads it);
 *  - 'onnx': see ./onnx.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { encodeTensorFile, writeFileAtomic, type TensorRecord } from '../engine/tensor-file.js';
import type { Encoder } from '../models/encoder.js';
import type { EncoderFileMeta } from '../models/encoder-file.js';
import type { TfjsEncoderManifest } from '../models/encoder-tfjs.js';

/** HWIO -> OIHW. */
function hwioToOihw(data: Float32Array, shape: number[]): { data: Float32Array; shape: number[] } {
  const [h, w, i, o] = shape as [number, number, number, number];
  const out = new Float32Array(data.length);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let b = 0; b < i; b++) for (let a = 0; a < o; a++) out[((a * i + b) * h + y) * w + x] = data[((y * w + x) * i + b) * o + a]!;
  return { data: out, shape: [o, i, h, w] };
}

/** The encoder's tensors under PyTorch names and layouts. */
export async function torchStateDict(encoder: Encoder, withHead: boolean): Promise<Map<string, TensorRecord>> {
  const out = new Map<string, TensorRecord>();
  for (const [name, v] of encoder.namedVariables()) {
    if (name.startsWith('head.') && !withHead) continue;
    const key = name.startsWith('backbone.') ? name.slice('backbone.'.length) : name.slice('head.'.length);
    const data = (await v.data()) as Float32Array;
    if (v.shape.length === 4) {
      const t = hwioToOihw(data, v.shape);
      out.set(key, { dtype: 'float32', shape: t.shape, data: t.data });
    } else if (v.shape.length === 2) {
      const [r, c] = v.shape as [number, number];
      const t = new Float32Array(data.length);
      for (let a = 0; a < r; a++) for (let b = 0; b < c; b++) t[b * r + a] = data[a * c + b]!;
      out.set(key, { dtype: 'float32', shape: [c, r], data: t });
    } else {
      out.set(key, { dtype: 'float32', shape: v.shape, data });
    }
  }
  return out;
}

export async function exportSafetensors(encoder: Encoder, meta: EncoderFileMeta, file: string): Promise<void> {
  const tensors = await torchStateDict(encoder, meta.hasHead);
  await writeFileAtomic(file, encodeTensorFile(tensors, { format: 'pt', eden_arch: meta.args.backbone, eden_width: String(meta.args.width) }));
}


/** model.json + weights.bin in `dir`, with Eden's own variable names and layouts. */
export async function exportTfjs(encoder: Encoder, meta: EncoderFileMeta, dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const named: tf.NamedTensorMap = {};
  for (const [n, v] of encoder.namedVariables()) if (meta.hasHead || !n.startsWith('head.')) named[n] = v;
  const { data, specs } = await tf.io.encodeWeights(named);
  const manifest: TfjsEncoderManifest = {
    format: 'eden-encoder-tfjs-1',
    args: meta.args,
    hasHead: meta.hasHead,
    inputSize: meta.inputSize,
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  };
  await writeFileAtomic(path.join(dir, 'weights.bin'), new Uint8Array(data));
  await writeFileAtomic(path.join(dir, 'model.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** Node helper: load a TF.js export folder. */
export async function loadEncoderTfjs(dir: string): Promise<{ encoder: Encoder; manifest: TfjsEncoderManifest }> {
  const { encoderFromTfjs } = await import('../models/encoder-tfjs.js');
  const manifest = JSON.parse(await fs.readFile(path.join(dir, 'model.json'), 'utf8')) as TfjsEncoderManifest;
  const parts = await Promise.all(manifest.weightsManifest.flatMap((g) => g.paths).map((p) => fs.readFile(path.join(dir, p))));
  const all = Buffer.concat(parts);
  return { encoder: encoderFromTfjs(manifest, all.buffer.slice(all.byteOffset, all.byteOffset + all.length)), manifest };
}
