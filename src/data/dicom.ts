/**
 * DICOM decoding: dicom-parser reads the data set; pixel data are decoded for the transfer
 * syntaxes radiographs use in practice:
 *   uncompressed (implicit/explicit little endian, explicit big endian), RLE (PS3.5 Annex G, here),
 *   JPEG baseline/extended 8-bit (libjpeg-turbo), JPEG lossless (jpeg-lossless-decoder-js),
 *   JPEG-LS (CharLS), JPEG 2000 (OpenJPEG).
 * Then the modality rescale (slope/intercept) is applied; MONOCHROME1 and the VOI window are
 * recorded for intensity normalisation. Multi-frame files: the first frame is used.
 */
import dicomParser from 'dicom-parser';
import { createRequire } from 'node:module';
import { rgbToGrey, type DicomReference, type GreyImage } from './grey-image.js';

const require = createRequire(import.meta.url);

const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  explicitBE: '1.2.840.10008.1.2.2',
  deflated: '1.2.840.10008.1.2.1.99',
  rle: '1.2.840.10008.1.2.5',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
  jpegExtended: '1.2.840.10008.1.2.4.51',
  jpegLossless: '1.2.840.10008.1.2.4.57',
  jpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  jpegLS: '1.2.840.10008.1.2.4.80',
  jpegLSNearLossless: '1.2.840.10008.1.2.4.81',
  j2kLossless: '1.2.840.10008.1.2.4.90',
  j2k: '1.2.840.10008.1.2.4.91',
} as const;

const TS_NAMES: Record<string, string> = {
  [TS.implicitLE]: 'implicit-le',
  [TS.explicitLE]: 'explicit-le',
  [TS.explicitBE]: 'explicit-be',
  [TS.rle]: 'rle',
  [TS.jpegBaseline]: 'jpeg-baseline',
  [TS.jpegExtended]: 'jpeg-extended',
  [TS.jpegLossless]: 'jpeg-lossless',
  [TS.jpegLosslessSV1]: 'jpeg-lossless',
  [TS.jpegLS]: 'jpeg-ls',
  [TS.jpegLSNearLossless]: 'jpeg-ls',
  [TS.j2kLossless]: 'jpeg2000',
  [TS.j2k]: 'jpeg2000',
};

export class DicomError extends Error {}

interface PixelModule {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  signed: boolean;
  planar: boolean;
  photometric: string;
}

/** Decoded samples of one frame: integer samples, interleaved if samplesPerPixel > 1 (unless planar). */
type Samples = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | Uint32Array;

