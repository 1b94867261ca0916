/**
 * Finding the images of a dataset, without decoding them. Two layouts:
 *  - a folder of images, searched recursively;
 *  - the segmentation layout: `images/` plus `masks/<structure>/` (or, for one structure, masks
 *    directly in `masks/`; or the two folders named apart, ScanOptions.masks), masks matched to
 *    images by subfolder and file stem (attachMasks); or a folder of images and a table of
 *    run-length masks, matched by its rows' keys (attachTableMasks, mask-table.ts).
 * Files that cannot be used are collected as SkippedFile records (one line each, naming the file
 * and the problem); only an empty usable set is an error, and that is the caller's decision.
 */
import { promises as fs, type Dirent } from 'node:fs';
import path from 'node:path';
import { dataError, describeError } from '../core/errors.js';
import { detectFormat, DICOM_EXTENSIONS, fileStem, imageExtension, isPixelFileOfHeader, notAnImage, RASTER_EXTENSIONS, type ImageFormat } from './formats.js';
import { labelsForAll, readManifest, type Manifest } from './manifest.js';
import { readDicomIdentity, type DicomIdentity } from './dicom.js';
import { describeRunLengthMask, isMaskTable, readMaskTable, type RunLengthMask, type RunOrder } from './mask-table.js';

/** What eden inspect and the training logs say of a masks table. */
export interface MaskTableSummary {
  file: string;
  rows: number;
  keyColumn: string;
  /** Images of the folder, and those its rows name. */
  images: number;
  matched: number;
  /** The condition on its rows (ScanOptions.maskRows), and the rows naming images it left out. */
  where?: string;
  leftOut: number;
  seconds: number;
}

/** 'masks.csv.gz: 40000 rows (key column 'image_id'), naming 259 of the 300 images (9.8 s)'. */
export function describeMaskTable(t: MaskTableSummary): string {
  const where = t.where === undefined ? '' : `; ${t.leftOut} row(s) naming images left out by '${t.where}'`;
  return `${t.file}: ${t.rows} rows (key column '${t.keyColumn}'), naming ${t.matched} of the ${t.images} images${where} (${t.seconds.toFixed(1)} s)`;
}

/** Where a mask is: a file, or a cell of a masks table (mask-table.ts). */
export type MaskSource = string | RunLengthMask;

/** The file a mask is read from (a table's for its cells). */
export function maskFile(m: MaskSource): string {
  return typeof m === 'string' ? m : m.table;
}

/** A mask as messages name it: its file, or its table's row and column. */
export function describeMask(m: MaskSource): string {
  return typeof m === 'string' ? m : describeRunLengthMask(m);
}

export interface ImageEntry {
  /** Path as given or found (usable with fs). */
  path: string;
  /** Path relative to its dataset root, '/' separated. */
  relPath: string;
  stem: string;
  format: ImageFormat;
  /** Mask per structure (segmentation layout): its file, or its runs in a masks table. */
  masks?: Record<string, MaskSource>;
  labels?: Record<string, string>;
}

export type SkipCategory =
  | 'not an image file'
  | 'DICOM without pixel data'
  | 'DICOM SEG (masks)'
  | 'empty file'
  | 'truncated'
  | 'corrupt'
  | 'unsupported'
  | 'unreadable'
  | 'mask without image'
  | 'mask size mismatch'
  | 'colours of one label'
  | 'duplicate';

export interface SkippedFile {
  path: string;
  category: SkipCategory;
  /** One line: '<path>: <problem>'. */
  message: string;
}

export interface ScanResult {
  roots: string[];
  layout: 'folder' | 'segmentation' | 'files';
  images: ImageEntry[];
  skipped: SkippedFile[];
  /** Structure names found under masks/. */
  structures: string[];
  manifest?: Manifest;
  /** A masks table's reading (ScanOptions.masks naming one): its rows, key column, and the images its rows gave masks. */
  maskTable?: MaskTableSummary;
  /** Images (relative paths) the manifest names only ambiguously (several rows alike, or one row for several images): left unlabelled. */
  ambiguousLabels?: string[];
}

