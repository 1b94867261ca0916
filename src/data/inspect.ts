/**
 * `eden inspect`: scan a dataset and decode every file once, to report what a run would see:
 * images found, sizes, bit depths, encodings, structures with mask counts, labels, and every
 * unusable file with its reason, grouped.
 */
import { decodedMaskRange, labelMapWarning, readMaskOf } from './dataset.js';
import { decodeImageFile } from './decode.js';
import { pixelSpacingOf } from './grey-image.js';
import { classFolderLabels, likelyIdentifiers } from './class-folders.js';
import path from 'node:path';
import { describeMask, describeMaskTable, masksFolderHint, scanDataset, skippedBy, skippedMask, type ImageEntry, type MaskTableSummary, type ScanOptions, type SkippedFile } from './scan.js';

export interface InspectReport {
  roots: string[];
  layout: 'folder' | 'segmentation' | 'files';
  /** Usable images (decoded successfully). */
  images: number;
  sizes: Record<string, number>;
  bitDepths: Record<string, number>;
  encodings: Record<string, number>;
  /** Usable images by their pixel spacing and its source ('0.6 x 0.7 mm (MetaImage ElementSpacing)'), or 'none': what mm² areas can be given for. */
  spacings: Record<string, number>;
  /** A folder of images, one subfolder named like masks: the two, to be paired with --masks (scan.ts masksFolderHint). */
  masksHint?: { images: string; masks: string };
  /** Usable masks per structure (segmentation layout). */
  structures: Record<string, number>;
  /** Usable masks by their range of values: '0-255' (full scale), '0-1' (label values), 'empty'. */
  maskValues: Record<string, number>;
  /** Usable masks read as label values (no pixel above half scale: nonzero = the structure). */
  labelMasks: number;
  /** Of those, masks holding several label values (label maps), and the first one's warning. */
  labelMaps: number;
  labelMapExample?: string;
  /** The masks table read (--masks naming one). */
  maskTable?: MaskTableSummary;
  labels?: { file: string; keyColumn: string; matched: number; columns: Record<string, Record<string, number>>; ambiguous?: string[] };
  /** Usable images turned by their EXIF orientation (read as they display), and masks turned with them. */
  oriented: number;
  orientedMasks: number;
  /** Usable DICOM files of several frames (the first is read). */
  multiFrame: number;
  /** Usable masks with transparent pixels, read as background. */
  transparentMasks: number;
  /** Without a manifest, usable images per class folder ('class' or 'class (split)'; class-folders.ts). */
  classFolders?: Record<string, number>;
  skipped: SkippedFile[];
  skippedByReason: Record<string, number>;
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Columns with more distinct values than this are summarised by their count only. */
const MAX_LISTED_VALUES = 20;

export async function inspectDataset(roots: string[], options: ScanOptions & { concurrency?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<InspectReport> {
  const scan = await scanDataset(roots, options);
  const report: InspectReport = {
    roots,
    layout: scan.layout,
    images: 0,
    sizes: {},
    bitDepths: {},
    encodings: {},
    spacings: {},
    structures: Object.fromEntries(scan.structures.map((s) => [s, 0])),
    maskValues: {},
    labelMasks: 0,
    labelMaps: 0,
    oriented: 0,
    multiFrame: 0,
    orientedMasks: 0,
    transparentMasks: 0,
    skipped: [...scan.skipped],
    skippedByReason: {},
  };
  const hint = scan.layout === 'folder' && roots.length === 1 ? await masksFolderHint(roots[0]!) : undefined;
  if (hint) report.masksHint = hint;
  if (scan.maskTable) report.maskTable = scan.maskTable;
  const usableLabels: Record<string, string>[] = [];
  const usable = new Set<ImageEntry>();
  let done = 0;
  const check = async (i: number): Promise<void> => {
    const entry = scan.images[i]!;
    try {
      const img = await decodeImageFile(entry.path);
      report.images++;
      usable.add(entry);
      bump(report.sizes, `${img.width}x${img.height}`);
      bump(report.bitDepths, img.floatingPoint ? `${img.bitDepth} float` : String(img.bitDepth));
      bump(report.encodings, img.encoding);
      const spacing = pixelSpacingOf(img);
      bump(report.spacings, spacing ? `${spacing.mm.map((v) => Number(v.toPrecision(4))).join(' x ')} mm (${spacing.from})` : 'none');
      if (img.orientation) report.oriented++;
      if (img.frames) report.multiFrame++;
      if (entry.labels) usableLabels.push(entry.labels);
      for (const [structure, source] of Object.entries(entry.masks ?? {})) {
        try {
          const read = await readMaskOf(source, img, entry.path);
          if (read.problem !== undefined) {
            report.skipped.push(skippedMask(source, read.problem));
          } else {
            const m = read.mask;
            if (read.turned) report.orientedMasks++;
            if (m.transparent) report.transparentMasks++;
            bump(report.structures, structure);
            const { max, threshold } = decodedMaskRange(m);
            bump(report.maskValues, max === 0 ? 'empty' : `0-${max}`);
            if (max > 0 && threshold === 0) report.labelMasks++;
            const labelMap = labelMapWarning(m.data, m.bitDepth, describeMask(source), structure, threshold, m);
            if (labelMap) {
              report.labelMaps++;
              report.labelMapExample ??= labelMap;
            }
          }
        } catch (err) {
          report.skipped.push(skippedBy(describeMask(source), err));
        }
      }
    } catch (err) {
      report.skipped.push(skippedBy(entry.path, err));
    }
    options.onProgress?.(++done, scan.images.length);
  };
  // Bounded concurrency: sharp decodes on the thread pool.
  const concurrency = options.concurrency ?? 4;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, scan.images.length) }, async () => {
      while (next < scan.images.length) await check(next++);
    }),
  );
  report.skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const s of report.skipped) bump(report.skippedByReason, s.category);
  if (scan.manifest) {
    const columns: Record<string, Record<string, number>> = {};
    for (const c of scan.manifest.labelColumns) {
      const counts: Record<string, number> = {};
      for (const l of usableLabels) bump(counts, l[c] ?? '');
      columns[c] = Object.keys(counts).length <= MAX_LISTED_VALUES ? counts : { [`(${Object.keys(counts).length} distinct values)`]: usableLabels.length };
    }
    report.labels = { file: scan.manifest.file, keyColumn: scan.manifest.keyColumn, matched: usableLabels.length, columns, ...(scan.ambiguousLabels ? { ambiguous: scan.ambiguousLabels } : {}) };
  } else if (scan.layout === 'folder') {
    const folders = classFolderLabels(scan.images);
    if (folders) {
      report.classFolders = {};
      for (const [e, l] of folders) if (usable.has(e)) bump(report.classFolders, l.split ? `${l.label} (${l.split})` : l.label);
    }
  }
  return report;
}