export async function decodeDicom(bytes: Uint8Array): Promise<GreyImage> {
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(bytes);
  } catch (err) {
    const msg = typeof err === 'string' ? err : err instanceof Error ? err.message : String((err as { exception?: string }).exception ?? err);
    throw new DicomError(`not a readable DICOM file (${msg.replace(/^dicomParser\.\w+: /, '')})`);
  }
  const pixelElement = ds.elements['x7fe00010'];
  if (!pixelElement) throw new DicomError('DICOM file has no pixel data (7FE0,0010): not an image object');
  const ts = ds.string('x00020010') ?? TS.implicitLE;
  const pm: PixelModule = {
    rows: ds.uint16('x00280010') ?? 0,
    columns: ds.uint16('x00280011') ?? 0,
    samplesPerPixel: ds.uint16('x00280002') ?? 1,
    bitsAllocated: ds.uint16('x00280100') ?? 0,
    bitsStored: ds.uint16('x00280101') ?? ds.uint16('x00280100') ?? 0,
    signed: (ds.uint16('x00280103') ?? 0) === 1,
    planar: (ds.uint16('x00280006') ?? 0) === 1,
    photometric: (ds.string('x00280004') ?? 'MONOCHROME2').trim().toUpperCase(),
  };
  if (!pm.rows || !pm.columns) throw new DicomError(`DICOM image has no size (Rows=${pm.rows}, Columns=${pm.columns})`);
  if (![1, 3].includes(pm.samplesPerPixel)) throw new DicomError(`unsupported Samples per Pixel ${pm.samplesPerPixel}`);
  if (![8, 16, 32].includes(pm.bitsAllocated)) throw new DicomError(`unsupported Bits Allocated ${pm.bitsAllocated} (Eden reads 8, 16 and 32)`);

  const encoded = pixelElement.encapsulatedPixelData ? frameFragments(ds, pixelElement) : undefined;
  let samples: Samples;
  let planar = pm.planar;
  switch (ts) {
    case TS.implicitLE:
    case TS.explicitLE:
    case TS.explicitBE:
      samples = nativeSamples(bytes, pixelElement, pm, ts === TS.explicitBE);
      break;
    case TS.rle:
      samples = decodeRle(encoded!, pm);
      planar = true; // RLE stores each sample plane as its own segment(s)
      break;
    case TS.jpegBaseline:
    case TS.jpegExtended:
      if (pm.bitsStored > 8) throw new DicomError(`JPEG extended with ${pm.bitsStored}-bit samples is not supported (no 12-bit JPEG codec on npm); convert with dcmdjpeg`);
      samples = await decodeWithCodec('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', encoded!, pm);
      planar = false;
      break;
    case TS.jpegLossless:
    case TS.jpegLosslessSV1:
      samples = await decodeJpegLossless(encoded!, pm);
      planar = false;
      break;
    case TS.jpegLS:
    case TS.jpegLSNearLossless:
      samples = await decodeWithCodec('@cornerstonejs/codec-charls/decodewasmjs', 'JpegLSDecoder', encoded!, pm);
      planar = false;
      break;
    case TS.j2kLossless:
    case TS.j2k:
      samples = await decodeWithCodec('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', encoded!, pm);
      planar = false;
      break;
    case TS.deflated:
      throw new DicomError('Deflated Explicit VR Little Endian transfer syntax is not supported; convert with dcmconv +te');
    default:
      throw new DicomError(`unsupported transfer syntax ${ts}`);
  }

  const pixels = pm.rows * pm.columns;
  const needed = pixels * pm.samplesPerPixel;
  if (samples.length < needed) throw new DicomError(`pixel data hold ${samples.length} samples, ${needed} expected for ${pm.columns}x${pm.rows}x${pm.samplesPerPixel} (truncated file?)`);

  let data: Float32Array;
  if (pm.samplesPerPixel === 3) {
    if (!['RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_RCT', 'YBR_ICT'].includes(pm.photometric)) throw new DicomError(`unsupported Photometric Interpretation ${pm.photometric}`);
    // Codecs return RGB; uncompressed YBR_FULL stores luminance in the first plane.
    data = pm.photometric === 'YBR_FULL' && (ts === TS.explicitLE || ts === TS.implicitLE || ts === TS.rle) ? firstPlane(samples, pixels, planar) : rgbToGrey(samples, pixels, planar);
  } else {
    if (!pm.photometric.startsWith('MONOCHROME')) throw new DicomError(`unsupported Photometric Interpretation ${pm.photometric} for a single-sample image`);
    data = new Float32Array(pixels);
    const mask = pm.bitsStored < pm.bitsAllocated && pm.bitsStored < 32 ? 2 ** pm.bitsStored - 1 : 0;
    for (let i = 0; i < pixels; i++) {
      let v = samples[i]!;
      if (mask) {
        // Keep only the stored bits; sign-extend them for signed data.
        v = v & mask;
        if (pm.signed && v > mask >>> 1) v -= mask + 1;
      }
      data[i] = v;
    }
  }

  const slope = ds.floatString('x00281053') ?? 1;
  const intercept = ds.floatString('x00281052') ?? 0;
  if (slope !== 1 || intercept !== 0) for (let i = 0; i < pixels; i++) data[i] = data[i]! * slope + intercept;

  const center = ds.floatString('x00281050', 0);
  const width = ds.floatString('x00281051', 0);
  return {
    width: pm.columns,
    height: pm.rows,
    data,
    bitDepth: pm.bitsStored,
    inverted: pm.photometric === 'MONOCHROME1',
    window: center !== undefined && width !== undefined && width > 0 ? { center, width } : undefined,
    encoding: `dicom/${TS_NAMES[ts] ?? ts}`,
    dicom: dicomReference(ds),
  };
}