export interface ScanOptions {
  /** CSV manifest with labels; default: `labels.csv` in the (single) root if present. */
  labels?: string;
  /** Keep only these mask structures. */
  structures?: string[];
  /**
   * Images only (pretraining, embedding, matching, applying a model, classification): a
   * segmentation folder's images/ are read and its masks/ are not, so no mask is paired, reported,
   * or a reason to drop an image (two images of one stem in one folder are kept; pairing masks keeps one).
   */
  imagesOnly?: boolean;
  /**
   * The masks' folder, laid out as a segmentation folder's masks/ (<structure>/ folders, or one
   * structure's masks directly in it), for the images under the one root: for data whose folders
   * are not named images/ and masks/ (Montgomery's CXR_png/ + ManualMask/leftMask/, Shenzhen's
   * CXR_png/ + mask/<name>_mask.png). A masks' folder inside the root is not read as images.
   * Or a table of run-length masks (a CSV or TSV, gzipped or not: mask-table.ts), CheXmask's.
   */
  masks?: string;
  /** How a masks table's runs number the pixels (asked for when `masks` is a table, refused otherwise). */
  rleOrder?: RunOrder;
  /** A condition a masks table's rows must meet to be used ('Dice RCA (Mean)>=0.7'; mask-table.ts parseRowCondition). */
  maskRows?: string;
}

/** Classify a one-line problem description into the summary's reason groups. */
export function skipCategory(message: string): SkipCategory {
  if (/empty file/.test(message)) return 'empty file';
  if (/not an image file/.test(message)) return 'not an image file';
  if (/DICOM object without pixel data/.test(message)) return 'DICOM without pixel data';
  if (/DICOM Segmentation object/.test(message)) return 'DICOM SEG (masks)';
  if (/truncated/.test(message)) return 'truncated';
  if (/unsupported|not supported/.test(message)) return 'unsupported';
  if (/cannot read/.test(message)) return 'unreadable';
  if (/^duplicate|^a second mask/.test(message)) return 'duplicate';
  if (/mask without image|^mask of which image/.test(message)) return 'mask without image';
  if (/mask .*size|size .*mask/.test(message)) return 'mask size mismatch';
  if (/read as the same label value/.test(message)) return 'colours of one label';
  return 'corrupt';
}

export function skipped(file: string, problem: string): SkippedFile {
  const message = `${file}: ${problem}`;
  return { path: file, category: skipCategory(problem), message };
}

/** The skip record of a mask (a table's cell named by its row and column). */
export function skippedMask(m: MaskSource, problem: string): SkippedFile {
  return { ...skipped(describeMask(m), problem), path: maskFile(m) };
}

/** The skip record of a file that failed with `err` (Eden's decoding errors already start with the file's path). */
export function skippedBy(file: string, err: unknown): SkippedFile {
  const message = describeError(err);
  return skipped(file, message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message);
}

/** What a folder entry is, a symbolic link followed: 'broken' when the link's target does not exist. */
async function kindOf(full: string, e: Dirent): Promise<'dir' | 'file' | 'broken' | 'other'> {
  if (!e.isSymbolicLink()) return e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other';
  try {
    const st = await fs.stat(full);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch {
    return 'broken';
  }
}

async function brokenLink(file: string): Promise<SkippedFile> {
  return skipped(file, `cannot read: a broken symbolic link (to ${await fs.readlink(file)})`);
}

/**
 * The files under `dir`, sorted by name, hidden ones left out. Symbolic links are followed (data is
 * often linked in from another disk; torchvision's ImageFolder follows them too), each folder once:
 * a link to a folder already scanned (a loop, or the same data twice) and a broken link are reported.
 */
async function walk(dir: string, result: ScanResult, seen?: Set<string>, besides?: string): Promise<string[]> {
  // The folders walked, by real path (a subfolder's is added before it is walked); `besides` (the
  // real path of a masks' folder inside an images' folder) is left out, without a report.
  seen ??= new Set([await fs.realpath(dir)]);
  const out: string[] = [];
  const entries = await fs.readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue; // hidden files (.DS_Store, editor swap files)
    const full = path.join(dir, e.name);
    const kind = await kindOf(full, e);
    if (kind === 'dir') {
      const real = await fs.realpath(full);
      if (real === besides) continue;
      if (seen.has(real)) result.skipped.push(skipped(full, `duplicate folder: a symbolic link to ${real}, which is scanned already`));
      else out.push(...(await walk(full, result, seen.add(real), besides)));
    } else if (kind === 'file') out.push(full);
    else if (kind === 'broken') result.skipped.push(await brokenLink(full));
  }
  return out;
}

