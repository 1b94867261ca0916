/**
 * Image decoding: raster formats through sharp at full bit depth, the ones sharp does not read
 * (BMP, Netpbm, JPEG 2000: fixtures written by Pillow, see fixtures/raster/make-raster.py), DICOM in every transfer syntax
 * we claim (fixtures made by DCMTK/GDCM from one 12-bit source: see fixtures/dicom/make-dicom.ts),
 * and intensity normalisation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import dcmjs from 'dcmjs';
import { decodeImageFile } from '../src/data/decode.js';
import { ImageDataset } from '../src/data/dataset.js';
import { loadSegmentationData } from '../src/data/segmentation-data.js';
import { inspectDataset, formatInspectReport } from '../src/data/inspect.js';
import { maskFile, scanDataset, skipCategory } from '../src/data/scan.js';
import { normalizeIntensity, percentiles, sortedPercentiles } from '../src/data/intensity.js';
import { resizeGrey, resizeToMask } from '../src/data/resize.js';
import { thresholdMask } from '../src/data/masks.js';
import { Rng } from '../src/core/rng.js';

const fixtures = path.join(import.meta.dirname, 'fixtures', 'dicom');
const tmp = mkdtempSync(path.join(tmpdir(), 'eden-decode-'));
const W = 64;
const H = 48;

/** A deterministic 16-bit gradient with structure in both axes. */
function pattern16(): Uint16Array {
  return Uint16Array.from({ length: W * H }, (_, i) => ((i % W) * 1000 + Math.floor(i / W) * 37) % 65536);
}

describe('raster decoding', () => {
  it('keeps 16-bit grey PNG values exactly', async () => {
    const src = pattern16();
    const file = path.join(tmp, 'grey16.png');
    // sharp takes 16-bit raw input as a Uint16Array (LIBRARIES.md).
    await sharp(src, { raw: { width: W, height: H, channels: 1 } }).toColourspace('grey16').png().toFile(file);
    const img = await decodeImageFile(file);
    assert.equal(img.bitDepth, 16);
    assert.equal(img.width, W);
    assert.equal(img.height, H);
    assert.deepEqual(Array.from(img.data), Array.from(src));
  });

  it('keeps 8-bit grey PNG values and reduces RGB / RGBA to luminance', async () => {
    const grey = Uint8Array.from({ length: W * H }, (_, i) => (i * 7) % 256);
    const rgba = new Uint8Array(W * H * 4);
    grey.forEach((v, i) => rgba.set([v, v, v, i % 2 ? 255 : 10], i * 4));
    const g = path.join(tmp, 'g8.png');
    const c = path.join(tmp, 'rgba.png');
    await sharp(grey, { raw: { width: W, height: H, channels: 1 } }).png().toFile(g);
    await sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).png().toFile(c);
    const a = await decodeImageFile(g);
    const b = await decodeImageFile(c);
    assert.equal(a.bitDepth, 8);
    assert.deepEqual(Array.from(a.data), Array.from(grey));
    // Luminance of a grey RGB pixel is the grey value itself (within rounding); alpha is ignored.
    let worst = 0;
    for (let i = 0; i < grey.length; i++) worst = Math.max(worst, Math.abs(b.data[i]! - grey[i]!));
    assert.ok(worst <= 1, `RGBA -> grey differs by ${worst}`);
  });

  it('decodes JPEG and lossless TIFF', async () => {
    const grey = Uint8Array.from({ length: W * H }, (_, i) => 60 + ((i % W) * 2));
    const jpg = path.join(tmp, 'a.jpg');
    const tif = path.join(tmp, 'a.tiff');
    await sharp(grey, { raw: { width: W, height: H, channels: 1 } }).jpeg({ quality: 95 }).toFile(jpg);
    await sharp(grey, { raw: { width: W, height: H, channels: 1 } }).tiff({ compression: 'lzw' }).toFile(tif);
    const j = await decodeImageFile(jpg);
    const t = await decodeImageFile(tif);
    assert.equal(j.encoding, 'jpeg');
    assert.equal(t.encoding, 'tiff');
    assert.deepEqual(Array.from(t.data), Array.from(grey));
    let worst = 0;
    for (let i = 0; i < grey.length; i++) worst = Math.max(worst, Math.abs(j.data[i]! - grey[i]!));
    assert.ok(worst <= 4, `JPEG q95 error ${worst}`);
  });

  it('decodes a real radiograph', async () => {
    const img = await decodeImageFile(path.join(import.meta.dirname, '..', 'samples', 'hannover_covid19', '00870a9c.png'));
    assert.equal(img.width, 256);
    assert.equal(img.bitDepth, 8);
  });
});

