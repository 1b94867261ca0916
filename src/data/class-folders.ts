/**
 * Classification labels from the folder layout that torchvision's ImageFolder and Keras's
 * image_dataset_from_directory read: `<root>/<class>/<image>`, optionally under split folders
 * `<root>/<train|val|test>/<class>/<image>` (the Kaggle chest X-ray layout). Used when a folder has
 * no label manifest.
 */
import type { ImageEntry } from './scan.js';

/** Split folder names, lower case, and the split each stands for ('test' is held out; the rest train). */
const SPLIT_FOLDERS: Record<string, string> = { train: 'train', training: 'train', val: 'val', valid: 'val', validation: 'val', test: 'test', testing: 'test' };

/**
 * Fewer images per class than this on average, and the 'classes' are identifiers rather than labels
 * (folders per patient or study, a patient-ID column): no class can be trained, validated and tested.
 */
export const MIN_IMAGES_PER_CLASS = 3;

/** Whether `classes` among `images` are more likely identifiers than labels (MIN_IMAGES_PER_CLASS). */
export const likelyIdentifiers = (classes: number, images: number): boolean => classes * MIN_IMAGES_PER_CLASS > images;

export interface ClassFolderLabel {
  label: string;
  /** 'train', 'val' or 'test' under split folders. */
  split?: string;
}

/**
 * The class (and split) of every image, from its folders; undefined unless every image lies in a
 * class folder and there are at least two classes.
 */
export function classFolderLabels(images: ImageEntry[]): Map<ImageEntry, ClassFolderLabel> | undefined {
  if (!images.length) return undefined;
  const parts = images.map((e) => e.relPath.split('/'));
  const underSplits = parts.every((p) => p.length >= 3 && SPLIT_FOLDERS[p[0]!.toLowerCase()] !== undefined);
  if (!underSplits && parts.some((p) => p.length < 2)) return undefined;
  const labels = new Map<ImageEntry, ClassFolderLabel>();
  images.forEach((e, i) => {
    const p = parts[i]!;
    labels.set(e, underSplits ? { label: p[1]!, split: SPLIT_FOLDERS[p[0]!.toLowerCase()] } : { label: p[0]! });
  });
  return new Set([...labels.values()].map((l) => l.label)).size >= 2 ? labels : undefined;
}
