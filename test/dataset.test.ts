/**
 * Folder scanning, bad-input reporting, the segmentation layout, label manifests, and the
 * prefetching, caching dataset — on real radiographs with bad files planted among them.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { crc32, deflateSync } from 'node:zlib';
import { maskFile, scanDataset } from '../src/data/scan.js';
import { decodeImageFile } from '../src/data/decode.js';
import { readManifest, sniffDelimiter } from '../src/data/manifest.js';
import { inspectDataset, formatInspectReport } from '../src/data/inspect.js';
import { binarizeMask, ImageDataset, labelMapWarning } from '../src/data/dataset.js';
import { loadSegmentationData } from '../src/data/segmentation-data.js';
import { planCache, thisMachine, type CacheSetting } from '../src/data/cache-plan.js';
import type { SkippedFile } from '../src/data/scan.js';
import { Rng } from '../src/core/rng.js';
import { writeSegmentation } from '../src/data/dicom-seg.js';
import dcmjs from 'dcmjs';
import { encode as encodeBmp } from 'bmp-ts';
import { eden } from './helpers/cli.js';
import { parseRowCondition, type RunOrder } from '../src/data/mask-table.js';

const samples = path.join(import.meta.dirname, '..', 'samples', 'hannover_covid19');
const sampleFiles = readdirSync(samples).filter((f) => f.endsWith('.png'));
const wingspan = path.join(import.meta.dirname, '..', '..', 'shared', 'data', 'wingspan_ctr');

/** A folder of 6 good radiographs (one in a subfolder) and one bad file of each kind. */
function plantedFolder(): { dir: string; bad: Record<string, string> } {
  const dir = mkdtempSync(path.join(tmpdir(), 'eden-planted-'));
  mkdirSync(path.join(dir, 'sub'));
  sampleFiles.slice(0, 5).forEach((f) => copyFileSync(path.join(samples, f), path.join(dir, f)));
  copyFileSync(path.join(samples, sampleFiles[5]!), path.join(dir, 'sub', sampleFiles[5]!));
  const good = readFileSync(path.join(samples, sampleFiles[6]!));
  const rng = new Rng(1);
  const random = Buffer.from(Array.from({ length: 4096 }, () => rng.int(256)));
  const bad = {
    'truncated.png': good.subarray(0, Math.floor(good.length / 2)),
    'empty.png': Buffer.alloc(0),
    // Full length, IEND intact, image data overwritten in the middle.
    'corrupt.png': Buffer.concat([good.subarray(0, 200), random.subarray(0, 3000), good.subarray(3200)]),
    'notes.txt': Buffer.from('not an image'),
    'random.dcm': random,
    'fake.jpg': Buffer.from('<html>a web page saved as .jpg</html>'),
  };
  for (const [name, bytes] of Object.entries(bad)) writeFileSync(path.join(dir, name), bytes);
  return { dir, bad: Object.fromEntries(Object.keys(bad).map((n) => [n, path.join(dir, n)])) };
}