describe('formats sharp does not read (BMP, Netpbm, JPEG 2000) and wide TIFF samples', () => {
  // Written by Pillow (fixtures/raster/make-raster.py), read here by other code: the pattern it
  // documents, recomputed.
  const raster = path.join(import.meta.dirname, 'fixtures', 'raster');
  const [PW, PH] = [61, 47];
  const pattern = (max: number): number[] => Array.from({ length: PW * PH }, (_, i) => (37 * (i % PW) + 101 * Math.floor(i / PW)) % (max + 1));
  const colour = (): [number, number, number][] => pattern(255).map((g) => [g, (g * 3 + 7) % 256, 255 - g]);
  /** The colour pattern as a PNG decoded through sharp: what the same picture reads as (libvips' grey). */
  const colourAsPng = async (sixteen = false): Promise<number[]> => {
    const file = path.join(tmp, `colour${sixteen ? 16 : 8}.png`);
    const rgb = colour().flat();
    await (sixteen ? sharp(Uint16Array.from(rgb, (v) => v * 256), { raw: { width: PW, height: PH, channels: 3 } }).toColourspace('rgb16') : sharp(Uint8Array.from(rgb), { raw: { width: PW, height: PH, channels: 3 } })).png().toFile(file);
    return Array.from((await decodeImageFile(file)).data);
  };
  const bits = Array.from({ length: PW * PH }, (_, i) => ((i % PW) + Math.floor(i / PW)) % 3 === 0);

  for (const [file, bitDepth, encoding, expected] of [
    ['grey8.pgm', 8, 'pgm', pattern(255)],
    ['grey16.pgm', 16, 'pgm', pattern(65535)],
    ['grey8.bmp', 8, 'bmp', pattern(255)],
    ['grey8.jp2', 8, 'jpeg2000', pattern(255)],
    ['grey8.j2k', 8, 'jpeg2000', pattern(255)],
    ['grey12.jp2', 16, 'jpeg2000', pattern(4095)],
  ] as const) {
    it(`${file} (Pillow) decodes to its values exactly`, async () => {
      const img = await decodeImageFile(path.join(raster, file));
      assert.deepEqual([img.width, img.height, img.bitDepth, img.encoding], [PW, PH, bitDepth, encoding]);
      assert.deepEqual(Array.from(img.data), expected);
    });
  }

  it('colour (PPM, 24- and 32-bit BMP) reads as the same picture in PNG; 1-bit PBM and BMP read white as the larger value', async () => {
    const png = await colourAsPng();
    for (const file of ['rgb.ppm', 'rgb24.bmp', 'rgba32.bmp']) assert.deepEqual(Array.from((await decodeImageFile(path.join(raster, file))).data), png, file);
    const pbm = await decodeImageFile(path.join(raster, 'bits.pbm'));
    assert.deepEqual([pbm.bitDepth, pbm.encoding, Array.from(pbm.data)], [1, 'pbm', bits.map((b) => (b ? 1 : 0))]);
    assert.deepEqual(Array.from((await decodeImageFile(path.join(raster, 'bits1.bmp'))).data), bits.map((b) => (b ? 255 : 0)));
    // A palette BMP reads as its colours do: the same picture as a PNG decoded by sharp.
    const [bmp, palettePng] = [await decodeImageFile(path.join(raster, 'palette16.bmp')), await decodeImageFile(path.join(raster, 'palette16-as-rgb.png'))];
    assert.deepEqual(Array.from(bmp.data), Array.from(palettePng.data));
  });

  it("DCMTK's dcm2pnm output (another Netpbm writer) reads as its bytes say", async () => {
    for (const file of ['mono1-12bit-window-by-dcmtk.pgm', 'mono1-8bit-minmax-by-dcmtk.pgm']) {
      const bytes = readFileSync(path.join(fixtures, file));
      const [w, h] = bytes.toString('latin1', 0, 32).split(/\s+/).slice(1, 3).map(Number);
      const img = await decodeImageFile(path.join(fixtures, file));
      assert.deepEqual([img.width, img.height, img.encoding], [w, h, 'pgm']);
      assert.deepEqual(Array.from(img.data), Array.from(bytes.subarray(bytes.length - w! * h!)), file);
    }
  });

  it('plain (ASCII) PBM / PGM / PPM with comments, and PAM with alpha, as the Netpbm pages define them', async () => {
    const g = pattern(4095);
    const [luminance, luminance16] = [await colourAsPng(), await colourAsPng(true)];
    const rows = (values: number[], perPixel: number): string => Array.from({ length: PH }, (_, y) => values.slice(y * PW * perPixel, (y + 1) * PW * perPixel).join(' ')).join('\n');
    const files: [string, string | Buffer, number[], number][] = [
      // P2 with a comment inside the header and a 12-bit maximum.
      ['plain.pgm', `P2\n# made by hand\n${PW} ${PH} # size\n4095\n${rows(g, 1)}\n`, g, 12],
      ['plain.ppm', `P3\n${PW} ${PH}\n255\n${rows(colour().flat(), 3)}\n`, luminance, 8],
      // P1's digits may run together; 1 is black.
      ['plain.pbm', `P1\n${PW} ${PH}\n${Array.from({ length: PH }, (_, y) => bits.slice(y * PW, (y + 1) * PW).map((b) => (b ? '0' : '1')).join('')).join('\n')}\n`, bits.map((b) => (b ? 1 : 0)), 1],
      ['grey-alpha.pam', Buffer.concat([Buffer.from(`P7\nWIDTH ${PW}\nHEIGHT ${PH}\nDEPTH 2\nMAXVAL 255\nTUPLTYPE GRAYSCALE_ALPHA\nENDHDR\n`), Buffer.from(pattern(255).flatMap((v) => [v, 77]))]), pattern(255), 8],
      ['rgb16.pam', Buffer.concat([Buffer.from(`P7\nWIDTH ${PW}\nHEIGHT ${PH}\nDEPTH 3\nMAXVAL 65535\nTUPLTYPE RGB\nENDHDR\n`), Buffer.from(colour().flat().flatMap((v) => [v, 0]))]), luminance16, 16],
    ];
    for (const [name, content, expected, bitDepth] of files) {
      const file = path.join(tmp, name);
      writeFileSync(file, content);
      const img = await decodeImageFile(file);
      assert.deepEqual([img.width, img.height, img.bitDepth], [PW, PH, bitDepth], name);
      assert.deepEqual(Array.from(img.data), expected, name);
    }
  });

  it('float and 32-bit integer TIFF samples keep their values (not clipped to 8 bits); --intensity none takes floats as [0, 1]', async () => {
    const f = await decodeImageFile(path.join(raster, 'float32.tif'));
    assert.deepEqual([f.bitDepth, f.encoding, f.floatingPoint], [32, 'tiff/float', true]);
    assert.deepEqual(Array.from(f.data), pattern(255).map((v) => Math.fround((v / 255) * 3 - 1)));
    const none = normalizeIntensity(f, { mode: 'none' });
    assert.deepEqual(Array.from(none), Array.from(f.data, (v) => Math.min(1, Math.max(0, v))));
    const i = await decodeImageFile(path.join(raster, 'int32.tif'));
    assert.deepEqual([i.bitDepth, i.encoding, i.floatingPoint], [32, 'tiff/int', undefined]);
    assert.deepEqual(Array.from(i.data), pattern(255).map((v) => v * 100 - 12000));
  });

  it('a colour PPM or BMP mask reads as labels per colour, as a colour PNG does', async () => {
    // Red heart on the left, green lungs on the right, black elsewhere.
    const rgb = Buffer.alloc(PW * PH * 3);
    for (let i = 0; i < PW * PH; i++) if ((i % PW) < 20) rgb[3 * i] = 255; else if ((i % PW) > 40) rgb[3 * i + 1] = 255;
    const ppm = path.join(tmp, 'mask.ppm');
    writeFileSync(ppm, Buffer.concat([Buffer.from(`P6\n${PW} ${PH}\n255\n`), rgb]));
    const png = path.join(tmp, 'mask-colour.png');
    await sharp(rgb, { raw: { width: PW, height: PH, channels: 3 } }).png().toFile(png);
    const [a, b] = [await decodeImageFile(ppm, { mask: true }), await decodeImageFile(png, { mask: true })];
    assert.equal(a.encoding, 'ppm/colour');
    assert.deepEqual([a.labelValues, a.colours, Array.from(a.data)], [b.labelValues, b.colours, Array.from(b.data)]);
    assert.deepEqual(a.colours, { 76: '#ff0000', 150: '#00ff00' });
  });

  it('a colour mask whose structures have colours of one luma is refused, naming both', async () => {
    // Red (255, 0, 0) and a dark green (0, 129, 3): both luma 76, so both would read as label 76.
    const rgb = Buffer.alloc(PW * PH * 3);
    for (let i = 0; i < PW * PH; i++) if ((i % PW) < 20) rgb[3 * i] = 255; else if ((i % PW) > 40) [rgb[3 * i + 1], rgb[3 * i + 2]] = [129, 3];
    const png = path.join(tmp, 'mask-one-luma.png');
    await sharp(rgb, { raw: { width: PW, height: PH, channels: 3 } }).png().toFile(png);
    await assert.rejects(decodeImageFile(png, { mask: true }), { message: `${png}: a colour mask whose colours #008103 and #ff0000 read as the same label value, 76 (a colour mask's colours are read as their Rec. 601 luma); recolour one of them, or save the mask as a palette PNG (read by palette index) or as label values` });
    // As an image (not a mask) it is a picture like any other.
    assert.equal((await decodeImageFile(png)).encoding, 'png');
    assert.equal(skipCategory(`${png}: a colour mask whose colours #008103 and #ff0000 read as the same label value, 76 (...)`), 'colours of one label');
  });

  it('a colour mask saved as JPEG reads as its lossless copy but for a few edge pixels: one colour, or several (labels by the colours drawn, not the ones compression made)', async (t) => {
    const wingspan = path.join(import.meta.dirname, '..', '..', 'shared', 'data', 'wingspan_ctr');
    if (!existsSync(wingspan)) return t.skip(`${wingspan} not found`);
    const f = readdirSync(path.join(wingspan, 'images')).sort()[0]!;
    // Lungs first, the heart over them: each pixel one colour.
    const drawn = async (colours: Record<string, readonly number[]>): Promise<{ rgb: Buffer; width: number; height: number }> => {
      let rgb = Buffer.alloc(0);
      let [width, height] = [0, 0];
      for (const [s, c] of Object.entries(colours)) {
        const { data, info } = await sharp(path.join(wingspan, 'masks', s, f)).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
        [width, height] = [info.width, info.height];
        if (!rgb.length) rgb = Buffer.alloc(width * height * 3);
        data.forEach((v, i) => v > 127 && rgb.set(c, 3 * i));
      }
      return { rgb, width, height };
    };
    for (const [name, colours] of [
      ['red', { heart: [255, 0, 0] }],
      ['three', { left_lung: [0, 255, 0], right_lung: [0, 0, 255], heart: [255, 0, 0] }],
    ] as const) {
      const { rgb, width, height } = await drawn(colours);
      const raw = { raw: { width, height, channels: 3 as const } };
      const png = path.join(tmp, `jpeg-mask-${name}.png`);
      await sharp(rgb, raw).png().toFile(png);
      const lossless = await decodeImageFile(png, { mask: true });
      for (const quality of [50, 75, 95]) {
        const jpg = path.join(tmp, `jpeg-mask-${name}-${quality}.jpg`);
        await sharp(rgb, raw).jpeg({ quality }).toFile(jpg);
        const m = await decodeImageFile(jpg, { mask: true });
        // The same values (label 76 for red; 29, 76, 150 for blue, red, green) ...
        assert.deepEqual([...new Set(m.data)].sort((a, b) => a - b), [...new Set(lossless.data)].sort((a, b) => a - b), `${name} at quality ${quality}`);
        if (name === 'three') assert.deepEqual(Object.keys(m.colours!), Object.keys(lossless.colours!)); // named by the colour most of a structure holds (#fe0002 for red)
        // ... on all but the edges: under 0.3% of the structures' pixels differ (measured: 0.00-0.10% for red, 0.12-0.20% for three).
        let [differ, marked] = [0, 0];
        lossless.data.forEach((v, i) => ((marked += v > 0 ? 1 : 0), (differ += v !== m.data[i] ? 1 : 0)));
        assert.ok(differ < 0.003 * marked, `${name} at quality ${quality}: ${differ} of ${marked} pixels differ`);
      }
    }
  });

  it('cut-off, corrupt and oversized files are named with their problem', async () => {
    const cut = (file: string, fraction: number): string => {
      const bytes = readFileSync(path.join(raster, file));
      const out = path.join(tmp, `cut-${file}`);
      writeFileSync(out, bytes.subarray(0, Math.floor(bytes.length * fraction)));
      return out;
    };
    const cases: [string, RegExp][] = [
      [cut('grey8.pgm', 0.5), /cut-grey8\.pgm: truncated image data \(1427 bytes of samples, 2867 expected\)$/],
      [cut('rgb24.bmp', 0.5), /cut-rgb24\.bmp: truncated image data \(BMP of 8702 bytes, 4351 in the file\)$/],
      [cut('grey8.jp2', 0.3), /cut-grey8\.jp2: corrupt or truncated JPEG 2000 data/],
    ];
    const write = (name: string, content: string | Buffer): string => {
      writeFileSync(path.join(tmp, name), content);
      return path.join(tmp, name);
    };
    cases.push([write('letters.pgm', 'P5\n61 abc\n255\n'), /letters\.pgm: corrupt image data \(Netpbm header's height is 'abc', not a number\)$/]);
    cases.push([write('deep.pgm', 'P5\n4 4\n70000\n'), /deep\.pgm: corrupt image data \(Netpbm maximum value 70000 is outside 1\.\.65535\)$/]);
    cases.push([write('huge.pgm', 'P5\n30000 30000\n255\n'), /huge\.pgm: image too large \(30000x30000, over 400000000 pixels\)$/]);
    cases.push([write('header.bmp', Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)])), /header\.bmp: corrupt BMP/]);
    for (const [file, message] of cases) await assert.rejects(decodeImageFile(file), (err: Error) => (assert.match(err.message, message), true));
  });
});

