/** Which files Eden reads as images: by extension, and DICOM also by its magic bytes. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { looksLikeBareDicom } from './dicom.js';

/** Raster formats: through sharp (libvips), and BMP, Netpbm, JPEG 2000, NumPy .npy, NIfTI and MetaImage through decoders of Eden's (decode.ts). */
export const RASTER_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp', '.gif', '.bmp', '.pgm', '.ppm', '.pbm', '.pnm', '.pam', '.jp2', '.j2k', '.j2c', '.npy', '.nii', '.nii.gz', '.mha', '.mhd']);
export const DICOM_EXTENSIONS = new Set(['.dcm', '.dicom', '.dic']);

/** Extensions of two parts (path.extname sees only '.gz'). */
const COMPOUND_EXTENSIONS = ['.nii.gz'];

/** A file's extension, lower-cased: its last one ('.png'), or one of two parts ('.nii.gz'). */
export function imageExtension(file: string): string {
  const lower = path.basename(file).toLowerCase();
  return COMPOUND_EXTENSIONS.find((e) => lower.endsWith(e) && lower.length > e.length) ?? path.extname(lower);
}

export type ImageFormat = 'raster' | 'dicom';

/** DICOM Part 10 bytes carry 'DICM' at offset 128. */
export function hasDicomBytes(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/**
 * DICOM Part 10 files carry 'DICM' at byte 128; bare data sets (no preamble, no meta header) are
 * recognised by their first element (a group 0002-0028 tag, see dicom.ts).
 */
export async function hasDicomMagic(file: string): Promise<boolean> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const buf = Buffer.alloc(132);
    const { bytesRead } = await handle.read(buf, 0, 132, 0);
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
    return hasDicomBytes(bytes) || looksLikeBareDicom(bytes);
  } catch {
    return false;
  } finally {
    await handle?.close();
  }
}

/**
 * A MetaImage header's pixel file beside it (x.raw or x.zraw for x.mhd): part of that image, not a
 * file to report as no image.
 */
export async function isPixelFileOfHeader(file: string): Promise<boolean> {
  const ext = path.extname(file);
  if (!/^\.z?raw$/i.test(ext)) return false;
  return fs.access(file.slice(0, -ext.length) + '.mhd').then(() => true, () => false);
}

/** Why a file for which detectFormat finds no format is not used. */
export const notAnImage = (file: string): string => `not an image file (unrecognised extension '${imageExtension(file) || 'none'}' and no DICOM header)`;

/**
 * The format a file should be decoded as, or undefined if it is not an image file at all.
 * Extensionless files (common for DICOM exports) are recognised by the magic bytes.
 */
export async function detectFormat(file: string): Promise<ImageFormat | undefined> {
  const ext = imageExtension(file);
  if (RASTER_EXTENSIONS.has(ext)) return 'raster';
  if (DICOM_EXTENSIONS.has(ext)) return 'dicom';
  if (await hasDicomMagic(file)) return 'dicom';
  return undefined;
}

/**
 * File name without folder and extension: the key that pairs an image with its masks and labels.
 * An "extension" of digits only is part of the name: DICOM files are often named by their UID
 * without one (1.2.840.113619.2.55.3.604688119), and their masks by the same UID plus '.png'.
 */
export function fileStem(file: string): string {
  const base = path.basename(file);
  const ext = imageExtension(base);
  return ext && /[a-z]/i.test(ext) ? base.slice(0, -ext.length) : base;
}