/** A palette PNG of `indices` (bit depth 8, or 1/2/4 packed), written by hand: sharp cannot choose a palette's order. */
function palettePng(indices: Uint8Array, width: number, height: number, palette: number[][], bitDepth: 1 | 2 | 4 | 8): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const perByte = 8 / bitDepth;
  const rowBytes = Math.ceil(width / perByte);
  const raw = Buffer.alloc(height * (rowBytes + 1)); // filter type 0 per row
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) raw[y * (rowBytes + 1) + 1 + Math.floor(x / perByte)]! |= indices[y * width + x]! << (8 - bitDepth * ((x % perByte) + 1));
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([bitDepth, 3, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('PLTE', Buffer.from(palette.flat())), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

describe('scan and inspect', () => {
  let planted: ReturnType<typeof plantedFolder>;
  before(() => {
    planted = plantedFolder();
  });

  it('names every bad file with its problem and counts the good ones', async () => {
    const report = await inspectDataset([planted.dir]);
    assert.equal(report.images, 6);
    const reasons = Object.fromEntries(report.skipped.map((s) => [path.basename(s.path), s.category]));
    assert.deepEqual(reasons, {
      'corrupt.png': 'corrupt',
      'empty.png': 'empty file',
      'fake.jpg': 'corrupt',
      'notes.txt': 'not an image file',
      'random.dcm': 'corrupt',
      'truncated.png': 'truncated',
    });
    for (const s of report.skipped) assert.ok(s.message.startsWith(`${s.path}: `), s.message);
    const text = formatInspectReport(report);
    assert.match(text, /summary: 6 usable, 6 skipped \(corrupt \(3\), /);
    assert.match(text, /random\.dcm: not a readable DICOM file/);
    assert.match(text, /truncated\.png: truncated image data/);
    assert.match(text, /empty\.png: empty file \(0 bytes\)/);
  });

  it('a folder mixing the DICOM that archives hold reports each file once, with the right reason, and loses nothing', async () => {
    const fixtures = path.join(import.meta.dirname, 'fixtures', 'dicom');
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-dicom-zoo-'));
    const images = ['mono2-12bit.dcm', 'mono2-12bit-deflated.dcm', 'mono2-12bit-bare-explicit.dcm', 'mono2-12bit-bare-implicit', 'palette-8bit.dcm', 'ybr-full-422.dcm', 'mono2-1bit.dcm', 'mono2-12bit-rle.dcm', 'mono2-12bit-j2k.dcm'];
    for (const f of [...images, 'report-sr.dcm']) copyFileSync(path.join(fixtures, f), path.join(dir, f));
    writeFileSync(path.join(dir, 'cut.dcm'), readFileSync(path.join(fixtures, 'mono2-12bit.dcm')).subarray(0, 3000));
    // A Segmentation object beside the image it annotates (as eden segment writes it): masks, not an image.
    const annotated = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
    const pixels = annotated.width * annotated.height;
    const source = { sopClassUid: '1.2.840.10008.5.1.4.1.1.1', sopInstanceUid: '2.25.1001', studyInstanceUid: '2.25.1002', seriesInstanceUid: '2.25.1003' };
    const seg = writeSegmentation({ source, rows: annotated.height, columns: annotated.width, masks: [new Uint8Array(pixels).fill(1, 0, 100), new Uint8Array(pixels).fill(1, 200, 300)], structures: ['heart', 'lungs'], algorithm: { name: 'test', version: '1' } });
    writeFileSync(path.join(dir, 'seg.dcm'), seg);
    const report = await inspectDataset([dir]);
    assert.equal(report.images, images.length);
    assert.deepEqual(Object.fromEntries(report.skipped.map((s) => [path.basename(s.path), s.category])), { 'report-sr.dcm': 'DICOM without pixel data', 'cut.dcm': 'truncated', 'seg.dcm': 'DICOM SEG (masks)' });
    const text = formatInspectReport(report);
    assert.match(text, /report-sr\.dcm: a DICOM object without pixel data \(SOP Class Basic Text SR\): not an image/);
    assert.ok(text.includes(`seg.dcm: a DICOM Segmentation object (SEG of 'heart', 'lungs', for image 2.25.1001): masks, not an image (read as its image's mask when its folder is given as --masks)`), text);
  });

  it("a DICOM SEG among the masks (named after its image as eden segment writes one, or by its own UID as archives do) is its image's mask: one segment a structure, several a label map naming them, each segment whole where they overlap", async () => {
    const fixtures = path.join(import.meta.dirname, 'fixtures', 'dicom');
    const root = mkdtempSync(path.join(tmpdir(), 'eden-seg-masks-'));
    for (const d of ['dicom/images', 'dicom/masks/heart', 'dicom/masks/both', 'png/images', 'png/masks/heart', 'png/masks/lungs']) mkdirSync(path.join(root, d), { recursive: true });
    const image = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
    const [w, h] = [image.width, image.height];
    const rect = (x0: number, x1: number, y0: number, y1: number): Uint8Array => Uint8Array.from({ length: w * h }, (_, i) => (i % w >= x0 && i % w < x1 && Math.floor(i / w) >= y0 && Math.floor(i / w) < y1 ? 1 : 0));
    const heart = rect(20, 40, 10, 30);
    const lungs = rect(2, 18, 5, 40);
    const source = { sopClassUid: '1.2.840.10008.5.1.4.1.1.1', sopInstanceUid: '2.25.2001', studyInstanceUid: '2.25.2002', seriesInstanceUid: '2.25.2003' };
    const seg = (masks: Uint8Array[], structures: string[]): Uint8Array => writeSegmentation({ source, rows: h, columns: w, masks, structures, algorithm: { name: 'test', version: '1' } });
    for (const name of ['a', 'b']) {
      copyFileSync(path.join(fixtures, 'mono2-12bit.dcm'), path.join(root, 'dicom', 'images', `${name}.dcm`));
      writeFileSync(path.join(root, 'dicom', 'masks', 'heart', `${name}.dcm`), seg([heart], ['heart']));
      writeFileSync(path.join(root, 'dicom', 'masks', 'both', `${name}.dcm`), seg([heart, lungs], ['heart', 'lungs']));
      copyFileSync(path.join(fixtures, 'mono2-12bit.dcm'), path.join(root, 'png', 'images', `${name}.dcm`));
      await sharp(Buffer.from(heart.map((v) => v * 255)), { raw: { width: w, height: h, channels: 1 } }).png().toFile(path.join(root, 'png', 'masks', 'heart', `${name}.png`));
      await sharp(Buffer.from(lungs.map((v) => v * 255)), { raw: { width: w, height: h, channels: 1 } }).png().toFile(path.join(root, 'png', 'masks', 'lungs', `${name}.png`));
    }
    const warnings: string[] = [];
    const load = (dir: string, o: { structures?: string[]; combine?: Record<string, string[]> } = {}): ReturnType<typeof loadSegmentationData> => loadSegmentationData(path.join(root, dir), 32, { ...o, testFraction: 0, maxTestImages: 0, seed: 0, onWarning: (m) => warnings.push(m) });
    const reference = await load('png');
    const fromSeg = await load('dicom', { combine: { lungs: ['both:2'] }, structures: ['heart', 'lungs'] });
    assert.deepEqual(fromSeg.structures, ['heart', 'lungs']);
    fromSeg.samples.forEach((x, i) => assert.deepEqual(x.masks, reference.samples[i]!.masks));
    // Read as one structure, the two-segment SEG is a label map whose warning names its segments.
    await load('dicom', { structures: ['both'] });
    assert.ok(warnings.some((m) => m.startsWith(path.join(root, 'dicom', 'masks', 'both', '')) && m.endsWith(`.dcm: a DICOM SEG of several segments ('heart' as 1, 'lungs' as 2): every nonzero pixel is read as 'both'; to train the labels apart, select them as both:1, both:2 (--structures), or name them with --combine, e.g. --combine left_lung=both:1`)), warnings.join('\n'));
    // Named by their own UIDs (as archives name files), SEGs find their images by the UID they reference.
    const archive = path.join(root, 'archive');
    for (const d of ['images', 'masks/heart']) mkdirSync(path.join(archive, d), { recursive: true });
    const uids: Record<string, string> = { 'a.dcm': '1.2.826.0.1.3680043.8.498.146448', 'b.dcm': '1.2.826.0.1.3680043.8.498.156448' };
    copyFileSync(path.join(fixtures, 'mono2-8bit.dcm'), path.join(archive, 'images', 'a.dcm'));
    copyFileSync(path.join(fixtures, 'mono2-12bit.dcm'), path.join(archive, 'images', 'b.dcm'));
    const segOf = (uid: string, mask: Uint8Array): Uint8Array => writeSegmentation({ source: { ...source, sopInstanceUid: uid }, rows: h, columns: w, masks: [mask], structures: ['heart'], algorithm: { name: 'test', version: '1' } });
    writeFileSync(path.join(archive, 'masks', 'heart', '2.25.71.dcm'), segOf(uids['b.dcm']!, lungs));
    writeFileSync(path.join(archive, 'masks', 'heart', '2.25.72.dcm'), segOf(uids['a.dcm']!, heart));
    writeFileSync(path.join(archive, 'masks', 'heart', '2.25.73.dcm'), segOf('2.25.404', heart));
    const scan = await scanDataset([path.join(archive, 'images')], { masks: path.join(archive, 'masks') });
    assert.deepEqual(scan.images.map((e) => [e.relPath, path.basename(maskFile(e.masks!['heart']!))]), [['a.dcm', '2.25.72.dcm'], ['b.dcm', '2.25.71.dcm']]);
    assert.deepEqual(scan.skipped.map((x) => x.message), [`${path.join(archive, 'masks', 'heart', '2.25.73.dcm')}: mask without image (a DICOM SEG of image 2.25.404, which no DICOM file in ${path.join(archive, 'images')} is)`]);
    const paired = await loadSegmentationData(path.join(archive, 'images'), 32, { masks: path.join(archive, 'masks'), testFraction: 0, maxTestImages: 0, seed: 0 });
    assert.deepEqual(paired.samples.map((x) => x.masks[0]), [reference.samples[0]!.masks[0], reference.samples[0]!.masks[1]]);
    // Exported beside their images (one folder, given as --masks too): the SEGs are masks, not images; no image is its own mask.
    for (const f of readdirSync(path.join(archive, 'masks', 'heart'))) copyFileSync(path.join(archive, 'masks', 'heart', f), path.join(archive, 'images', f));
    const mixed = await scanDataset([path.join(archive, 'images')], { masks: path.join(archive, 'images') });
    assert.deepEqual(mixed.images.map((e) => [e.relPath, path.basename(maskFile(e.masks!['mask']!))]), [['a.dcm', '2.25.72.dcm'], ['b.dcm', '2.25.71.dcm']]);
    assert.deepEqual(mixed.skipped.map((x) => path.basename(x.path)), ['2.25.73.dcm']);
    // So are masks in one flat folder with their images (Shenzhen's x.png + x_mask.png).
    const flat = mkdtempSync(path.join(tmpdir(), 'eden-flat-masks-'));
    for (const n of ['a', 'b']) {
      copyFileSync(path.join(root, 'png', 'images', `${n}.dcm`), path.join(flat, `${n}.dcm`));
      copyFileSync(path.join(root, 'png', 'masks', 'heart', `${n}.png`), path.join(flat, `${n}_mask.png`));
    }
    const flatScan = await scanDataset([flat], { masks: flat });
    assert.deepEqual([flatScan.images.map((e) => [e.relPath, path.basename(maskFile(e.masks!['mask']!))]), flatScan.skipped], [[['a.dcm', 'a_mask.png'], ['b.dcm', 'b_mask.png']], []]);

    // A FRACTIONAL SEG (probabilities out of MaximumFractionalValue, as model outputs are stored) is set above half.
    const binary = dcmjs.data.DicomMessage.readFile(seg([heart], ['heart']).buffer as ArrayBuffer);
    const fractional = dcmjs.data.DicomMetaDictionary.naturalizeDataset(binary.dict);
    const probabilities = Uint8Array.from(heart, (v, i) => (v ? 200 : i % 2 ? 127 : 30)); // 127 of 255 is not above half
    Object.assign(fractional, { SegmentationType: 'FRACTIONAL', SegmentationFractionalType: 'PROBABILITY', MaximumFractionalValue: 255, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelData: probabilities.buffer });
    binary.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(fractional);
    const fractionalFile = path.join(root, 'fractional.dcm');
    writeFileSync(fractionalFile, Buffer.from(binary.write()));
    assert.deepEqual(Array.from((await decodeImageFile(fractionalFile, { mask: true })).data), Array.from(heart));

    // Overlapping segments (a heart drawn over the lungs) are each read whole when selected, their union otherwise.
    const over = rect(30, 50, 20, 40);
    for (const d of ['overlap/images', 'overlap/masks/both', 'overlap-png/images', 'overlap-png/masks/heart', 'overlap-png/masks/other', 'overlap-png/masks/union']) mkdirSync(path.join(root, d), { recursive: true });
    for (const name of ['a', 'b']) {
      for (const d of ['overlap', 'overlap-png']) copyFileSync(path.join(fixtures, 'mono2-12bit.dcm'), path.join(root, d, 'images', `${name}.dcm`));
      writeFileSync(path.join(root, 'overlap', 'masks', 'both', `${name}.dcm`), seg([heart, over], ['heart', 'other']));
      for (const [s, m] of [['heart', heart], ['other', over], ['union', heart.map((v, i) => v | over[i]!)]] as const) await sharp(Buffer.from(m.map((v) => v * 255)), { raw: { width: w, height: h, channels: 1 } }).png().toFile(path.join(root, 'overlap-png', 'masks', s, `${name}.png`));
    }
    const pngOverlap = await load('overlap-png');
    const segOverlap = await load('overlap', { combine: { heart: ['both:1'], other: ['both:2'], union: ['both'] }, structures: ['heart', 'other', 'union'] });
    assert.deepEqual(pngOverlap.structures, ['heart', 'other', 'union']);
    segOverlap.samples.forEach((x, i) => assert.deepEqual(x.masks, pngOverlap.samples[i]!.masks));
  });

  it('reports wingspan_ctr as 259 images with heart, left_lung and right_lung masks', async (t) => {
    if (!existsSync(wingspan)) return t.skip(`${wingspan} not found (the shared data sit beside the checkout in CI)`);
    const report = await inspectDataset([wingspan]);
    assert.equal(report.layout, 'segmentation');
    assert.equal(report.images, 259);
    assert.deepEqual(report.structures, { heart: 259, left_lung: 259, right_lung: 259 });
    assert.deepEqual(report.sizes, { '512x512': 259 });
    assert.equal(report.skipped.length, 0);
  });

  it('finds DICOM files without an extension by their magic bytes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-dcm-'));
    copyFileSync(path.join(import.meta.dirname, 'fixtures', 'dicom', 'mono2-12bit.dcm'), path.join(dir, 'IM000001'));
    const scan = await scanDataset([dir]);
    assert.equal(scan.images.length, 1);
    assert.equal(scan.images[0]!.format, 'dicom');
  });

  it('DICOM files named by their UID without an extension keep the whole UID as their stem: paired with <UID>.png masks, not duplicates of each other', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-uid-'));
    for (const d of ['images', 'masks/lungs']) mkdirSync(path.join(root, d), { recursive: true });
    const fixture = path.join(import.meta.dirname, 'fixtures', 'dicom', 'mono2-12bit.dcm');
    const { width, height } = await decodeImageFile(fixture);
    for (const uid of ['1.2.826.0.1.3680043.8.498.101', '1.2.826.0.1.3680043.8.498.102']) {
      copyFileSync(fixture, path.join(root, 'images', uid));
      await sharp(new Uint8Array(width * height).fill(255), { raw: { width, height, channels: 1 } }).png().toFile(path.join(root, 'masks', 'lungs', `${uid}.png`));
    }
    const scan = await scanDataset([root]);
    assert.deepEqual(scan.skipped, []);
    assert.deepEqual(scan.images.map((e) => [e.stem, e.format, path.basename(maskFile(e.masks?.['lungs'] ?? ''))]), [
      ['1.2.826.0.1.3680043.8.498.101', 'dicom', '1.2.826.0.1.3680043.8.498.101.png'],
      ['1.2.826.0.1.3680043.8.498.102', 'dicom', '1.2.826.0.1.3680043.8.498.102.png'],
    ]);
  });

  it('pairs masks by stem, reports orphan and wrong-size masks, reads a label manifest', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-seg-'));
    for (const d of ['images', 'masks/heart', 'masks/lungs']) mkdirSync(path.join(root, d), { recursive: true });
    const stems = sampleFiles.slice(0, 3).map((f) => f.replace('.png', ''));
    for (const s of stems) copyFileSync(path.join(samples, `${s}.png`), path.join(root, 'images', `${s}.png`));
    const sizes = await Promise.all(stems.map((s) => sharp(path.join(samples, `${s}.png`)).metadata()));
    const meta = sizes[0]!;
    const mask = (w: number, h: number): Promise<unknown> =>
      sharp(Buffer.from(Array.from({ length: w * h }, (_, i) => (i % w > w / 2 ? 200 : 20))), { raw: { width: w, height: h, channels: 1 } }).png().toBuffer();
    for (const [i, s] of stems.entries()) writeFileSync(path.join(root, 'masks', 'heart', `${s}.png`), (await mask(sizes[i]!.width!, sizes[i]!.height!)) as Buffer);
    writeFileSync(path.join(root, 'masks', 'lungs', `${stems[0]}.png`), (await mask(meta.width!, meta.height!)) as Buffer);
    writeFileSync(path.join(root, 'masks', 'lungs', `${stems[1]}.png`), (await mask(32, 32)) as Buffer); // wrong size
    writeFileSync(path.join(root, 'masks', 'lungs', 'orphan.png'), (await mask(32, 32)) as Buffer);
    writeFileSync(path.join(root, 'labels.csv'), `image_id,finding\n${stems[0]},a\n${stems[1]},b\n`);

    const report = await inspectDataset([root]);
    assert.equal(report.images, 3);
    assert.deepEqual(report.structures, { heart: 3, lungs: 1 });
    assert.deepEqual(report.skippedByReason, { 'mask size mismatch': 1, 'mask without image': 1 });
    assert.equal(report.labels?.matched, 2);
    assert.deepEqual(report.labels?.columns, { finding: { a: 1, b: 1 } });

    // The dataset binarises (> 127) and resizes masks with the image; the wrong-size one is reported.
    const scan = await scanDataset([root]);
    const reported: SkippedFile[] = [];
    const ds = new ImageDataset(scan.images, { size: 64, onSkip: (s) => reported.push(s) });
    const samplesOut = [];
    for await (const s of ds.iterate()) samplesOut.push(s);
    assert.equal(samplesOut.length, 3);
    const first = samplesOut.find((s) => s.entry.stem === stems[0])!;
    assert.deepEqual(Object.keys(first.masks).sort(), ['heart', 'lungs']);
    const heart = first.masks['heart']!;
    assert.ok(heart.every((v) => v === 0 || v === 1));
    assert.equal(heart[0], 0); // left half dark
    assert.equal(heart[63], 1); // right half bright
    assert.equal(reported.length, 1);
    assert.match(reported[0]!.message, /mask size 32x32 differs/);
  });

  it("pairs a mask named with a dataset's suffix ('_mask', '-seg', ...) or after the image's whole name ('e.png_mask.png', 'f.dcm.png') with its image; a second mask or image of one stem is reported as a duplicate", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-suffix-'));
    for (const d of ['images/sub', 'masks/lungs']) mkdirSync(path.join(root, d), { recursive: true });
    const [a, b, c] = sampleFiles;
    for (const [src, name] of [[a, 'a.png'], [b, 'b.png'], [c, 'c.png'], [c, 'sub/a.png'], [a, 'e.png'], [b, 'f.dcm.png']] as const) copyFileSync(path.join(samples, src!), path.join(root, 'images', name));
    for (const [src, name] of [[a, 'a_mask.png'], [b, 'b-SEG.png'], [c, 'c.png'], [c, 'c_mask.png'], [c, 'd_mask.png'], [a, 'e.png_mask.png'], [b, 'f.dcm.png.png']] as const) copyFileSync(path.join(samples, src!), path.join(root, 'masks', 'lungs', name));
    const scan = await scanDataset([root]);
    const masks = Object.fromEntries(scan.images.map((e) => [path.relative(root, e.path), e.masks?.['lungs'] && path.basename(maskFile(e.masks['lungs']))]));
    // images/sub/a.png is another image (another folder), without a mask of its own.
    assert.deepEqual(masks, { 'images/a.png': 'a_mask.png', 'images/b.png': 'b-SEG.png', 'images/c.png': 'c.png', 'images/e.png': 'e.png_mask.png', 'images/f.dcm.png': 'f.dcm.png.png', 'images/sub/a.png': undefined });
    copyFileSync(path.join(samples, a!), path.join(root, 'images', 'b.jpg'));
    const problems = Object.fromEntries((await scanDataset([root])).skipped.map((x) => [path.relative(root, x.path), [x.category, x.message.slice(x.path.length + 2)]]));
    assert.deepEqual(problems, {
      'images/b.png': ['duplicate', `duplicate image stem 'b' in one folder (masks are matched by name; also ${path.join(root, 'images', 'b.jpg')})`],
      'masks/lungs/c_mask.png': ['duplicate', `a second mask of 'lungs' for ${path.join(root, 'images', 'c.png')} (${path.join(root, 'masks', 'lungs', 'c.png')} is used)`],
      'masks/lungs/d_mask.png': ['mask without image', `mask without image (no file with stem 'd_mask' or 'd' in ${root}/images)`],
    });
  });

  it("folders of patients holding files of one name pair each mask with the image at its place (P001/frontal.png); a flat mask of such a name is reported, not given to the first", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-patients-'));
    const patients = ['P001', 'P002', 'P003'];
    patients.forEach((p, k) => {
      for (const d of [`images/${p}`, `masks/heart/${p}`]) mkdirSync(path.join(root, d), { recursive: true });
      copyFileSync(path.join(samples, sampleFiles[k]!), path.join(root, 'images', p, 'frontal.png'));
      // Each patient's mask is its own image (a recognisable pairing).
      copyFileSync(path.join(samples, sampleFiles[k]!), path.join(root, 'masks', 'heart', p, 'frontal_mask.png'));
    });
    const scan = await scanDataset([root]);
    assert.deepEqual(scan.skipped, []);
    assert.deepEqual(scan.images.map((e) => [e.relPath, path.relative(root, maskFile(e.masks!['heart']!))]), patients.map((p) => [`${p}/frontal.png`, `masks/heart/${p}/frontal_mask.png`]));
    const data = await loadSegmentationData(root, 64, { testFraction: 0, maxTestImages: 0, seed: 0 });
    assert.equal(data.samples.length, 3);
    // Three different masks (given to one image, they would be one).
    assert.notDeepEqual(data.samples[0]!.masks[0], data.samples[1]!.masks[0]);
    assert.notDeepEqual(data.samples[1]!.masks[0], data.samples[2]!.masks[0]);
    const flat = path.join(root, 'masks', 'heart', 'frontal.png');
    copyFileSync(path.join(samples, sampleFiles[0]!), flat);
    const again = await scanDataset([root]);
    assert.deepEqual(again.skipped.map((x) => [x.category, x.message]), [['mask without image', `${flat}: mask of which image? 3 images share its name (P001/frontal.png, P002/frontal.png, P003/frontal.png) and none is in its folder, the top; place each mask in its image's subfolder (images/P001/a.png -> masks/<structure>/P001/a.png)`]]);
  });

  it('a label map (0 / 1 / 2 in one mask) is read as one structure, and said so once; its values are read apart as lungs:1, lungs:2', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-labelmap-'));
    for (const d of ['images', 'masks/lungs']) mkdirSync(path.join(root, d), { recursive: true });
    const stems = sampleFiles.slice(0, 2).map((f) => f.replace('.png', ''));
    for (const s of stems) {
      copyFileSync(path.join(samples, `${s}.png`), path.join(root, 'images', `${s}.png`));
      const { width: w, height: h } = await sharp(path.join(samples, `${s}.png`)).metadata();
      // Left lung 1, right lung 2, in the middle rows.
      const map = Uint8Array.from({ length: w! * h! }, (_, i) => (Math.abs(Math.floor(i / w!) - h! / 2) > h! / 4 ? 0 : i % w! < w! / 2 ? 1 : 2));
      await sharp(map, { raw: { width: w!, height: h!, channels: 1 } }).png().toFile(path.join(root, 'masks', 'lungs', `${s}.png`));
    }
    const warnings: string[] = [];
    const ds = new ImageDataset((await scanDataset([root])).images, { size: 64, onWarning: (m) => warnings.push(m) });
    for await (const sample of ds.iterate()) {
      const lungs = sample.masks['lungs']!;
      assert.ok(lungs[32 * 64 + 10] === 1 && lungs[32 * 64 + 54] === 1 && lungs[2 * 64 + 32] === 0); // both labels are the structure
    }
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /lungs\/\w+\.png: a label map \(values 1, 2\): every nonzero pixel is read as 'lungs'; to train the labels apart, select them as lungs:1, lungs:2 \(--structures\), or name them with --combine, e.g. --combine left_lung=lungs:1$/);
    assert.deepEqual(labelMapWarning(Float32Array.from([0, 1, 0]), 8, 'f', 's'), undefined); // one label: a mask
    assert.deepEqual(labelMapWarning(Float32Array.from([0, 255, 128]), 8, 'f', 's'), undefined); // full scale: anti-aliasing
    const report = await inspectDataset([root]);
    assert.equal(report.labelMaps, 2);
    assert.match(formatInspectReport(report), /\nlabel maps: 2 mask\(s\) hold several label values, each read as one structure; the first: .*a label map \(values 1, 2\)/);

    // Read apart: exactly the pixels of each value, resized like any mask; no warning then. The
    // disk cache keeps them (a second dataset reads the same).
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'eden-labelmap-cache-'));
    const quiet: string[] = [];
    const split = new ImageDataset((await scanDataset([root])).images, { size: 64, labelValues: { lungs: [1, 2] }, cache: 'disk', cacheDir, onWarning: (m) => quiet.push(m) });
    const cached = new ImageDataset(split.entries, { size: 64, labelValues: { lungs: [1, 2] }, cache: 'disk', cacheDir });
    for (let i = 0; i < 2; i++) {
      const { masks } = (await split.get(i))!;
      assert.deepEqual(Object.keys(masks), ['lungs', 'lungs:1', 'lungs:2']);
      const expected = (v: number): number[] => Array.from({ length: 64 * 64 }, (_, k) => (Math.abs(Math.floor(k / 64) - 31.5) > 16 ? 0 : k % 64 < 32 === (v === 1) ? 1 : 0));
      // Resizing moves a boundary row by at most one: compare away from it.
      const rows = (m: Float32Array): number[] => Array.from(m).filter((_, k) => Math.abs(Math.abs(Math.floor(k / 64) - 31.5) - 16) > 1.5);
      assert.deepEqual(rows(masks['lungs:1']!), rows(Float32Array.from(expected(1))));
      assert.deepEqual(rows(masks['lungs:2']!), rows(Float32Array.from(expected(2))));
      assert.deepEqual(masks['lungs'], masks['lungs:1']!.map((v, k) => Math.max(v, masks['lungs:2']![k]!)));
      assert.deepEqual((await cached.get(i))!.masks, masks);
    }
    assert.equal(readdirSync(cacheDir).length, 2);
    assert.deepEqual(quiet, []);

    // As structures: selected, named with --combine (the label map then is no structure of its own),
    // as the base of a derived target; a value no mask holds is an error saying so.
    const load = (o: { structures?: string[]; combine?: Record<string, string[]> }): Promise<{ structures: string[]; samples: { masks: Float32Array[] }[] }> => loadSegmentationData(root, 64, { ...o, testFraction: 0, maxTestImages: 0, seed: 0 });
    const named = await load({ combine: { left: ['lungs:1'], right: ['lungs:2'] } });
    assert.deepEqual(named.structures, ['left', 'right']);
    const direct = await load({ structures: ['lungs:1', 'lungs:2', 'lungs:1:apex'] });
    assert.deepEqual(direct.samples[0]!.masks.slice(0, 2), named.samples[0]!.masks);
    assert.ok(direct.samples[0]!.masks[2]!.some((v) => v === 1));
    await assert.rejects(load({ structures: [] }), /no structures asked for; found lungs/);
    await assert.rejects(load({ structures: ['lungs:3'] }), /every mask of 'lungs:3' is empty at 64 px \(2 images\); check that the masks of 'lungs' hold the value 3/);
    await assert.rejects(load({ combine: { heart: ['labels:3'] } }), /--combine heart=labels:3 names 'labels:3', but there is no structure 'labels'; found lungs/);
  });

  it("a colour mask is read by label: in a palette PNG (annotation tools' VOC-style export, at 8 and 2 bits per pixel) by index, in RGB by colour", async () => {
    // Red 1, green 2, blue 3 (their luminances 127, 220, 76 of 255 read as one structure, green, before).
    const palette = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]];
    const stem = sampleFiles[0]!.replace('.png', '');
    const { width: w, height: h } = await sharp(path.join(samples, `${stem}.png`)).metadata();
    const labels = Uint8Array.from({ length: w! * h! }, (_, i) => {
      const [x, y] = [i % w!, Math.floor(i / w!)];
      return y < h! / 8 ? 3 : Math.abs(y - h! / 2) > h! / 4 ? 0 : x < w! / 2 ? 1 : 2;
    });
    const roots: Record<string, string> = {};
    for (const kind of ['grey', 'palette8', 'palette2', 'rgb']) {
      const root = (roots[kind] = mkdtempSync(path.join(tmpdir(), `eden-${kind}-mask-`)));
      for (const d of ['images', 'masks/labels']) mkdirSync(path.join(root, d), { recursive: true });
      copyFileSync(path.join(samples, `${stem}.png`), path.join(root, 'images', `${stem}.png`));
      const file = path.join(root, 'masks', 'labels', `${stem}.png`);
      if (kind === 'grey') await sharp(labels, { raw: { width: w!, height: h!, channels: 1 } }).png().toFile(file);
      else if (kind === 'rgb') await sharp(Uint8Array.from([...labels].flatMap((l) => palette[l]!)), { raw: { width: w!, height: h!, channels: 3 } }).png().toFile(file);
      else writeFileSync(file, palettePng(labels, w!, h!, palette, kind === 'palette8' ? 8 : 2));
    }
    const read = async (root: string, values = [1, 2, 3]) => (await new ImageDataset((await scanDataset([root])).images, { size: 64, labelValues: { labels: values } }).get(0))!.masks;
    const reference = await read(roots.grey!);
    for (const v of [1, 2, 3]) assert.ok(reference[`labels:${v}`]!.some((x) => x === 1), `label ${v} present`);
    for (const kind of ['palette8', 'palette2']) assert.deepEqual(await read(roots[kind]!), reference, kind);
    // Not in a palette (RGB): each colour is a label value, its luma (red 76, green 150, blue 29).
    const rgb = await read(roots.rgb!, [76, 150, 29]);
    assert.deepEqual([rgb.labels, rgb['labels:76'], rgb['labels:150'], rgb['labels:29']], [reference.labels, reference['labels:1'], reference['labels:2'], reference['labels:3']]);
    const warnings: string[] = [];
    await new ImageDataset((await scanDataset([roots.rgb!])).images, { size: 64, onWarning: (m) => warnings.push(m) }).get(0);
    assert.match(warnings.join('\n'), /: a colour mask \(#0000ff as 29, #ff0000 as 76, #00ff00 as 150\): every nonzero pixel is read as 'labels'; to train the labels apart, select them as labels:29, labels:76/);
    const report = await inspectDataset([roots.palette2!]);
    assert.deepEqual([report.labelMasks, report.labelMaps], [1, 1]);
    assert.match(report.labelMapExample!, /a label map \(values 1, 2, 3\)/);
    // An image (not a mask) in a palette is its colours' luminance, as before.
    const asImage = await decodeImageFile(path.join(roots.palette8!, 'masks', 'labels', `${stem}.png`));
    assert.deepEqual([...new Set(asImage.data)].sort((a, b) => a - b), [0, 76, 127, 220]);
  });

  it('a mask drawn on a transparent layer is read where it is opaque: white, red, black or two colours, 8 or 16 bits', async () => {
    // Before: the alpha was dropped, and a white or red structure on a transparent background (its
    // pixels keeping any colour) read as the whole image, a black one as nothing.
    const stem = sampleFiles[0]!.replace('.png', '');
    const { width: w, height: h } = await sharp(path.join(samples, `${stem}.png`)).metadata();
    const region = (i: number): number => {
      const [x, y] = [i % w!, Math.floor(i / w!)];
      return Math.abs(y - h! / 2) > h! / 4 ? 0 : x < w! / 2 ? 1 : 2; // 1 left, 2 right, 0 elsewhere
    };
    const rng = new Rng(5);
    const garbage = (): number => rng.int(256); // what a transparent pixel's colour happens to be
    const masks: Record<string, { channels: 2 | 4; px: (r: number) => number[]; sixteen?: boolean }> = {
      reference: { channels: 2, px: (r) => [r ? 255 : 0, 255] }, // opaque, 0 / 255
      white: { channels: 4, px: (r) => (r ? [255, 255, 255, 255] : [garbage(), garbage(), garbage(), 0]) },
      red: { channels: 4, px: (r) => (r ? [255, 0, 0, 255] : [255, 255, 255, 0]) },
      black: { channels: 4, px: (r) => (r ? [0, 0, 0, 255] : [255, 255, 255, 0]) },
      grey16: { channels: 2, px: (r) => [r ? 65535 : 40000, r ? 65535 : 0], sixteen: true },
      colours: { channels: 4, px: (r) => (r === 1 ? [255, 0, 0, 255] : r === 2 ? [0, 255, 0, 255] : [0, 0, 255, 0]) }, // blue where transparent
      coloursOpaque: { channels: 4, px: (r) => (r === 1 ? [255, 0, 0, 255] : r === 2 ? [0, 255, 0, 255] : [0, 0, 0, 255]) },
    };
    const root = mkdtempSync(path.join(tmpdir(), 'eden-alpha-mask-'));
    mkdirSync(path.join(root, 'images'), { recursive: true });
    copyFileSync(path.join(samples, `${stem}.png`), path.join(root, 'images', `${stem}.png`));
    for (const [name, m] of Object.entries(masks)) {
      mkdirSync(path.join(root, 'masks', name), { recursive: true });
      const values = Array.from({ length: w! * h! }, (_, i) => m.px(region(i))).flat();
      const raw = { raw: { width: w!, height: h!, channels: m.channels } };
      const img = m.sixteen ? sharp(Uint16Array.from(values), raw).toColourspace('grey16') : sharp(Uint8Array.from(values), raw);
      await img.png().toFile(path.join(root, 'masks', name, `${stem}.png`));
    }
    const sample = (await new ImageDataset((await scanDataset([root])).images, { size: 64, labelValues: { colours: [76, 150], coloursOpaque: [76, 150] } }).get(0))!.masks;
    const reference = sample['reference']!;
    assert.ok(reference.some((v) => v === 1) && reference.some((v) => v === 0));
    for (const name of ['white', 'red', 'black', 'grey16', 'colours']) assert.deepEqual(sample[name], reference, name);
    // Two colours on a transparent layer: each its label, as on an opaque black background.
    for (const v of [76, 150]) assert.deepEqual(sample[`colours:${v}`], sample[`coloursOpaque:${v}`], `label ${v}`);
    assert.ok(sample['colours:76']!.some((v) => v === 1) && sample['colours:150']!.some((v) => v === 1));
    // The colour under the transparent pixels is no label.
    assert.deepEqual((await decodeImageFile(path.join(root, 'masks', 'colours', `${stem}.png`), { mask: true })).colours, { 76: '#ff0000', 150: '#00ff00' });
    // eden inspect says how the five were read (the opaque ones are not counted).
    const report = await inspectDataset([root]);
    assert.equal(report.transparentMasks, 5);
    assert.ok(formatInspectReport(report).split('\n').includes('transparency: 5 mask(s) drawn on a transparent layer: their transparent pixels are background'));
  });

  it('masks lying directly in masks/ are one structure, "mask"; an empty masks/ is an error saying where masks go', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-loose-masks-'));
    for (const d of ['images', 'masks']) mkdirSync(path.join(root, d), { recursive: true });
    const stems = sampleFiles.slice(0, 3).map((f) => f.replace('.png', ''));
    for (const s of stems) copyFileSync(path.join(samples, `${s}.png`), path.join(root, 'images', `${s}.png`));
    const load = (): Promise<{ structures: string[]; samples: unknown[] }> => loadSegmentationData(root, 64, { testFraction: 0, maxTestImages: 0, seed: 0 });
    await assert.rejects(load(), new RegExp(`${path.join(root, 'masks')}: no masks; put each structure's masks in <structure>/ folders there \\(or the masks of a single structure directly in it\\), named as their images`));
    assert.match(formatInspectReport(await inspectDataset([root])), /\nstructures: none \(masks\/ holds no mask images/);
    for (const [i, s] of stems.entries()) {
      const { width: w, height: h } = await sharp(path.join(samples, `${s}.png`)).metadata();
      await sharp(Uint8Array.from({ length: w! * h! }, (_, k) => (k % w! > w! / 2 ? 255 : 0)), { raw: { width: w!, height: h!, channels: 1 } }).png().toFile(path.join(root, 'masks', i === 0 ? `${s}_mask.png` : `${s}.png`));
    }
    writeFileSync(path.join(root, 'masks', 'dataset.json'), '{}'); // metadata beside the masks: reported, no structure
    const scan = await scanDataset([root]);
    assert.deepEqual(scan.structures, ['mask']);
    assert.deepEqual(scan.skipped.map((x) => x.message), [`${path.join(root, 'masks', 'dataset.json')}: not an image file (unrecognised extension '.json' and no DICOM header)`]);
    const data = await load();
    assert.deepEqual(data.structures, ['mask']);
    assert.equal(data.samples.length, 3);
    // Beside structure folders, they are one more structure.
    mkdirSync(path.join(root, 'masks', 'heart'));
    copyFileSync(path.join(root, 'masks', `${stems[1]}.png`), path.join(root, 'masks', 'heart', `${stems[1]}.png`));
    assert.deepEqual((await scanDataset([root])).structures, ['heart', 'mask']);
    // Images only (pretraining, segment, match, embed, classify): masks/ unread, an image of the
    // same stem kept, a mask of no image not reported.
    await sharp(path.join(samples, `${stems[0]}.png`)).jpeg().toFile(path.join(root, 'images', `${stems[0]}.jpg`));
    copyFileSync(path.join(root, 'masks', `${stems[1]}.png`), path.join(root, 'masks', 'orphan.png'));
    const paired = await scanDataset([root]);
    assert.equal(paired.images.length, 3);
    assert.deepEqual(paired.skipped.map((x) => x.category).sort(), ['duplicate', 'mask without image', 'not an image file']);
    const imagesOnly = await scanDataset([root], { imagesOnly: true });
    assert.deepEqual(imagesOnly.images.map((e) => e.relPath).sort(), [...stems.map((x) => `${x}.png`), `${stems[0]}.jpg`].sort());
    assert.ok(imagesOnly.images.every((e) => !e.masks));
    assert.deepEqual(imagesOnly.skipped, []);
  });

  it("the masks' folder named apart (--masks): Montgomery's CXR_png/ + ManualMask/<side>Mask/, Shenzhen's loose <name>_mask.png, masks inside the images' folder, nnU-Net's imagesTr/<case>_0000 + labelsTr/<case>; a folder without the layout names the pair it finds", async () => {
    // The same three images and masks in the images/ + masks/ layout and in two others.
    const standard = mkdtempSync(path.join(tmpdir(), 'eden-standard-'));
    const montgomery = mkdtempSync(path.join(tmpdir(), 'eden-montgomery-'));
    const shenzhen = mkdtempSync(path.join(tmpdir(), 'eden-shenzhen-'));
    for (const d of ['images', 'masks/left', 'masks/right']) mkdirSync(path.join(standard, d), { recursive: true });
    for (const d of ['CXR_png', 'ManualMask/leftMask', 'ManualMask/rightMask', 'ClinicalReadings']) mkdirSync(path.join(montgomery, d), { recursive: true });
    for (const d of ['CXR_png/mask']) mkdirSync(path.join(shenzhen, d), { recursive: true });
    const stems = sampleFiles.slice(0, 3).map((f) => f.replace('.png', ''));
    for (const s of stems) {
      const image = path.join(samples, `${s}.png`);
      const { width: w, height: h } = await sharp(image).metadata();
      const half = (right: boolean): Promise<Buffer> => sharp(Uint8Array.from({ length: w! * h! }, (_, k) => ((k % w! > w! / 2) === right ? 255 : 0)), { raw: { width: w!, height: h!, channels: 1 } }).png().toBuffer();
      const [left, right] = [await half(false), await half(true)];
      copyFileSync(image, path.join(standard, 'images', `${s}.png`));
      writeFileSync(path.join(standard, 'masks', 'left', `${s}.png`), left);
      writeFileSync(path.join(standard, 'masks', 'right', `${s}.png`), right);
      copyFileSync(image, path.join(montgomery, 'CXR_png', `${s}.png`));
      writeFileSync(path.join(montgomery, 'ManualMask', 'leftMask', `${s}.png`), left);
      writeFileSync(path.join(montgomery, 'ManualMask', 'rightMask', `${s}.png`), right);
      writeFileSync(path.join(montgomery, 'ClinicalReadings', `${s}.txt`), 'Patient\'s Sex: F');
      // Shenzhen's one structure, its masks in a folder inside the images' folder.
      copyFileSync(image, path.join(shenzhen, 'CXR_png', `${s}.png`));
      writeFileSync(path.join(shenzhen, 'CXR_png', 'mask', `${s}_mask.png`), left);
    }
    const load = (root: string, o: { masks?: string; combine?: Record<string, string[]> } = {}): ReturnType<typeof loadSegmentationData> => loadSegmentationData(root, 64, { ...o, testFraction: 0, maxTestImages: 0, seed: 0 });
    const reference = await load(standard);
    const m = await load(path.join(montgomery, 'CXR_png'), { masks: path.join(montgomery, 'ManualMask'), combine: { left: ['leftMask'], right: ['rightMask'] } });
    assert.deepEqual(m.structures, reference.structures);
    assert.equal(m.samples.length, 3);
    m.samples.forEach((x, i) => {
      assert.deepEqual(x.image, reference.samples[i]!.image);
      assert.deepEqual(x.masks, reference.samples[i]!.masks);
    });
    const scan = await scanDataset([path.join(shenzhen, 'CXR_png')], { masks: path.join(shenzhen, 'CXR_png', 'mask') });
    assert.equal(scan.layout, 'segmentation');
    assert.deepEqual(scan.images.map((e) => e.relPath), stems.map((x) => `${x}.png`)); // the masks are not images
    assert.deepEqual(scan.structures, ['mask']);
    assert.deepEqual(scan.skipped, []);
    const sz = await load(path.join(shenzhen, 'CXR_png'), { masks: path.join(shenzhen, 'CXR_png', 'mask') });
    sz.samples.forEach((x, i) => assert.deepEqual(x.masks[0], reference.samples[i]!.masks[0]));
    // nnU-Net's 2D layout: imagesTr/<case>_0000.png (the channel) with labelsTr/<case>.png.
    const nnunet = mkdtempSync(path.join(tmpdir(), 'eden-nnunet-'));
    for (const d of ['imagesTr', 'labelsTr']) mkdirSync(path.join(nnunet, d));
    stems.forEach((x, i) => {
      copyFileSync(path.join(samples, `${x}.png`), path.join(nnunet, 'imagesTr', `case${i}_0000.png`));
      copyFileSync(path.join(shenzhen, 'CXR_png', 'mask', `${x}_mask.png`), path.join(nnunet, 'labelsTr', `case${i}.png`));
    });
    const nn = await scanDataset([path.join(nnunet, 'imagesTr')], { masks: path.join(nnunet, 'labelsTr') });
    assert.deepEqual(nn.images.map((e) => [e.relPath, path.basename(maskFile(e.masks!['mask']!))]), stems.map((_, i) => [`case${i}_0000.png`, `case${i}.png`]));
    assert.deepEqual(nn.skipped, []);
    (await load(path.join(nnunet, 'imagesTr'), { masks: path.join(nnunet, 'labelsTr') })).samples.forEach((x, i) => assert.deepEqual(x.masks[0], reference.samples[i]!.masks[0]));
    // Beside imagesTs/ (images its labels do not name), the hint still finds imagesTr/.
    mkdirSync(path.join(nnunet, 'imagesTs'));
    copyFileSync(path.join(samples, `${stems[0]}.png`), path.join(nnunet, 'imagesTs', 'test0_0000.png'));
    await assert.rejects(load(nnunet), (e: Error) => e.message.endsWith(`here imagesTr/ looks like the images and labelsTr/ like their masks: --data ${path.join(nnunet, 'imagesTr')} --masks ${path.join(nnunet, 'labelsTr')}`));
    // An orphan mask names the images' folder it was looked for in.
    copyFileSync(path.join(montgomery, 'ManualMask', 'leftMask', `${stems[0]}.png`), path.join(montgomery, 'ManualMask', 'leftMask', 'orphan.png'));
    const orphan = (await scanDataset([path.join(montgomery, 'CXR_png')], { masks: path.join(montgomery, 'ManualMask') })).skipped;
    assert.deepEqual(orphan.map((x) => x.message), [`${path.join(montgomery, 'ManualMask', 'leftMask', 'orphan.png')}: mask without image (no file with stem 'orphan' in ${path.join(montgomery, 'CXR_png')})`]);
    // The folder itself: the pair is named, in the error and by inspect, never taken on a guess.
    const hint = `--data ${path.join(montgomery, 'CXR_png')} --masks ${path.join(montgomery, 'ManualMask')}`;
    await assert.rejects(load(montgomery), (e: Error) => e.message === `${montgomery}: segmentation needs images/ + masks/<structure>/ in it, or its images' folder with the masks' folder named apart (--masks DIR); here CXR_png/ looks like the images and ManualMask/ like their masks: ${hint}`);
    assert.match(formatInspectReport(await inspectDataset([montgomery])), new RegExp(`\nmasks: none paired .*CXR_png/ looks like images and ManualMask/ like their masks: eden inspect ${path.join(montgomery, 'CXR_png')} --masks ${path.join(montgomery, 'ManualMask')}\n`));
    mkdirSync(path.join(montgomery, 'labels'));
    await assert.rejects(load(montgomery), (e: Error) => e.message.endsWith('(--masks DIR)')); // two folders named like masks: no hint
    assert.equal((await inspectDataset([montgomery])).masksHint, undefined);
    // Misuse is named.
    await assert.rejects(scanDataset([path.join(montgomery, 'CXR_png'), standard], { masks: path.join(montgomery, 'ManualMask') }), /--masks .*ManualMask: masks are paired with one folder of images; got /);
    await assert.rejects(scanDataset([path.join(montgomery, 'CXR_png')], { masks: path.join(montgomery, 'nothing') }), /--masks .*nothing: no such folder/);
  });

  it("masks as run-length codes in a table (--masks TABLE --rle-order): CheXmask's .csv.gz along rows, Kaggle's one row per object along columns, SIIM-ACR's starts from the previous run's end, read as the same masks as the PNGs they encode; bad runs and misuse named", async (t) => {
    if (!existsSync(wingspan)) return t.skip(`${wingspan} not found (the shared data sit beside the checkout in CI)`);
    // The six images the fixtures' tables encode (make-mask-table.py), their PNG masks beside them in
    // the images/ + masks/ layout, and two images no row names.
    const tables = path.join(import.meta.dirname, 'fixtures', 'mask-table');
    const names = readdirSync(path.join(wingspan, 'images')).sort().slice(0, 8);
    const [standard, plain] = [mkdtempSync(path.join(tmpdir(), 'eden-table-ref-')), mkdtempSync(path.join(tmpdir(), 'eden-table-'))];
    for (const s of ['heart', 'left_lung', 'right_lung']) mkdirSync(path.join(standard, 'masks', s), { recursive: true });
    mkdirSync(path.join(standard, 'images'));
    names.forEach((n, i) => {
      copyFileSync(path.join(wingspan, 'images', n), path.join(plain, n));
      if (i >= 6) return;
      copyFileSync(path.join(wingspan, 'images', n), path.join(standard, 'images', n));
      for (const s of ['heart', 'left_lung', 'right_lung']) copyFileSync(path.join(wingspan, 'masks', s, n), path.join(standard, 'masks', s, n));
    });
    const skips: string[] = [];
    const load = (root: string, o: { masks?: string; rleOrder?: RunOrder; maskRows?: string } = {}): ReturnType<typeof loadSegmentationData> => loadSegmentationData(root, 128, { ...o, onSkip: (m) => skips.push(m), testFraction: 0, maxTestImages: 0, seed: 0 });
    const reference = await load(standard);
    const chexmask = path.join(tables, 'chexmask.csv.gz');
    const said: string[] = [];
    const rows = await loadSegmentationData(plain, 128, { masks: chexmask, rleOrder: 'rows', onLog: (m) => said.push(m), onSkip: (m) => skips.push(m), testFraction: 0, maxTestImages: 0, seed: 0 });
    assert.equal(said.length, 1);
    assert.match(said[0]!, new RegExp(`^${chexmask.replace(/[.]/g, '\\.')}: 6 rows \\(key column 'image_id'\\), naming 6 of the 8 images \\(\\d+\\.\\d s\\)$`));
    assert.deepEqual(rows.structures, ['heart', 'left_lung', 'right_lung']); // 'Left Lung' -> left_lung; Dice, Landmarks, Height, Width are no masks
    assert.deepEqual(rows.samples.map((x) => path.basename(x.file)), names.slice(0, 6));
    rows.samples.forEach((x, i) => {
      assert.deepEqual(x.image, reference.samples[i]!.image);
      assert.deepEqual(x.masks, reference.samples[i]!.masks);
    });
    assert.deepEqual(skips.filter((m) => !m.includes('missing a mask')), []);
    assert.equal(skips.length, 2); // the two images no row names, left out
    // CheXmask's quality column chooses rows: the two images under 0.79 (0.62, 0.55) have no masks, so
    // are left out; the one at 0.79 is kept.
    said.length = 0;
    const good = await loadSegmentationData(plain, 128, { masks: chexmask, rleOrder: 'rows', maskRows: 'Dice RCA (Mean)>=0.79', onLog: (m) => said.push(m), testFraction: 0, maxTestImages: 0, seed: 0 });
    assert.deepEqual(good.samples.map((x) => path.basename(x.file)), [0, 2, 3, 5].map((i) => names[i]));
    assert.match(said[0]!, /: 6 rows \(key column 'image_id'\), naming 4 of the 8 images; 2 row\(s\) naming images left out by 'Dice RCA \(Mean\)>=0\.79' \(/);
    await assert.rejects(load(plain, { masks: chexmask, rleOrder: 'rows', maskRows: 'Dice RCA (Mean)>0.99' }), (e: Error) => e.message === `${chexmask}: every row naming an image of the folder (6) fails --mask-rows 'Dice RCA (Mean)>0.99'`);
    await assert.rejects(load(plain, { masks: chexmask, rleOrder: 'rows', maskRows: 'RCA>=0.7' }), (e: Error) => e.message === `--mask-rows 'RCA>=0.7': ${chexmask} has no column 'RCA'; columns are image_id, Dice RCA (Mean), Dice RCA (Max), Landmarks, Left Lung, Right Lung, Heart, Height, Width`);
    assert.throws(() => parseRowCondition('Dice RCA (Mean)'), /expected COLUMN OP VALUE, OP one of >= <= > < = != \(e\.g\. 'Dice RCA \(Mean\)>=0\.7'\)/);
    assert.deepEqual(parseRowCondition(' view = PA '), { column: 'view', op: '=', value: 'PA' });
    // Read along columns, a square image's rows-encoded mask is its transpose.
    const transposed = await load(plain, { masks: chexmask, rleOrder: 'columns' });
    const side = 128;
    const transpose = (m: Float32Array): Float32Array => m.map((_, k) => m[(k % side) * side + Math.floor(k / side)]!);
    transposed.samples.forEach((x, i) => x.masks.forEach((m, k) => assert.deepEqual(m, transpose(reference.samples[i]!.masks[k]!))));
    // Kaggle's form: ImageId a file name, EncodedPixels along columns, a row per object (both lungs
    // of every other image, the left one alone of the others): a row's objects are united.
    const kaggle = await load(plain, { masks: path.join(tables, 'kaggle.csv'), rleOrder: 'columns' });
    assert.deepEqual(kaggle.structures, ['encodedpixels']);
    kaggle.samples.forEach((x, i) => {
      const [, left, right] = reference.samples[i]!.masks;
      assert.deepEqual(x.masks[0], i % 2 === 0 ? left!.map((v, k) => Math.max(v, right![k]!)) : left);
    });
    // Kaggle's long form (Severstal's): a row per image and class, numbered classes named with their
    // column; an image without a row of a class has that class's mask empty.
    const byClass = await load(plain, { masks: path.join(tables, 'classes.csv'), rleOrder: 'columns' });
    assert.deepEqual(byClass.structures, ['classid_1', 'classid_2', 'classid_3']);
    byClass.samples.forEach((x, i) => {
      const [heart, left, right] = reference.samples[i]!.masks;
      assert.deepEqual(x.masks, [i === 2 ? new Float32Array(heart!.length) : heart, left, right]);
    });
    // Named classes (UW-Madison's) name their structures.
    const named = path.join(tmpdir(), 'named.csv');
    writeFileSync(named, ['id,class,segmentation', `${names[0]},stomach,1 ${512 * 256}`, `${names[1]},large_bowel,1 ${512 * 4}`, `${names[1]},stomach,`, ''].join('\n'));
    const organs = await load(plain, { masks: named, rleOrder: 'rows' });
    assert.deepEqual(organs.structures, ['large_bowel', 'stomach']);
    assert.deepEqual(organs.samples.map((x) => x.masks.map((m) => m.reduce((a, v) => a + v, 0))), [[0, 128 * 64], [128, 0]]);
    // SIIM-ACR's: starts from the previous run's end, along columns, each lung a row (the competition's own encoder).
    const siim = await load(plain, { masks: path.join(tables, 'siim.csv'), rleOrder: 'columns-relative' });
    assert.deepEqual(siim.structures, ['encodedpixels']); // ' EncodedPixels'
    siim.samples.forEach((x, i) => {
      const [, left, right] = reference.samples[i]!.masks;
      assert.deepEqual(x.masks[0], left!.map((v, k) => Math.max(v, right![k]!)));
    });
    // inspect reads the table as training does; without the order it asks for it.
    const report = await inspectDataset([plain], { masks: chexmask, rleOrder: 'rows' });
    assert.deepEqual([report.images, report.structures, report.maskValues], [8, { heart: 6, left_lung: 6, right_lung: 6 }, { '0-255': 18 }]);
    assert.ok(formatInspectReport(report).split('\n').some((l) => l.startsWith(`masks table: ${chexmask}: 6 rows (key column 'image_id'), naming 6 of the 8 images (`)));
    // The runs kept wait in temporary files (one a table read), removed at exit; one a killed
    // process left is removed by the next reading; a refused table's at once.
    const spills = (): string[] => readdirSync(tmpdir()).filter((f) => f.startsWith('eden-mask-runs-'));
    const orphan = path.join(tmpdir(), 'eden-mask-runs-999999999-0000.runs'); // no such process
    writeFileSync(orphan, '1 2');
    const before = spills().filter((f) => f.startsWith(`eden-mask-runs-${process.pid}-`));
    assert.equal(before.length, 7); // rows, good, transposed, kaggle, classes, named, siim (inspect's reading of 'rows' for the same images is the first's, not streamed again)
    assert.ok(before.every((f) => readFileSync(path.join(tmpdir(), f)).toString('latin1').match(/^[\d ]+$/)));
    await assert.rejects(load(plain, { masks: chexmask }), (e: Error) => e.message.startsWith(`${chexmask}: say how its runs number the pixels: --rle-order rows (left to right, then down: CheXmask, numpy's flatten) or --rle-order columns`));
    assert.deepEqual(spills(), before);
    // The command line's process leaves none behind.
    const own = mkdtempSync(path.join(tmpdir(), 'eden-spill-'));
    const cli = eden(['inspect', plain, '--masks', chexmask, '--rle-order', 'rows'], { TMPDIR: own });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /\nstructures: heart \(6 masks\), left_lung \(6 masks\), right_lung \(6 masks\)\n/);
    assert.deepEqual(readdirSync(own).filter((f) => f.startsWith('eden-mask-runs-')), []); // (tsx keeps its cache there)
    // Bad runs are a mask's problem, named by table, row and column; the image is left out, the others kept.
    const bad = path.join(plain, 'bad.csv'); // a table among the images is no image
    const first = names[0]!.replace(/\.png$/, '');
    writeFileSync(bad, ['image_id;Heart', `${first};10 5 3 2`, `${names[1]};1 3 ${512 * 512} 2`, `${names[2]};0 4`, `${names[3]};1 4 9`, `${names[4]};-1`, `${names[5]};1 ${512 * 100}`, ''].join('\n'));
    skips.length = 0;
    const partial = await load(plain, { masks: bad, rleOrder: 'rows' });
    assert.deepEqual(partial.samples.map((x) => path.basename(x.file)), [names[4], names[5]]); // an empty mask (-1) is a mask
    assert.deepEqual(skips.filter((m) => !m.includes('missing a mask')).sort(), [
      `${bad} (row ${first}, column Heart): run 2 starts at 3, before the previous run's end (14): absolute starts increase (runs whose starts count from the previous run's end, as SIIM-ACR's, are read with --rle-order rows-relative)`,
      `${bad} (row ${names[1]}, column Heart): run 2 (${512 * 512} 2) ends past the 512x512 mask's ${512 * 512} pixels (the size of its image; give Height and Width columns if the masks were drawn at another)`,
      `${bad} (row ${names[2]}, column Heart): run 1 starts at 0: starts count from 1 (the first pixel is 1)`,
      `${bad} (row ${names[3]}, column Heart): not run-length codes ('<start> <length> ...', integers in pairs): '1 4 9'`,
    ].sort()); // decoded several at once: reported in the order they finish
    assert.ok(!(await scanDataset([plain], { masks: bad, rleOrder: 'rows' })).skipped.some((x) => x.path === bad));
    // Height and Width give the masks' size: the top half of an image drawn at twice its resolution
    // is the top half drawn at its own.
    const sized = path.join(plain, 'sized.csv');
    writeFileSync(sized, ['file,top,Height,Width', `${names[0]},1 ${1024 * 512},1024,1024`, `${names[1]},1 ${512 * 256},,`, ''].join('\n'));
    const halves = await load(plain, { masks: sized, rleOrder: 'rows' });
    assert.deepEqual(halves.samples.map((x) => path.basename(x.file)), [names[0], names[1]]);
    assert.deepEqual(halves.samples[0]!.masks[0], halves.samples[1]!.masks[0]);
    assert.equal(halves.samples[0]!.masks[0]!.reduce((a, v) => a + v, 0), 128 * 64);
    // CheXmask's CheXpert table names images by their path in the full dataset
    // ('CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg'); a user's copy (the small one,
    // its folder above not given) holds one file name in every study: each study gets its own row.
    const chexpert = mkdtempSync(path.join(tmpdir(), 'eden-chexpert-'));
    for (const p of ['patient00001', 'patient00002']) {
      mkdirSync(path.join(chexpert, 'train', p, 'study1'), { recursive: true });
      copyFileSync(path.join(wingspan, 'images', names[p.endsWith('1') ? 0 : 1]!), path.join(chexpert, 'train', p, 'study1', 'view1_frontal.jpg'));
    }
    const chexpertTable = path.join(tmpdir(), 'CheXpert.csv');
    writeFileSync(chexpertTable, ['Path,Top', `CheXpert-v1.0/train/patient00002/study1/view1_frontal.jpg,1 ${512 * 4}`, `CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg,1 ${512 * 256}`, ''].join('\n'));
    const studies = await load(chexpert, { masks: chexpertTable, rleOrder: 'rows' });
    assert.deepEqual(studies.samples.map((x) => [path.relative(chexpert, x.file), x.masks[0]!.reduce((a, v) => a + v, 0)]), [[path.join('train', 'patient00001', 'study1', 'view1_frontal.jpg'), 128 * 64], [path.join('train', 'patient00002', 'study1', 'view1_frontal.jpg'), 128]]);
    // Misuse: a table naming none of the images, no column of runs, the order with a folder of masks.
    const none = path.join(plain, 'none.csv');
    writeFileSync(none, 'file,mask\nother.png,1 2\n');
    await assert.rejects(load(plain, { masks: none, rleOrder: 'rows' }), (e: Error) => e.message === `${none}: none of its 1 rows names an image of the folder (key column 'file', e.g. other.png; images such as ${names[0]}, ${names[1]}); the key column must hold the images' paths, file names or stems`);
    writeFileSync(none, `id,class,segmentation,other\n${names[0]},heart,1 2,3 4\n`);
    await assert.rejects(load(plain, { masks: none, rleOrder: 'rows' }), (e: Error) => e.message === `${none}: a row per image and class (column 'class') takes one column of runs; found segmentation, other`);
    writeFileSync(none, 'file,ctr\nx.png,0.52\n');
    await assert.rejects(load(plain, { masks: none, rleOrder: 'rows' }), (e: Error) => e.message === `${none}: no column of run-length masks ('<start> <length> ...' in most of its first rows) beside the key column 'file'; columns are file, ctr`);
    await assert.rejects(load(path.join(standard, 'images'), { masks: path.join(standard, 'masks'), maskRows: 'a=1' }), (e: Error) => e.message === `--mask-rows 'a=1': it chooses a masks table's rows; --masks ${path.join(standard, 'masks')} is a folder`);
    await assert.rejects(load(path.join(standard, 'images'), { masks: path.join(standard, 'masks'), rleOrder: 'rows' }), (e: Error) => e.message === `--rle-order rows: it says how a masks table's runs number the pixels; --masks ${path.join(standard, 'masks')} is a folder`);
    await assert.rejects(load(plain, { masks: path.join(plain, 'absent.csv.gz'), rleOrder: 'rows' }), /absent\.csv\.gz: no such file/);
  });

  it('a mask drawn at another resolution of its image (same shape) is laid on it; another shape is reported', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-mask-res-'));
    for (const d of ['images', 'masks/full', 'masks/half', 'masks/double', 'masks/square']) mkdirSync(path.join(root, d), { recursive: true });
    const stem = sampleFiles[0]!.replace('.png', '');
    copyFileSync(path.join(samples, `${stem}.png`), path.join(root, 'images', `${stem}.png`));
    const { width: w, height: h } = await sharp(path.join(samples, `${stem}.png`)).metadata();
    const disc = (W: number, H: number): Promise<unknown> =>
      sharp(Uint8Array.from({ length: W * H }, (_, i) => (((i % W) / W - 0.5) ** 2 + (Math.floor(i / W) / H - 0.5) ** 2 < 0.09 ? 255 : 0)), { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(root, 'masks', W === w ? 'full' : W < w! ? 'half' : 'double', `${stem}.png`));
    await disc(w!, h!);
    await disc(Math.round(w! / 2), Math.round(h! / 2));
    await disc(w! * 2, h! * 2);
    await sharp(new Uint8Array(h! * h!), { raw: { width: h!, height: h!, channels: 1 } }).png().toFile(path.join(root, 'masks', 'square', `${stem}.png`));
    const reported: string[] = [];
    const ds = new ImageDataset((await scanDataset([root])).images, { size: 64, onSkip: (x) => reported.push(x.message) });
    const sample = await ds.get(0);
    const { full, half, double } = sample!.masks;
    const dice = (a: Float32Array, b: Float32Array): number => (2 * a.reduce((n, v, i) => n + v * b[i]!, 0)) / (a.reduce((n, v) => n + v, 0) + b.reduce((n, v) => n + v, 0));
    assert.ok(dice(half!, full!) > 0.97 && dice(double!, full!) > 0.97, `${dice(half!, full!)} ${dice(double!, full!)}`);
    assert.equal(sample!.masks['square'], undefined);
    assert.deepEqual(reported, [`${path.join(root, 'masks', 'square', `${stem}.png`)}: mask size ${h}x${h} differs from its image's ${w}x${h} in shape, not only in resolution (${path.join(root, 'images', `${stem}.png`)})`]);
  });

  it('masks saved as label values (0 / 1, in 8 or 16 bits) read as the same structure as 0 / 255 masks; a structure no mask marks is an error', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-labels-'));
    for (const d of ['images', 'masks/scale', 'masks/labels', 'masks/labels16', 'masks/blank']) mkdirSync(path.join(root, d), { recursive: true });
    const stems = sampleFiles.slice(0, 3).map((f) => f.replace('.png', ''));
    for (const s of stems) {
      copyFileSync(path.join(samples, `${s}.png`), path.join(root, 'images', `${s}.png`));
      const { width: w, height: h } = await sharp(path.join(samples, `${s}.png`)).metadata();
      // An ellipse, its edge anti-aliased in the full-scale mask (values 60 and 190 around it).
      const inside = (i: number): number => ((i % w! - w! / 2) / (w! / 3)) ** 2 + ((Math.floor(i / w!) - h! / 2) / (h! / 3)) ** 2;
      const scale = Uint8Array.from({ length: w! * h! }, (_, i) => (inside(i) < 0.9 ? 255 : inside(i) < 1 ? 190 : inside(i) < 1.1 ? 60 : 0));
      const raw = { raw: { width: w!, height: h!, channels: 1 as const } };
      await sharp(scale, raw).png().toFile(path.join(root, 'masks', 'scale', `${s}.png`));
      await sharp(scale.map((v) => (v > 127 ? 1 : 0)), raw).png().toFile(path.join(root, 'masks', 'labels', `${s}.png`));
      await sharp(Uint16Array.from(scale, (v) => (v > 127 ? 1 : 0)), raw).toColourspace('grey16').png().toFile(path.join(root, 'masks', 'labels16', `${s}.png`));
      await sharp(new Uint8Array(w! * h!), raw).png().toFile(path.join(root, 'masks', 'blank', `${s}.png`));
    }
    const scan = await scanDataset([root]);
    const ds = new ImageDataset(scan.images, { size: 64 });
    for await (const sample of ds.iterate()) {
      const { scale, labels, labels16, blank } = sample.masks;
      const area = scale!.reduce((a, v) => a + v, 0);
      assert.ok(area > 0.3 * 64 * 64 && area < 0.45 * 64 * 64, `${area}`); // an ellipse of 2/3 x 2/3 the image: 0.35 of it
      assert.deepEqual(labels, scale);
      assert.deepEqual(labels16, scale);
      assert.ok(blank!.every((v) => v === 0));
    }
    // The rule itself: full scale keeps > 127 (the 60s are out); label values are nonzero; nothing is nothing.
    assert.deepEqual(Array.from(binarizeMask(Float32Array.from([0, 60, 127, 128, 255]), 8)), [0, 0, 0, 1, 1]);
    assert.deepEqual(Array.from(binarizeMask(Float32Array.from([0, 1, 2, 0]), 8)), [0, 1, 1, 0]);
    assert.deepEqual(Array.from(binarizeMask(Float32Array.from([0, 1, 40000]), 16)), [0, 0, 1]);
    assert.deepEqual(Array.from(binarizeMask(new Float32Array(3), 8)), [0, 0, 0]);
    const own = Float32Array.from([0, 60, 200]);
    assert.equal(binarizeMask(own, 8, undefined, own), own); // in place, as the dataset does
    assert.deepEqual(Array.from(own), [0, 0, 1]);

    const report = await inspectDataset([root]);
    assert.deepEqual(report.maskValues, { '0-255': 3, '0-1': 6, empty: 3 });
    assert.equal(report.labelMasks, 6);
    const line = formatInspectReport(report).split('\n').find((l) => l.startsWith('mask values: '));
    assert.match(line ?? '', /^mask values: 0-1 \(6\), (0-255 \(3\), empty \(3\)|empty \(3\), 0-255 \(3\)); 6 hold label values \(no value above half scale, a palette, several colours or a DICOM SEG\): their nonzero pixels are the structure$/);

    const load = (structures: string[], combine = {}): Promise<unknown> => loadSegmentationData(root, 64, { structures, combine, testFraction: 0, maxTestImages: 0, seed: 0 });
    await load(['labels', 'labels16']);
    await assert.rejects(load(['labels', 'blank']), /eden-labels-\w+: every mask of 'blank' is empty at 64 px \(3 images\); check that the masks of 'blank' mark the structure/);
    await assert.rejects(load(['none'], { none: ['blank'] }), /every mask of 'none' is empty .* the masks of 'blank' mark/);
  });

  it('a segmentation folder in PGM images with PBM and BMP masks loads as the same folder in PNG does', async () => {
    const roots = { png: mkdtempSync(path.join(tmpdir(), 'eden-png-')), netpbm: mkdtempSync(path.join(tmpdir(), 'eden-netpbm-')) };
    for (const root of Object.values(roots)) for (const d of ['images', 'masks/heart', 'masks/lungs']) mkdirSync(path.join(root, d), { recursive: true });
    for (const f of sampleFiles.slice(0, 3)) {
      const s = f.replace('.png', '');
      const { data: grey, info } = await sharp(path.join(samples, f)).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
      const [w, h] = [info.width, info.height];
      const heart = Uint8Array.from({ length: w * h }, (_, i) => (((i % w) - w / 2) / (w / 5)) ** 2 + ((Math.floor(i / w) - h / 2) / (h / 4)) ** 2 < 1 ? 255 : 0);
      const lungs = Uint8Array.from({ length: w * h }, (_, i) => (Math.abs((i % w) - w / 2) > w / 8 && Math.abs((i % w) - w / 2) < w / 3 ? 255 : 0));
      const raw = { raw: { width: w, height: h, channels: 1 as const } };
      await sharp(grey, raw).png().toFile(path.join(roots.png, 'images', `${s}.png`));
      await sharp(heart, raw).png().toFile(path.join(roots.png, 'masks', 'heart', `${s}.png`));
      await sharp(lungs, raw).png().toFile(path.join(roots.png, 'masks', 'lungs', `${s}.png`));
      writeFileSync(path.join(roots.netpbm, 'images', `${s}.pgm`), Buffer.concat([Buffer.from(`P5\n# ${f}\n${w} ${h}\n255\n`), grey]));
      // P4: rows of bits, 1 = black, so the heart (white) is 0.
      const rowBytes = Math.ceil(w / 8);
      const pbm = Buffer.alloc(rowBytes * h);
      heart.forEach((v, i) => v === 0 && (pbm[Math.floor(i / w) * rowBytes + ((i % w) >> 3)]! |= 0x80 >> (i % w) % 8));
      writeFileSync(path.join(roots.netpbm, 'masks', 'heart', `${s}.pbm`), Buffer.concat([Buffer.from(`P4\n${w} ${h}\n`), pbm]));
      const abgr = Buffer.alloc(w * h * 4);
      lungs.forEach((v, i) => abgr.fill(v, 4 * i + 1, 4 * i + 4));
      writeFileSync(path.join(roots.netpbm, 'masks', 'lungs', `${s}.bmp`), encodeBmp({ data: abgr, width: w, height: h, bitPP: 24 }).data);
    }
    const load = (root: string): ReturnType<typeof loadSegmentationData> => loadSegmentationData(root, 64, { testFraction: 0, maxTestImages: 0, seed: 0 });
    const [a, b] = [await load(roots.png), await load(roots.netpbm)];
    assert.deepEqual(b.structures, a.structures);
    assert.equal(b.samples.length, 3);
    b.samples.forEach((sample, i) => {
      assert.deepEqual(sample.image, a.samples[i]!.image);
      assert.deepEqual(sample.masks, a.samples[i]!.masks);
      assert.ok(sample.masks.every((m) => m.some((v) => v > 0)));
    });
    const report = await inspectDataset([roots.netpbm]);
    assert.deepEqual([report.images, report.encodings, report.skipped.length], [3, { pgm: 3 }, 0]);
  });

  it('reads label CSVs as spreadsheets write them: semicolons, tabs, quoted commas, a BOM, Windows paths', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-manifest-'));
    mkdirSync(path.join(root, 'sub'));
    const [a, b] = sampleFiles;
    copyFileSync(path.join(samples, a!), path.join(root, 'sub', 'a.png'));
    copyFileSync(path.join(samples, b!), path.join(root, 'b.png'));
    const variants: Record<string, string> = {
      'semicolon.csv': '\uFEFFfile;finding;note\r\nsub\\a.png;Pneumonia;"x;y"\r\n.\\b.png;Normal;z\r\n',
      'tab.csv': 'file\tfinding\tnote\nsub/a.png\tPneumonia\tx\n./b.png\tNormal\tz\n',
      'comma.csv': '"file","finding","note"\n"sub/a.png","Pneumonia","left, lower"\nb,Normal,z\n',
    };
    for (const [name, text] of Object.entries(variants)) {
      writeFileSync(path.join(root, name), text);
      assert.equal(sniffDelimiter(text), name.startsWith('semicolon') ? ';' : name.startsWith('tab') ? '\t' : ',', name);
      const scan = await scanDataset([root], { labels: path.join(root, name) });
      assert.deepEqual(scan.manifest?.labelColumns, ['finding', 'note'], name);
      const byFile = Object.fromEntries(scan.images.map((e) => [e.relPath, e.labels?.['finding']]));
      assert.deepEqual(byFile, { 'b.png': 'Normal', 'sub/a.png': 'Pneumonia' }, name);
    }
    assert.equal((await readManifest(path.join(root, 'comma.csv'))).rows.get('sub/a.png')?.['note'], 'left, lower');
    assert.equal((await readManifest(path.join(root, 'semicolon.csv'))).rows.get('sub/a.png')?.['note'], 'x;y');
  });

  it("labels rows whose files share a name by their folders (CheXpert's view1_frontal.jpg in every study, listed from the folder above): each image its own row, an image no row names none", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-chexpert-'));
    const studies = ['train/patient00001/study1', 'train/patient00002/study1', 'train/patient00003/study2', 'valid/patient00009/study1'];
    for (const s of studies) {
      mkdirSync(path.join(root, s), { recursive: true });
      copyFileSync(path.join(samples, sampleFiles[0]!), path.join(root, s, 'view1_frontal.png'));
    }
    mkdirSync(path.join(root, 'extra'));
    copyFileSync(path.join(samples, sampleFiles[0]!), path.join(root, 'extra', 'loose.png'));
    copyFileSync(path.join(samples, sampleFiles[0]!), path.join(root, 'extra', 'twice.png'));
    // Named by a row in another folder: r.png alone takes it (a folder renamed since); s.png, twice, neither.
    for (const f of ['renamed/r.png', 'p/s.png', 'q/s.png']) {
      mkdirSync(path.join(root, path.dirname(f)), { recursive: true });
      copyFileSync(path.join(samples, sampleFiles[0]!), path.join(root, f));
    }
    // train.csv lists train/ only, from the folder above; 'loose.png' is named alone (and another
    // loose.png with folders of its own); extra/twice.png is at the end of two rows' paths.
    writeFileSync(path.join(root, 'train.csv'), ['Path,Cardiomegaly', ...studies.slice(0, 3).map((s, i) => `CheXpert-v1.0-small/${s}/view1_frontal.png,${['1.0', '0.0', '-1.0'][i]}`), 'loose.png,0.0', 'elsewhere/extra2/loose.png,1.0', 'A/extra/twice.png,1.0', 'B/extra/twice.png,0.0', 'images/r.png,1.0', 'images/s.png,1.0'].join('\n'));
    const scan = await scanDataset([root], { labels: path.join(root, 'train.csv') });
    const byFile = Object.fromEntries(scan.images.map((e) => [e.relPath, e.labels?.['Cardiomegaly']]));
    assert.deepEqual(byFile, {
      'extra/loose.png': '0.0',
      'extra/twice.png': undefined,
      'p/s.png': undefined,
      'q/s.png': undefined,
      'renamed/r.png': '1.0',
      'train/patient00001/study1/view1_frontal.png': '1.0',
      'train/patient00002/study1/view1_frontal.png': '0.0',
      'train/patient00003/study2/view1_frontal.png': '-1.0',
      'valid/patient00009/study1/view1_frontal.png': undefined,
    });
    // The ones named only ambiguously are said (valid/'s image is named by no row: not among them).
    assert.deepEqual(scan.ambiguousLabels, ['extra/twice.png', 'p/s.png', 'q/s.png']);
    assert.match(formatInspectReport(await inspectDataset([root], { labels: path.join(root, 'train.csv') })), /\nlabels: .*train\.csv, key column 'Path', 5 of 9 images labelled; 3 left unlabelled, named only ambiguously \(several rows alike, or one row by several images' names; e\.g\. extra\/twice\.png\): write their paths in the key column\n/);
  });

  it('a missing path is an error naming it', async () => {
    await assert.rejects(scanDataset(['/no/such/folder']), /no such file or folder/);
  });

  it('follows symbolic links to folders and files (data linked in from another disk), each folder once; a loop and a broken link are reported', async () => {
    const elsewhere = mkdtempSync(path.join(tmpdir(), 'eden-elsewhere-'));
    mkdirSync(path.join(elsewhere, 'more'));
    sampleFiles.slice(0, 2).forEach((f) => copyFileSync(path.join(samples, f), path.join(elsewhere, 'more', f)));
    const root = mkdtempSync(path.join(tmpdir(), 'eden-links-'));
    mkdirSync(path.join(root, 'sub'));
    copyFileSync(path.join(samples, sampleFiles[2]!), path.join(root, sampleFiles[2]!));
    symlinkSync(path.join(elsewhere, 'more'), path.join(root, 'linked'));
    symlinkSync(path.join(samples, sampleFiles[3]!), path.join(root, 'sub', 'one.png'));
    symlinkSync('..', path.join(root, 'sub', 'loop'));
    symlinkSync(path.join(elsewhere, 'gone.png'), path.join(root, 'broken.png'));
    const scan = await scanDataset([root]);
    assert.deepEqual(scan.images.map((e) => e.relPath), [sampleFiles[2]!, ...sampleFiles.slice(0, 2).map((f) => `linked/${f}`), 'sub/one.png']);
    assert.deepEqual(scan.skipped.map((x) => [x.category, x.message]), [
      ['unreadable', `${path.join(root, 'broken.png')}: cannot read: a broken symbolic link (to ${path.join(elsewhere, 'gone.png')})`],
      ['duplicate', `${path.join(root, 'sub', 'loop')}: duplicate folder: a symbolic link to ${realpathSync(root)}, which is scanned already`],
    ]);
    // A structure folder linked into masks/ is a structure.
    const seg = mkdtempSync(path.join(tmpdir(), 'eden-links-seg-'));
    mkdirSync(path.join(seg, 'images'));
    mkdirSync(path.join(seg, 'masks'));
    copyFileSync(path.join(samples, sampleFiles[0]!), path.join(seg, 'images', sampleFiles[0]!));
    symlinkSync(path.join(elsewhere, 'more'), path.join(seg, 'masks', 'lungs'));
    const paired = await scanDataset([seg]);
    assert.deepEqual(paired.structures, ['lungs']);
    assert.equal(paired.images[0]!.masks?.lungs, path.join(seg, 'masks', 'lungs', sampleFiles[0]!));
  });
});

