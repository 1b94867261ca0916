/**
 * Interoperability with PyTorch: the unpickler on hand-made pickles; PyTorch checkpoints (made at
 * test time by Debian's python3-torch: test/interop/torch_reference.py) imported and embedded
 * with the same pooled features as PyTorch; ONNX, safetensors and TF.js exports checked against
 * onnxruntime-node, PyTorch and Eden itself.
 */
import { isRequired } from './helpers/tools.js';
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { parse as parseNpy } from 'npyjs';
import { unpickle, PyTuple, type PyGlobal } from '../src/interop/pickle.js';
import { importTorchCheckpoint } from '../src/interop/import-torch.js';
import { exportOnnx } from '../src/interop/onnx.js';
import { exportSafetensors, exportTfjs, loadEncoderTfjs } from '../src/interop/export.js';
import { loadEncoder, saveEncoder } from '../src/models/encoder-file.js';
import { embedFiles } from '../src/embed/embed.js';
import { useBackend } from '../src/engine/backend.js';
import { latin1Bytes } from '../src/interop/torch-file.js';

const root = path.join(import.meta.dirname, '..');
const cli = path.join(root, 'src', 'cli', 'main.ts');
const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));

describe('unpickler', () => {
  // python3 -c "import pickle, collections; print(pickle.dumps({'a': [1, 2.5, None, True], 'b': (1, 'x'),
  //   'big': 2**40, 'neg': -3, 'od': collections.OrderedDict([('k', b'\x00\x01')])}, protocol=P).hex())"
  const P4 = '8004956f000000000000007d94288c0161945d94284b014740040000000000004e88658c0162944b018c01789486948c03626967948a060000000000018c036e6567944afdffffff8c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b94430200019473752e';
  const P2 = '80027d71002858010000006171015d7102284b014740040000000000004e886558010000006271034b015801000000787104867105580300000062696771068a0600000000000158030000006e656771074afdffffff58020000006f64710863636f6c6c656374696f6e730a4f726465726564446963740a71092952710a58010000006b710b635f636f646563730a656e636f64650a710c58020000000001710d58060000006c6174696e31710e86710f52711073752e';
  const globals = {
    'collections.OrderedDict': (module: string, name: string): PyGlobal => ({ module, name, call: () => new Map() }),
    '_codecs.encode': (module: string, name: string): PyGlobal => ({ module, name, call: latin1Bytes }),
  };

  for (const [protocol, bytes] of [['4', P4], ['2', P2]]) {
    it(`reads protocol ${protocol}: dicts, lists, tuples, ints, floats, longs, None, bools, bytes, OrderedDict`, () => {
      const v = unpickle(hex(bytes!), { globals }) as Map<string, unknown>;
      assert.deepEqual(v.get('a'), [1, 2.5, null, true]);
      assert.ok(v.get('b') instanceof PyTuple);
      assert.deepEqual((v.get('b') as PyTuple).items, [1, 'x']);
      assert.equal(v.get('big'), 2 ** 40);
      assert.equal(v.get('neg'), -3);
      assert.deepEqual(Array.from((v.get('od') as Map<string, Uint8Array>).get('k')!), [0, 1]);
    });
  }

  it('refuses any global it was not given, naming it, and runs nothing', () => {
    // class E: __reduce__ = lambda self: (builtins.eval, ('1+1',));  pickle.dumps(E(), protocol=2)
    const evil = hex('8002635f5f6275696c74696e5f5f0a6576616c0a71005803000000312b3171018571025271032e');
    assert.throws(() => unpickle(evil, { globals }), /refusing to load global '__builtin__.eval'/);
    assert.throws(() => unpickle(hex('8002'), { globals }), /ends early/);
  });
});

const hasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { encoding: 'utf8' }).status === 0;
const TORCH_SKIP = hasTorch ? undefined : "PyTorch is not installed: apt-get install python3-torch python3-torchvision (.ci/run does)";

