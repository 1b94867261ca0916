/**
 * ITK MetaImage (.mha, or a .mhd header with its voxels in a file beside it): how grand-challenge.org
 * and ITK-based pipelines ship images and masks (chest radiograph challenges among them). The
 * format is a text header of `Key = Value` lines (ITK's MetaIO documents it) and the raw voxels,
 * zlib-compressed when CompressedData says so; it is read here, no npm package reading it without
 * ITK's whole runtime. Voxels are read as stored, the first axis across as ITK writes a 2-D image
 * (TransformMatrix and Offset are not applied, as for NIfTI); one slice only.
 */
import { gunzipSync, unzlibSync, zlibSync } from 'fflate';
import type { MetaImageReference, PixelSpacing, RasterSamples } from './grey-image.js';

/** The longest header line read: a longer one is no MetaImage header. */
const LONGEST_LINE = 4096;

/** A MetaImage header: text whose first line is one of MetaIO's keys. */
export function isMetaImage(bytes: Uint8Array): boolean {
  const head = new TextDecoder('latin1').decode(bytes.subarray(0, 64));
  return /^\s*(ObjectType|NDims|ObjectSubType|Comment|TransformType|DimSize|ElementType)\s*=/i.test(head);
}

/** MetaIO's element types: bytes per value and how to read one. */
const ELEMENT_TYPES: Record<string, { bytes: number; bits: number; float?: boolean; read: (v: DataView, o: number, le: boolean) => number }> = {
  MET_CHAR: { bytes: 1, bits: 8, read: (v, o) => v.getInt8(o) },
  MET_UCHAR: { bytes: 1, bits: 8, read: (v, o) => v.getUint8(o) },
  MET_SHORT: { bytes: 2, bits: 16, read: (v, o, le) => v.getInt16(o, le) },
  MET_USHORT: { bytes: 2, bits: 16, read: (v, o, le) => v.getUint16(o, le) },
  MET_INT: { bytes: 4, bits: 32, read: (v, o, le) => v.getInt32(o, le) },
  MET_UINT: { bytes: 4, bits: 32, read: (v, o, le) => v.getUint32(o, le) },
  // MetaIO's LONG is 4 bytes whatever the platform's long.
  MET_LONG: { bytes: 4, bits: 32, read: (v, o, le) => v.getInt32(o, le) },
  MET_ULONG: { bytes: 4, bits: 32, read: (v, o, le) => v.getUint32(o, le) },
  MET_FLOAT: { bytes: 4, bits: 32, float: true, read: (v, o, le) => v.getFloat32(o, le) },
  MET_DOUBLE: { bytes: 8, bits: 32, float: true, read: (v, o, le) => v.getFloat64(o, le) },
};

/**
 * Decode a MetaImage. `dataFile` reads the file ElementDataFile names (relative to the header's
 * folder) for a .mhd; without it only a .mha (ElementDataFile = LOCAL) can be read.
 */