async function statKind(p: string): Promise<'dir' | 'file' | undefined> {
  try {
    const st = await fs.stat(p);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : undefined;
  } catch {
    return undefined;
  }
}

const isDir = async (p: string): Promise<boolean> => (await statKind(p)) === 'dir';
const fileExists = async (p: string): Promise<boolean> => (await statKind(p)) === 'file';

/** ScanOptions.masks, checked: a folder (or a masks table), given with one folder of images. */
async function givenMasks(roots: string[], masks: string): Promise<string> {
  if (roots.length !== 1 || !(await isDir(roots[0]!))) throw dataError(`--masks ${masks}: masks are paired with one folder of images; got ${roots.join(', ')}`);
  if (isMaskTable(masks) ? !(await fileExists(masks)) : !(await isDir(masks))) throw dataError(`--masks ${masks}: no such ${isMaskTable(masks) ? 'file' : 'folder'}`);
  return masks;
}

/** A file the scan reported as no image that is the data's own metadata (a label manifest, a masks table): not reported. */
function forgetSkipped(result: ScanResult, file: string): void {
  const resolved = path.resolve(file);
  result.skipped = result.skipped.filter((s) => path.resolve(s.path) !== resolved);
}

/** The images' masks from a masks table: those it names get theirs, the others none (left out by segmentation as lacking masks). */
async function attachTableMasks(images: ImageEntry[], table: string, options: ScanOptions, found: Set<string>, result: ScanResult): Promise<void> {
  const t0 = performance.now();
  const read = await readMaskTable(table, images.map((img) => img.relPath), { order: options.rleOrder, where: options.maskRows });
  const where = options.maskRows === undefined ? {} : { where: options.maskRows };
  result.maskTable = { file: table, rows: read.rows, keyColumn: read.keyColumn, images: images.length, matched: read.masks.filter(Boolean).length, ...where, leftOut: read.leftOut, seconds: (performance.now() - t0) / 1000 };
  for (const s of options.structures ?? []) if (!read.structures.includes(s)) throw dataError(`${table}: no structure '${s}'; found ${read.structures.join(', ')}`);
  const kept = options.structures ?? read.structures;
  for (const s of kept) found.add(s);
  images.forEach((img, i) => {
    const masks = read.masks[i];
    if (masks) img.masks = Object.fromEntries(kept.map((s) => [s, masks[s]!]));
  });
  const byPath = new Map(images.map((img) => [img.relPath, img]));
  for (const rel of read.ambiguous) {
    const img = byPath.get(rel)!;
    result.skipped.push(skipped(img.path, `duplicate: rows of ${table} name it alike, or one row names it and other images by file name alone; give the key column its path (column '${read.keyColumn}')`));
  }
}

async function collectImages(files: string[], root: string, result: ScanResult): Promise<ImageEntry[]> {
  const images: ImageEntry[] = [];
  for (const file of files) {
    const format = await detectFormat(file);
    if (!format) {
      if (!(await isPixelFileOfHeader(file))) result.skipped.push(skipped(file, notAnImage(file)));
      continue;
    }
    const rel = path.relative(root, file).split(path.sep).join('/') || path.basename(file);
    images.push({ path: file, relPath: rel, stem: fileStem(file), format });
  }
  return images;
}