describe('PyTorch checkpoints (parity with python3-torch)', { skip: TORCH_SKIP && !isRequired('torch') ? TORCH_SKIP : undefined }, () => {
  if (TORCH_SKIP) it('needs PyTorch', () => assert.fail(`${TORCH_SKIP} (required here: EDEN_REQUIRE=${process.env['EDEN_REQUIRE']})`));
  let dir: string;
  let ref: Record<string, number[]>;
  let image: string;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'eden-torch-'));
    image = path.join(dir, 'xray224.png');
    // A real radiograph at 224 x 224, 8-bit grey.
    await sharp(path.join(root, 'samples', 'hannover_covid19', '00870a9c.png')).resize(224, 224, { fit: 'fill' }).toColourspace('b-w').png().toFile(image);
    const r = spawnSync('/usr/bin/python3', [path.join(root, 'test', 'interop', 'torch_reference.py'), dir, image], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8'));
    await useBackend('wasm');
  });

  const compare = (name: string, got: ArrayLike<number>, expected: number[], against = 'PyTorch'): void => {
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < expected.length; i++) {
      diff = Math.max(diff, Math.abs(got[i]! - expected[i]!));
      scale = Math.max(scale, Math.abs(expected[i]!));
    }
    console.log(`${name}: max abs difference to ${against} ${diff.toExponential(2)} (feature scale ${scale.toFixed(2)}, ratio ${(diff / scale).toExponential(2)})`);
    assert.equal(got.length, expected.length);
    assert.ok(diff <= 1e-3 * scale, `${name}: ${diff} > 1e-3 x ${scale}`);
  };

  it('a torchvision ResNet-18 (1-channel conv1) imported and embedded by the CLI with --preprocess none matches PyTorch', () => {
    const ckpt = path.join(dir, 'r18.safetensors');
    const npy = path.join(dir, 'r18.npy');
    const imp = spawnSync(process.execPath, ['--import', 'tsx', cli, 'import-torch', path.join(dir, 'resnet18.pth'), '--arch', 'resnet18', '--out', ckpt], { encoding: 'utf8', cwd: root });
    assert.equal(imp.status, 0, imp.stderr);
    assert.match(imp.stdout, /imported 100 tensors of resnet18 \(width 64\)/);
    const emb = spawnSync(process.execPath, ['--import', 'tsx', cli, 'embed', '--checkpoint', ckpt, image, '--preprocess', 'none', '--out', npy], { encoding: 'utf8', cwd: root });
    assert.equal(emb.status, 0, emb.stderr);
    const bytes = readFileSync(npy);
    const arr = parseNpy(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    assert.deepEqual(arr.shape, [1, 512]);
    assert.equal(arr.dtype, 'f4');
    compare('resnet18', arr.data as Float32Array, ref['resnet18']!);
  });

  it('a torchvision ResNet-50 matches PyTorch', async () => {
    const { encoder } = await importTorchCheckpoint(path.join(dir, 'resnet50.pth'), { arch: 'resnet50' });
    const out = await embedFiles(encoder, [image], { preprocess: 'none' });
    compare('resnet50', out.data, ref['resnet50']!);
    encoder.dispose();
  });

  it('a MoCo training checkpoint (prefixes, 3-channel conv1 summed, MLP head, key encoder and queue ignored) matches PyTorch', async () => {
    const { encoder, report } = await importTorchCheckpoint(path.join(dir, 'moco.pth.tar'), { arch: 'resnet18' });
    assert.equal(report.conv1ChannelsSummed, 3);
    assert.equal(report.head, 'imported');
    assert.ok(report.ignored.some((k) => k.startsWith('module.encoder_k.')));
    assert.ok(report.ignored.includes('module.queue'));
    const out = await embedFiles(encoder, [image], { preprocess: 'none' });
    compare('moco backbone', out.data, ref['moco']!);
    const projection = tf.tidy(() => encoder.projectFeatures(tf.tensor2d(out.data, [1, 512])).dataSync());
    compare('moco projection head', projection, ref['moco_projection']!);
    encoder.dispose();
  });

  it('reads float16 and bfloat16 storages', async () => {
    for (const kind of ['fp16', 'bf16']) {
      const { encoder } = await importTorchCheckpoint(path.join(dir, `resnet18_${kind}.pth`), { arch: 'resnet18' });
      const out = await embedFiles(encoder, [image], { preprocess: 'none' });
      compare(`resnet18 ${kind}`, out.data, ref[`resnet18_${kind}`]!);
      encoder.dispose();
    }
  });

  it('refuses a .pth whose pickle names another global, with a clear message', async () => {
    await assert.rejects(importTorchCheckpoint(path.join(dir, 'evil.pth'), { arch: 'resnet18' }), /evil\.pth: refusing to load global 'posix\.system'.*never runs code/);
    await assert.rejects(importTorchCheckpoint(path.join(dir, 'resnet18.pth'), { arch: 'resnet50' }), /resnet18\.pth: 'layer1\.0\.conv1\.weight' has shape \[64,64,3,3\], resnet50 .*is --arch right\?/);
  });

  it('.pth -> Eden -> ONNX runs in onnxruntime-node with Eden\'s output (dynamic batch)', async () => {
    const { encoder } = await importTorchCheckpoint(path.join(dir, 'resnet18.pth'), { arch: 'resnet18' });
    const file = path.join(dir, 'r18.onnx');
    await exportOnnx(encoder, { format: 'eden-encoder-1', args: encoder.args, hasHead: false, source: 'test' }, file);
    const eden = await embedFiles(encoder, [image], { preprocess: 'none' });
    const session = await ort.InferenceSession.create(file);
    const { data, info } = await sharp(image).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    const x = Float32Array.from(data, (v) => v / 255);
    const batch = new Float32Array(2 * x.length);
    batch.set(x, 0);
    batch.set(x, x.length);
    const out = await session.run({ image: new ort.Tensor('float32', batch, [2, 1, info.height, info.width]) });
    assert.deepEqual(out['eve']!.dims, [2, 512]);
    assert.deepEqual(out['feature_map']!.dims, [2, 512, 7, 7]);
    const eve = out['eve']!.data as Float32Array;
    compare('onnx (batch item 0)', eve.subarray(0, 512), Array.from(eden.data), 'Eden');
    compare('onnx (batch item 1)', eve.subarray(512), Array.from(eden.data), 'Eden');
    encoder.dispose();
  });

  it('safetensors export loads into torchvision in PyTorch and gives the same features', async () => {
    const { encoder } = await importTorchCheckpoint(path.join(dir, 'resnet18.pth'), { arch: 'resnet18' });
    const file = path.join(dir, 'export.safetensors');
    await exportSafetensors(encoder, { format: 'eden-encoder-1', args: encoder.args, hasHead: false, source: 'test' }, file);
    encoder.dispose();
    const script = `
import json, struct, sys, numpy as np, torch, torchvision
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]; header = json.loads(raw[8:8 + n])
state = {k: torch.from_numpy(np.frombuffer(raw[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dtype=np.float32).reshape(v['shape']).copy())
         for k, v in header.items() if k != '__metadata__'}
m = torchvision.models.resnet18(weights=None); m.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
missing, unexpected = m.load_state_dict(state, strict=False)
assert set(missing) <= {'fc.weight', 'fc.bias'} | {k for k in m.state_dict() if k.endswith('num_batches_tracked')}, missing
assert not unexpected, unexpected
sys.path.insert(0, sys.argv[3]); from torch_reference import read_png_grey
with torch.no_grad():
    x = read_png_grey(sys.argv[2]); features = torch.nn.Sequential(*list(m.eval().children())[:-1])(x).flatten(1)[0]
print(json.dumps(features.tolist()))`;
    const r = spawnSync('/usr/bin/python3', ['-c', script, file, image, path.join(root, 'test', 'interop')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    compare('safetensors export loaded in PyTorch', JSON.parse(r.stdout.trim().split('\n').pop()!), ref['resnet18']!);
  });

  it('tfjs export round-trips (what the browser viewer loads)', async () => {
    const { encoder } = await importTorchCheckpoint(path.join(dir, 'moco.pth.tar'), { arch: 'resnet18' });
    const out = path.join(dir, 'tfjs');
    await exportTfjs(encoder, { format: 'eden-encoder-1', args: encoder.args, hasHead: true, source: 'test' }, out);
    assert.ok(existsSync(path.join(out, 'model.json')) && existsSync(path.join(out, 'weights.bin')));
    const { encoder: loaded } = await loadEncoderTfjs(out);
    for (const [n, v] of encoder.namedVariables()) assert.deepEqual(Array.from(loaded.namedVariables().get(n)!.dataSync()), Array.from(v.dataSync()), n);
    // And the encoder checkpoint format round-trips through loadEncoder.
    const ckpt = path.join(dir, 'enc.safetensors');
    await saveEncoder(ckpt, encoder, { hasHead: true, source: 'test' });
    const { encoder: again, meta } = await loadEncoder(ckpt);
    assert.equal(meta.args.backbone, 'resnet18');
    const a = await embedFiles(encoder, [image], { preprocess: 'none' });
    const b = await embedFiles(again, [image], { preprocess: 'none' });
    assert.deepEqual(Array.from(b.data), Array.from(a.data));
    [encoder, loaded, again].forEach((e) => e.dispose());
  });
});
