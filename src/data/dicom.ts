/**
 * DICOM decoding: dicom-parser reads the data set; pixel data are decoded for the transfer
 * syntaxes radiographs use in practice:
 *   uncompressed (implicit/explicit little endian, explicit big endian), RLE (PS3.5 Annex G, here),
 *   JPEG baseline/extended/progressive 8-bit (libjpeg-turbo), JPEG lossless (jpeg-lossless-decoder-js),
 *   JPEG-LS (CharLS), JPEG 2000 (OpenJPEG), High-Throughput JPEG 2000 (OpenJPH; the transfer
 *   syntaxes DICOM added in 2023),
 *   and Deflated Explicit VR Little Endian (the data set inflated with fflate).
 * Files without the 128-byte preamble and 'DICM' (bare data sets, as some archives write them) are
 * read too: the transfer syntax is inferred from the first element, as DCMTK does.
 * Photometric interpretations: MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422 (uncompressed: two Y
 * samples then Cb, Cr per pair of pixels), the YBR of JPEG codecs, and PALETTE COLOR (through its
 * lookup tables); Bits Allocated 1 (bit-packed, e.g. overlays and segmentations), 8, 16, 32.
 * Then the modality rescale (slope/intercept) is applied; MONOCHROME1 and the VOI window are
 * recorded for intensity normalisation. Multi-frame files: the first frame is used.
 * A valid DICOM object without pixel data (DICOMDIR, structured report, RT plan, waveform...)
 * raises NotAnImageError, so that callers report it as "not an image", not as corrupt.
 */
import dicomParser from 'dicom-parser';
import { inflateSync } from 'fflate';
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import { bt601, firstChannel, rgbToGrey, type DicomReference, type GreyImage } from './grey-image.js';
import { SEG_SOP_CLASS } from './dicom-seg.js';
import { decodeWithWasm, type WasmCodec } from './wasm-codecs.js';

const require = createRequire(import.meta.url);

const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  explicitBE: '1.2.840.10008.1.2.2',
  deflated: '1.2.840.10008.1.2.1.99',
  rle: '1.2.840.10008.1.2.5',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
  jpegExtended: '1.2.840.10008.1.2.4.51',
  /** Retired, but what DCMTK's img2dcm writes for a progressive JPEG, which it wraps as it is. */
  jpegProgressive: '1.2.840.10008.1.2.4.55',
  jpegLossless: '1.2.840.10008.1.2.4.57',
  jpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  jpegLS: '1.2.840.10008.1.2.4.80',
  jpegLSNearLossless: '1.2.840.10008.1.2.4.81',
  j2kLossless: '1.2.840.10008.1.2.4.90',
  j2k: '1.2.840.10008.1.2.4.91',
  htj2kLossless: '1.2.840.10008.1.2.4.201',
  htj2kLosslessRpcl: '1.2.840.10008.1.2.4.202',
  htj2k: '1.2.840.10008.1.2.4.203',
} as const;

const TS_NAMES: Record<string, string> = {
  [TS.implicitLE]: 'implicit-le',
  [TS.explicitLE]: 'explicit-le',
  [TS.explicitBE]: 'explicit-be',
  [TS.deflated]: 'deflated',
  [TS.rle]: 'rle',
  [TS.jpegBaseline]: 'jpeg-baseline',
  [TS.jpegExtended]: 'jpeg-extended',
  [TS.jpegProgressive]: 'jpeg-progressive',
  [TS.jpegLossless]: 'jpeg-lossless',
  [TS.jpegLosslessSV1]: 'jpeg-lossless',
  [TS.jpegLS]: 'jpeg-ls',
  [TS.jpegLSNearLossless]: 'jpeg-ls',
  [TS.j2kLossless]: 'jpeg2000',
  [TS.j2k]: 'jpeg2000',
  [TS.htj2kLossless]: 'htj2k',
  [TS.htj2kLosslessRpcl]: 'htj2k',
  [TS.htj2k]: 'htj2k',
};

export class DicomError extends Error {}

/** A readable DICOM object that holds no image (no Pixel Data). */
export class NotAnImageError extends DicomError {}

/** A DICOM Segmentation object: masks, read as such when a mask is asked for (decode.ts). */
export class SegmentationObjectError extends NotAnImageError {}

