/**
 * Decode any supported image file to a single-channel GreyImage. Raster formats go through sharp
 * (8- and 16-bit grey kept at full depth, and signed, 32-bit and floating-point samples at their
 * values; RGB/RGBA reduced to luminance, alpha dropped; turned as their EXIF orientation says),
 * except those sharp's build does not read: BMP (bmp-ts), Netpbm (./netpbm.ts), JPEG 2000
 * (OpenJPEG, ./wasm-codecs.ts), NumPy .npy (./npy.ts), NIfTI (./nifti.ts) and MetaImage
 * (./metaimage.ts). DICOM through ./dicom.ts. Every failure is a DataError naming the file and the
 * problem.
 */
import sharp, { type OutputInfo } from 'sharp';
import { decode as decodeBmp } from 'bmp-ts';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { dataError, describeError, EdenError } from '../core/errors.js';
import { decodeDicom, SegmentationObjectError } from './dicom.js';
import { segmentationAsMask } from './dicom-seg.js';
import { detectFormat, hasDicomBytes, notAnImage } from './formats.js';
import { bt601, firstChannel, rgbToGrey, type GreyImage, type RasterSamples } from './grey-image.js';
import { snapToMainColours } from './lossy-colours.js';
import { decodeNetpbm, isNetpbm } from './netpbm.js';
import { decodeNifti, isGzip, isNifti } from './nifti.js';
import { decodeMetaImage, isMetaImage } from './metaimage.js';
import { decodeNpy, isNpy } from './npy.js';
import { decodeWithWasm } from './wasm-codecs.js';

// Refuse decompression bombs: images above this many pixels are reported, not decoded.
const MAX_PIXELS = 20000 * 20000;

/**
 * Decode image bytes (an upload, a message); `format` defaults to what the bytes are: DICOM when
 * they carry its Part 10 preamble, else a raster format for sharp.
 */
export async function decodeImageBytes(bytes: Uint8Array, format: 'raster' | 'dicom' = hasDicomBytes(bytes) ? 'dicom' : 'raster', options: DecodeOptions = {}): Promise<GreyImage> {
  if (bytes.length === 0) throw new Error('empty file (0 bytes)');
  if (format === 'dicom') {
    try {
      return await decodeDicom(bytes);
    } catch (err) {
      // A Segmentation object is no image, but may be a mask.
      if (options.mask && err instanceof SegmentationObjectError) return segmentationAsMask(bytes);
      throw err;
    }
  }
  return decodeRaster(bytes, options);
}

export interface DecodeOptions {
  /**
   * The file is a mask: a palette PNG is read as its palette indices (the labels of the colour masks
   * annotation tools export, PASCAL VOC style), a mask in several colours as label values per colour
   * (decodeColourLabels), not as the luminance of their colours.
   */
  mask?: boolean;
  /** Reads a file a header names for its pixels (a MetaImage .mhd's ElementDataFile); decodeImageFile gives it. */
  dataFile?: (name: string) => Promise<Uint8Array>;
}

