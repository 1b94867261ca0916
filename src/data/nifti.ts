/**
 * NIfTI-1 and NIfTI-2 images (.nii, .nii.gz) as 2-D images and masks: how nnU-Net, MONAI and many
 * segmentation challenges ship a 2-D dataset (an image and its label map of dims [X, Y] or
 * [X, Y, 1]). The header is parsed by nifti-reader-js; gzip through fflate. Voxels are read as
 * stored: the first axis across, the second down, as ITK, SimpleITK and nnU-Net write a 2-D image
 * (a PNG converted by them reads back as the PNG); the affine is not applied, so an image and a mask
 * written alike lay on each other. A volume (more than one slice) is refused: Eden reads 2-D
 * radiographs, and which slice a user means is not Eden's to guess.
 */
import { Gunzip, gunzipSync, gzipSync } from 'fflate';
import { isNIFTI, NIFTI2, readHeader, type NIFTI1 } from 'nifti-reader-js';
import type { NiftiReference, PixelSpacing, RasterSamples } from './grey-image.js';

/** Enough of a header to read NIfTI-1 (348 bytes) and NIfTI-2 (540). */
const HEADER_BYTES = 544;

/** A gzip stream's first bytes (RFC 1952: ID1, ID2, deflate). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 18 && bytes[0] === 0x1f && bytes[1] === 0x8b && bytes[2] === 8;
}

/** An uncompressed NIfTI-1 or NIfTI-2 file ('n+1' / 'n+2' magic, either byte order). */
export function isNifti(bytes: Uint8Array): boolean {
  return bytes.length >= 348 && isNIFTI(arrayBuffer(bytes.subarray(0, HEADER_BYTES)));
}

/** How each NIfTI datatype's voxels are read: bytes per sample, channels, the bits Eden records. */
interface VoxelType {
  name: string;
  bytes: number;
  channels: number;
  bits: number;
  float?: boolean;
  read: (view: DataView, offset: number, littleEndian: boolean) => number;
}

const VOXEL_TYPES: Record<number, VoxelType> = {
  2: { name: 'uint8', bytes: 1, channels: 1, bits: 8, read: (v, o) => v.getUint8(o) },
  256: { name: 'int8', bytes: 1, channels: 1, bits: 8, read: (v, o) => v.getInt8(o) },
  4: { name: 'int16', bytes: 2, channels: 1, bits: 16, read: (v, o, le) => v.getInt16(o, le) },
  512: { name: 'uint16', bytes: 2, channels: 1, bits: 16, read: (v, o, le) => v.getUint16(o, le) },
  8: { name: 'int32', bytes: 4, channels: 1, bits: 32, read: (v, o, le) => v.getInt32(o, le) },
  768: { name: 'uint32', bytes: 4, channels: 1, bits: 32, read: (v, o, le) => v.getUint32(o, le) },
  // Label maps saved from NumPy's default integers; their values are checked to fit a float32 exactly.
  1024: { name: 'int64', bytes: 8, channels: 1, bits: 32, read: (v, o, le) => Number(v.getBigInt64(o, le)) },
  1280: { name: 'uint64', bytes: 8, channels: 1, bits: 32, read: (v, o, le) => Number(v.getBigUint64(o, le)) },
  16: { name: 'float32', bytes: 4, channels: 1, bits: 32, float: true, read: (v, o, le) => v.getFloat32(o, le) },
  64: { name: 'float64', bytes: 8, channels: 1, bits: 32, float: true, read: (v, o, le) => v.getFloat64(o, le) },
  128: { name: 'rgb24', bytes: 1, channels: 3, bits: 8, read: (v, o) => v.getUint8(o) },
  2304: { name: 'rgba32', bytes: 1, channels: 4, bits: 8, read: (v, o) => v.getUint8(o) },
};

/** Integers a float32 holds exactly. */
const EXACT_IN_FLOAT32 = 2 ** 24;

/**
 * Decode a NIfTI file's one slice (gzip-compressed or not). The header is read first, so a
 * compressed volume or an oversized image is refused before its voxels are decompressed. A scale
 * in the header (scl_slope, scl_inter) is applied, as a DICOM's rescale is; a non-integer one
 * makes the values real-valued.
 */