describe('NumPy .npy images and masks', () => {
  const pattern = (max: number): number[] => Array.from({ length: W * H }, (_, i) => (37 * (i % W) + 101 * Math.floor(i / W)) % (max + 1));
  /** A .npy file (format 1.0) of `data`'s bytes, written by hand as np.save writes it. */
  const npy = (descr: string, shape: number[], data: ArrayBufferView, fortran = false): Buffer => {
    let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
    header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
    const head = Buffer.alloc(10);
    head.write('\x93NUMPY', 0, 'latin1');
    [head[6], head[7]] = [1, 0];
    head.writeUInt16LE(header.length, 8);
    return Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
  };
  const file = (name: string, bytes: Buffer): string => {
    const f = path.join(tmp, name);
    writeFileSync(f, bytes);
    return f;
  };

  it('uint8, uint16, float32 and Fortran-ordered arrays read as the PNG / TIFF of the same pixels', async () => {
    const grey8 = Uint8Array.from(pattern(255));
    const png8 = path.join(tmp, 'npy-ref8.png');
    await sharp(grey8, { raw: { width: W, height: H, channels: 1 } }).png().toFile(png8);
    const ref8 = await decodeImageFile(png8);
    const a = await decodeImageFile(file('u1.npy', npy('|u1', [H, W], grey8)));
    assert.deepEqual([a.width, a.height, a.bitDepth, a.encoding, Array.from(a.data)], [W, H, 8, 'npy/u1', Array.from(ref8.data)]);
    // [H, W, 1] and [1, H, W] are the same image.
    for (const shape of [[H, W, 1], [1, H, W]]) assert.deepEqual(Array.from((await decodeImageFile(file('s.npy', npy('|u1', shape, grey8)))).data), Array.from(ref8.data));
    // Column-major (np.asfortranarray): the same picture.
    const columns = Uint8Array.from({ length: W * H }, (_, i) => grey8[(i % H) * W + Math.floor(i / H)]!);
    assert.deepEqual(Array.from((await decodeImageFile(file('f.npy', npy('|u1', [H, W], columns, true)))).data), Array.from(ref8.data));
    const grey16 = Uint16Array.from(pattern(65535));
    const b = await decodeImageFile(file('u2.npy', npy('<u2', [H, W], grey16)));
    assert.deepEqual([b.bitDepth, Array.from(b.data)], [16, Array.from(grey16)]);
    const real = Float32Array.from(pattern(255), (v) => v / 255 - 0.25);
    const c = await decodeImageFile(file('f4.npy', npy('<f4', [H, W], real)));
    assert.deepEqual([c.floatingPoint, Array.from(c.data)], [true, Array.from(real)]);
  });

  it('a bool or 0 / 1 mask reads as the same mask PNG does, in a segmentation folder; other shapes and int64 are refused by name', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-npy-masks-'));
    for (const d of ['images', 'masks/bool', 'masks/labels', 'masks/png']) mkdirSync(path.join(root, d), { recursive: true });
    const grey8 = Uint8Array.from(pattern(255));
    await sharp(grey8, { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(root, 'images', 'a.png'));
    const inside = Uint8Array.from({ length: W * H }, (_, i) => ((i % W) > W / 3 && Math.floor(i / W) > H / 4 ? 1 : 0));
    writeFileSync(path.join(root, 'masks', 'bool', 'a.npy'), npy('|b1', [H, W], inside));
    writeFileSync(path.join(root, 'masks', 'labels', 'a_mask.npy'), npy('|u1', [H, W], inside));
    await sharp(inside.map((v) => v * 255), { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(root, 'masks', 'png', 'a.png'));
    await sharp(grey8, { raw: { width: W, height: H, channels: 1 } }).png().toFile(path.join(root, 'images', 'b.png'));
    for (const s of ['bool', 'labels', 'png']) copyFileSync(path.join(root, 'masks', s, s === 'labels' ? 'a_mask.npy' : s === 'bool' ? 'a.npy' : 'a.png'), path.join(root, 'masks', s, s === 'labels' ? 'b_mask.npy' : s === 'bool' ? 'b.npy' : 'b.png'));
    const data = await loadSegmentationData(root, 32, { testFraction: 0, maxTestImages: 0, seed: 0 });
    assert.deepEqual(data.structures, ['bool', 'labels', 'png']);
    for (const x of data.samples) {
      assert.ok(x.masks[2]!.some((v) => v > 0));
      assert.deepEqual(x.masks[0], x.masks[2]);
      assert.deepEqual(x.masks[1], x.masks[2]);
    }
    await assert.rejects(decodeImageFile(file('cube.npy', npy('|u1', [2, 3, 4, 5], new Uint8Array(120)))), { message: `${path.join(tmp, 'cube.npy')}: unsupported .npy shape [2, 3, 4, 5]: not an image (Eden reads [H, W], [H, W, 1 | 3 | 4] and [1, H, W])` });
    await assert.rejects(decodeImageFile(file('i8.npy', npy('<i8', [2, 2], new BigInt64Array(4)))), { message: `${path.join(tmp, 'i8.npy')}: unsupported .npy dtype 'i8' (Eden reads bool, 8-, 16- and 32-bit integers and floats)` });
    await assert.rejects(decodeImageFile(file('cut.npy', npy('|u1', [H, W], grey8).subarray(0, 200))), /cut\.npy: /);
  });
});

describe('NIfTI .nii / .nii.gz images and masks', () => {
  // Written by nibabel (fixtures/nifti/make-nifti.py) as ITK and nnU-Net lay out a 2-D image: the
  // pattern it documents, recomputed (61 x 47: a transposed read cannot pass).
  const nifti = path.join(import.meta.dirname, 'fixtures', 'nifti');
  const [PW, PH] = [61, 47];
  const pattern = (max: number): number[] => Array.from({ length: PW * PH }, (_, i) => (37 * (i % PW) + 101 * Math.floor(i / PW)) % (max + 1));
  const labels = Array.from({ length: PW * PH }, (_, i) => {
    const [x, y] = [i % PW, Math.floor(i / PW)];
    return x < 20 && y >= 10 && y < 30 ? 1 : x >= 40 && y >= 20 ? 2 : 0;
  });

  for (const [file, bitDepth, encoding, expected, floatingPoint] of [
    ['grey12-int16.nii.gz', 16, 'nifti/int16', pattern(4095), undefined],
    ['grey8-slice.nii.gz', 8, 'nifti/uint8', pattern(255), undefined],
    ['grey12-bigendian.nii', 16, 'nifti/int16', pattern(4095), undefined],
    ['scaled-uint16.nii', 16, 'nifti/uint16', pattern(4095).map((v) => v * 0.5 - 100), true],
    ['float32-nifti2.nii', 32, 'nifti/float32', pattern(255).map((v) => Math.fround((v / 255) * 3 - 1)), true],
  ] as const) {
    it(`${file} (nibabel) decodes to its values exactly, the first axis across`, async () => {
      const img = await decodeImageFile(path.join(nifti, file));
      assert.deepEqual([img.width, img.height, img.bitDepth, img.encoding, img.floatingPoint], [PW, PH, bitDepth, encoding, floatingPoint]);
      assert.deepEqual(Array.from(img.data), expected);
    });
  }

  it('RGB24 reads as the same picture in PNG does; a volume, a gzip of something else and a cut file are refused by name', async () => {
    const rgb = Uint8Array.from(pattern(255).flatMap((g) => [g, (g * 3 + 7) % 256, 255 - g]));
    const png = path.join(tmp, 'nifti-colour.png');
    await sharp(rgb, { raw: { width: PW, height: PH, channels: 3 } }).png().toFile(png);
    const colour = await decodeImageFile(path.join(nifti, 'rgb24.nii.gz'));
    assert.deepEqual([colour.encoding, Array.from(colour.data)], ['nifti/rgb24', Array.from((await decodeImageFile(png)).data)]);
    const volume = path.join(nifti, 'volume-3-slices.nii.gz');
    await assert.rejects(decodeImageFile(volume), { message: `${volume}: unsupported NIfTI volume of 61 x 47 x 3 voxels: not a 2-D image (Eden reads a NIfTI of one slice, dims [X, Y] or [X, Y, 1]; save the slices to use as 2-D files)` });
    const { gzipSync } = await import('node:zlib');
    const other = path.join(tmp, 'notes.nii.gz');
    writeFileSync(other, gzipSync(Buffer.from('x'.repeat(1000))));
    await assert.rejects(decodeImageFile(other), { message: `${other}: unsupported gzip-compressed file: it holds no NIfTI image (Eden reads .nii.gz; decompress other files first)` });
    const cut = path.join(tmp, 'cut.nii');
    writeFileSync(cut, readFileSync(path.join(nifti, 'grey12-bigendian.nii')).subarray(0, 2000));
    await assert.rejects(decodeImageFile(cut), { message: `${cut}: truncated image data (NIfTI of 61x47 int16 needs 6086 bytes, 2000 in the file)` });
    const cutGz = path.join(tmp, 'cut.nii.gz');
    writeFileSync(cutGz, readFileSync(path.join(nifti, 'grey12-int16.nii.gz')).subarray(0, 2000));
    await assert.rejects(decodeImageFile(cutGz), (e: Error) => e.message.startsWith(`${cutGz}: truncated image data (gzip: `));
    writeFileSync(cutGz, gzipSync(readFileSync(path.join(nifti, 'grey12-bigendian.nii')).subarray(0, 200)));
    await assert.rejects(decodeImageFile(cutGz), { message: `${cutGz}: truncated image data (the NIfTI header ends after 200 bytes)` });
  });

  it("nnU-Net's imagesTr/<case>_0000.nii.gz + labelsTr/<case>.nii.gz pair, and train on the pixels the same PNGs hold", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'eden-nifti-'));
    for (const d of ['nnunet/imagesTr', 'nnunet/labelsTr', 'png/images', 'png/masks/label']) mkdirSync(path.join(root, d), { recursive: true });
    const grey = sharp(Uint16Array.from(pattern(4095)), { raw: { width: PW, height: PH, channels: 1 } }).toColourspace('grey16').png();
    const mask = sharp(Uint8Array.from(labels), { raw: { width: PW, height: PH, channels: 1 } }).png();
    for (const c of ['lung_001', 'lung_002']) {
      copyFileSync(path.join(nifti, 'grey12-int16.nii.gz'), path.join(root, 'nnunet', 'imagesTr', `${c}_0000.nii.gz`));
      copyFileSync(path.join(nifti, 'labels.nii.gz'), path.join(root, 'nnunet', 'labelsTr', `${c}.nii.gz`));
      await grey.clone().toFile(path.join(root, 'png', 'images', `${c}.png`));
      await mask.clone().toFile(path.join(root, 'png', 'masks', 'label', `${c}.png`));
    }
    const [images, masks] = [path.join(root, 'nnunet', 'imagesTr'), path.join(root, 'nnunet', 'labelsTr')];
    const scan = await scanDataset([images], { masks });
    assert.deepEqual(scan.images.map((e) => [e.relPath, e.stem, path.basename(maskFile(e.masks!['mask']!))]), [['lung_001_0000.nii.gz', 'lung_001_0000', 'lung_001.nii.gz'], ['lung_002_0000.nii.gz', 'lung_002_0000', 'lung_002.nii.gz']]);
    const load = (dir: string, o: { masks?: string } = {}): ReturnType<typeof loadSegmentationData> => loadSegmentationData(dir, 32, { ...o, testFraction: 0, maxTestImages: 0, seed: 0 });
    const [fromNifti, fromPng] = [await load(images, { masks }), await load(path.join(root, 'png'))];
    assert.equal(fromNifti.samples.length, 2);
    fromNifti.samples.forEach((x, i) => {
      assert.deepEqual(x.image, fromPng.samples[i]!.image);
      assert.deepEqual(x.masks, fromPng.samples[i]!.masks);
      assert.ok(x.masks[0]!.some((v) => v > 0));
    });
    // Without --masks, the hint names the pair (the stems compared without '.nii.gz' and '_0000').
    await assert.rejects(load(path.join(root, 'nnunet')), (e: Error) => e.message.endsWith(`here imagesTr/ looks like the images and labelsTr/ like their masks: --data ${images} --masks ${masks}`));
  });
});