async function decodeRaster(bytes: Uint8Array, options: DecodeOptions): Promise<GreyImage> {
  const own = await decodeOwnRaster(bytes, options.dataFile);
  if (own) return await greyFromSamples(own, options);
  // failOn 'error': truncated or corrupt data throw instead of decoding to grey garbage.
  const input = sharp(bytes, { failOn: 'error', limitInputPixels: MAX_PIXELS });
  const meta = await input.metadata();
  // As the file displays: its EXIF orientation applied (./orientation.ts says why).
  const orientation = meta.orientation !== undefined && meta.orientation > 1 && meta.orientation <= 8 ? meta.orientation : undefined;
  if (meta.depth !== undefined && meta.depth !== 'uchar' && meta.depth !== 'ushort') return decodeWideSamples(bytes, meta.depth, meta.format ?? 'raster', orientation);
  const sixteen = meta.depth === 'ushort';
  const palette = options.mask && meta.isPalette && meta.format === 'png' ? pngPalette(bytes) : undefined;
  if (palette) return decodePaletteIndices(bytes, palette, orientation);
  const opaque = options.mask && meta.hasAlpha ? await opaquePixels(bytes, orientation) : undefined;
  const mask = (img: GreyImage): GreyImage => (opaque ? drawnWhereOpaque(img, opaque) : img);
  if (options.mask && !sixteen && (meta.channels ?? 1) >= 3) {
    const colour = await decodeColourLabels(bytes, meta.format ?? 'raster', orientation, opaque !== undefined);
    if (colour) return mask(colour);
  }
  const sharpened = sharp(bytes, { failOn: 'error', limitInputPixels: MAX_PIXELS, autoOrient: orientation !== undefined });
  const pipeline = opaque ? sharpened.flatten({ background: '#000000' }) : sharpened.removeAlpha();
  const { data, info } = sixteen
    ? await pipeline.toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true })
    : await pipeline.toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  const pixels = info.width * info.height;
  const samples = sixteen ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const grey = info.channels === 3 ? rgbToGrey(samples, pixels) : firstChannel(samples, pixels, info.channels);
  return mask({ width: info.width, height: info.height, data: grey, bitDepth: sixteen ? 16 : 8, encoding: meta.format ?? 'raster', ...(orientation ? { orientation } : {}) });
}

/**
 * Which pixels of a mask with an alpha channel are opaque (alpha at least half its scale), as the
 * file displays; undefined when all are. Masks drawn on a transparent layer (GIMP, Photoshop, many
 * annotation exports) keep any colour under the transparent pixels: with the alpha dropped, a white
 * or red structure on a transparent background read as covering the whole image.
 */
async function opaquePixels(bytes: Uint8Array, orientation: number | undefined): Promise<Uint8Array | undefined> {
  // The extracted channel is 8-bit grey to libvips: a 16-bit alpha arrives scaled to 0-255.
  const alpha = await sharp(bytes, { failOn: 'error', limitInputPixels: MAX_PIXELS, autoOrient: orientation !== undefined }).extractChannel('alpha').raw().toBuffer();
  const opaque = Uint8Array.from(alpha, (a) => (a >= 128 ? 1 : 0));
  return opaque.includes(0) ? opaque : undefined;
}

/**
 * A mask read where it is opaque: the transparent pixels are background (the image was composited
 * over black). Drawn in black on a transparent layer, nothing would be left: then the opaque pixels
 * are the structure.
 */
function drawnWhereOpaque(img: GreyImage, opaque: Uint8Array): GreyImage {
  const data = img.data;
  let drawn = false;
  for (let i = 0; i < data.length; i++) {
    if (!opaque[i]) data[i] = 0;
    else if (data[i] !== 0) drawn = true;
  }
  if (!drawn) data.set(opaque);
  return { ...img, encoding: `${img.encoding}/alpha`, transparent: true, ...(drawn ? {} : { labelValues: true }) };
}

/** The colours of a PNG's PLTE chunk as 0xRRGGBB, in index order; undefined without one. */
export function pngPalette(bytes: Uint8Array): number[] | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 8; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === 'PLTE') {
      const colours: number[] = [];
      for (let i = at + 8; i + 3 <= at + 8 + length && i + 3 <= bytes.length; i += 3) colours.push((bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!);
      return colours;
    }
    if (type === 'IDAT' || type === 'IEND') return undefined; // PLTE precedes the image data
    at += 12 + length;
  }
  return undefined;
}

/** The file's colours as stored (no colour profile applied), alpha dropped (or composited over black), orientation applied: RGB bytes. */
function rgbPixels(bytes: Uint8Array, orientation: number | undefined, overBlack = false): Promise<{ data: Buffer; info: OutputInfo }> {
  const input = sharp(bytes, { failOn: 'error', limitInputPixels: MAX_PIXELS, autoOrient: orientation !== undefined, ignoreIcc: true });
  return (overBlack ? input.flatten({ background: '#000000' }) : input.removeAlpha()).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
}

/**
 * A palette image's indices: sharp expands the palette to colours (any bit depth, interlaced or
 * not), and each colour is looked up in the palette (the first index of a repeated colour).
 */