export async function decodeMetaImage(bytes: Uint8Array, maxPixels: number, dataFile?: (name: string) => Promise<Uint8Array>): Promise<RasterSamples> {
  const { fields, dataStart } = parseHeader(bytes);
  const field = (key: string): string | undefined => fields.get(key.toLowerCase());
  const numbers = (key: string): number[] => (field(key) ?? '').split(/\s+/).filter(Boolean).map(Number);
  const dims = numbers('DimSize');
  if (dims.length < 2 || dims.some((d) => !Number.isInteger(d) || d < 1)) throw new Error(`corrupt MetaImage header (DimSize '${field('DimSize') ?? ''}')`);
  const [width, height] = [dims[0]!, dims[1]!];
  const slices = dims.slice(2).reduce((a, b) => a * b, 1);
  if (slices > 1) throw new Error(`unsupported MetaImage volume of ${dims.join(' x ')} voxels: not a 2-D image (Eden reads a MetaImage of one slice; save the slices to use as 2-D files)`);
  if (width * height > maxPixels) throw new Error(`image too large (${width}x${height}, over ${maxPixels} pixels)`);
  const typeName = (field('ElementType') ?? '').toUpperCase();
  const type = ELEMENT_TYPES[typeName];
  if (!type) throw new Error(`unsupported MetaImage ElementType '${typeName || 'none'}' (Eden reads MET_CHAR to MET_ULONG, MET_FLOAT and MET_DOUBLE)`);
  const channels = Number(field('ElementNumberOfChannels') ?? 1);
  if (![1, 3, 4].includes(channels)) throw new Error(`unsupported MetaImage of ${channels} channels (Eden reads 1, 3 and 4)`);
  const msb = /^true$/i.test(field('BinaryDataByteOrderMSB') ?? field('ElementByteOrderMSB') ?? 'False');
  const count = width * height * channels;
  const needed = count * type.bytes;
  const source = field('ElementDataFile') ?? '';
  let data: Uint8Array;
  if (/^local$/i.test(source)) data = bytes.subarray(dataStart);
  else if (!source || /^list\b/i.test(source) || source.includes('%')) throw new Error(`unsupported MetaImage ElementDataFile '${source || 'none'}' (Eden reads LOCAL, or one file beside the header)`);
  else if (!dataFile) throw new Error(`a MetaImage header whose voxels are in ${source}, which was not given with it`);
  else {
    data = await dataFile(source);
    // HeaderSize: bytes before the voxels in that file (-1: the voxels are its end).
    const skip = Number(field('HeaderSize') ?? 0);
    if (skip > 0) data = data.subarray(skip);
  }
  if (/^true$/i.test(field('CompressedData') ?? 'False')) data = inflate(data);
  else if (Number(field('HeaderSize') ?? 0) === -1) data = data.subarray(Math.max(0, data.length - needed));
  if (data.length < needed) throw new Error(`truncated image data (MetaImage of ${width}x${height} ${typeName} needs ${needed} bytes of voxels, ${data.length} given)`);
  const view = new DataView(data.buffer, data.byteOffset, needed);
  // Bytes as bytes: colour is then reduced to grey by libvips, as a PNG's is (decode.ts).
  const samples = typeName === 'MET_UCHAR' ? data.slice(0, count) : new Float64Array(count);
  if (samples instanceof Float64Array) for (let k = 0; k < count; k++) samples[k] = type.read(view, k * type.bytes, !msb);
  const spacing = numbers('ElementSpacing');
  // ElementSpacing is across, then down, in millimetres (ITK's convention for medical images);
  // writers print float32 spacings at double's length (0.69999998807907104): read to float32's digits.
  const mm = (v: number): number => Number(v.toPrecision(7));
  const pixelSpacing: PixelSpacing | undefined = spacing.length >= 2 && spacing[0]! > 0 && spacing[1]! > 0 ? { mm: [mm(spacing[1]!), mm(spacing[0]!)], from: 'MetaImage ElementSpacing' } : undefined;
  const geometry = GEOMETRY.flatMap((key) => (field(key) !== undefined ? [`${key} = ${field(key)}`] : []));
  const metaimage = { geometry, compressed: /^true$/i.test(field('CompressedData') ?? 'False') };
  return { width, height, channels, samples, bitDepth: type.bits, encoding: `metaimage/${typeName.slice(4).toLowerCase()}`, ...(type.float && { floatingPoint: true }), ...(pixelSpacing && { spacing: pixelSpacing }), metaimage };
}

/** The header keys that place an image, kept in a mask written for it (in MetaIO's order). */
const GEOMETRY = ['NDims', 'TransformMatrix', 'Offset', 'CenterOfRotation', 'AnatomicalOrientation', 'ElementSpacing', 'DimSize'];

/**
 * A 0 / 1 mask [height * width] as a .mha laid on its source image: the source's geometry lines,
 * MET_UCHAR voxels in the file (zlib-compressed when the source was).
 */
export function metaImageMask(source: MetaImageReference, mask: Uint8Array): Uint8Array {
  const voxels = source.compressed ? zlibSync(mask) : mask;
  const header = ['ObjectType = Image', ...source.geometry.filter((l) => l.startsWith('NDims')), 'BinaryData = True', 'BinaryDataByteOrderMSB = False', `CompressedData = ${source.compressed ? 'True' : 'False'}`, ...(source.compressed ? [`CompressedDataSize = ${voxels.length}`] : []), ...source.geometry.filter((l) => !l.startsWith('NDims')), 'ElementType = MET_UCHAR', 'ElementDataFile = LOCAL'];
  const text = new TextEncoder().encode(`${header.join('\n')}\n`);
  const out = new Uint8Array(text.length + voxels.length);
  out.set(text);
  out.set(voxels, text.length);
  return out;
}

/** The header's fields (keys lower-cased) and where the bytes after its last line begin. */
function parseHeader(bytes: Uint8Array): { fields: Map<string, string>; dataStart: number } {
  const fields = new Map<string, string>();
  let at = 0;
  // Lines up to ElementDataFile, which MetaIO writes last: a LOCAL file's voxels follow its newline.
  while (at < bytes.length) {
    let end = bytes.indexOf(0x0a, at);
    if (end < 0) end = bytes.length;
    if (end - at > LONGEST_LINE) throw new Error(`corrupt MetaImage header (a line of more than ${LONGEST_LINE} bytes)`);
    const line = new TextDecoder('latin1').decode(bytes.subarray(at, end)).replace(/\r$/, '');
    at = end + 1;
    const m = /^\s*([A-Za-z_]\w*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) {
      if (line.trim()) throw new Error(`corrupt MetaImage header (line '${line.slice(0, 40)}')`);
      continue;
    }
    fields.set(m[1]!.toLowerCase(), m[2]!);
    if (m[1]!.toLowerCase() === 'elementdatafile') return { fields, dataStart: at };
  }
  throw new Error('corrupt MetaImage header (no ElementDataFile line)');
}

function inflate(data: Uint8Array): Uint8Array {
  try {
    return data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : unzlibSync(data);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(/EOF/i.test(msg) ? `truncated image data (zlib: ${msg})` : `corrupt compressed MetaImage data (${msg})`);
  }
}