/** dicom-parser's hook for Deflated Explicit VR Little Endian: inflate everything after the meta header. */
function inflater(byteArray: Uint8Array, position: number): Uint8Array {
  const inflated = inflateSync(byteArray.subarray(position));
  const full = new Uint8Array(position + inflated.length);
  full.set(byteArray.subarray(0, position));
  full.set(inflated, position);
  return full;
}

/**
 * The transfer syntax of a bare data set (no preamble, no meta header), from its first element:
 * explicit VR when bytes 4-5 spell a VR, else implicit VR; big endian when the group number only
 * makes sense byte-swapped.
 */
export function inferBareTransferSyntax(bytes: Uint8Array): string | undefined {
  if (bytes.length < 8) return undefined;
  const groupLE = bytes[0]! | (bytes[1]! << 8);
  const groupBE = (bytes[0]! << 8) | bytes[1]!;
  const vr = String.fromCharCode(bytes[4]!, bytes[5]!);
  const explicit = /^(AE|AS|AT|CS|DA|DS|DT|FD|FL|IS|LO|LT|OB|OD|OF|OL|OV|OW|PN|SH|SL|SQ|SS|ST|SV|TM|UC|UI|UL|UN|UR|US|UT|UV)$/.test(vr);
  if (groupLE >= 0x0002 && groupLE <= 0x0028) return explicit ? TS.explicitLE : TS.implicitLE;
  if (explicit && groupBE >= 0x0002 && groupBE <= 0x0028) return TS.explicitBE;
  return undefined;
}

/** True when `bytes` look like a bare DICOM data set (see inferBareTransferSyntax). */
export function looksLikeBareDicom(bytes: Uint8Array): boolean {
  return inferBareTransferSyntax(bytes) !== undefined;
}

function parse(bytes: Uint8Array, untilTag?: string): { ds: dicomParser.DataSet; ts: string } {
  const message = (err: unknown): string => (typeof err === 'string' ? err : err instanceof Error ? err.message : String((err as { exception?: string }).exception ?? err)).replace(/^dicomParser\.\w+: /, '');
  try {
    const ds = dicomParser.parseDicom(bytes, { inflater, untilTag } as dicomParser.ParseDicomOptions);
    return { ds, ts: ds.string('x00020010') ?? TS.implicitLE };
  } catch (err) {
    const first = message(err);
    if (/buffer overrun/.test(first)) throw new DicomError(`truncated DICOM file: the data set ends inside an element (${first})`);
    if (!/DICM prefix not found/.test(first)) throw new DicomError(`not a readable DICOM file (${first})`);
    const ts = inferBareTransferSyntax(bytes);
    if (!ts) throw new DicomError(`not a readable DICOM file (no 'DICM' marker, and the first bytes are not a DICOM data set)`);
    try {
      return { ds: dicomParser.parseDicom(bytes, { TransferSyntaxUID: ts, untilTag } as dicomParser.ParseDicomOptions), ts };
    } catch (err2) {
      throw new DicomError(`not a readable DICOM file (a data set without meta header, read as ${TS_NAMES[ts] ?? ts}: ${message(err2)})`);
    }
  }
}

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