async function decodePaletteIndices(bytes: Uint8Array, palette: number[], orientation: number | undefined): Promise<GreyImage> {
  const { data, info } = await rgbPixels(bytes, orientation);
  const indexOf = new Map<number, number>();
  palette.forEach((c, i) => {
    if (!indexOf.has(c)) indexOf.set(c, i);
  });
  const pixels = info.width * info.height;
  const out = new Float32Array(pixels);
  let [lastColour, lastIndex] = [-1, 0]; // masks are runs of one colour
  for (let i = 0, at = 0; i < pixels; i++, at += info.channels) {
    const colour = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
    if (colour !== lastColour) {
      const index = indexOf.get(colour);
      if (index === undefined) throw new Error(`palette image holds the colour #${colour.toString(16).padStart(6, '0')}, which its palette lacks`);
      [lastColour, lastIndex] = [colour, index];
    }
    out[i] = lastIndex;
  }
  return { width: info.width, height: info.height, data: out, bitDepth: 8, encoding: 'png/palette', labelValues: true, ...(orientation ? { orientation } : {}) };
}

/** Of the mask's chromatic pixels, the share a colour must hold to count as one of its structures (not an anti-aliased edge). */
const MIN_COLOUR_SHARE = 0.01;

/**
 * A mask in several colours (red heart, green lungs: a colour export) as label values: each pixel's
 * Rec. 601 luma, rounded (red 76, green 150, blue 29), the same for a colour in every file, every
 * colour nonzero. Read by sharp's grey conversion instead, the colours above half scale would hide
 * the rest. Undefined for a mask with fewer than two colours (read as any grey mask), except a JPEG
 * drawn in colour: its colours moved to the ones drawn (then read as a lossless copy is).
 */
async function decodeColourLabels(bytes: Uint8Array, format: string, orientation: number | undefined, overBlack = false): Promise<GreyImage | undefined> {
  const { data: stored, info } = await rgbPixels(bytes, orientation, overBlack);
  const pixels = info.width * info.height;
  // A JPEG's colours are its drawing's moved by compression: read as the colours drawn
  // (lossy-colours.ts), for one colour as for several (luma rounded, as a label's).
  const lossy = format === 'jpeg';
  const data = lossy ? snapToMainColours(stored, pixels, info.channels) : stored;
  if (!data) return undefined;
  const turned = orientation ? { orientation } : {};
  const labels = colourLabels(data, info);
  if (labels) return { ...labels, encoding: `${format}/colour`, ...turned };
  if (!lossy) return undefined;
  // One colour: grey as libvips makes it, as for the lossless copy (red 127).
  const grey = await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels as 3 } }).toColourspace('b-w').raw().toBuffer();
  return { width: info.width, height: info.height, data: firstChannel(grey, pixels, grey.length / pixels), bitDepth: 8, encoding: format, ...turned };
}

/** colourLabels' input: 8-bit samples, `channels` per pixel, RGB first. */
interface RgbPixels {
  width: number;
  height: number;
  channels: number;
}

/** The label values of a mask in several colours (decodeColourLabels), or undefined for one in fewer than two. */
function colourLabels(data: ArrayLike<number>, info: RgbPixels): Omit<GreyImage, 'encoding'> | undefined {
  const pixels = info.width * info.height;
  const counts = new Map<number, number>();
  let chromatic = 0;
  for (let i = 0, at = 0; i < pixels; i++, at += info.channels) {
    const [r, g, b] = [data[at]!, data[at + 1]!, data[at + 2]!];
    if (r === g && g === b) continue;
    chromatic++;
    const colour = (r << 16) | (g << 8) | b;
    counts.set(colour, (counts.get(colour) ?? 0) + 1);
  }
  const colours = [...counts].filter(([, n]) => n >= MIN_COLOUR_SHARE * chromatic).map(([c]) => c);
  if (colours.length < 2) return undefined;
  const out = new Float32Array(pixels);
  for (let i = 0, at = 0; i < pixels; i++, at += info.channels) out[i] = luma601(data[at]!, data[at + 1]!, data[at + 2]!);
  const named: Record<number, string> = {};
  for (const c of colours.sort((a, b) => a - b)) {
    const luma = luma601(c >> 16, (c >> 8) & 255, c & 255);
    const hex = `#${c.toString(16).padStart(6, '0')}`;
    // Two structures' colours of one luma would read as one label: refused, not merged.
    if (named[luma]) throw new FormatError(`a colour mask whose colours ${named[luma]} and ${hex} read as the same label value, ${luma} (a colour mask's colours are read as their Rec. 601 luma); recolour one of them, or save the mask as a palette PNG (read by palette index) or as label values`);
    named[luma] = hex;
  }
  return { width: info.width, height: info.height, data: out, bitDepth: 8, labelValues: true, colours: named };
}