describe('MetaImage .mha / .mhd images', () => {
  // Written by VTK's vtkMetaImageWriter through ITK's MetaIO (fixtures/metaimage/make-metaimage.py):
  // the pattern it documents, recomputed (61 x 47: a transposed read cannot pass).
  const meta = path.join(import.meta.dirname, 'fixtures', 'metaimage');
  const [PW, PH] = [61, 47];
  const pattern = (max: number): number[] => Array.from({ length: PW * PH }, (_, i) => (37 * (i % PW) + 101 * Math.floor(i / PW)) % (max + 1));

  for (const [file, bitDepth, encoding, expected, floatingPoint] of [
    ['grey12-ushort.mha', 16, 'metaimage/ushort', pattern(4095), undefined],
    ['grey8-compressed.mha', 8, 'metaimage/uchar', pattern(255), undefined],
    ['float32.mhd', 32, 'metaimage/float', pattern(255).map((v) => Math.fround((v / 255) * 3 - 1)), true],
    ['int16-compressed.mhd', 16, 'metaimage/short', pattern(4095).map((v) => v - 2048), undefined],
  ] as const) {
    it(`${file} (VTK / MetaIO) decodes to its values exactly, with its spacing`, async () => {
      const img = await decodeImageFile(path.join(meta, file));
      assert.deepEqual([img.width, img.height, img.bitDepth, img.encoding, img.floatingPoint, img.spacing], [PW, PH, bitDepth, encoding, floatingPoint, { mm: [0.6, 0.7], from: 'MetaImage ElementSpacing' }]);
      assert.deepEqual(Array.from(img.data), expected);
    });
  }

  it('RGB reads as the same picture in PNG does; a folder of headers and their pixel files lists the headers; a volume, a missing pixel file and a cut file are refused by name', async () => {
    const rgb = Uint8Array.from(pattern(255).flatMap((g) => [g, (g * 3 + 7) % 256, 255 - g]));
    const png = path.join(tmp, 'metaimage-colour.png');
    await sharp(rgb, { raw: { width: PW, height: PH, channels: 3 } }).png().toFile(png);
    assert.deepEqual(Array.from((await decodeImageFile(path.join(meta, 'rgb.mha'))).data), Array.from((await decodeImageFile(png)).data));
    const scan = await scanDataset([meta]);
    assert.deepEqual(scan.images.map((e) => e.relPath), ['float32.mhd', 'grey12-ushort.mha', 'grey8-compressed.mha', 'int16-compressed.mhd', 'rgb.mha', 'volume-3-slices.mha']);
    assert.deepEqual(scan.skipped.map((x) => path.basename(x.path)), ['make-metaimage.py']); // .raw and .zraw belong to their headers
    // eden inspect says the spacing (what mm² areas need); a folder without any says nothing of it.
    const text = formatInspectReport(await inspectDataset([meta]));
    assert.match(text, /^pixel spacing \(row x column\): 0\.6 x 0\.7 mm \(MetaImage ElementSpacing\) \(5\)$/m);
    const plain = mkdtempSync(path.join(tmpdir(), 'eden-no-spacing-'));
    copyFileSync(png, path.join(plain, 'colour.png'));
    assert.doesNotMatch(formatInspectReport(await inspectDataset([plain])), /pixel spacing/);
    const volume = path.join(meta, 'volume-3-slices.mha');
    await assert.rejects(decodeImageFile(volume), { message: `${volume}: unsupported MetaImage volume of 61 x 47 x 3 voxels: not a 2-D image (Eden reads a MetaImage of one slice; save the slices to use as 2-D files)` });
    const lonely = path.join(tmp, 'float32.mhd');
    copyFileSync(path.join(meta, 'float32.mhd'), lonely);
    await assert.rejects(decodeImageFile(lonely), { message: `${lonely}: cannot read the file its pixels are in, ${path.join(tmp, 'float32.raw')} (ENOENT)` });
    const cut = path.join(tmp, 'cut.mha');
    writeFileSync(cut, readFileSync(path.join(meta, 'grey12-ushort.mha')).subarray(0, 3000));
    await assert.rejects(decodeImageFile(cut), (e: Error) => e.message.startsWith(`${cut}: truncated image data (MetaImage of 61x47 MET_USHORT needs 5734 bytes of voxels, `));
  });
});

