/** Model files: the streamed safetensors writer; exact float16 conversion, and an encoder stored at 16 bits. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { f16ArrayToF32, f16ToF32, f32ToF16 } from '../src/core/half.js';
import { Rng } from '../src/core/rng.js';
import { useBackend } from '../src/engine/backend.js';
import { Encoder } from '../src/models/encoder.js';
import { loadEncoder, saveEncoder } from '../src/models/encoder-file.js';
import { withoutRandomInit } from '../src/models/layers.js';
import { decodeTensorFile, encodeTensorFile, saveTensorFile, toRecords, writeFileAtomic } from '../src/engine/tensor-file.js';

describe('safetensors files', () => {
  it('saveTensorFile streams the same bytes encodeTensorFile builds in one buffer (float32, int32, bool, a view of a larger tensor), read back exactly', async () => {
    await useBackend('wasm');
    const wide = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
    const tensors = new Map<string, tf.Tensor>([
      ['weights', tf.randomNormal([3, 5, 7], 0, 1, 'float32', 4)],
      ['steps', tf.tensor1d([7, -1, 2 ** 30], 'int32')],
      ['flags', tf.tensor1d([true, false, true, true], 'bool')],
      ['scalar', tf.scalar(0.25)],
      ['row', tf.slice(wide, [1, 0], [1, 3])],
    ]);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'eden-st-')), 'state.safetensors');
    const metadata = { format: 'test', eden: JSON.stringify({ a: [1, 2] }) };
    await saveTensorFile(file, tensors, metadata);
    const bytes = readFileSync(file);
    assert.ok(bytes.equals(encodeTensorFile(await toRecords(tensors), metadata)));
    const back = decodeTensorFile(bytes, file);
    assert.deepEqual(back.metadata, metadata);
    for (const [name, t] of tensors) {
      const r = back.tensors.get(name)!;
      assert.deepEqual([r.dtype, r.shape, Array.from(r.data)], [t.dtype, t.shape, Array.from(await t.data())], name);
    }
    assert.deepEqual(Array.from(back.tensors.get('row')!.data), [4, 5, 6]);
    tf.dispose([wide, ...tensors.values()]);
  });

  it('a write that fails part-way leaves neither the file nor its temporary', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-st-'));
    const file = path.join(dir, 'state.safetensors');
    await assert.rejects(writeFileAtomic(file, async (handle) => {
      await handle.writeFile(new Uint8Array(1000));
      throw new Error('disk full');
    }), /disk full/);
    assert.ok(!existsSync(file));
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe('float16', () => {
  it('round-trips every finite half value exactly, and rounds floats to the nearest half (ties to even)', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16ToF32(h);
      if (Number.isNaN(v)) continue;
      assert.equal(f32ToF16(v), h, `half 0x${h.toString(16)}`);
    }
    // Whole arrays decode by table: every bit pattern gives f16ToF32's value (NaNs too), to the bit.
    const all = f16ArrayToF32(Uint16Array.from({ length: 0x10000 }, (_, h) => h));
    for (let h = 0; h < 0x10000; h++) assert.ok(Object.is(all[h], Math.fround(f16ToF32(h))), `half 0x${h.toString(16)}: ${all[h]} vs ${f16ToF32(h)}`);
    assert.equal(f32ToF16(1 + 2 ** -11), f32ToF16(1)); // a tie between 1 and 1 + 2^-10 goes to the even 1
    assert.equal(f32ToF16(1 + 3 * 2 ** -11), f32ToF16(1 + 2 * 2 ** -10)); // ... and this one up, to the even neighbour
    assert.equal(f32ToF16(1e6), 0x7c00); // overflow -> infinity
    const rng = new Rng(1);
    for (let i = 0; i < 10000; i++) {
      const v = rng.uniform(-100, 100);
      assert.ok(Math.abs(f16ToF32(f32ToF16(v)) - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25, `${v}`);
    }
  });

  it('an encoder saved at half precision is half the size and loads to the rounded weights', async () => {
    await useBackend('wasm');
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-fp16-'));
    const encoder = new Encoder({ backbone: 'resnet-tiny', width: 8, projectionDim: 16, seed: 3, headNorm: 'batchnorm' });
    await saveEncoder(path.join(dir, 'f32.safetensors'), encoder, { hasHead: true, source: 'test' });
    await saveEncoder(path.join(dir, 'f16.safetensors'), encoder, { hasHead: true, source: 'test' }, { float16: true });
    const [big, small] = ['f32', 'f16'].map((f) => statSync(path.join(dir, `${f}.safetensors`)).size);
    assert.ok(small! < 0.55 * big!, `${small} vs ${big} bytes`);
    const { encoder: back, meta } = await loadEncoder(path.join(dir, 'f16.safetensors'));
    assert.equal(meta.args.headNorm, 'batchnorm');
    for (const [name, v] of encoder.namedVariables()) {
      const expected = Array.from(v.dataSync(), (x) => f16ToF32(f32ToF16(x)));
      assert.deepEqual(Array.from(back.namedVariables().get(name)!.dataSync()), expected, name);
    }
    encoder.dispose();
    back.dispose();
  });
});

describe('loading a model without drawing its random weights', () => {
  it('withoutRandomInit builds with zero weights and restores random init after (also after a throw); a file without the head keeps a random one', async () => {
    await useBackend('wasm');
    const allZero = (e: Encoder, prefix: RegExp): boolean => [...e.namedVariables()].filter(([n]) => prefix.test(n) && /\.weight$/.test(n) && !/bn|downsample\.1/.test(n)).every(([, v]) => v.dataSync().every((x) => x === 0));
    const zeroed = withoutRandomInit(() => new Encoder({ backbone: 'resnet-tiny', width: 4, projectionDim: 8, seed: 1 }));
    assert.ok(allZero(zeroed, /^(backbone|head)\./));
    const random = new Encoder({ backbone: 'resnet-tiny', width: 4, projectionDim: 8, seed: 1 });
    assert.ok(!allZero(random, /^backbone\./) && !allZero(random, /^head\./));
    assert.throws(() => withoutRandomInit(() => { throw new Error('boom'); }), /boom/);
    const after = new Encoder({ backbone: 'resnet-tiny', width: 4, projectionDim: 8, seed: 1 });
    assert.ok(!allZero(after, /^backbone\./));
    // Saved without its head and loaded: the backbone is the file's, the head random as before.
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'eden-noinit-')), 'enc.safetensors');
    await saveEncoder(file, random, { hasHead: false, source: 'test' });
    const { encoder } = await loadEncoder(file);
    const vars = new Map(encoder.namedVariables());
    for (const [n, v] of [...random.namedVariables()]) if (n.startsWith('backbone.')) assert.deepEqual(Array.from(vars.get(n)!.dataSync()), Array.from(v.dataSync()), n);
    assert.ok(!allZero(encoder, /^head\./));
    for (const e of [zeroed, random, after, encoder]) e.dispose();
  });
});