export function decodeNifti(bytes: Uint8Array, maxPixels: number): RasterSamples & { nifti: NiftiReference } {
  const compressed = isGzip(bytes);
  const head = compressed ? gunzipHead(bytes, HEADER_BYTES) : bytes.subarray(0, HEADER_BYTES);
  if (compressed && head.length < 348 && startsLikeNifti(head)) throw new Error(`truncated image data (the NIfTI header ends after ${head.length} bytes)`);
  const headerBytes = arrayBuffer(head);
  if (!isNIFTI(headerBytes)) throw new Error(compressed ? 'unsupported gzip-compressed file: it holds no NIfTI image (Eden reads .nii.gz; decompress other files first)' : 'corrupt NIfTI header');
  const header: NIFTI1 | NIFTI2 = readHeader(headerBytes);
  const type = VOXEL_TYPES[header.datatypeCode];
  if (!type) throw new Error(`unsupported NIfTI datatype ${header.datatypeCode} (Eden reads 8- to 64-bit integers, float32, float64, RGB24 and RGBA32)`);
  const ndim = header.dims[0]!;
  const dims = header.dims.slice(1, Math.max(ndim, 2) + 1).map((d) => Math.max(1, d));
  const [width, height] = [dims[0]!, dims[1]!];
  const slices = dims.slice(2).reduce((a, b) => a * b, 1);
  if (ndim < 2 || ndim > 7) throw new Error(`corrupt NIfTI header (${ndim} dimensions)`);
  if (slices > 1) throw new Error(`unsupported NIfTI volume of ${dims.join(' x ')} voxels: not a 2-D image (Eden reads a NIfTI of one slice, dims [X, Y] or [X, Y, 1]; save the slices to use as 2-D files)`);
  if (width * height > maxPixels) throw new Error(`image too large (${width}x${height}, over ${maxPixels} pixels)`);
  const data = compressed ? gunzip(bytes) : bytes;
  // A single file's voxels follow its header (and any extensions) at vox_offset; 0 is read as right after the header.
  const offset = header.vox_offset || (header instanceof NIFTI2 ? 544 : 352);
  const count = width * height * type.channels;
  const needed = offset + count * type.bytes;
  if (data.length < needed) throw new Error(`truncated image data (NIfTI of ${width}x${height} ${type.name} needs ${needed} bytes, ${data.length} in the file)`);
  // The first axis runs fastest: voxel (i, j) at i + X j, which is row j, column i of a raster.
  const view = new DataView(data.buffer, data.byteOffset + offset, count * type.bytes);
  // Colour as bytes: reduced to grey by libvips, as a PNG's colour is (decode.ts).
  const samples = type.channels > 1 ? new Uint8Array(count) : new Float64Array(count);
  for (let k = 0; k < count; k++) samples[k] = type.read(view, k * type.bytes, header.littleEndian);
  if (type.bytes === 8 && !type.float && samples.some((v) => Math.abs(v) > EXACT_IN_FLOAT32)) throw new Error(`unsupported NIfTI ${type.name} values beyond +-2^24 (a float32 holds them inexactly; save the image as int32 or float)`);
  const { scl_slope: slope, scl_inter: inter } = header;
  const scaled = type.channels === 1 && Number.isFinite(slope) && slope !== 0 && (slope !== 1 || (Number.isFinite(inter) && inter !== 0));
  if (scaled) for (let k = 0; k < count; k++) samples[k] = samples[k]! * slope + (Number.isFinite(inter) ? inter : 0);
  const realValued = type.float === true || (scaled && !(Number.isInteger(slope) && Number.isInteger(inter)));
  const reference: NiftiReference = { header: head.slice(0, header instanceof NIFTI2 ? 540 : 348), compressed };
  const spacing = spacingOf(header);
  return { width, height, channels: type.channels, samples, bitDepth: type.bits, floatingPoint: realValued, encoding: `nifti/${type.name}`, nifti: reference, ...(spacing && { spacing }) };
}

/** Millimetres per unit of xyzt_units' spatial code (NIfTI-1: 1 metre, 2 millimetre, 3 micron); 0 is unknown. */
const MM_PER_UNIT: Record<number, number> = { 1: 1000, 2: 1, 3: 0.001 };

/** The pixel spacing in millimetres, [row, column], when the header gives units. */
function spacingOf(header: NIFTI1 | NIFTI2): PixelSpacing | undefined {
  const mm = MM_PER_UNIT[header.xyzt_units & 0x07];
  const [dx, dy] = [header.pixDims[1]!, header.pixDims[2]!];
  // NIfTI-1's float32 pixdim read to the digits it holds (0.6, not 0.6000000238418579).
  const value = (v: number): number => (header instanceof NIFTI2 ? v * mm! : Number((v * mm!).toPrecision(7)));
  return mm && dx > 0 && dy > 0 && Number.isFinite(dx * dy) ? { mm: [value(dy), value(dx)], from: 'NIfTI pixdim' } : undefined;
}