describe('DICOM decoding', () => {
  it('applies rescale slope/intercept and keeps the VOI window (explicit VR LE, 12 bit)', async () => {
    const ref = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
    assert.equal(ref.width, W);
    assert.equal(ref.height, H);
    assert.equal(ref.bitDepth, 12);
    assert.deepEqual(ref.window, { center: 4000, width: 6000 });
    // Stored values are v*16 + i%16 (0..4095); rescaled = 2 * stored - 100.
    const px = await sharp(path.join(import.meta.dirname, '..', 'samples', 'hannover_covid19', '00870a9c.png')).resize(W, H, { fit: 'fill' }).toColourspace('b-w').raw().toBuffer();
    for (const i of [0, 17, 1000, W * H - 1]) assert.equal(ref.data[i], 2 * (px[i]! * 16 + (i % 16)) - 100);
  });

  for (const [file, encoding] of [
    ['mono2-12bit-bigendian.dcm', 'dicom/explicit-be'],
    ['mono2-12bit-rle.dcm', 'dicom/rle'],
    ['mono2-12bit-jpeg-lossless.dcm', 'dicom/jpeg-lossless'],
    ['mono2-12bit-jpeg-ls.dcm', 'dicom/jpeg-ls'],
    ['mono2-12bit-j2k.dcm', 'dicom/jpeg2000'],
    // The codestream made by OpenJPH's encoder (Debian's ojph_compress), not the wasm build that decodes it.
    ['mono2-12bit-htj2k.dcm', 'dicom/htj2k'],
  ]) {
    it(`${encoding} decodes to exactly the uncompressed values`, async () => {
      const ref = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
      const img = await decodeImageFile(path.join(fixtures, file!));
      assert.equal(img.encoding, encoding);
      assert.deepEqual(Array.from(img.data), Array.from(ref.data));
    });
  }

  for (const [file, encoding] of [
    ['mono2-12bit-deflated.dcm', 'dicom/deflated'],
    ['mono2-12bit-bare-explicit.dcm', 'dicom/explicit-le'],
    ['mono2-12bit-bare-implicit', 'dicom/implicit-le'],
  ]) {
    it(`${file} (made by DCMTK's dcmconv: ${encoding}${file!.includes('bare') ? ', no preamble or meta header' : ''}) decodes to exactly the uncompressed values`, async () => {
      const ref = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
      const img = await decodeImageFile(path.join(fixtures, file!));
      assert.equal(img.encoding, encoding);
      assert.deepEqual(Array.from(img.data), Array.from(ref.data));
      assert.deepEqual(img.window, ref.window);
    });
  }

  /** A PNM rendered by DCMTK's dcm2pnm, as [luminance] (P6: RGB -> BT.601 luminance; P5: grey). */
  async function dcmtkRendering(file: string): Promise<{ data: Float32Array; max: number }> {
    const bytes = readFileSync(path.join(fixtures, file));
    const header = bytes.toString('latin1', 0, 32).split(/\s+/);
    const [magic, w, h, max] = [header[0], Number(header[1]), Number(header[2]), Number(header[3])];
    const offset = bytes.indexOf(`\n${max}\n`) + `\n${max}\n`.length;
    const px = bytes.subarray(offset);
    const data = new Float32Array(w * h);
    for (let i = 0; i < w * h; i++) data[i] = magic === 'P6' ? 0.299 * px[3 * i]! + 0.587 * px[3 * i + 1]! + 0.114 * px[3 * i + 2]! : px[i]!;
    return { data, max };
  }

  for (const [file, reference, scale] of [
    ['palette-8bit.dcm', 'palette-8bit-by-dcmtk.ppm', 1 / 257],
    ['ybr-full-422.dcm', 'ybr-full-422-by-dcmtk.ppm', 1],
  ] as const) {
    it(`${file} decodes to DCMTK's rendering (dcm2pnm) within 1 level`, async () => {
      const img = await decodeImageFile(path.join(fixtures, file));
      const ref = await dcmtkRendering(reference);
      assert.equal(img.data.length, ref.data.length);
      let worst = 0;
      for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(img.data[i]! * scale - ref.data[i]!));
      console.log(`${file}: max |Eden - DCMTK| = ${worst.toFixed(3)} (8-bit levels)`);
      assert.ok(worst <= 1, `max abs difference to DCMTK ${worst}`);
    });
  }

  it("Bits Allocated 1 (bit-packed) decodes to the bits DCMTK renders (dcm2pnm: 0 and 128)", async () => {
    const img = await decodeImageFile(path.join(fixtures, 'mono2-1bit.dcm'));
    const ref = await dcmtkRendering('mono2-1bit-by-dcmtk.pgm');
    assert.equal(img.bitDepth, 1);
    assert.deepEqual(Array.from(img.data), Array.from(ref.data, (v) => (v > 0 ? 1 : 0)));
    assert.ok(img.data.some((v) => v === 1) && img.data.some((v) => v === 0));
  });

  it('a multi-frame DICOM reads as its first frame and says so: decoding, a dataset (once), eden inspect', async () => {
    // mono2-12bit.dcm with two more frames (the first inverted, then zeros) and Number of Frames 3.
    const dd = dcmjs.data as unknown as { DicomMessage: { readFile(b: ArrayBuffer): { dict: object; meta: object; write(): ArrayBuffer } }; DicomMetaDictionary: { naturalizeDataset(d: object): Record<string, unknown>; denaturalizeDataset(d: object): object } };
    const bytes = readFileSync(path.join(fixtures, 'mono2-12bit.dcm'));
    const message = dd.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const dataset = dd.DicomMetaDictionary.naturalizeDataset(message.dict);
    const frame = new Uint16Array((dataset['PixelData'] as ArrayBuffer[])[0]!);
    dataset['NumberOfFrames'] = 3;
    dataset['PixelData'] = [Uint16Array.from([...frame, ...frame.map((v) => 4095 - v), ...new Uint16Array(frame.length)]).buffer];
    message.dict = dd.DicomMetaDictionary.denaturalizeDataset(dataset);
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-frames-'));
    for (const name of ['a.dcm', 'b.dcm']) writeFileSync(path.join(dir, name), Buffer.from(message.write()));
    const [one, three] = [await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm')), await decodeImageFile(path.join(dir, 'a.dcm'))];
    assert.deepEqual([three.frames, one.frames], [3, undefined]);
    assert.deepEqual(Array.from(three.data), Array.from(one.data));
    const warned: string[] = [];
    const dataset2 = new ImageDataset((await scanDataset([dir])).images, { size: 32, cache: 'none', onWarning: (w) => warned.push(w) });
    assert.deepEqual(await dataset2.validate(), [0, 1]);
    // Once, for whichever of the two decodes first (they decode concurrently).
    assert.equal(warned.length, 1, warned.join('\n'));
    assert.ok([path.join(dir, 'a.dcm'), path.join(dir, 'b.dcm')].some((f) => warned[0] === `${f}: a DICOM of 3 frames (a cine loop, or a tomosynthesis or CT series in one file): its first frame is read as the image; Eden reads 2D radiographs (said for the first such file; eden inspect counts them)`), warned[0]);
    assert.match(formatInspectReport(await inspectDataset([dir])), /\nframes: 2 DICOM file\(s\) hold several frames \(cine loops, or tomosynthesis or CT series in one file\): the first frame of each is read as its image\n/);
  });

  it('a DICOM object without pixel data (a structured report) is "not an image", not corrupt', async () => {
    await assert.rejects(decodeImageFile(path.join(fixtures, 'report-sr.dcm')), /report-sr\.dcm: a DICOM object without pixel data \(SOP Class Basic Text SR\): not an image/);
  });

  for (const [file, reference, mode] of [
    ['mono2-12bit.dcm', 'mono2-12bit-voi-by-dcmtk.pgm', 'auto'],
    ['mono1-12bit-window.dcm', 'mono1-12bit-window-by-dcmtk.pgm', 'auto'],
    ['mono1-8bit-implicit.dcm', 'mono1-8bit-minmax-by-dcmtk.pgm', 'minmax'],
  ] as const) {
    it(`windowing of ${file} (${mode === 'auto' ? "the file's VOI window, the default" : 'min-max'}) matches DCMTK's dcm2pnm within 1 level`, async () => {
      const img = await decodeImageFile(path.join(fixtures, file));
      const ref = await dcmtkRendering(reference);
      const ours = normalizeIntensity(img, { mode });
      let worst = 0;
      for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(ours[i]! * 255 - ref.data[i]!));
      // The narrow window clips at both edges (and MONOCHROME1 comes out inverted).
      if (file === 'mono1-12bit-window.dcm') assert.ok(ref.data.filter((v) => v === 0).length > 20 && ref.data.filter((v) => v === 255).length > 20, 'the reference should clip at both edges');
      console.log(`${file}: max |Eden - DCMTK| = ${worst.toFixed(3)} (8-bit levels)`);
      assert.ok(worst <= 1, `max abs difference to DCMTK ${worst}`);
    });
  }

  it("JPEG baseline (lossy, 8 bit) matches DCMTK's own decoding within 1 level", async () => {
    const ref = await decodeImageFile(path.join(fixtures, 'mono2-8bit-jpeg-baseline-decoded-by-dcmtk.dcm'));
    const img = await decodeImageFile(path.join(fixtures, 'mono2-8bit-jpeg-baseline.dcm'));
    assert.equal(img.encoding, 'dicom/jpeg-baseline');
    let worst = 0;
    for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(img.data[i]! - ref.data[i]!));
    assert.ok(worst <= 1, `max abs difference to DCMTK ${worst}`);
  });

  it("progressive JPEG (the retired syntax img2dcm writes for one) matches DCMTK's own decoding within 1 level", async () => {
    const ref = await decodeImageFile(path.join(fixtures, 'mono2-8bit-jpeg-progressive-decoded-by-dcmtk.dcm'));
    const img = await decodeImageFile(path.join(fixtures, 'mono2-8bit-jpeg-progressive.dcm'));
    assert.deepEqual([img.width, img.height, img.encoding], [W, H, 'dicom/jpeg-progressive']);
    let worst = 0;
    for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(img.data[i]! - ref.data[i]!));
    assert.ok(worst <= 1, `max abs difference to DCMTK ${worst}`);
    // And it is the picture: within JPEG's loss of the 8-bit source.
    const source = await decodeImageFile(path.join(fixtures, 'mono2-8bit.dcm'));
    let sum = 0;
    for (let i = 0; i < source.data.length; i++) sum += Math.abs(img.data[i]! - source.data[i]!);
    assert.ok(sum / source.data.length < 4, `mean abs difference to the source ${sum / source.data.length}`);
  });

  it("JPEG extended with 12-bit samples (Process 4) equals DCMTK's own decoding", async () => {
    const ref = await decodeImageFile(path.join(fixtures, 'mono2-12bit-jpeg-extended-decoded-by-dcmtk.dcm'));
    const img = await decodeImageFile(path.join(fixtures, 'mono2-12bit-jpeg-extended.dcm'));
    const exact = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
    assert.equal(img.encoding, 'dicom/jpeg-extended');
    assert.equal(img.bitDepth, 12);
    let worst = 0;
    let error = 0;
    for (let i = 0; i < ref.data.length; i++) {
      worst = Math.max(worst, Math.abs(img.data[i]! - ref.data[i]!));
      error += Math.abs(img.data[i]! - exact.data[i]!) / ref.data.length;
    }
    assert.equal(worst, 0, `max abs difference to DCMTK ${worst}`);
    // The 12-bit range survived (an 8-bit decode would be off by thousands) and the error to the
    // uncompressed source is that of lossy coding: small against the range, but not zero.
    const range = Math.max(...exact.data) - Math.min(...exact.data);
    assert.ok(error > 0 && error < 0.03 * range, `mean abs difference to the source ${error.toFixed(1)} over a range of ${range}`);
  });

  it('a corrupt 12-bit JPEG frame is refused with a message that names the codec', async () => {
    const bytes = readFileSync(path.join(fixtures, 'mono2-12bit-jpeg-extended.dcm'));
    const sos = bytes.indexOf(Buffer.from([0xff, 0xda]));
    const broken = Buffer.concat([bytes.subarray(0, sos + 40), Buffer.alloc(64, 0xff), bytes.subarray(sos + 104)]);
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-jpeg12-'));
    const file = path.join(dir, 'broken.dcm');
    writeFileSync(file, broken);
    await assert.rejects(decodeImageFile(file), /broken\.dcm.*12-bit JPEG|12-bit JPEG.*broken/s);
  });

  it('MONOCHROME1 (implicit VR) is flagged and inverted by normalisation', async () => {
    const m1 = await decodeImageFile(path.join(fixtures, 'mono1-8bit-implicit.dcm'));
    const m2 = await decodeImageFile(path.join(fixtures, 'mono2-8bit.dcm'));
    assert.equal(m1.inverted, true);
    assert.deepEqual(Array.from(m1.data), Array.from(m2.data));
    const a = normalizeIntensity(m1, { mode: 'none' });
    const b = normalizeIntensity(m2, { mode: 'none' });
    for (const i of [0, 100, 2000]) assert.ok(Math.abs(a[i]! - (1 - b[i]!)) < 1e-6);
  });

  it('signed 16-bit and RGB (native and RLE) decode', async () => {
    const s = await decodeImageFile(path.join(fixtures, 'signed-16bit.dcm'));
    const ref = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
    // signed = stored - 2048, and ref = 2 * stored - 100.
    for (const i of [0, 5, 999]) assert.equal(s.data[i], (ref.data[i]! + 100) / 2 - 2048);
    assert.ok(Math.min(...s.data) < 0);
    const grey = await decodeImageFile(path.join(fixtures, 'mono2-8bit.dcm'));
    for (const f of ['rgb-8bit.dcm', 'rgb-8bit-rle.dcm']) {
      const rgb = await decodeImageFile(path.join(fixtures, f));
      let worst = 0;
      for (let i = 0; i < grey.data.length; i++) worst = Math.max(worst, Math.abs(rgb.data[i]! - grey.data[i]!));
      assert.ok(worst < 1e-3, `${f}: luminance differs by ${worst}`);
    }
  });
});