/** Scan one or more roots (folders or single files) into a ScanResult. */
export async function scanDataset(roots: string[], options: ScanOptions = {}): Promise<ScanResult> {
  if (roots.length === 0) throw dataError('no dataset path given');
  const result: ScanResult = { roots, layout: 'folder', images: [], skipped: [], structures: [] };
  const structures = new Set<string>();
  let segmentation = 0;
  let singleFiles = 0;
  for (const root of roots) {
    let stat;
    try {
      stat = await fs.stat(root);
    } catch {
      throw dataError(`${root}: no such file or folder`);
    }
    if (stat.isFile()) {
      singleFiles++;
      result.images.push(...(await collectImages([root], path.dirname(root), result)));
      continue;
    }
    const given = options.masks && (await givenMasks(roots, options.masks));
    if (given && isMaskTable(given)) {
      segmentation++;
      const images = await collectImages(await walk(root, result), root, result);
      forgetSkipped(result, given); // the table lying among the images is not an image
      if (!options.imagesOnly) await attachTableMasks(images, given, options, structures, result);
      result.images.push(...images);
      continue;
    }
    // The masks table's options without a table: refused, not ignored.
    const noTable = options.masks ? `--masks ${options.masks} is a folder` : 'no masks table was given (--masks FILE.csv)';
    if (options.rleOrder && !options.imagesOnly) throw dataError(`--rle-order ${options.rleOrder}: it says how a masks table's runs number the pixels; ${noTable}`);
    if (options.maskRows !== undefined && !options.imagesOnly) throw dataError(`--mask-rows '${options.maskRows}': it chooses a masks table's rows; ${noTable}`);
    const imagesDir = given ? root : path.join(root, 'images');
    const masksDir = given || path.join(root, 'masks');
    if (given || ((await isDir(imagesDir)) && (await isDir(masksDir)))) {
      segmentation++;
      const images = await collectImages(await walk(imagesDir, result, undefined, await fs.realpath(masksDir).catch(() => undefined)), imagesDir, result);
      result.images.push(...(options.imagesOnly ? images : await attachMasks(images, imagesDir, masksDir, options.structures, structures, result)));
    } else {
      result.images.push(...(await collectImages(await walk(root, result), root, result)));
    }
  }
  result.layout = segmentation === roots.length ? 'segmentation' : singleFiles === roots.length ? 'files' : 'folder';
  result.structures = [...structures].sort();

  const manifestFile = options.labels ?? (roots.length === 1 && (await fileExists(path.join(roots[0]!, 'labels.csv'))) ? path.join(roots[0]!, 'labels.csv') : undefined);
  if (manifestFile) {
    forgetSkipped(result, manifestFile); // the manifest is metadata, not a bad image
    result.manifest = await readManifest(manifestFile);
    const { labels, ambiguous } = labelsForAll(result.manifest, result.images.map((img) => img.relPath));
    result.images.forEach((img, i) => labels[i] && (img.labels = labels[i]));
    if (ambiguous.length) result.ambiguousLabels = ambiguous;
  }
  return result;
}

/**
 * What datasets append to a mask's name ('CHN_0001_mask.png' for 'CHN_0001.png'): a mask whose
 * stem names no image is matched without it.
 */
const MASK_SUFFIX = /[-_.](mask|masks|seg|segmentation|label|labels|gt|annotation)$/i;

/**
 * The stems of the image a mask (of stem `stem`) may belong to, in order: its own, without a
 * MASK_SUFFIX, and either without the image's extension that masks named after the whole file
 * keep ('CHN_0001.png_mask.png', '1.2.3.dcm.png').
 */
function maskKeys(stem: string): string[] {
  const bare = stem.replace(MASK_SUFFIX, '');
  const withoutImageExtension = (s: string): string => (IMAGE_EXTENSIONS.has(imageExtension(s)) ? s.slice(0, -imageExtension(s).length) : s);
  return [...new Set([stem, bare, withoutImageExtension(stem), withoutImageExtension(bare)])];
}

const IMAGE_EXTENSIONS = new Set([...RASTER_EXTENSIONS, ...DICOM_EXTENSIONS]);

/** nnU-Net's channel index on an image's name (case_0000.png), which its label's name (case.png) lacks. */
const CHANNEL_SUFFIX = /_0000$/;

/** The structure of masks that lie directly in masks/ rather than in masks/<structure>/. */
export const LOOSE_MASKS = 'mask';

/**
 * Pairs masks with images: a mask under masks/<structure>/ (or loose in masks/) belongs to the
 * image at the same place under images/ — the same subfolder, the same stem (or its stem less a
 * MASK_SUFFIX or an image extension: maskKeys) — so that folders of patients holding files of
 * one name (P001/frontal.png, P002/frontal.png) pair each with its own; else to the one image of
 * that stem anywhere (masks kept flat for images in subfolders). Returns the images kept (one per
 * place).
 */