export async function decodeDicom(input: Uint8Array): Promise<GreyImage> {
  const { ds, ts } = parse(input);
  // After inflation (deflated syntax) the data set lives in a new array.
  const bytes = ds.byteArray;
  const pixelElement = ds.elements['x7fe00010'];
  if (!pixelElement) {
    const sop = ds.string('x00080016') ?? (ds.string('x00041200') !== undefined || ds.elements['x00041220'] ? 'DICOMDIR' : undefined);
    throw new NotAnImageError(`a DICOM object without pixel data (${sop ? `SOP Class ${SOP_NAMES[sop] ?? sop}` : 'no SOP Class'}): not an image`);
  }
  // A Segmentation object's pixels are masks (a 1-bit frame per segment), not a picture of anatomy:
  // in a folder of exported studies it lies beside the images it annotates.
  if (ds.string('x00080016') === SEG_SOP_CLASS) throw new SegmentationObjectError(`a DICOM Segmentation object (SEG${segmentationNote(ds)}): masks, not an image (read as its image's mask when its folder is given as --masks)`);
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
  if (![1, 8, 16, 32].includes(pm.bitsAllocated)) throw new DicomError(`unsupported Bits Allocated ${pm.bitsAllocated} (Eden reads 1, 8, 16 and 32)`);

  const encoded = pixelElement.encapsulatedPixelData ? frameFragments(ds, pixelElement) : undefined;
  let samples: Samples;
  let planar = pm.planar;
  switch (ts) {
    case TS.implicitLE:
    case TS.explicitLE:
    case TS.explicitBE:
    case TS.deflated:
      samples = nativeSamples(bytes, pixelElement, pm, ts === TS.explicitBE);
      break;
    case TS.rle:
      samples = decodeRle(encoded!, pm);
      planar = true; // RLE stores each sample plane as its own segment(s)
      break;
    case TS.jpegBaseline:
    case TS.jpegExtended:
    case TS.jpegProgressive:
      // libjpeg-turbo's 8-bit build cannot read 12-bit samples (Process 4); dcmjs-codecs carries the
      // IJG 12-bit decoder (the one DCMTK and fo-dicom use), so those frames go there.
      samples = pm.bitsStored > 8 ? await decodeJpeg12(encoded!, pm) : await decodeWithCodec('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', encoded!, pm);
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
    case TS.htj2kLossless:
    case TS.htj2kLosslessRpcl:
    case TS.htj2k:
      samples = await decodeWithCodec('@cornerstonejs/codec-openjph', 'HTJ2KDecoder', encoded!, pm);
      planar = false;
      break;
    default:
      throw new DicomError(`unsupported transfer syntax ${ts}`);
  }

  const pixels = pm.rows * pm.columns;
  const native = ts === TS.implicitLE || ts === TS.explicitLE || ts === TS.explicitBE || ts === TS.deflated;
  // Uncompressed YBR_FULL_422 stores Y0 Y1 Cb Cr for each pair of pixels: 2 samples per pixel.
  const ybr422 = pm.samplesPerPixel === 3 && pm.photometric === 'YBR_FULL_422' && native;
  const needed = ybr422 ? 2 * pixels : pixels * pm.samplesPerPixel;
  if (samples.length < needed) throw new DicomError(`pixel data hold ${samples.length} samples, ${needed} expected for ${pm.columns}x${pm.rows}x${pm.samplesPerPixel}${ybr422 ? ' (YBR_FULL_422)' : ''} (truncated file?)`);

  let data: Float32Array;
  let bitDepth = pm.bitsStored;
  if (ybr422) {
    // Luminance is Y itself: the first two samples of every group of four.
    data = new Float32Array(pixels);
    for (let i = 0; i < pixels; i++) data[i] = samples[(i >> 1) * 4 + (i & 1)]!;
  } else if (pm.photometric === 'PALETTE COLOR') {
    if (pm.samplesPerPixel !== 1) throw new DicomError('PALETTE COLOR needs one sample per pixel');
    const palette = paletteLookup(ds);
    data = new Float32Array(pixels);
    for (let i = 0; i < pixels; i++) data[i] = palette.grey(samples[i]!);
    bitDepth = palette.bits;
  } else if (pm.samplesPerPixel === 3) {
    if (!['RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_RCT', 'YBR_ICT'].includes(pm.photometric)) throw new DicomError(`unsupported Photometric Interpretation ${pm.photometric}`);
    // Codecs return RGB; uncompressed YBR_FULL stores luminance in the first plane.
    data = pm.photometric === 'YBR_FULL' && (ts === TS.explicitLE || ts === TS.implicitLE || ts === TS.rle) ? firstChannel(samples, pixels, planar ? 1 : 3) : rgbToGrey(samples, pixels, planar);
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
  const frames = ds.intString('x00280008') ?? 1;
  return {
    width: pm.columns,
    height: pm.rows,
    data,
    bitDepth,
    inverted: pm.photometric === 'MONOCHROME1',
    window: center !== undefined && width !== undefined && width > 0 ? { center, width } : undefined,
    encoding: `dicom/${TS_NAMES[ts] ?? ts}`,
    dicom: dicomReference(ds),
    ...(frames > 1 ? { frames } : {}),
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

/** A SEG's segment labels and the image it references, for a message: " of 'heart', 'lungs', for image 1.2.3". */
function segmentationNote(ds: dicomParser.DataSet): string {
  const labels = (ds.elements['x00620002']?.items ?? []).map((item) => `'${item.dataSet?.string('x00620005') ?? ''}'`);
  const image = referencedImage(ds);
  return `${labels.length ? ` of ${labels.length > 4 ? [...labels.slice(0, 4), '...'].join(', ') : labels.join(', ')}` : ''}${image ? `, for image ${image}` : ''}`;
}

/**
 * The one image a SEG references: by its Referenced Series Sequence's instances, else by its
 * frames' Derivation Image / Source Image Sequences (where highdicom and dcmqi also put it);
 * undefined when none, or several (a SEG of a series).
 */
function referencedImage(ds: dicomParser.DataSet): string | undefined {
  const uids = new Set<string>();
  const items = (e: dicomParser.Element | undefined): dicomParser.DataSet[] => (e?.items ?? []).flatMap((i) => (i.dataSet ? [i.dataSet] : []));
  for (const series of items(ds.elements['x00081115'])) for (const instance of items(series.elements['x0008114a'])) uids.add(instance.string('x00081155') ?? '');
  if (!uids.size) {
    for (const frame of items(ds.elements['x52009230'])) {
      for (const derivation of items(frame.elements['x00089124'])) for (const source of items(derivation.elements['x00082112'])) uids.add(source.string('x00081155') ?? '');
    }
  }
  uids.delete('');
  return uids.size === 1 ? [...uids][0] : undefined;
}

/** Who a DICOM file is, from its header (its pixel data not read): SOP Class and Instance UIDs, and for a SEG the image it masks. */
export interface DicomIdentity {
  sopClassUid?: string;
  sopInstanceUid?: string;
  /** A SEG's one referenced image (SOP Instance UID). */
  segmentationOf?: string;
}

/** The DICOM file's identity; undefined when it is not readable DICOM. */
export async function readDicomIdentity(file: string): Promise<DicomIdentity | undefined> {
  // A header fits the first 64 KiB of almost every file; else the whole file is read.
  for (const limit of [65536, Infinity]) {
    let bytes: Uint8Array;
    try {
      bytes = limit === Infinity ? await fs.readFile(file) : await readStart(file, limit);
    } catch {
      return undefined;
    }
    try {
      const { ds } = parse(bytes, 'x7fe00010');
      const sopClassUid = ds.string('x00080016');
      return { sopClassUid, sopInstanceUid: ds.string('x00080018'), ...(sopClassUid === SEG_SOP_CLASS && { segmentationOf: referencedImage(ds) }) };
    } catch {
      if (bytes.length < limit) return undefined;
    }
  }
  return undefined;
}

async function readStart(file: string, bytes: number): Promise<Uint8Array> {
  const handle = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buf, 0, bytes, 0);
    return new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Known SOP classes without images, for messages. */
const SOP_NAMES: Record<string, string> = {
  '1.2.840.10008.1.3.10': 'Media Storage Directory (DICOMDIR)',
  '1.2.840.10008.5.1.4.1.1.88.11': 'Basic Text SR',
  '1.2.840.10008.5.1.4.1.1.88.22': 'Enhanced SR',
  '1.2.840.10008.5.1.4.1.1.88.33': 'Comprehensive SR',
  '1.2.840.10008.5.1.4.1.1.481.5': 'RT Plan',
  '1.2.840.10008.5.1.4.1.1.9.1.1': '12-lead ECG Waveform',
  '1.2.840.10008.5.1.4.1.1.104.1': 'Encapsulated PDF',
  '1.2.840.10008.5.1.4.1.1.11.1': 'Grayscale Softcopy Presentation State',
  '1.2.840.10008.5.1.4.1.1.66': 'Raw Data',
};

/**
 * PALETTE COLOR (PS3.3 C.7.6.3.1.5): each stored value indexes three lookup tables (descriptor:
 * entries (0 = 65536), first mapped value, bits per entry); values below the first map to entry 0,
 * above the last to the last. Returns the luminance of the looked-up colour, in the tables' range.
 */
function paletteLookup(ds: dicomParser.DataSet): { grey: (v: number) => number; bits: number } {
  const table = (descriptor: string, data: string): Float32Array => {
    const d = ds.elements[descriptor];
    const el = ds.elements[data];
    if (!d || !el) throw new DicomError(`PALETTE COLOR without its lookup table (${descriptor.slice(1)}/${data.slice(1)}); segmented palettes are not read`);
    const entries = ds.uint16(descriptor, 0) || 65536;
    const bits = ds.uint16(descriptor, 2) ?? 16;
    const raw = new Uint8Array(ds.byteArray.subarray(el.dataOffset, el.dataOffset + el.length));
    const out = new Float32Array(entries);
    if (bits <= 8 && el.length < 2 * entries) for (let i = 0; i < entries; i++) out[i] = raw[i]!;
    else {
      const view = new DataView(raw.buffer);
      for (let i = 0; i < entries; i++) out[i] = 2 * i + 1 < raw.length ? view.getUint16(2 * i, true) : 0;
    }
    return out;
  };
  const first = ds.uint16('x00281101', 1) ?? 0;
  const bits = ds.uint16('x00281101', 2) ?? 16;
  const [r, g, b] = [table('x00281101', 'x00281201'), table('x00281102', 'x00281202'), table('x00281103', 'x00281203')];
  const last = r.length - 1;
  return {
    bits,
    grey: (v: number) => {
      const i = Math.min(last, Math.max(0, v - first));
      return bt601(r[i]!, g[i]!, b[i]!);
    },
  };
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
  // YBR_FULL_422 holds two samples per pixel (Y, Y, Cb, Cr for each pair).
  const count = pm.rows * pm.columns * (pm.samplesPerPixel === 3 && pm.photometric === 'YBR_FULL_422' ? 2 : pm.samplesPerPixel);
  if (pm.bitsAllocated === 1) {
    // Bit-packed, least significant bit first, frames contiguous (PS3.5 8.1.1).
    const available = Math.min(element.length, bytes.length - element.dataOffset);
    if (available * 8 < count) throw new DicomError(`pixel data hold ${available} bytes, ${Math.ceil(count / 8)} expected for ${pm.columns}x${pm.rows} at 1 bit (truncated file?)`);
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) out[i] = (bytes[element.dataOffset + (i >> 3)]! >> (i & 7)) & 1;
    return out;
  }
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

async function decodeWithCodec(module: WasmCodec, className: string, encoded: Uint8Array, pm: PixelModule): Promise<Samples> {
  let frame: Awaited<ReturnType<typeof decodeWithWasm>>;
  try {
    frame = await decodeWithWasm(module, className, encoded);
  } catch (err) {
    throw new DicomError((err as Error).message);
  }
  const { info, decoded } = frame;
  if (info.width !== pm.columns || info.height !== pm.rows) {
    throw new DicomError(`compressed frame is ${info.width}x${info.height}, the header says ${pm.columns}x${pm.rows}`);
  }
  const count = pm.rows * pm.columns * info.componentCount;
  if (info.bitsPerSample > 8) return pm.signed ? new Int16Array(decoded.buffer, 0, count) : new Uint16Array(decoded.buffer, 0, count);
  return new Uint8Array(decoded.buffer, 0, count);
}

interface DcmjsCodecs {
  NativeCodecs: { initializeAsync(): Promise<void>; decodeJpeg(ctx: object, params: object): { getDecodedBuffer(): Uint8Array; getWidth(): number; getHeight(): number } };
  Context: new (attrs: object) => object;
}
let dcmjsCodecs: Promise<DcmjsCodecs> | undefined;

/** JPEG Extended with 9-12-bit samples, through dcmjs-codecs' wasm build of the IJG 12-bit library. */
async function decodeJpeg12(encoded: Uint8Array, pm: PixelModule): Promise<Samples> {
  dcmjsCodecs ??= (async () => {
    const lib = require('dcmjs-codecs') as DcmjsCodecs;
    await lib.NativeCodecs.initializeAsync();
    return lib;
  })();
  const { NativeCodecs, Context } = await dcmjsCodecs;
  const context = new Context({
    width: pm.columns,
    height: pm.rows,
    bitsAllocated: pm.bitsAllocated,
    bitsStored: pm.bitsStored,
    samplesPerPixel: pm.samplesPerPixel,
    pixelRepresentation: pm.signed ? 1 : 0,
    planarConfiguration: 0,
    photometricInterpretation: pm.photometric,
    encodedBuffer: encoded,
  });
  let decoded;
  try {
    decoded = NativeCodecs.decodeJpeg(context, { convertColorspaceToRgb: pm.samplesPerPixel === 3 });
  } catch (err) {
    throw new DicomError(`12-bit JPEG decoding failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const bytes = decoded.getDecodedBuffer();
  const count = pm.rows * pm.columns * pm.samplesPerPixel;
  if (!bytes || bytes.byteLength < count * 2) throw new DicomError(`12-bit JPEG decoding gave ${bytes?.byteLength ?? 0} bytes, ${count * 2} expected for ${pm.columns}x${pm.rows}x${pm.samplesPerPixel}`);
  const copy = new Uint8Array(bytes.subarray(0, count * 2)); // own, aligned buffer
  return pm.signed ? new Int16Array(copy.buffer, 0, count) : new Uint16Array(copy.buffer, 0, count);
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