/** The identifiers and pixel spacing a derived object needs (undefined without the UIDs). */
function dicomReference(ds: dicomParser.DataSet): DicomReference | undefined {
  const str = (tag: string): string | undefined => ds.string(tag)?.trim() || undefined;
  const [sopClassUid, sopInstanceUid, studyInstanceUid, seriesInstanceUid] = ['x00080016', 'x00080018', 'x0020000d', 'x0020000e'].map(str);
  if (!sopClassUid || !sopInstanceUid || !studyInstanceUid || !seriesInstanceUid) return undefined;
  const spacing = (tag: string): [number, number] | undefined => {
    const v = str(tag)?.split('\\').map(Number);
    return v && v.length === 2 && v.every((x) => Number.isFinite(x) && x > 0) ? [v[0]!, v[1]!] : undefined;
  };
  const pixel = spacing('x00280030');
  const imager = pixel ? undefined : spacing('x00181164');
  return {
    sopClassUid,
    sopInstanceUid,
    studyInstanceUid,
    seriesInstanceUid,
    frameOfReferenceUid: str('x00200052'),
    patientId: str('x00100020'),
    patientName: str('x00100010'),
    patientBirthDate: str('x00100030'),
    patientSex: str('x00100040'),
    studyDate: str('x00080020'),
    studyTime: str('x00080030'),
    studyId: str('x00200010'),
    accessionNumber: str('x00080050'),
    referringPhysicianName: str('x00080090'),
    patientOrientation: str('x00200020')?.split('\\'),
    pixelSpacing: pixel ?? imager,
    pixelSpacingSource: pixel ? 'PixelSpacing' : imager ? 'ImagerPixelSpacing' : undefined,
  };
}

function firstPlane(samples: Samples, pixels: number, planar: boolean): Float32Array {
  const out = new Float32Array(pixels);
  for (let i = 0; i < pixels; i++) out[i] = planar ? samples[i]! : samples[3 * i]!;
  return out;
}

function frameFragments(ds: dicomParser.DataSet, element: dicomParser.Element): Uint8Array {
  try {
    const frames = ds.intString('x00280008') ?? 1;
    const fragments = element.fragments ?? [];
    if (frames <= 1) return dicomParser.readEncapsulatedPixelDataFromFragments(ds, element, 0, fragments.length) as Uint8Array;
    const table = element.basicOffsetTable?.length ? element.basicOffsetTable : dicomParser.createJPEGBasicOffsetTable(ds, element);
    return new Uint8Array(dicomParser.readEncapsulatedImageFrame(ds, element, 0, table));
  } catch (err) {
    throw new DicomError(`cannot read the encapsulated pixel data (${err instanceof Error ? err.message : String(err)})`);
  }
}

function nativeSamples(bytes: Uint8Array, element: dicomParser.Element, pm: PixelModule, bigEndian: boolean): Samples {
  const count = pm.rows * pm.columns * pm.samplesPerPixel;
  const bytesPer = pm.bitsAllocated / 8;
  const available = Math.min(element.length, bytes.length - element.dataOffset);
  if (available < count * bytesPer) {
    throw new DicomError(`pixel data hold ${Math.max(0, available)} bytes, ${count * bytesPer} expected for ${pm.columns}x${pm.rows} at ${pm.bitsAllocated} bits (truncated file?)`);
  }
  // Copy out before viewing: the element may start at an odd offset (LIBRARIES.md), and a Buffer's
  // slice is a view into a larger pool.
  const raw = new Uint8Array(bytes.subarray(element.dataOffset, element.dataOffset + count * bytesPer));
  if (bigEndian && bytesPer > 1) {
    for (let i = 0; i < raw.length; i += bytesPer) raw.subarray(i, i + bytesPer).reverse();
  }
  return viewSamples(raw.buffer, pm, count);
}

function viewSamples(buffer: ArrayBufferLike, pm: PixelModule, count: number): Samples {
  if (pm.bitsAllocated === 8) return pm.signed ? new Int8Array(buffer, 0, count) : new Uint8Array(buffer, 0, count);
  if (pm.bitsAllocated === 16) return pm.signed && pm.bitsStored === 16 ? new Int16Array(buffer, 0, count) : new Uint16Array(buffer, 0, count);
  return pm.signed ? new Int32Array(buffer, 0, count) : new Uint32Array(buffer, 0, count);
}

/** RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, each segment PackBits-coded. */
export function decodeRle(frame: Uint8Array, pm: PixelModule): Samples {
  if (frame.length < 64) throw new DicomError('RLE frame is shorter than its 64-byte header');
  const header = new DataView(frame.buffer, frame.byteOffset, 64);
  const segments = header.getUint32(0, true);
  const bytesPer = pm.bitsAllocated / 8;
  if (segments !== bytesPer * pm.samplesPerPixel) throw new DicomError(`RLE frame has ${segments} segments, ${bytesPer * pm.samplesPerPixel} expected`);
  const pixels = pm.rows * pm.columns;
  const out = new Uint8Array(pixels * pm.samplesPerPixel * bytesPer);
  for (let s = 0; s < segments; s++) {
    const start = header.getUint32(4 + 4 * s, true);
    const end = s + 1 < segments ? header.getUint32(8 + 4 * s, true) : frame.length;
    const sample = Math.floor(s / bytesPer);
    // Segment 0 of a sample holds its most significant bytes; samples are little endian in memory.
    const byteInSample = bytesPer - 1 - (s % bytesPer);
    let o = 0;
    let i = start;
    const put = (v: number): void => {
      if (o < pixels) out[(sample * pixels + o) * bytesPer + byteInSample] = v;
      o++;
    };
    while (i < end && o < pixels) {
      const n = frame[i++]!;
      if (n < 128) {
        for (let k = 0; k <= n && i < end; k++) put(frame[i++]!);
      } else if (n > 128) {
        const v = frame[i++]!;
        for (let k = 0; k < 257 - n; k++) put(v);
      }
    }
    if (o < pixels) throw new DicomError(`RLE segment ${s} decodes to ${o} of ${pixels} pixels (truncated?)`);
  }
  return viewSamples(out.buffer, pm, pixels * pm.samplesPerPixel);
}

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned?: boolean };
  delete?(): void;
}

const codecs = new Map<string, Promise<Record<string, new () => WasmDecoder>>>();

function loadCodec(module: string): Promise<Record<string, new () => WasmDecoder>> {
  let lib = codecs.get(module);
  if (!lib) {
    const factory = require(module) as ((opts: object) => Promise<Record<string, new () => WasmDecoder>>) | { default: (opts: object) => Promise<Record<string, new () => WasmDecoder>> };
    const f = typeof factory === 'function' ? factory : factory.default;
    // The emscripten modules print to stdout unless given print hooks.
    lib = f({ print: () => undefined, printErr: () => undefined });
    codecs.set(module, lib);
  }
  return lib;
}

async function decodeWithCodec(module: string, className: string, encoded: Uint8Array, pm: PixelModule): Promise<Samples> {
  const lib = await loadCodec(module);
  const decoder = new lib[className]!();
  try {
    decoder.getEncodedBuffer(encoded.length).set(encoded);
    try {
      decoder.decode();
    } catch (err) {
      throw new DicomError(`${className} failed: ${typeof err === 'number' ? `codec error ${err}` : err instanceof Error ? err.message : String(err)}`);
    }
    const info = decoder.getFrameInfo();
    if (info.width !== pm.columns || info.height !== pm.rows) {
      throw new DicomError(`compressed frame is ${info.width}x${info.height}, the header says ${pm.columns}x${pm.rows}`);
    }
    const decoded = new Uint8Array(decoder.getDecodedBuffer()); // copy out of the wasm heap
    const count = pm.rows * pm.columns * info.componentCount;
    if (info.bitsPerSample > 8) return pm.signed ? new Int16Array(decoded.buffer, 0, count) : new Uint16Array(decoded.buffer, 0, count);
    return new Uint8Array(decoded.buffer, 0, count);
  } finally {
    decoder.delete?.();
  }
}

async function decodeJpegLossless(encoded: Uint8Array, pm: PixelModule): Promise<Samples> {
  const { Decoder } = (await import('jpeg-lossless-decoder-js')) as unknown as { Decoder: new () => { decode(b: ArrayBuffer, o: number, l: number, n: number): Uint8Array | Uint16Array | Int16Array } };
  const decoder = new Decoder();
  const copy = new Uint8Array(encoded); // own buffer: the decoder reads copy.buffer from offset 0
  try {
    const out = decoder.decode(copy.buffer, 0, copy.length, pm.bitsAllocated > 8 ? 2 : 1);
    if (pm.bitsAllocated > 8 && pm.signed && pm.bitsStored === 16) return new Int16Array(out.buffer, out.byteOffset, out.length);
    return out;
  } catch (err) {
    throw new DicomError(`JPEG lossless decoding failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