async function attachMasks(images: ImageEntry[], imagesDir: string, masksDir: string, only: string[] | undefined, found: Set<string>, result: ScanResult): Promise<ImageEntry[]> {
  const place = (folder: string, stem: string): string => (folder && folder !== '.' ? `${folder}/${stem}` : stem);
  const byPlace = new Map<string, ImageEntry>();
  const byStem = new Map<string, ImageEntry[]>();
  for (const img of images) {
    const at = place(path.posix.dirname(img.relPath), img.stem);
    const other = byPlace.get(at);
    if (other) {
      result.skipped.push(skipped(img.path, `duplicate image stem '${img.stem}' in one folder (masks are matched by name; also ${other.path})`));
      continue;
    }
    byPlace.set(at, img);
    const sameName = byStem.get(img.stem);
    if (sameName) sameName.push(img);
    else byStem.set(img.stem, [img]);
  }
  // nnU-Net names an image's channel: imagesTr/case_0000.png is labelsTr/case.png's image.
  for (const [at, img] of [...byPlace]) {
    const bare = img.stem.replace(CHANNEL_SUFFIX, '');
    if (bare === img.stem) continue;
    const alias = at.slice(0, at.length - img.stem.length) + bare;
    if (!byPlace.has(alias)) byPlace.set(alias, img);
    if (!byStem.has(bare)) byStem.set(bare, [img]);
  }
  // masks/<structure>/...; masks lying directly in masks/ (the one structure of many datasets) are
  // the structure LOOSE_MASKS. Each file with the folder its place is counted from.
  const groups = new Map<string, { file: string; root: string }[]>();
  // The images' own folder (masks kept among their images): its files, subfolders and all, are
  // one structure's candidates (a subfolder there is a patient's, not a structure).
  const together = (await fs.realpath(masksDir)) === (await fs.realpath(imagesDir));
  if (together) groups.set(LOOSE_MASKS, images.map((img) => ({ file: img.path, root: imagesDir })));
  const listing = together ? [] : (await fs.readdir(masksDir, { withFileTypes: true })).filter((e) => !e.name.startsWith('.'));
  for (const e of listing) {
    const full = path.join(masksDir, e.name);
    const kind = await kindOf(full, e);
    if (kind === 'broken') {
      result.skipped.push(await brokenLink(full));
      continue;
    }
    // A loose file that is no image (a README, a dataset.json) does not make a structure.
    if (kind !== 'dir' && !(await detectFormat(full))) {
      if (!(await isPixelFileOfHeader(full))) result.skipped.push(skipped(full, notAnImage(full)));
      continue;
    }
    const name = kind === 'dir' ? e.name : LOOSE_MASKS;
    const files = kind === 'dir' ? (await walk(full, result)).map((file) => ({ file, root: full })) : [{ file: full, root: masksDir }];
    groups.set(name, [...(groups.get(name) ?? []), ...files]);
  }
  const names = [...groups.keys()].sort();
  let byUid: Map<string, ImageEntry> | undefined;
  // Each DICOM header read once: in the images' own folder a file is a mask candidate and an image.
  const identities = new Map<string, Promise<DicomIdentity | undefined>>();
  const identity = (file: string): Promise<DicomIdentity | undefined> => identities.get(file) ?? identities.set(file, readDicomIdentity(file)).get(file)!;
  const masks = new Set<string>();
  const imagePaths = new Set(images.map((img) => img.path));
  if (only) {
    for (const s of only) if (!names.includes(s)) throw dataError(`${masksDir}: no structure '${s}'; found ${names.join(', ') || 'none'}`);
  }
  for (const name of names) {
    if (only && !only.includes(name)) continue;
    found.add(name);
    for (const { file, root } of groups.get(name)!) {
      const format = await detectFormat(file);
      if (!format) {
        if (!(await isPixelFileOfHeader(file))) result.skipped.push(skipped(file, notAnImage(file)));
        continue;
      }
      const stem = fileStem(file);
      const keys = maskKeys(stem);
      const folder = path.relative(root, path.dirname(file)).split(path.sep).join('/');
      // A file is no mask of itself: masks kept among their images (--masks naming the images' own
      // folder: DICOM SEGs exported beside their images, x.png beside x_mask.png) are the files
      // that name another image; the images there name none.
      const other = (x: ImageEntry | undefined): ImageEntry | undefined => (x?.path === file ? undefined : x);
      const sameStem = keys.map((k) => (byStem.get(k) ?? []).filter((x) => x.path !== file)).find((list) => list.length);
      let img = keys.map((k) => other(byPlace.get(place(folder, k)))).find((x) => x) ?? (sameStem?.length === 1 ? sameStem[0] : undefined);
      const itself = imagePaths.has(file);
      // A DICOM SEG named otherwise (archives name files by UID) finds its image by the UID it references.
      const seg = !img && format === 'dicom' ? (await identity(file))?.segmentationOf : undefined;
      if (seg) {
        byUid ??= await imagesByUid(byPlace.values(), identity);
        img = byUid.get(seg);
        if (!img) {
          result.skipped.push(skipped(file, `mask without image (a DICOM SEG of image ${seg}, which no DICOM file in ${imagesDir} is)`));
          masks.add(file); // reported once, as a mask: not an image either
          continue;
        }
      }
      if (!img && itself) continue;
      if (!img) {
        const problem = sameStem
          ? `mask of which image? ${sameStem.length} images share its name (${sameStem.slice(0, 3).map((x) => x.relPath).join(', ')}${sameStem.length > 3 ? ', ...' : ''}) and none is in its folder, ${folder || 'the top'}; place each mask in its image's subfolder (images/P001/a.png -> ${path.basename(masksDir)}/<structure>/P001/a.png)`
          : `mask without image (no file with stem ${keys.map((k) => `'${k}'`).join(' or ')} in ${imagesDir})`;
        result.skipped.push(skipped(file, problem));
        continue;
      }
      const earlier = img.masks?.[name];
      if (earlier) {
        result.skipped.push(skipped(file, `a second mask of '${name}' for ${img.path} (${earlier} is used)`));
        continue;
      }
      (img.masks ??= {})[name] = file;
      masks.add(file);
    }
  }
  // A mask lying among the images is not one of them.
  return [...new Set(byPlace.values())].filter((img) => !masks.has(img.path));
}

