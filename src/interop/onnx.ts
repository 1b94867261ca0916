/**
 * ONNX export of an encoder's backbone: batch norm folded into the convolutions, NCHW as ONNX
 * expects, dynamic batch and image size. Inputs: `image` [N, 1, H, W] (the same values Eden's
 * backbone takes); outputs: `eve` [N, D] (pooled) and `feature_map` [N, D, h, w] (dense Eve).
 * The protobuf is written here directly (a few message types of onnx.proto), which keeps the
 * export free of a 300 MB runtime dependency.
 */
import type { Encoder } from '../models/encoder.js';
import { writeFileAtomic } from '../engine/tensor-file.js';
import type { EncoderFileMeta } from '../models/encoder-file.js';

// ---- A minimal protobuf writer.
class Proto {
  private chunks: number[] = [];
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.chunks.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.chunks.push(Number(x));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.chunks.push(...b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    for (let i = 0; i < b.length; i++) this.chunks.push(b[i]!);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, m: Proto): this {
    return this.bytes(field, m.finish());
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

const FLOAT = 1;

function tensorProto(name: string, dims: number[], data: Float32Array): Proto {
  const p = new Proto();
  for (const d of dims) p.int(1, d);
  return p.int(2, FLOAT).string(8, name).bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function attrInts(name: string, values: number[]): Proto {
  const p = new Proto().string(1, name);
  for (const v of values) p.int(8, v);
  return p.int(20, 7);
}

function node(op: string, inputs: string[], outputs: string[], attrs: Proto[] = []): Proto {
  const p = new Proto();
  for (const i of inputs) p.string(1, i);
  for (const o of outputs) p.string(2, o);
  p.string(3, `${op}_${outputs[0]}`).string(4, op);
  for (const a of attrs) p.message(5, a);
  return p;
}

function valueInfo(name: string, dims: (number | string)[]): Proto {
  const shape = new Proto();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new Proto().int(1, d) : new Proto().string(2, d));
  const tensorType = new Proto().int(1, FLOAT).message(2, shape);
  return new Proto().string(1, name).message(2, new Proto().message(1, tensorType));
}

/** Conv weights (HWIO -> OIHW) with the following batch norm folded in. */
async function foldedConv(encoder: Encoder, conv: string, bn: string): Promise<{ w: Float32Array; b: Float32Array; dims: number[] }> {
  const s = encoder.backbone.store;
  const wv = s.get(`${conv}.weight`);
  const [kh, kw, ci, co] = wv.shape as [number, number, number, number];
  const w = (await wv.data()) as Float32Array;
  const [gamma, beta, mean, variance] = (await Promise.all(['weight', 'bias', 'running_mean', 'running_var'].map((n) => s.get(`${bn}.${n}`).data()))) as Float32Array[];
  const scale = Float32Array.from(gamma!, (g, o) => g / Math.sqrt(variance![o]! + 1e-5));
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) out[((o * ci + i) * kh + y) * kw + x] = w[((y * kw + x) * ci + i) * co + o]! * scale[o]!;
  const b = Float32Array.from(beta!, (bt, o) => bt - mean![o]! * scale[o]!);
  return { w: out, b, dims: [co, ci, kh, kw] };
}

export async function exportOnnx(encoder: Encoder, meta: EncoderFileMeta, file: string): Promise<void> {
  const graph = new Proto().string(2, `eden_${meta.args.backbone}`);
  const nodes: Proto[] = [];
  const inits: Proto[] = [];
  const conv = async (input: string, output: string, convName: string, bnName: string, stride: number, pad: number): Promise<void> => {
    const f = await foldedConv(encoder, convName, bnName);
    inits.push(tensorProto(`${convName}.w`, f.dims, f.w), tensorProto(`${convName}.b`, [f.b.length], f.b));
    nodes.push(node('Conv', [input, `${convName}.w`, `${convName}.b`], [output], [attrInts('kernel_shape', f.dims.slice(2)), attrInts('strides', [stride, stride]), attrInts('pads', [pad, pad, pad, pad])]));
  };
  await conv('image', 'stem', 'conv1', 'bn1', 2, 3);
  nodes.push(node('Relu', ['stem'], ['stem_relu']));
  nodes.push(node('MaxPool', ['stem_relu'], ['pool'], [attrInts('kernel_shape', [3, 3]), attrInts('strides', [2, 2]), attrInts('pads', [1, 1, 1, 1])]));
  let h = 'pool';
  const { block, depths } = encoder.backbone.args;
  for (const [stage, n] of depths.entries()) {
    for (let j = 0; j < n; j++) {
      const name = `layer${stage + 1}.${j}`;
      const stride = j === 0 && stage > 0 ? 2 : 1;
      let y: string;
      if (block === 'basic') {
        await conv(h, `${name}.c1`, `${name}.conv1`, `${name}.bn1`, stride, 1);
        nodes.push(node('Relu', [`${name}.c1`], [`${name}.r1`]));
        await conv(`${name}.r1`, `${name}.c2`, `${name}.conv2`, `${name}.bn2`, 1, 1);
        y = `${name}.c2`;
      } else {
        await conv(h, `${name}.c1`, `${name}.conv1`, `${name}.bn1`, 1, 0);
        nodes.push(node('Relu', [`${name}.c1`], [`${name}.r1`]));
        await conv(`${name}.r1`, `${name}.c2`, `${name}.conv2`, `${name}.bn2`, stride, 1);
        nodes.push(node('Relu', [`${name}.c2`], [`${name}.r2`]));
        await conv(`${name}.r2`, `${name}.c3`, `${name}.conv3`, `${name}.bn3`, 1, 0);
        y = `${name}.c3`;
      }
      let shortcut = h;
      if (encoder.backbone.store.variables.has(`${name}.downsample.0.weight`)) {
        await conv(h, `${name}.ds`, `${name}.downsample.0`, `${name}.downsample.1`, stride, 0);
        shortcut = `${name}.ds`;
      }
      nodes.push(node('Add', [y, shortcut], [`${name}.sum`]));
      nodes.push(node('Relu', [`${name}.sum`], [`${name}.out`]));
      h = `${name}.out`;
    }
  }
  nodes.push(node('Identity', [h], ['feature_map']));
  nodes.push(node('GlobalAveragePool', [h], ['gap']));
  nodes.push(node('Flatten', ['gap'], ['eve']));
  for (const n of nodes) graph.message(1, n);
  for (const t of inits) graph.message(5, t);
  graph.message(11, valueInfo('image', ['batch', 1, 'height', 'width']));
  graph.message(12, valueInfo('eve', ['batch', encoder.featureDim]));
  graph.message(12, valueInfo('feature_map', ['batch', encoder.featureDim, 'feature_height', 'feature_width']));
  const model = new Proto()
    .int(1, 7) // IR version 7
    .string(2, 'eden')
    .string(3, meta.format)
    .message(7, graph)
    .message(8, new Proto().string(1, '').int(2, 13)); // opset 13
  await writeFileAtomic(file, model.finish());
}
