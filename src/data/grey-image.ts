/** A decoded single-channel image, before intensity normalisation. */
export interface GreyImage {
  width: number;
  height: number;
  /** Row-major pixel values after any modality rescale (DICOM slope/intercept), [height * width]. */
  data: Float32Array;
  /** Bits per sample in the file (8, 12, 16...). */
  bitDepth: number;
  /** The samples are real numbers (a float TIFF): no nominal range, so 'none' intensity takes them as [0, 1]. */
  floatingPoint?: boolean;
  /** DICOM MONOCHROME1: low values are bright; normalisation inverts it. */
  inverted?: boolean;
  /** The VOI window stored in a DICOM file, in rescaled units. */
  window?: { center: number; width: number };
  /**
   * The EXIF orientation (2-8) applied in decoding: the pixels are as the file displays, turned
   * from how it stores them (./orientation.ts). Absent when the file stores them upright.
   */
  orientation?: number;
  /**
   * The values are labels, read at nonzero whatever their range: a palette mask's indices or a
   * colour mask's values per colour (decodeImageFile's `mask` option).
   */
  labelValues?: boolean;
  /** A mask with transparent pixels (drawn on a transparent layer): those were read as background. */
  transparent?: boolean;
  /** A colour mask's colours ('#ff0000') by the label value each reads as. */
  colours?: Record<number, string>;
  /** A DICOM SEG read as a mask: its segments' labels by segment number (the label value of its pixels). */
  segments?: Record<number, string>;
  /**
   * A SEG's segments as 0 / 1 masks by number, exact where segments overlap (`data` then holds the
   * lowest number covering a pixel: their union is right, one value per pixel cannot be).
   */
  segmentMasks?: Record<number, Uint8Array>;
  /** Short description of how the file was encoded, e.g. 'png', 'dicom/jpeg-lossless'. */
  encoding: string;
  /** For DICOM input: the identifiers a derived object (e.g. a SEG) must reference, and the pixel spacing. */
  dicom?: DicomReference;
  /** For NIfTI input: its header, which a mask written for it keeps (geometry, spacing). */
  nifti?: NiftiReference;
  /** For MetaImage input: the header lines a mask written for it keeps (geometry, spacing). */
  metaimage?: MetaImageReference;
  /** Millimetres per pixel from a header other than DICOM's (NIfTI's pixdim, MetaImage's ElementSpacing). */
  spacing?: PixelSpacing;
  /** A DICOM holding several frames (a cine loop, a tomosynthesis or CT series in one file): how many; the first is read. */
  frames?: number;
}

/** What a multi-frame file's reader is told: the first frame stands for the file (undefined for a 2D image). */
export function framesNote(file: string, image: Pick<GreyImage, 'frames'>): string | undefined {
  return image.frames ? `${file}: a DICOM of ${image.frames} frames (a cine loop, or a tomosynthesis or CT series in one file): its first frame is read as the image; Eden reads 2D radiographs` : undefined;
}

/** Samples of a format Eden decodes itself (decode.ts, npy.ts, nifti.ts, metaimage.ts), interleaved per pixel. */
export interface RasterSamples {
  width: number;
  height: number;
  channels: number;
  samples: ArrayLike<number>;
  bitDepth: number;
  encoding: string;
  /** Real-valued samples (a float .npy or NIfTI): no nominal range, as a float TIFF's. */
  floatingPoint?: boolean;
  nifti?: NiftiReference;
  metaimage?: MetaImageReference;
  spacing?: PixelSpacing;
}

/** A MetaImage source image: its geometry's header lines ('ElementSpacing = 0.7 0.6', ...) and whether it was compressed. */
export interface MetaImageReference {
  geometry: string[];
  compressed: boolean;
}

/** Millimetres per pixel, [row spacing, column spacing], and the header field they come from. */
export interface PixelSpacing {
  mm: [number, number];
  from: string;
}

/** An image's pixel spacing: DICOM's (Pixel Spacing, else Imager Pixel Spacing), else its header's (NIfTI, MetaImage). */
export function pixelSpacingOf(img: Pick<GreyImage, 'dicom' | 'spacing'>): PixelSpacing | undefined {
  const dicom = img.dicom?.pixelSpacing;
  return dicom ? { mm: dicom, from: img.dicom!.pixelSpacingSource ?? 'DICOM' } : img.spacing;
}

/** A NIfTI source image: what a mask written for it copies. */
export interface NiftiReference {
  /** The file's header as stored (348 bytes for NIfTI-1, 540 for NIfTI-2), in its byte order. */
  header: Uint8Array;
  /** The file was gzip-compressed (.nii.gz): its masks are too. */
  compressed: boolean;
}

/** Identifiers and geometry of a DICOM source image. */
export interface DicomReference {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  frameOfReferenceUid?: string;
  patientId?: string;
  patientName?: string;
  patientBirthDate?: string;
  patientSex?: string;
  studyDate?: string;
  studyTime?: string;
  studyId?: string;
  accessionNumber?: string;
  referringPhysicianName?: string;
  /** Patient Orientation (0020,0020), e.g. ['L', 'F']. */
  patientOrientation?: string[];
  /**
   * Millimetres per pixel [row spacing, column spacing]: Pixel Spacing (0028,0030), else Imager
   * Pixel Spacing (0018,1164) — at the detector, so areas from it are magnified by the projection.
   */
  pixelSpacing?: [number, number];
  pixelSpacingSource?: 'PixelSpacing' | 'ImagerPixelSpacing';
}

/** A colour's luminance by ITU-R BT.601 (as libvips and most DICOM viewers use). */
export function bt601(r: number, g: number, b: number): number {
  return 0.299 * r + 0.587 * g + 0.114 * b;
}

/** Luminance (bt601) from interleaved or planar RGB. */
export function rgbToGrey(src: ArrayLike<number>, pixels: number, planar = false): Float32Array {
  const out = new Float32Array(pixels);
  for (let i = 0; i < pixels; i++) {
    out[i] = planar ? bt601(src[i]!, src[pixels + i]!, src[2 * pixels + i]!) : bt601(src[3 * i]!, src[3 * i + 1]!, src[3 * i + 2]!);
  }
  return out;
}

/**
 * The first sample of each pixel of interleaved samples as float32: the grey of grey and alpha, the
 * Y of an uncompressed YBR, or (`channels` 1) the first `pixels` samples, copied typed array to
 * typed array (2x faster than Float32Array.from).
 */
export function firstChannel(samples: ArrayLike<number>, pixels: number, channels: number): Float32Array {
  const out = new Float32Array(pixels);
  if (channels === 1 && ArrayBuffer.isView(samples)) out.set((samples as unknown as Uint8Array).subarray(0, pixels));
  else for (let i = 0; i < pixels; i++) out[i] = samples[i * channels]!;
  return out;
}

/** 8-bit levels of [0, 1] values (clipped, rounded), for PNGs of normalised images. A loop: `Uint8Array.from(values, fn)` is ~20x slower. */
export function toBytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.round(Math.min(1, Math.max(0, values[i]!)) * 255);
  return out;
}
