/**
 * From labelled images to masks and measurements, as a user runs it: `eden finetune` writes a
 * self-describing model, `eden segment` applies it to a folder mixing PNG, DICOM and a broken file
 * (masks at each image's size, overlays, areas in px and mm², the cardiothoracic ratio, a DICOM SEG
 * checked by DCMTK and dicom3tools and read back by Eden), `eden export` gives ONNX with Eden's
 * outputs, `eden finetune --task classify` + `eden classify` work on a label CSV; and the CTR
 * definition reproduces wingspan_ctr's ground truth from its own masks.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { loadClassifier, loadSegmenter, taskModelMeta } from '../src/models/task-model-file.js';
import { loadEncoder } from '../src/models/encoder-file.js';
import { readSegmentation } from '../src/data/dicom-seg.js';
import { decodeImageFile } from '../src/data/decode.js';
import { binarizeMask } from '../src/data/dataset.js';
import { cardiothoracicRatio } from '../src/apply/measure.js';
import { inGroupsOfPixels, segmentFiles, structureFolders } from '../src/apply/segment.js';
import { classifierRecord, classifyToFile } from '../src/apply/classify.js';
import { loadTensorFile } from '../src/engine/tensor-file.js';
import * as nifti from 'nifti-reader-js';
import { hasTool, requireTool } from './helpers/tools.js';
import { eden as runEden } from './helpers/cli.js';

const root = path.join(import.meta.dirname, '..');
const data = path.join(root, '..', 'shared', 'data');
const wingspan = path.join(data, 'wingspan_ctr');
const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'eden-seg-'));
const toArrayBuffer = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** `eden` with CI=1 (plain progress lines). */
const eden = (...args: string[]): ReturnType<typeof runEden> => runEden(args, { CI: '1' });

