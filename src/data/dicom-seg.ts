/**
 * DICOM Segmentation objects (SEG, PS3.3 A.51): binary masks written for a DICOM source image, one
 * frame per structure, referencing the source image (Common Instance Reference, and each frame's
 * Derivation Image / Source Image sequence), with the patient and study of the source, so that
 * viewers (OHIF, 3D Slicer, Weasis...) show it over that image. Written with dcmjs; read back with
 * dicom-parser (`readSegmentation`), so Eden's own tests can round-trip it.
 */
import dcmjs from 'dcmjs';
import dicomParser from 'dicom-parser';
import { randomUUID } from 'node:crypto';
import { describeError, EdenError } from '../core/errors.js';
import type { DicomReference, GreyImage } from './grey-image.js';

export const SEG_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.66.4';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

interface DcmjsData {
  DicomDict: new (meta: object) => { dict: object; write(): ArrayBuffer };
  DicomMetaDictionary: { denaturalizeDataset(d: object): object };
}
const dd = dcmjs.data as unknown as DcmjsData;

/** A UID from a random UUID under the 2.25 root (PS3.5 B.2): unique without an organisation root. */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

/** Codes for the structures Eden knows (SNOMED CT); anything else is coded as a generic anatomical structure. */
const ANATOMY: Record<string, { value: string; meaning: string }> = {
  heart: { value: '80891009', meaning: 'Heart' },
  lungs: { value: '39607008', meaning: 'Lung' },
  lung: { value: '39607008', meaning: 'Lung' },
  left_lung: { value: '44029006', meaning: 'Left lung' },
  right_lung: { value: '3341006', meaning: 'Right lung' },
  clavicle: { value: '51299004', meaning: 'Clavicle' },
};
const code = (value: string, scheme: string, meaning: string): Record<string, string> => ({ CodeValue: value, CodingSchemeDesignator: scheme, CodeMeaning: meaning });

/** Pack binary masks (frames of rows x columns, values > 0.5 set) into DICOM 1-bit pixel data (LSB first, frames contiguous). */
export function packBits(frames: ArrayLike<number>[], pixels: number): Uint8Array {
  const bits = frames.length * pixels;
  const out = new Uint8Array(Math.ceil(bits / 8) + (Math.ceil(bits / 8) % 2)); // even length
  frames.forEach((f, k) => {
    for (let i = 0; i < pixels; i++) {
      if (f[i]! > 0.5) {
        const bit = k * pixels + i;
        out[bit >> 3]! |= 1 << (bit & 7);
      }
    }
  });
  return out;
}

export function unpackBits(bytes: Uint8Array, frames: number, pixels: number): Uint8Array[] {
  return Array.from({ length: frames }, (_, k) => {
    const m = new Uint8Array(pixels);
    for (let i = 0; i < pixels; i++) {
      const bit = k * pixels + i;
      m[i] = (bytes[bit >> 3]! >> (bit & 7)) & 1;
    }
    return m;
  });
}

export interface SegmentationToWrite {
  source: DicomReference;
  rows: number;
  columns: number;
  /** One binary mask [rows * columns] per structure, in the order of `structures`. */
  masks: ArrayLike<number>[];
  structures: string[];
  /** Algorithm name and version recorded in each segment. */
  algorithm: { name: string; version: string };
  seriesDescription?: string;
}