/** A colour's Rec. 601 luma, rounded: a colour mask's label value for it. */
function luma601(r: number, g: number, b: number): number {
  return Math.round(bt601(r, g, b));
}

/**
 * BMP, Netpbm, JPEG 2000, NumPy .npy, NIfTI (.nii, .nii.gz) and MetaImage, recognised by their
 * first bytes (sharp's prebuilt libvips reads none of them); undefined for anything else.
 */
async function decodeOwnRaster(bytes: Uint8Array, dataFile?: DecodeOptions['dataFile']): Promise<RasterSamples | undefined> {
  try {
    return await decodeOwnFormat(bytes, dataFile);
  } catch (err) {
    const msg = describeError(err);
    throw new FormatError(/^(truncated|corrupt|image too large|unsupported|cannot read|a MetaImage)/.test(msg) ? msg : `corrupt image data (${msg})`);
  }
}

/** A reason already worded for the user (explainDecodeError passes it on as it is). */
class FormatError extends Error {}

async function decodeOwnFormat(bytes: Uint8Array, dataFile?: DecodeOptions['dataFile']): Promise<RasterSamples | undefined> {
  if (isNpy(bytes)) return decodeNpy(bytes, MAX_PIXELS);
  if (isMetaImage(bytes)) return decodeMetaImage(bytes, MAX_PIXELS, dataFile);
  if (isNifti(bytes) || isGzip(bytes)) return decodeNifti(bytes, MAX_PIXELS);
  if (isNetpbm(bytes)) {
    const im = decodeNetpbm(bytes, MAX_PIXELS);
    return { ...im, bitDepth: Math.max(1, Math.ceil(Math.log2(im.maxValue + 1))) };
  }
  if (isBitmap(bytes)) return decodeBitmap(bytes);
  if (isJpeg2000(bytes)) {
    const { info, decoded } = await decodeWithWasm('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', bytes);
    // OpenJPEG returns an empty frame, not an error, for a codestream it cannot begin to read.
    if (info.width * info.height === 0) throw new Error(`corrupt or truncated JPEG 2000 data (OpenJPEG decoded no image from ${bytes.length} bytes)`);
    const count = info.width * info.height * info.componentCount;
    if (info.width * info.height > MAX_PIXELS) throw new Error(`image too large (over ${MAX_PIXELS} pixels)`);
    const samples = info.bitsPerSample <= 8 ? decoded.subarray(0, count) : info.isSigned ? new Int16Array(decoded.buffer, 0, count) : new Uint16Array(decoded.buffer, 0, count);
    return { width: info.width, height: info.height, channels: info.componentCount, samples, bitDepth: info.bitsPerSample, encoding: 'jpeg2000' };
  }
  return undefined;
}

/** True for the raster formats Eden decodes itself (BMP, Netpbm, JPEG 2000, .npy, NIfTI, MetaImage), which sharp does not read. */
export function isOwnRasterFormat(bytes: Uint8Array): boolean {
  return isNetpbm(bytes) || isBitmap(bytes) || isJpeg2000(bytes) || isNpy(bytes) || isNifti(bytes) || isGzip(bytes) || isMetaImage(bytes);
}

const isBitmap = (bytes: Uint8Array): boolean => bytes.length >= 26 && bytes[0] === 0x42 && bytes[1] === 0x4d;