/** Byte offsets of the header fields a mask rewrites, by NIfTI version. */
const FIELDS = {
  1: { size: 348, datatype: 70, bitpix: 72, intentCode: 68, intentParams: [56, 60, 64], voxOffset: 108, slope: 112, inter: 116, calMax: 124, calMin: 128, descrip: 148, intentName: 328, float: 4 },
  2: { size: 540, datatype: 12, bitpix: 14, intentCode: 504, intentParams: [80, 88, 96], voxOffset: 168, slope: 176, inter: 184, calMax: 192, calMin: 200, descrip: 240, intentName: 508, float: 8 },
} as const;

/**
 * A 0 / 1 mask [height * width] as a NIfTI file laid on its source image: the source's header
 * (dimensions, pixel spacing, qform / sform: the mask sits where the image does in a viewer) with
 * uint8 voxels, no scaling, no extensions and `description` (80 bytes at most); gzip-compressed
 * when the source was.
 */
export function niftiMask(source: NiftiReference, mask: Uint8Array, description: string): Uint8Array {
  const version = source.header.length === FIELDS[2].size ? 2 : 1;
  const f = FIELDS[version];
  const voxOffset = f.size + 4; // the header, then 4 bytes of extension flags (none)
  const out = new Uint8Array(voxOffset + mask.length);
  out.set(source.header);
  const view = new DataView(out.buffer);
  const le = view.getInt32(0, true) === f.size;
  const setReal = (at: number, v: number): void => (f.float === 8 ? view.setFloat64(at, v, le) : view.setFloat32(at, v, le));
  view.setInt16(f.datatype, 2, le); // DT_UINT8
  view.setInt16(f.bitpix, 8, le);
  if (version === 2) view.setBigInt64(f.voxOffset, BigInt(voxOffset), le);
  else view.setFloat32(f.voxOffset, voxOffset, le);
  [[f.slope, 1], [f.inter, 0], [f.calMax, 1], [f.calMin, 0], ...f.intentParams.map((at) => [at, 0])].forEach(([at, v]) => setReal(at!, v!));
  if (version === 2) view.setInt32(f.intentCode, 0, le);
  else view.setInt16(f.intentCode, 0, le);
  out.fill(0, f.intentName, f.intentName + 16);
  out.fill(0, f.descrip, f.descrip + 80);
  out.set(new TextEncoder().encode(description.replace(/[^\x20-\x7e]/g, '?').slice(0, 79)), f.descrip);
  out.set(mask, voxOffset);
  return source.compressed ? gzipSync(out) : out;
}

/** A header's first field, sizeof_hdr: 348 (NIfTI-1) or 540 (NIfTI-2), in either byte order. */
function startsLikeNifti(head: Uint8Array): boolean {
  if (head.length < 4) return false;
  const view = new DataView(head.buffer, head.byteOffset, 4);
  return [348, 540].some((n) => view.getInt32(0, true) === n || view.getInt32(0, false) === n);
}

/** The first `n` bytes (at least) of a gzip stream, without decompressing the rest. */
function gunzipHead(bytes: Uint8Array, n: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let got = 0;
  const stream = new Gunzip((chunk) => {
    parts.push(chunk);
    got += chunk.length;
  });
  const CHUNK = 4096;
  // Never pushed as the final chunk: a stream cut after the header is read up to it here (the full
  // decompression says it is truncated).
  try {
    for (let i = 0; i < bytes.length && got < n; i += CHUNK) stream.push(bytes.subarray(i, i + CHUNK));
  } catch (err) {
    throw gzipError(err);
  }
  const head = new Uint8Array(got);
  let at = 0;
  for (const p of parts) head.set(p, (at += p.length) - p.length);
  return head;
}

function gunzip(bytes: Uint8Array): Uint8Array {
  try {
    return gunzipSync(bytes);
  } catch (err) {
    throw gzipError(err);
  }
}

/** fflate's failure, worded: a stream that ends early is a truncated file. */
function gzipError(err: unknown): Error {
  const msg = err instanceof Error ? err.message : String(err);
  return new Error(/EOF/i.test(msg) ? `truncated image data (gzip: ${msg})` : `corrupt gzip data (${msg})`);
}

/** The bytes as an ArrayBuffer of their own (what nifti-reader-js takes). */
function arrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