describe('ImageDataset', () => {
  it('serves [0, 1] images of the working size, skips bad files once, caches on disk', async () => {
    const { dir } = plantedFolder();
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'eden-cache-'));
    const scan = await scanDataset([dir]);
    const reported: string[] = [];
    const ds = new ImageDataset(scan.images, { size: 96, cache: 'disk', cacheDir, onSkip: (s) => reported.push(path.basename(s.path)) });
    const usable = await ds.validate();
    assert.equal(usable.length, 6);
    assert.deepEqual(reported.sort(), ['corrupt.png', 'empty.png', 'fake.jpg', 'random.dcm', 'truncated.png']);
    const first = await ds.get(usable[0]!);
    assert.equal(first!.image.length, 96 * 96);
    assert.ok(first!.image.every((v) => v >= 0 && v <= 1));
    assert.equal(readdirSync(cacheDir).length, 6);

    // A fresh dataset reads the disk cache: identical values; bad files reported again, once.
    const again = new ImageDataset(scan.images, { size: 96, cache: 'disk', cacheDir });
    const cached = await again.get(usable[0]!);
    assert.deepEqual(Array.from(cached!.image), Array.from(first!.image));

    // Iteration order is the order asked for, with bad files left out.
    const order = [...usable].reverse();
    const seen: number[] = [];
    for await (const s of ds.iterate(order, 3)) seen.push(s.index);
    assert.deepEqual(seen, order);
  });

  it('a disk cache that cannot be written (here: under a file) serves every image anyway, and says so once', async () => {
    const { dir } = plantedFolder();
    const blocker = path.join(mkdtempSync(path.join(tmpdir(), 'eden-cache-')), 'a-file');
    writeFileSync(blocker, 'not a folder');
    const scan = await scanDataset([dir]);
    const warnings: string[] = [];
    const reported: string[] = [];
    const ds = new ImageDataset(scan.images, { size: 96, cache: 'disk', cacheDir: path.join(blocker, 'cache'), onSkip: (s) => reported.push(path.basename(s.path)), onWarning: (m) => warnings.push(m) });
    const usable = await ds.validate();
    // The same images as with a working cache: a full disk is not the images' fault.
    assert.equal(usable.length, 6);
    assert.deepEqual(reported.sort(), ['corrupt.png', 'empty.png', 'fake.jpg', 'random.dcm', 'truncated.png']);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /the disk cache in .*a-file\/cache cannot be written \(.*(ENOTDIR|EEXIST).*\); images are decoded again when needed/);
    const fresh = new ImageDataset(scan.images, { size: 96, cache: 'none' });
    assert.deepEqual(Array.from((await ds.get(usable[0]!))!.image), Array.from((await fresh.get(usable[0]!))!.image));
  });
});