/** A JP2 file's signature box, or a bare JPEG 2000 codestream's SOC and SIZ markers. */
function isJpeg2000(bytes: Uint8Array): boolean {
  const jp2 = [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a];
  return jp2.every((b, i) => bytes[i] === b) || (bytes[0] === 0xff && bytes[1] === 0x4f && bytes[2] === 0xff && bytes[3] === 0x51);
}

/** A Windows bitmap (any bit depth, RLE, bit fields) through bmp-ts: its ABGR pixels as RGB. */
function decodeBitmap(bytes: Uint8Array): RasterSamples {
  const header = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [width, height] = [header.getInt32(18, true), Math.abs(header.getInt32(22, true))];
  if (width * height > MAX_PIXELS) throw new Error(`image too large (${width}x${height}, over ${MAX_PIXELS} pixels)`);
  // The header's file size says what a cut-off file lacks (bmp-ts would read past its end, a RangeError).
  const fileSize = header.getUint32(2, true);
  if (fileSize > bytes.length) throw new Error(`truncated image data (BMP of ${fileSize} bytes, ${bytes.length} in the file)`);
  let bmp: ReturnType<typeof decodeBmp>;
  try {
    bmp = decodeBmp(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    throw new Error(`corrupt BMP (${describeError(err)})`);
  }
  const pixels = bmp.width * bmp.height;
  const rgb = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    rgb[3 * i] = bmp.data[4 * i + 3]!;
    rgb[3 * i + 1] = bmp.data[4 * i + 2]!;
    rgb[3 * i + 2] = bmp.data[4 * i + 1]!;
  }
  return { width: bmp.width, height: bmp.height, channels: 3, samples: rgb, bitDepth: 8, encoding: 'bmp' };
}

/**
 * A GreyImage from interleaved samples: grey as stored, alpha dropped; colour reduced to grey by
 * libvips as a PNG's or JPEG's is (the same picture decodes alike in every format), or read as
 * labels per colour for a colour mask.
 */
async function greyFromSamples(r: RasterSamples, options: DecodeOptions): Promise<GreyImage> {
  const pixels = r.width * r.height;
  if (options.mask && r.channels >= 3 && r.bitDepth <= 8) {
    const labels = colourLabels(r.samples, r);
    if (labels) return { ...labels, encoding: `${r.encoding}/colour` };
  }
  let data: Float32Array;
  if (r.channels >= 3 && (r.samples instanceof Uint8Array || r.samples instanceof Uint16Array)) {
    const sixteen = r.samples instanceof Uint16Array;
    const raw = await sharp(r.samples, { raw: { width: r.width, height: r.height, channels: r.channels as 3 | 4 } })
      .removeAlpha()
      .toColourspace(sixteen ? 'grey16' : 'b-w')
      .raw(sixteen ? { depth: 'ushort' } : {})
      .toBuffer();
    data = sixteen ? new Float32Array(new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2)) : new Float32Array(raw);
  } else if (r.channels >= 3) data = rgbToGrey(Float32Array.from({ length: pixels * 3 }, (_, i) => r.samples[Math.floor(i / 3) * r.channels + (i % 3)]!), pixels); // signed colour (JPEG 2000): no sharp input for it
  else data = firstChannel(r.samples, pixels, r.channels);
  return { width: r.width, height: r.height, data, bitDepth: r.bitDepth, encoding: r.encoding, ...(r.floatingPoint ? { floatingPoint: true } : {}), ...(r.nifti ? { nifti: r.nifti } : {}), ...(r.spacing ? { spacing: r.spacing } : {}), ...(r.metaimage ? { metaimage: r.metaimage } : {}) };
}