describe('eden finetune and eden segment', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  let model: string;
  before(() => {
    model = path.join(tmp(), 'heart-lungs.safetensors');
    const r = eden('finetune', wingspan, '--checkpoint', 'random', '--arch', 'resnet-tiny', '--width', '8', '--structures', 'heart,lungs', '--combine', 'lungs=left_lung+right_lung', '--shots', '6', '--val-images', '4', '--size', '64', '--steps', '12', '--eval-every', '4', '--out', model);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^wrote .*heart-lungs\.safetensors \(\d+ steps, kept step \d+; validation: dice_heart \d\.\d{4}, dice_lungs \d\.\d{4}\)/);
    assert.match(r.stderr, /259 labelled images \(heart, lungs\): training on 6, validating on 4, at 64 px/);
  });

  /** The model applied (segmentFiles) to copies of test/fixtures/<folder>/<files>. */
  const segmentFixtures = async (folder: string, files: string[]): Promise<{ input: string; out: string; rows: Awaited<ReturnType<typeof segmentFiles>>['rows'] }> => {
    await useBackend('wasm');
    const m = await loadSegmenter(model);
    const [input, out] = [tmp(), tmp()];
    for (const f of files) copyFileSync(path.join(import.meta.dirname, 'fixtures', folder, f), path.join(input, f));
    try {
      return { input, out, rows: (await segmentFiles(m, [input], { out })).rows };
    } finally {
      m.dispose();
    }
  };

  it('writes a self-describing model file', async () => {
    await useBackend('wasm');
    const m = await loadSegmenter(model);
    assert.deepEqual(m.meta.structures, ['heart', 'lungs']);
    assert.equal(m.meta.inputSize, 64);
    assert.deepEqual(m.meta.backbone, { name: 'resnet-tiny', width: 8 });
    assert.deepEqual(m.meta.intensity, { mode: 'auto' });
    assert.equal(m.meta.training.images, 6);
    assert.equal(m.meta.training.files.length, 6);
    assert.equal(m.meta.training.validationImages, 4);
    assert.ok(m.meta.validation['dice_heart']! >= 0 && m.meta.validation['dice_heart']! <= 1);
    m.dispose();
    // Its encoder serves as an encoder checkpoint elsewhere (e.g. a supervised reference in eden evaluate).
    const { encoder, meta } = await loadEncoder(model);
    assert.equal(meta.hasHead, false);
    assert.match(meta.source, /the encoder of a fine-tuned segmentation model/);
    encoder.dispose();
    // eden checkpoint show describes it; exported as TF.js it is its encoder, and the CLI says so.
    const show = eden('checkpoint', 'show', model);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /^format: eden-segmenter-1 \(Eden [\d.]+, .*\)\ntask: segmentation of heart, lungs \(U-Net\)\nmodel: resnet-tiny width 8, input 64 px, intensity auto\ntrained on: .*wingspan_ctr, 6 images \(4 for validation\), \d+ steps \(kept step \d+\), mode finetune, seed 0\nstarted from: random initialisation.*\nvalidation: dice_heart \d\.\d{4}, dice_lungs \d\.\d{4}\ntensors: \d+ \([\d.]+k values\)\n$/);
    const tfjs = eden('export', model, '--format', 'tfjs', '--out', path.join(tmp(), 'tfjs'));
    assert.equal(tfjs.status, 0, tfjs.stderr);
    assert.match(tfjs.stdout, /\(tfjs, the encoder of the segmentation model of heart, lungs, resnet-tiny width 8\); --format onnx exports the whole model\n$/);
  });

  it('segmentFiles leaves tf.memory().numTensors as it found it, and a resumed run too', async () => {
    await useBackend('wasm');
    const m = await loadSegmenter(model);
    const input = tmp();
    for (const n of readdirSync(path.join(wingspan, 'images')).sort().slice(0, 5)) copyFileSync(path.join(wingspan, 'images', n), path.join(input, n));
    const out = tmp();
    const before = tf.memory().numTensors;
    assert.equal((await segmentFiles(m, [input], { out, batchSize: 2 })).rows.length, 5);
    rmSync(path.join(out, 'overlays', readdirSync(path.join(out, 'overlays')).sort()[0]!));
    const resumed = await segmentFiles(m, [input], { out, batchSize: 2, resume: true });
    assert.deepEqual([resumed.rows.length, resumed.kept], [1, 4]);
    assert.equal(tf.memory().numTensors, before);
    m.dispose();
  });

  it("stops at a batch whose files cannot be written, naming the file; the batches before it keep their rows", async () => {
    await useBackend('wasm');
    const m = await loadSegmenter(model);
    const input = tmp();
    const names = readdirSync(path.join(wingspan, 'images')).sort().slice(0, 5);
    for (const n of names) copyFileSync(path.join(wingspan, 'images', n), path.join(input, n));
    const out = tmp();
    // A folder where the third image's overlay goes: the write's rename fails (as root too).
    mkdirSync(path.join(out, 'overlays', names[2]!), { recursive: true });
    const before = tf.memory().numTensors;
    await assert.rejects(segmentFiles(m, [input], { out, batchSize: 1 }), (err: Error) => err.message.includes(path.join(out, 'overlays', names[2]!)));
    const rows = readFileSync(path.join(out, 'measurements.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')[0]);
    assert.deepEqual(rows, names.slice(0, 2).map((n) => path.join(input, n)));
    assert.equal(tf.memory().numTensors, before);
    m.dispose();
  });

  it('segments a folder of PNG and DICOM: masks at the image size, overlays, areas, CTR, and a SEG that DCMTK, dicom3tools and Eden read', async (t) => {
    const input = tmp();
    const out = tmp();
    const png = readdirFirst(path.join(wingspan, 'images'));
    copyFileSync(png, path.join(input, 'chest.png'));
    writeFileSync(path.join(input, 'broken.png'), 'not an image');
    mkdirSync(path.join(input, 'nested'));
    const dicom = path.join(input, 'nested', 'chest.dcm');
    const withDicom = hasTool('img2dcm');
    if (withDicom) {
      // A DICOM made by DCMTK from a bundled radiograph, with a pixel spacing of 0.5 mm.
      const jpg = path.join(tmp(), 'src.jpg');
      await sharp(path.join(root, 'samples', 'hannover_covid19', '00870a9c.png')).jpeg({ quality: 95 }).toFile(jpg);
      execFileSync('img2dcm', [jpg, dicom, '-k', 'PatientID=EDEN-TEST', '-k', 'PatientName=Test^Eden', '-k', '(0028,0030)=0.5\\0.5', '-k', 'StudyDate=20260101']);
    } else requireTool('img2dcm', t);
    const r = eden('segment', model, input, '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /skipped .*broken\.png: corrupt or not image data/);
    assert.match(r.stdout, new RegExp(`segmented ${withDicom ? 2 : 1} image\\(s\\) .* skipped 1; cardiothoracic ratio for ${withDicom ? 2 : 1}`));
    const csv = readFileSync(path.join(out, 'measurements.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
    const header = csv[0]!;
    assert.deepEqual(header.slice(0, 5), ['file', 'width', 'height', 'heart_area_px', 'lungs_area_px']);
    const col = (row: string[], name: string): string => row[header.indexOf(name)]!;
    const pngRow = csv.find((row) => row[0]!.endsWith('chest.png'))!;
    assert.equal(col(pngRow, 'width'), '512');
    // Masks at the image's own size, and the CSV's numbers recomputed from them.
    const heart = await sharp(path.join(out, 'masks', 'heart', 'chest.png')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    const lungs = await sharp(path.join(out, 'masks', 'lungs', 'chest.png')).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([heart.info.width, heart.info.height], [512, 512]);
    assert.equal((await sharp(path.join(out, 'masks', 'heart', 'chest.png')).metadata()).channels, 1, 'masks are single-channel 8-bit PNGs');
    assert.equal(Number(col(pngRow, 'heart_area_px')), heart.data.filter((v) => v > 127).length);
    const c = cardiothoracicRatio(Uint8Array.from(heart.data, (v) => (v > 127 ? 1 : 0)), Uint8Array.from(lungs.data, (v) => (v > 127 ? 1 : 0)), 512, 512);
    if (c) assert.ok(Math.abs(Number(col(pngRow, 'ctr')) - c.ctr) < 1e-6);
    assert.ok(existsSync(path.join(out, 'overlays', 'chest.png')));
    // A Node service through the package's API, from the file's bytes (format found from them): the same masks.
    const eden_ = await import('../src/index.js');
    await eden_.useBackend('wasm');
    const segmenter = await eden_.loadSegmenter(model);
    const [fromBytes] = await eden_.segmentImages(segmenter, [{ grey: await eden_.decodeImageBytes(readFileSync(png)) }]);
    segmenter.dispose();
    assert.deepEqual(Array.from(fromBytes!.masks[0]!), Array.from(heart.data, (v) => (v > 127 ? 1 : 0)));
    assert.equal(fromBytes!.measurements.ctr === undefined ? '' : fromBytes!.measurements.ctr.toFixed(6), col(pngRow, 'ctr'));
    // And in a fresh process that never calls useBackend: the loader sets up wasm itself.
    const script = `import { readFileSync } from 'node:fs'; import { loadSegmenter, decodeImageBytes, segmentImages } from './src/index.ts';
      const model = await loadSegmenter(${JSON.stringify(model)});
      const [r] = await segmentImages(model, [{ grey: await decodeImageBytes(readFileSync(${JSON.stringify(png)})) }]);
      console.log(r.measurements.areaPx.heart); process.exit(0);`;
    const fresh = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    assert.equal(fresh.status, 0, fresh.stderr);
    assert.equal(fresh.stdout.trim().split('\n').pop(), col(pngRow, 'heart_area_px'));
    if (!withDicom) return;
    const dicomRow = csv.find((row) => row[0]!.endsWith('chest.dcm'))!;
    assert.equal(col(dicomRow, 'pixel_spacing_mm'), '0.5\\0.5');
    assert.ok(Math.abs(Number(col(dicomRow, 'heart_area_mm2')) - 0.25 * Number(col(dicomRow, 'heart_area_px'))) < 1e-3);
    const seg = path.join(out, 'seg', 'nested__chest.dcm');
    assert.equal(col(dicomRow, 'seg'), seg);
    // DCMTK parses it; dicom3tools validates it against the SEG IOD (warnings only about DICOMDIR fields).
    const dump = execFileSync('dcmdump', [seg], { encoding: 'utf8' });
    assert.match(dump, /\(0008,0016\) UI =SegmentationStorage/);
    assert.match(dump, /\(0062,0001\) CS \[BINARY\]/);
    assert.match(dump, /\(0010,0020\) LO \[EDEN-TEST\]/);
    if (hasTool('dciodvfy')) {
      const v = spawnSync('dciodvfy', [seg], { encoding: 'utf8' });
      const messages = `${v.stdout}${v.stderr}`;
      assert.doesNotMatch(messages, /^Error/m, messages);
      assert.match(messages, /^Segmentation$/m);
    } else requireTool('dciodvfy', t);
    // Eden reads it back: the segments, their masks (equal to the PNG masks), and the source it references.
    const back = readSegmentation(readFileSync(seg));
    const source = execFileSync('dcmdump', ['+P', '0008,0018', dicom], { encoding: 'utf8' });
    assert.equal(back.referencedSopInstanceUid, /\[([\d.]+)\]/.exec(source)![1]);
    assert.deepEqual(back.segments.map((s) => [s.number, s.label]), [[1, 'heart'], [2, 'lungs']]);
    const heartPng = await sharp(path.join(out, 'masks', 'heart', 'nested__chest.png')).extractChannel(0).raw().toBuffer();
    assert.deepEqual(Array.from(back.segments[0]!.mask), Array.from(heartPng, (v) => (v > 127 ? 1 : 0)));
  });

  it('--resume keeps what an interrupted run measured and segments the rest, to the same outputs; another threshold is refused', () => {
    const input = tmp();
    const names = readdirSync(path.join(wingspan, 'images')).sort().slice(0, 8);
    for (const n of names) copyFileSync(path.join(wingspan, 'images', n), path.join(input, n));
    const whole = tmp();
    assert.equal(eden('segment', model, input, '--out', whole, '--batch-size', '2').status, 0);
    // An interrupted run: the table written after 5 images, the third of them cut off while its
    // masks were being written (its heart mask missing) ...
    const resumed = tmp();
    cpSync(whole, resumed, { recursive: true });
    const table = readFileSync(path.join(whole, 'measurements.csv'), 'utf8').trim().split('\n');
    // ... and the sixth image's row cut off mid-line (no newline yet): not a row.
    writeFileSync(path.join(resumed, 'measurements.csv'), `${table.slice(0, 6).join('\n')}\n${table[6]!.slice(0, -3)}`);
    rmSync(path.join(resumed, 'masks', 'heart', names[2]!));
    // (An interrupted run has no outputs of the images after those, and a killed write leaves its
    // temporary file.)
    for (const n of names.slice(5)) for (const f of [`masks/heart/${n}`, `masks/lungs/${n}`, `overlays/${n}`]) rmSync(path.join(resumed, f));
    writeFileSync(path.join(resumed, 'masks', 'lungs', `.${names[5]}.4242.1764612345678.tmp`), 'half a PNG');
    const r = eden('segment', model, input, '--out', resumed, '--batch-size', '2', '--resume');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^segmented 4 image\(s\) in .*, kept 4 from the earlier run; cardiothoracic ratio for 4; measurements: /);
    for (const file of ['measurements.csv', 'segment.json', ...names.flatMap((n) => [`masks/heart/${n}`, `masks/lungs/${n}`, `overlays/${n}`])]) {
      assert.ok(readFileSync(path.join(resumed, file)).equals(readFileSync(path.join(whole, file))), file);
    }
    for (const dir of ['masks/heart', 'masks/lungs', 'overlays']) assert.deepEqual(readdirSync(path.join(resumed, dir)), readdirSync(path.join(whole, dir)), dir);
    const other = eden('segment', model, input, '--out', resumed, '--threshold', '0.6', '--resume');
    assert.notEqual(other.status, 0);
    assert.match(other.stderr, /--resume: .* was written with another threshold \(then 0\.5, now 0\.6\); segment into a new --out, or run without --resume to start over/);
    const again = eden('segment', model, path.join(input, names[0]!), '--out', resumed);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /note: .* holds an earlier run's measurements\.csv, now replaced \(--resume keeps its images\)/);
  });

  it('NIfTI input gets NIfTI masks in its own header (geometry and spacing kept, NIfTI-1 and 2, either byte order), equal to its PNG masks; areas in mm² from pixdim', async () => {
    const sources = ['spaced-mm.nii.gz', 'grey12-bigendian.nii', 'float32-nifti2.nii'];
    const { input, out, rows } = await segmentFixtures('nifti', sources);
    assert.equal(rows.length, 3);
    for (const f of sources) {
      const name = f.replace(/\.nii(\.gz)?$/, '');
      const sourceBytes = readFileSync(path.join(input, f));
      const source = nifti.readHeader(toArrayBuffer(nifti.isCompressed(toArrayBuffer(sourceBytes)) ? new Uint8Array(nifti.decompress(toArrayBuffer(sourceBytes))) : sourceBytes));
      for (const [k, structure] of ['heart', 'lungs'].entries()) {
        const file = path.join(out, 'nifti', structure, `${name}${f.endsWith('.gz') ? '.nii.gz' : '.nii'}`);
        const bytes = readFileSync(file);
        const raw = f.endsWith('.gz') ? new Uint8Array(nifti.decompress(toArrayBuffer(bytes))) : bytes;
        // Read by nifti-reader-js: the source's geometry, uint8 voxels, no scaling.
        const h = nifti.readHeader(toArrayBuffer(raw));
        assert.deepEqual([h.dims, h.pixDims, h.qform_code, h.sform_code, h.affine, h.xyzt_units, h.littleEndian], [source.dims, source.pixDims, source.qform_code, source.sform_code, source.affine, source.xyzt_units, source.littleEndian], file);
        assert.deepEqual([h.datatypeCode, h.numBitsPerVoxel, h.scl_slope, h.scl_inter, h.description], [2, 8, 1, 0, `Eden mask: ${structure}`], file);
        assert.equal(h instanceof nifti.NIFTI2, f.includes('nifti2'));
        // The same pixels as the PNG mask, read back by Eden.
        const png = await decodeImageFile(path.join(out, 'masks', structure, `${name}.png`));
        const back = await decodeImageFile(file, { mask: true });
        assert.deepEqual(Array.from(back.data), Array.from(png.data, (v) => (v > 127 ? 1 : 0)), file);
        const row = rows.find((r) => r.name === name)!;
        assert.equal(row.areaPx[structure], png.data.filter((v) => v > 127).length, `${file} ${k}`);
      }
    }
    // Spacing in mm from pixdim when the header gives units (nibabel wrote 'mm' for spaced-mm only).
    const spaced = rows.find((r) => r.name === 'spaced-mm')!;
    assert.deepEqual([spaced.pixelSpacing, spaced.pixelSpacingSource], [[0.6, 0.7], 'NIfTI pixdim']);
    assert.ok(Math.abs(spaced.areaMm2!['lungs']! - spaced.areaPx['lungs']! * 0.42) < 1e-9);
    assert.equal(rows.find((r) => r.name === 'grey12-bigendian')!.pixelSpacing, undefined);
  });

  it('MetaImage input gets .mha masks with its geometry lines (compressed as it was), equal to its PNG masks; areas in mm² from ElementSpacing', async () => {
    const { input, out, rows } = await segmentFixtures('metaimage', ['grey8-compressed.mha', 'float32.mhd', 'float32.raw']);
    assert.deepEqual(rows.map((r) => r.name).sort(), ['float32', 'grey8-compressed']);
    for (const [name, compressed] of [['grey8-compressed', true], ['float32', false]] as const) {
      const source = readFileSync(path.join(input, `${name}.${name === 'float32' ? 'mhd' : 'mha'}`), 'latin1');
      for (const structure of ['heart', 'lungs']) {
        const file = path.join(out, 'metaimage', structure, `${name}.mha`);
        const text = readFileSync(file, 'latin1');
        for (const key of ['TransformMatrix', 'Offset', 'ElementSpacing', 'DimSize']) assert.equal(/^.*$/m.exec(text.slice(text.indexOf(`${key} =`)))![0], /^.*$/m.exec(source.slice(source.indexOf(`${key} =`)))![0], `${file} ${key}`);
        assert.match(text, new RegExp(`CompressedData = ${compressed ? 'True' : 'False'}\n[^]*ElementType = MET_UCHAR\nElementDataFile = LOCAL\n`));
        const png = await decodeImageFile(path.join(out, 'masks', structure, `${name}.png`));
        assert.deepEqual(Array.from((await decodeImageFile(file, { mask: true })).data), Array.from(png.data, (v) => (v > 127 ? 1 : 0)), file);
      }
      const row = rows.find((r) => r.name === name)!;
      assert.deepEqual([row.pixelSpacing, row.pixelSpacingSource], [[0.6, 0.7], 'MetaImage ElementSpacing']);
    }
  });

  it("names its outputs after DICOM files' whole UID when they have no extension", () => {
    const input = tmp();
    const out = tmp();
    const fixture = path.join(root, 'test', 'fixtures', 'dicom', 'mono2-12bit.dcm');
    for (const uid of ['1.2.826.0.1.3680043.8.498.101', '1.2.826.0.1.3680043.8.498.102']) copyFileSync(fixture, path.join(input, uid));
    const r = eden('segment', model, input, '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(path.join(out, 'masks', 'heart')).sort(), ['1.2.826.0.1.3680043.8.498.101.png', '1.2.826.0.1.3680043.8.498.102.png']);
    // The fixture carries no UIDs: no SEG can reference it, and the user is told why there is none.
    assert.ok(!existsSync(path.join(out, 'seg')));
    assert.match(r.stderr, /warning: .*498\.101: no DICOM SEG written: the file lacks its SOP Class, SOP Instance, Study or Series Instance UID/);
  });

  it('exports the model to ONNX with the same probabilities (onnxruntime-node, within 1e-4)', async () => {
    const ort = await import('onnxruntime-node');
    const onnxFile = path.join(tmp(), 'model.onnx');
    const r = eden('export', model, '--format', 'onnx', '--out', onnxFile);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /segmentation of heart, lungs, resnet-tiny at 64 px/);
    await useBackend('wasm');
    const m = await loadSegmenter(model);
    const x = tf.randomNormal([3, 64, 64, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
    const expected = tf.tidy(() => tf.transpose(tf.sigmoid(m.unet.forward(x, { training: false })), [0, 3, 1, 2])).dataSync();
    const session = await ort.InferenceSession.create(onnxFile);
    const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync()) as Float32Array;
    const got = (await session.run({ image: new ort.Tensor('float32', nchw, [3, 1, 64, 64]) }))['probabilities']!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
    console.log(`segmentation ONNX vs Eden: max |difference| ${worst.toExponential(2)} over ${got.length} probabilities`);
    assert.ok(worst < 1e-4, `max difference ${worst}`);
    tf.dispose(x);
    m.dispose();
  });

  it('the CTR definition reproduces wingspan_ctr\'s ground truth from its own masks', async () => {
    const rows = readFileSync(path.join(wingspan, 'ctr_ground_truth.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
    const errors: number[] = [];
    for (const [id, ctr] of rows.slice(0, 40)) {
      const mask = async (s: string): Promise<{ m: Float32Array; w: number; h: number }> => {
        const g = await decodeImageFile(path.join(wingspan, 'masks', s, id!));
        return { m: binarizeMask(g.data, g.bitDepth), w: g.width, h: g.height };
      };
      const [h, l, r] = [await mask('heart'), await mask('left_lung'), await mask('right_lung')];
      const c = cardiothoracicRatio(h.m, l.m.map((v, i) => Math.max(v, r.m[i]!)), h.w, h.h)!;
      errors.push(Math.abs(c.ctr - Number(ctr)));
    }
    const mae = errors.reduce((a, b) => a + b, 0) / errors.length;
    console.log(`CTR from ground-truth masks vs ctr_ground_truth.csv: MAE ${mae.toFixed(4)} over ${errors.length} images, worst ${Math.max(...errors).toFixed(4)}`);
    assert.ok(mae < 0.003 && Math.max(...errors) < 0.01);
  });
});

describe("eden segment's writes", () => {
  it('run in consecutive groups of at most the pixel budget (an image over it alone), results in order', async () => {
    const sizes = [3, 3, 3, 10, 1, 1, 2];
    // Items that run together: a new group begins when an item starts with none running.
    const groups: number[][] = [];
    let running = 0;
    const results = await inGroupsOfPixels(sizes, (n) => n, 6, async (n, i) => {
      if (running++ === 0) groups.push([]);
      groups[groups.length - 1]!.push(i);
      await new Promise((resolve) => setTimeout(resolve, 5 * (sizes.length - i))); // later items finish first
      running--;
      return n * 10;
    });
    assert.deepEqual(results, sizes.map((n) => n * 10));
    assert.deepEqual(groups, [[0, 1], [2], [3], [4, 5, 6]]);
  });
});

describe('eden segment output folders', () => {
  it("are portable: a label value's ':' and the other characters Windows refuses become '_', names kept unique ignoring case", () => {
    assert.deepEqual(structureFolders(['heart', 'labels:1', 'labels:2:apex', 'lungs']), ['heart', 'labels_1', 'labels_2_apex', 'lungs']);
    assert.deepEqual(structureFolders(['labels_1', 'labels:1', 'Heart', 'heart', 'a?b*c|d"e<f>g']), ['labels_1', 'labels_1-2', 'Heart', 'heart-2', 'a_b_c_d_e_f_g']);
  });
});

describe('eden finetune --task classify and eden classify', () => {
  const nih = path.join(data, 'nih1000_64px');
  it('trains a classifier from a label CSV and writes class probabilities; a killed run resumes', async (t) => {
    if (!existsSync(nih)) return t.skip(`${nih} not found`);
    const dir = tmp();
    const model = path.join(dir, 'abnormal.safetensors');
    const r = eden('finetune', '--task', 'classify', '--data', nih, '--label-column', 'abnormal', '--checkpoint', 'random', '--arch', 'resnet-tiny', '--width', '8', '--size', '64', '--steps', '6', '--eval-every', '3', '--out', model);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /validation: mean_auc \d\.\d{4}, accuracy \d\.\d{4}, auc_1 \d\.\d{4}/);
    const out = path.join(dir, 'p.csv');
    const c = eden('classify', model, path.join(nih, 'images', 'test', '0_normal'), '--out', out);
    assert.equal(c.status, 0, c.stderr);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    assert.equal(lines[0], 'file,p_0,p_1,predicted');
    assert.equal(lines.length, 1 + 100);
    for (const l of lines.slice(1)) {
      const [, p0, p1, pred] = l.split(',');
      assert.ok(Math.abs(Number(p0) + Number(p1) - 1) < 1e-5);
      assert.ok(pred === '0' || pred === '1');
    }
    // Killed after 40 rows, the 41st written up to its predicted class (every field there, the last
    // empty: only the missing newline tells) and a temporary of the state file left: --resume keeps
    // the 40 and gives the uninterrupted run's CSV.
    const cut = path.join(dir, 'cut.csv');
    writeFileSync(`${cut}.partial`, `${lines.slice(0, 41).join('\n')}\n${lines[41]!.slice(0, -1)}`);
    writeFileSync(`${cut}.partial.json`, classifierRecord(taskModelMeta(await loadTensorFile(model))!));
    writeFileSync(path.join(dir, '.cut.csv.partial.json.4242.1764612345678.tmp'), '{');
    const resumed = eden('classify', model, path.join(nih, 'images', 'test', '0_normal'), '--out', cut, '--resume');
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stdout, /^classified 60 image\(s\), kept 40 from the earlier run: /);
    assert.equal(readFileSync(cut, 'utf8'), readFileSync(out, 'utf8'));
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('cut') || f.startsWith('.cut')), ['cut.csv']);
    // In-process, the classification loop leaves tf.memory().numTensors as it found it.
    await useBackend('wasm');
    const classifier = await loadClassifier(model);
    const before = tf.memory().numTensors;
    assert.equal((await classifyToFile(classifier, [path.join(nih, 'images', 'test', '0_normal')], path.join(dir, 'lib.csv'))).rows, 100);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(readFileSync(path.join(dir, 'lib.csv'), 'utf8'), readFileSync(out, 'utf8'));
    classifier.dispose();
  });
});

function readdirFirst(dir: string): string {
  return path.join(dir, readdirSync(dir).sort()[0]!);
}