/** Human-readable summary, one fact per line. */
export function formatInspectReport(r: InspectReport): string {
  const lines: string[] = [];
  const fmt = (counts: Record<string, number>): string =>
    Object.entries(counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} (${n})`)
      .join(', ') || 'none';
  lines.push(`dataset: ${r.roots.join(', ')} (${r.layout} layout)`);
  lines.push(`images: ${r.images}`);
  lines.push(`sizes: ${fmt(r.sizes)}`);
  lines.push(`bit depths: ${fmt(r.bitDepths)}`);
  lines.push(`encodings: ${fmt(r.encodings)}`);
  // Said when any image has one (what eden segment's mm² areas need); an archive's many spacings listed by count, the first eight.
  if (Object.keys(r.spacings).some((k) => k !== 'none')) {
    const all = Object.entries(r.spacings).sort((a, b) => b[1] - a[1]);
    lines.push(`pixel spacing (row x column): ${fmt(Object.fromEntries(all.slice(0, 8)))}${all.length > 8 ? `, and ${all.length - 8} other(s)` : ''}`);
  }
  if (r.oriented) {
    const masks = r.orientedMasks ? `; ${r.orientedMasks} mask(s) fitting only the stored pixels turned with their image` : '';
    lines.push(`orientation: ${r.oriented} image(s) carry an EXIF orientation and are read as they display, turned from how they are stored${masks}`);
  }
  if (Object.keys(r.structures).length) lines.push(`structures: ${Object.entries(r.structures).map(([s, n]) => `${s} (${n} masks)`).join(', ')}`);
  else if (r.layout === 'segmentation') lines.push("structures: none (masks/ holds no mask images: masks/<structure>/<image's name>, or one structure's masks directly in masks/)");
  if (r.multiFrame) lines.push(`frames: ${r.multiFrame} DICOM file(s) hold several frames (cine loops, or tomosynthesis or CT series in one file): the first frame of each is read as its image`);
  if (r.masksHint) lines.push(`masks: none paired (the segmentation layout is images/ + masks/); ${path.basename(r.masksHint.images)}/ looks like images and ${path.basename(r.masksHint.masks)}/ like their masks: eden inspect ${r.masksHint.images} --masks ${r.masksHint.masks}`);
  if (r.maskTable) lines.push(`masks table: ${describeMaskTable(r.maskTable)}`);
  if (r.transparentMasks) lines.push(`transparency: ${r.transparentMasks} mask(s) drawn on a transparent layer: their transparent pixels are background`);
  if (Object.keys(r.maskValues).length) {
    const note = r.labelMasks ? `; ${r.labelMasks} hold label values (no value above half scale, a palette, several colours or a DICOM SEG): their nonzero pixels are the structure` : '';
    lines.push(`mask values: ${fmt(r.maskValues)}${note}`);
    if (r.labelMaps) lines.push(`label maps: ${r.labelMaps} mask(s) hold several label values, each read as one structure; the first: ${r.labelMapExample}`);
  }
  if (r.labels) {
    const hint = r.labels.matched === 0 && r.images > 0 ? ` (an image is found by its path under the folder, or a path ending as it does, or by its file name or stem; see the key column's values)` : '';
    const ambiguous = r.labels.ambiguous ? `; ${r.labels.ambiguous.length} left unlabelled, named only ambiguously (several rows alike, or one row by several images' names; e.g. ${r.labels.ambiguous[0]}): write their paths in the key column` : '';
    lines.push(`labels: ${r.labels.file}, key column '${r.labels.keyColumn}', ${r.labels.matched} of ${r.images} images labelled${hint}${ambiguous}`);
    for (const [c, counts] of Object.entries(r.labels.columns)) lines.push(`  ${c}: ${fmt(counts)}`);
  }
  if (r.classFolders) {
    const n = Object.keys(r.classFolders).length;
    const images = Object.values(r.classFolders).reduce((a, b) => a + b, 0);
    // A folder per patient or study lists hundreds of 'classes' of one image: say that instead.
    lines.push(likelyIdentifiers(n, images) ? `classes (from folders): ${n} folders for ${images} images: more likely patients or studies than classes (give labels in a CSV)` : `classes (from folders): ${fmt(r.classFolders)}`);
  }
  for (const s of r.skipped) lines.push(`skipped ${s.message}`);
  const total = r.skipped.length;
  lines.push(`summary: ${r.images} usable, ${total} skipped${total ? ` (${fmt(r.skippedByReason)})` : ''}`);
  return lines.join('\n');
}