describe('where pretraining keeps decoded images (planCache)', () => {
  const GB = 1e9;
  const plan = (setting: CacheSetting, images: number, side: number, memoryBytes: number, freeDiskBytes: number | undefined) =>
    planCache(setting, { images, side, cacheDir: '.eden-cache' }, { memoryBytes, freeDiskBytes });

  it('auto: memory when the images take at most half of it, else the disk when it has room, else none', () => {
    // 1,243 images at 384 px (the cpu preset's run): 733 MB.
    const small = plan('auto', 1243, 384, 24 * GB, 100 * GB);
    assert.equal(small.mode, 'memory');
    assert.equal(small.bytes, 1243 * 384 * 384 * 4);
    assert.equal(small.reason, '1,243 images at 384 px take up to 733.2 MB as float32: kept in memory');
    // 75,000 at 896 px (the paper preset on a large folder): 240.8 GB.
    const large = plan('auto', 75000, 896, 128 * GB, 1000 * GB);
    assert.equal(large.mode, 'disk');
    assert.match(large.reason, /^75,000 images at 896 px take up to 240\.8 GB as float32, more than half of this machine's 128\.0 GB of memory: cached on disk in \.eden-cache \(1\.0 TB free\)$/);
    assert.equal(plan('auto', 75000, 896, 128 * GB, 200 * GB).mode, 'none');
    // The bounds: exactly half of memory stays in memory; the disk needs a tenth to spare.
    const bytes = 1000 * 512 * 512 * 4;
    assert.equal(plan('auto', 1000, 512, 2 * bytes, 0).mode, 'memory');
    assert.equal(plan('auto', 1000, 512, 2 * bytes - 1, 1.1 * bytes).mode, 'disk');
    assert.equal(plan('auto', 1000, 512, 2 * bytes - 1, 1.1 * bytes - 1).mode, 'none');
    // Unknown free space: the disk is tried (a failed write is reported and decoding goes on).
    assert.equal(plan('auto', 1000, 512, bytes, undefined).mode, 'disk');
    assert.ok(!small.warning && !large.warning);
  });

  it('an explicit mode is kept, with a warning when it will not fit', () => {
    const memory = plan('memory', 75000, 896, 128 * GB, 1000 * GB);
    assert.equal(memory.mode, 'memory');
    assert.match(memory.warning!, /^--cache memory: 75,000 images at 896 px take up to 240\.8 GB as float32, more than half of this machine's 128\.0 GB of memory; the process may run out of memory/);
    const disk = plan('disk', 75000, 896, 128 * GB, 100 * GB);
    assert.equal(disk.mode, 'disk');
    assert.match(disk.warning!, /^--cache disk: .* more than \.eden-cache has free \(100\.0 GB free\); writing the cache may fail/);
    assert.equal(plan('none', 75000, 896, 1, 1).mode, 'none');
    assert.equal(plan('none', 75000, 896, 1, 1).warning, undefined);
    assert.equal(plan('memory', 10, 96, 128 * GB, 0).warning, undefined);
  });

  it('counts masks with the images, and sees this machine', async () => {
    assert.equal(planCache('auto', { images: 10, masks: 30, side: 64, cacheDir: 'c' }, { memoryBytes: GB, freeDiskBytes: GB }).bytes, 40 * 64 * 64 * 4);
    const here = await thisMachine(path.join(tmpdir(), 'no', 'such', 'folder'));
    assert.ok(here.memoryBytes > 0 && here.memoryBytes <= totalmem(), `${here.memoryBytes}`);
    assert.ok(here.freeDiskBytes! > 0, 'free space of the nearest existing parent');
  });
});