describe('intensity normalisation', () => {
  it('windows the 1st..99th percentile to [0, 1]', () => {
    const data = Float32Array.from({ length: 1001 }, (_, i) => i); // 0..1000
    const [p1, p99] = percentiles(data, [1, 99]);
    assert.equal(p1, 10);
    assert.equal(p99, 990);
    assert.deepEqual(sortedPercentiles(data, [1, 99]), [10, 990]);
    assert.deepEqual(sortedPercentiles(Float32Array.from(data, (v) => v / 4), [1, 99.5]), [2.5, 248.75]);
    const out = normalizeIntensity({ width: 1001, height: 1, data, bitDepth: 16, encoding: 'test' });
    assert.equal(out[0], 0);
    assert.equal(out[1000], 1);
    assert.ok(Math.abs(out[500]! - 490 / 980) < 1e-6);
  });

  it('percentiles by counting (integer images) equal those of a sorted copy, and fractional, NaN or wide-range values still sort', () => {
    const rng = new Rng(11);
    const ints = (n: number, lo: number, hi: number): Float32Array => Float32Array.from({ length: n }, () => lo + Math.floor(rng.next() * (hi - lo + 1)));
    const cases: [string, Float32Array][] = [
      ['8-bit', ints(512 * 512, 0, 255)],
      ['8-bit, mostly black (wingspan-like)', Float32Array.from(ints(70000, 0, 255), (v, i) => (i % 9 ? Math.min(v, 70) : v))],
      ['12-bit', ints(300 * 301, 0, 4095)],
      ['signed (CT-like)', ints(4097, -1024, 3071)],
      ['16-bit over 2^20 values (subsampled, stride 2)', ints((1 << 21) + 3, 0, 65535)],
      ['one value', new Float32Array(10).fill(42)],
      ['a single pixel', Float32Array.of(-3)],
      ['fractional', Float32Array.from(ints(5000, 0, 255), (v) => v / 7)],
      ['a NaN among integers', Float32Array.from(ints(5000, 0, 255), (v, i) => (i === 17 ? NaN : v))],
      ['wider than 2^16', ints(5000, 0, 200000)],
    ];
    const ps = [0, 0.5, 1, 5, 50, 99, 99.9, 100];
    for (const [name, data] of cases) assert.deepEqual(percentiles(data, ps), sortedPercentiles(data, ps), name);
  });

  it('uses the DICOM VOI window in auto mode', async () => {
    const img = await decodeImageFile(path.join(fixtures, 'mono2-12bit.dcm'));
    const out = normalizeIntensity(img);
    // Window center 4000 width 6000: [4000.5 - 3000 - 0.5 ... ] -> lo = 1000.5, hi = 6999.5
    const lo = 4000 - 0.5 - 5999 / 2;
    for (const i of [0, 300, 2000]) {
      const expected = Math.min(1, Math.max(0, (img.data[i]! - lo) / 5999));
      assert.ok(Math.abs(out[i]! - expected) < 1e-6);
    }
  });

  it("'none' divides by the bit depth's maximum; constant images map to 0", () => {
    const data = Float32Array.from([0, 51, 255]);
    assert.deepEqual(Array.from(normalizeIntensity({ width: 3, height: 1, data, bitDepth: 8, encoding: 't' }, { mode: 'none' })), [0, Math.fround(0.2), 1]);
    assert.deepEqual(Array.from(normalizeIntensity({ width: 3, height: 1, data: new Float32Array(3).fill(7), bitDepth: 8, encoding: 't' })), [0, 0, 0]);
  });

  it("normalises in place into the image's own array with the same result (MONOCHROME1, constant images too)", () => {
    const rng = new Rng(3);
    for (const [inverted, data] of [[false, Float32Array.from({ length: 5000 }, () => rng.int(4096))], [true, Float32Array.from({ length: 5000 }, () => rng.int(256))], [false, new Float32Array(50).fill(9)]] as const) {
      const img = { width: data.length, height: 1, data: data.slice(), bitDepth: 12, encoding: 't', inverted };
      const copy = normalizeIntensity(img);
      const inPlace = normalizeIntensity(img, {}, img.data);
      assert.equal(inPlace, img.data);
      assert.deepEqual(inPlace, copy);
    }
  });
});