/** A DICOM Part 10 SEG file (bytes). */
export function writeSegmentation(s: SegmentationToWrite): Uint8Array {
  if (s.masks.length !== s.structures.length || s.masks.length === 0) throw new EdenError('data', 'a SEG needs one mask per structure, and at least one');
  const sopInstanceUid = newUid();
  const now = new Date();
  const date = now.toISOString().slice(0, 10).replace(/-/g, '');
  const time = now.toISOString().slice(11, 19).replace(/:/g, '');
  const src = s.source;
  const segments = s.structures.map((name, i) => {
    const anatomy = ANATOMY[name.toLowerCase()];
    return {
      SegmentNumber: i + 1,
      SegmentLabel: name,
      SegmentAlgorithmType: 'AUTOMATIC',
      SegmentAlgorithmName: s.algorithm.name,
      SegmentedPropertyCategoryCodeSequence: [code('91723000', 'SCT', 'Anatomical structure')],
      SegmentedPropertyTypeCodeSequence: [anatomy ? code(anatomy.value, 'SCT', anatomy.meaning) : code('91723000', 'SCT', 'Anatomical structure')],
    };
  });
  const perFrame = s.structures.map((_, i) => ({
    FrameContentSequence: [{ DimensionIndexValues: [i + 1] }],
    SegmentIdentificationSequence: [{ ReferencedSegmentNumber: i + 1 }],
    DerivationImageSequence: [
      {
        SourceImageSequence: [{ ReferencedSOPClassUID: src.sopClassUid, ReferencedSOPInstanceUID: src.sopInstanceUid, PurposeOfReferenceCodeSequence: [code('121322', 'DCM', 'Source image for image processing operation')] }],
        DerivationCodeSequence: [code('113076', 'DCM', 'Segmentation')],
      },
    ],
  }));
  const dimensionOrganizationUid = newUid();
  const dataset: Record<string, unknown> = {
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: SEG_SOP_CLASS,
    SOPInstanceUID: sopInstanceUid,
    ImageType: ['DERIVED', 'PRIMARY'],
    InstanceNumber: 1,
    // Type 2C without a frame of reference: the source's orientation (e.g. 'L\\F' for a PA chest), else empty.
    PatientOrientation: src.patientOrientation ?? '',
    ContentDate: date,
    ContentTime: time,
    // Patient and study: those of the source image.
    PatientName: src.patientName ?? '',
    PatientID: src.patientId ?? '',
    PatientBirthDate: src.patientBirthDate ?? '',
    PatientSex: src.patientSex ?? '',
    StudyInstanceUID: src.studyInstanceUid,
    StudyDate: src.studyDate ?? '',
    StudyTime: src.studyTime ?? '',
    StudyID: src.studyId ?? '',
    AccessionNumber: src.accessionNumber ?? '',
    ReferringPhysicianName: src.referringPhysicianName ?? '',
    // A new series of modality SEG.
    Modality: 'SEG',
    SeriesInstanceUID: newUid(),
    SeriesNumber: 300,
    SeriesDescription: s.seriesDescription ?? `Eden segmentation (${s.structures.join(', ')})`,
    Manufacturer: 'Eden',
    ManufacturerModelName: s.algorithm.name,
    DeviceSerialNumber: '1',
    SoftwareVersions: s.algorithm.version,
    ContentLabel: 'EDEN',
    ContentDescription: `Anatomy: ${s.structures.join(', ')}`,
    ContentCreatorName: '',
    SegmentationType: 'BINARY',
    LossyImageCompression: '00',
    Rows: s.rows,
    Columns: s.columns,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    BitsAllocated: 1,
    BitsStored: 1,
    HighBit: 0,
    PixelRepresentation: 0,
    NumberOfFrames: s.masks.length,
    SegmentSequence: segments,
    DimensionOrganizationSequence: [{ DimensionOrganizationUID: dimensionOrganizationUid }],
    DimensionIndexSequence: [{ DimensionOrganizationUID: dimensionOrganizationUid, DimensionIndexPointer: 0x0062000b, FunctionalGroupPointer: 0x0062000a, DimensionDescriptionLabel: 'Segment' }],
    SharedFunctionalGroupsSequence: [src.pixelSpacing && src.pixelSpacingSource === 'PixelSpacing' ? { PixelMeasuresSequence: [{ PixelSpacing: src.pixelSpacing, SliceThickness: 1 }] } : {}],
    PerFrameFunctionalGroupsSequence: perFrame,
    ReferencedSeriesSequence: [{ SeriesInstanceUID: src.seriesInstanceUid, ReferencedInstanceSequence: [{ ReferencedSOPClassUID: src.sopClassUid, ReferencedSOPInstanceUID: src.sopInstanceUid }] }],
    PixelData: [packBits(s.masks, s.rows * s.columns).buffer],
    _vrMap: { PixelData: 'OB' },
  };
  if (src.frameOfReferenceUid) dataset['FrameOfReferenceUID'] = src.frameOfReferenceUid;
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: SEG_SOP_CLASS,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: EXPLICIT_LE,
    ImplementationClassUID: '2.25.150870713307424386423519592880163372452',
    ImplementationVersionName: 'EDEN',
  };
  const dict = new dd.DicomDict(dd.DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = dd.DicomMetaDictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write());
}