/** Typed arrays over sharp's raw output, by libvips' sample format. */
const WIDE_SAMPLES = {
  char: { bits: 8, view: (b: Buffer) => new Int8Array(b.buffer, b.byteOffset, b.length) },
  short: { bits: 16, view: (b: Buffer) => new Int16Array(b.buffer, b.byteOffset, b.length / 2) },
  uint: { bits: 32, view: (b: Buffer) => new Uint32Array(b.buffer, b.byteOffset, b.length / 4) },
  int: { bits: 32, view: (b: Buffer) => new Int32Array(b.buffer, b.byteOffset, b.length / 4) },
  float: { bits: 32, view: (b: Buffer) => new Float32Array(b.buffer, b.byteOffset, b.length / 4) },
  double: { bits: 64, view: (b: Buffer) => new Float64Array(b.buffer, b.byteOffset, b.length / 8) },
} as const;

/**
 * Signed, 32-bit and floating-point samples (TIFFs of preprocessed images, often float in [0, 1]
 * or in physical units) at their values: sharp's 8-bit grey conversion would clip a float image
 * to 0 and 1. Multi-channel images are reduced to luminance by libvips at the same depth.
 */
async function decodeWideSamples(bytes: Uint8Array, depth: string, format: string, orientation: number | undefined): Promise<GreyImage> {
  const kind = WIDE_SAMPLES[depth as keyof typeof WIDE_SAMPLES];
  if (!kind) throw new Error(`${depth} samples are not supported (grey or RGB of integers or real numbers are)`);
  const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: MAX_PIXELS, autoOrient: orientation !== undefined }).removeAlpha().toColourspace('b-w').raw({ depth: depth as 'float' }).toBuffer({ resolveWithObject: true });
  const grey = firstChannel(kind.view(data), info.width * info.height, info.channels);
  const floating = depth === 'float' || depth === 'double';
  return { width: info.width, height: info.height, data: grey, bitDepth: kind.bits, encoding: `${format}/${depth}`, ...(floating ? { floatingPoint: true } : {}), ...(orientation ? { orientation } : {}) };
}

/** Decode a file; errors are EdenError('data') whose message starts with the file path. */
export async function decodeImageFile(file: string, options: DecodeOptions = {}): Promise<GreyImage> {
  const format = await detectFormat(file);
  if (!format) throw dataError(`${file}: ${notAnImage(file)}`);
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw dataError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? describeError(err)})`, err);
  }
  // A header naming the file its pixels are in (a MetaImage .mhd) reads it from beside itself.
  const dataFile = async (name: string): Promise<Uint8Array> => {
    const at = path.resolve(path.dirname(file), name);
    try {
      return await fs.readFile(at);
    } catch (err) {
      throw new FormatError(`cannot read the file its pixels are in, ${at} (${(err as NodeJS.ErrnoException).code ?? describeError(err)})`);
    }
  };
  try {
    return await decodeImageBytes(bytes, format, { dataFile, ...options });
  } catch (err) {
    if (err instanceof EdenError) throw err;
    const reason = format === 'raster' && !(err instanceof FormatError) && looksTruncated(bytes) ? `truncated image data (${describeError(err)})` : explainDecodeError(err, format);
    throw dataError(`${file}: ${reason}`, err);
  }
}

/** PNG files end with an IEND chunk and JPEG files with an EOI marker; a cut-off file lacks them. */
export function looksTruncated(bytes: Uint8Array): boolean {
  const isPng = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  if (isPng) return Buffer.from(bytes.subarray(Math.max(0, bytes.length - 12))).indexOf('IEND') < 0;
  const isJpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
  if (isJpeg) {
    const tail = bytes.subarray(Math.max(0, bytes.length - 4));
    return !tail.some((b, i) => b === 0xff && tail[i + 1] === 0xd9);
  }
  return false;
}

/** Turn a codec's message into a short reason a user can act on. */
export function explainDecodeError(err: unknown, format: 'raster' | 'dicom'): string {
  const msg = describeError(err);
  if (format === 'dicom' || err instanceof FormatError) return msg;
  if (/empty file/.test(msg)) return msg;
  if (/unsupported image format/i.test(msg)) return 'corrupt or not image data (its content matches no known image format)';
  if (/premature|truncat|end of (file|stream)|not enough|short/i.test(msg)) return `truncated image data (${msg})`;
  if (/pixel limit/i.test(msg)) return `image too large (over ${MAX_PIXELS} pixels)`;
  return `corrupt image data (${msg})`;
}