describe('resize', () => {
  it('area-averages when shrinking and preserves constants', () => {
    const src = Float32Array.from([1, 3, 5, 7, 1, 3, 5, 7]); // 4x2
    assert.deepEqual(Array.from(resizeGrey(src, 4, 2, 2, 1)), [2, 6]);
    const flat = resizeGrey(new Float32Array(13 * 7).fill(0.25), 13, 7, 5, 11);
    assert.ok(flat.every((v) => Math.abs(v - 0.25) < 1e-6));
  });

  it('resizeToMask gives the bits of thresholdMask(resizeGrey(...)): up, down, mixed and the same size', () => {
    const rng = new Rng(8);
    for (const [w, h, ow, oh] of [[16, 16, 203, 97], [64, 48, 17, 30], [20, 20, 20, 20], [9, 40, 33, 12]] as const) {
      // Smooth probabilities, so that many upsampled values lie near the threshold.
      const p = Float32Array.from({ length: w * h }, (_, i) => 0.5 + 0.3 * Math.sin((i % w) / 3) * Math.cos(Math.floor(i / w) / 4) + 0.01 * (rng.next() - 0.5));
      for (const threshold of [0.5, 0.62]) assert.deepEqual(resizeToMask(p, w, h, ow, oh, threshold), thresholdMask(resizeGrey(p, w, h, ow, oh), threshold), `${w}x${h} -> ${ow}x${oh} at ${threshold}`);
      // Exactly at the threshold is outside the mask.
      const half = new Float32Array(w * h).fill(0.5);
      assert.deepEqual(resizeToMask(half, w, h, ow, oh, 0.5), new Uint8Array(ow * oh));
    }
  });
});