/** FRACTIONAL SEG frames (8-bit values of `max`) as 0 / 1: set above half of `max`. */
function fractionalFrames(bytes: Uint8Array, frames: number, pixels: number, max: number): Uint8Array[] {
  if (bytes.length < frames * pixels) throw new EdenError('data', `truncated FRACTIONAL SEG pixel data (${bytes.length} bytes, ${frames * pixels} expected)`);
  return Array.from({ length: frames }, (_, f) => Uint8Array.from(bytes.subarray(f * pixels, (f + 1) * pixels), (v) => (2 * v > max ? 1 : 0)));
}

export interface ReadSegmentation {
  rows: number;
  columns: number;
  /** Per frame: the segment's label and its binary mask. */
  segments: { number: number; label: string; mask: Uint8Array }[];
  referencedSopInstanceUid?: string;
  studyInstanceUid?: string;
}

/** Read a SEG file (BINARY, or FRACTIONAL set above half) back: its segments' labels and masks, and the image it references. */
export function readSegmentation(bytes: Uint8Array): ReadSegmentation {
  const ds = dicomParser.parseDicom(bytes);
  if (ds.string('x00080016') !== SEG_SOP_CLASS) throw new EdenError('data', `not a DICOM Segmentation object (SOP Class ${ds.string('x00080016') ?? 'none'})`);
  const type = ds.string('x00620001');
  if (type !== 'BINARY' && type !== 'FRACTIONAL') throw new EdenError('data', `only BINARY and FRACTIONAL segmentations are read (this one is ${type ?? 'untyped'})`);
  const rows = ds.uint16('x00280010')!;
  const columns = ds.uint16('x00280011')!;
  const frames = Number(ds.string('x00280008') ?? '1');
  const labels = new Map<number, string>();
  for (const item of ds.elements['x00620002']?.items ?? []) labels.set(item.dataSet!.uint16('x00620004')!, item.dataSet!.string('x00620005') ?? '');
  const perFrame = ds.elements['x52009230']?.items ?? [];
  const px = ds.elements['x7fe00010']!;
  const pixelBytes = bytes.subarray(px.dataOffset, px.dataOffset + px.length);
  // FRACTIONAL (a probability or occupancy per pixel, 8 bits, out of MaximumFractionalValue): set above half of it.
  const masks = type === 'FRACTIONAL' ? fractionalFrames(pixelBytes, frames, rows * columns, ds.uint16('x0062000e') ?? 255) : unpackBits(pixelBytes, frames, rows * columns);
  const segments = masks.map((mask, k) => {
    const number = perFrame[k]?.dataSet?.elements['x0062000a']?.items?.[0]?.dataSet?.uint16('x0062000b') ?? k + 1;
    return { number, label: labels.get(number) ?? '', mask };
  });
  const ref = ds.elements['x00081115']?.items?.[0]?.dataSet?.elements['x0008114a']?.items?.[0]?.dataSet?.string('x00081155');
  return { rows, columns, segments, referencedSopInstanceUid: ref, studyInstanceUid: ds.string('x0020000d') };
}

/**
 * A SEG read as a mask of its image, as a label map of its segments' numbers: one segment is one
 * structure; several are read together (their union) unless selected by number (`both:2`, as any
 * label map's values; the warning names the segments). Segments may overlap (a heart drawn over
 * the lungs): each is kept whole in `segmentMasks`, which the selection reads.
 */
export function segmentationAsMask(bytes: Uint8Array): GreyImage {
  let seg: ReadSegmentation;
  try {
    seg = readSegmentation(bytes);
  } catch (err) {
    throw new Error(`unsupported DICOM SEG: ${describeError(err)}`);
  }
  const pixels = seg.rows * seg.columns;
  const data = new Float32Array(pixels);
  const segments: Record<number, string> = {};
  const segmentMasks: Record<number, Uint8Array> = {};
  for (const { number, label, mask } of [...seg.segments].sort((a, b) => a.number - b.number)) {
    segments[number] = label;
    // A segment of several frames (one per referenced frame) is their union.
    const own = (segmentMasks[number] ??= new Uint8Array(pixels));
    for (let i = 0; i < pixels; i++) {
      if (!mask[i]) continue;
      own[i] = 1;
      if (!data[i]) data[i] = number;
    }
  }
  return { width: seg.columns, height: seg.rows, data, bitDepth: 8, labelValues: true, segments, segmentMasks, encoding: 'dicom-seg' };
}