/** The DICOM images by their SOP Instance UID (read from their headers; what a SEG references). */
async function imagesByUid(images: Iterable<ImageEntry>, identity: (file: string) => Promise<DicomIdentity | undefined>): Promise<Map<string, ImageEntry>> {
  const byUid = new Map<string, ImageEntry>();
  for (const img of new Set(images)) {
    if (img.format !== 'dicom') continue;
    const uid = (await identity(img.path))?.sopInstanceUid;
    if (uid && !byUid.has(uid)) byUid.set(uid, img);
  }
  return byUid;
}

/** Folder names that say "masks" (masks, mask, ManualMask, labels, annotations, seg, gt, ground_truth). */
const MASKS_NAME = /mask|label|annot|seg|gt|truth/i;

/**
 * For a folder without images/ + masks/: when exactly one subfolder is named like masks and one
 * other holds images directly — or, of several that do, one only holds images its masks name
 * (nnU-Net's imagesTr/ beside imagesTs/) — those two (a hint for a message, never acted upon).
 */
export async function masksFolderHint(root: string): Promise<{ images: string; masks: string } | undefined> {
  const entries = await fs.readdir(root, { withFileTypes: true }).catch(() => []);
  const folders = entries.filter((e) => !e.name.startsWith('.') && (e.isDirectory() || e.isSymbolicLink())).map((e) => e.name);
  const masks = folders.filter((f) => MASKS_NAME.test(f));
  if (masks.length !== 1) return undefined;
  const list = (dir: string): Promise<string[]> => fs.readdir(dir).catch(() => []);
  const holdsImages = async (f: string): Promise<boolean> => {
    for (const name of (await list(path.join(root, f))).slice(0, 20)) if (await detectFormat(path.join(root, f, name)).catch(() => undefined)) return true;
    return false;
  };
  const images: string[] = [];
  for (const f of folders) if (f !== masks[0] && (await holdsImages(f))) images.push(f);
  const pair = (f: string): { images: string; masks: string } => ({ images: path.join(root, f), masks: path.join(root, masks[0]!) });
  if (images.length <= 1) return images.length ? pair(images[0]!) : undefined;
  // The masks' names, loose and one folder down (masks/<structure>/), as the images' stems they may be.
  const masksDir = path.join(root, masks[0]!);
  const named = new Set<string>();
  for (const name of await list(masksDir)) {
    const inside = await list(path.join(masksDir, name));
    for (const n of [name, ...inside]) for (const k of maskKeys(fileStem(n))) named.add(k);
  }
  const matching: string[] = [];
  for (const f of images) if ((await list(path.join(root, f))).some((n) => named.has(fileStem(n)) || named.has(fileStem(n).replace(CHANNEL_SUFFIX, '')))) matching.push(f);
  return matching.length === 1 ? pair(matching[0]!) : undefined;
}
