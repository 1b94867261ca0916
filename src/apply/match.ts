/**
 * Anatomy matching with Eve, the quickest look at what an encoder knows: every image is cut into
 * the 2^n parts of the anatomy decomposer (level n, as in pretraining), each part is embedded
 * (pooled Eve of the part resized to the encoder's input size), and for each part the most similar
 * part of every other image is found. An encoder that knows anatomy matches a part to the same
 * part (the same anatomical region) of other patients; the share of such matches has a chance
 * level of 1 / 2^n. Raw pixels (each part at 16 x 16, mean-centred) give the no-network floor.
 */
import * as tf from '@tensorflow/tfjs';
import { decompose } from '../anatomy/decomposer.js';
import { EdenError } from '../core/errors.js';
import { decodeImageFile } from '../data/decode.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import { extractRegion } from '../data/views.js';
import { scanDataset, skippedBy, type SkippedFile } from '../data/scan.js';
import type { ResNet } from '../models/resnet.js';
import { cosine, mean } from '../eval/metrics.js';
import { pixelVector } from '../eval/probes.js';
import { pairedBootstrap, type PairedDifference } from '../eval/statistics.js';
import { imageBatch } from '../models/input.js';

export interface PartMatch {
  part: number;
  /** The best match in each other image: that image, its part and the cosine. */
  matches: { image: number; part: number; cosine: number }[];
}

export interface MatchReport {
  files: string[];
  level: number;
  parts: number;
  /** Per image, per part. */
  images: PartMatch[][];
  /** Share of (part, other image) pairs whose best match is the same part; chance 1 / parts. */
  samePart: number;
  /** The same share with raw pixels instead of Eve. */
  samePartRawPixels: number;
  /** samePart − samePartRawPixels with a 95% paired bootstrap over the query images (each image's share of same-part matches). */
  overRawPixels: PairedDifference;
  skipped: SkippedFile[];
}

/** For embeddings [image][part], each part's best match in every other image. */
function bestMatches(emb: Float32Array[][]): { images: PartMatch[][]; samePart: number; perImage: number[] } {
  const images = emb.map((parts, i) =>
    parts.map((_, p) => {
      const matches: PartMatch['matches'] = [];
      emb.forEach((other, j) => {
        if (j === i) return;
        const sims = other.map((q) => cosine(parts[p]!, q));
        const best = sims.indexOf(Math.max(...sims));
        matches.push({ image: j, part: best, cosine: sims[best]! });
      });
      return { part: p, matches };
    }),
  );
  // Per query image, the share of its parts' matches that land on the same part.
  const same = images.map((parts) => parts.flatMap((q) => q.matches.map((m) => (m.part === q.part ? 1 : 0))));
  const all = same.flat();
  return { images, samePart: mean(all), perImage: same.map((s) => (s.length ? mean(s) : 0)) };
}

export async function matchAnatomy(backbone: ResNet, inputs: string[], o: { level: number; size: number; onSkip?: (s: SkippedFile) => void }): Promise<MatchReport> {
  const scan = await scanDataset(inputs, { imagesOnly: true });
  const skippedFiles = [...scan.skipped];
  const files: string[] = [];
  const crops: Float32Array[][] = [];
  // Each image at 2x the input size, so that level-n parts keep detail before being resized.
  const side = o.size * 2;
  for (const e of scan.images) {
    try {
      const grey = await decodeImageFile(e.path);
      const image = resizeGrey(normalizeIntensity(grey, {}, grey.data), grey.width, grey.height, side, side);
      crops.push(decompose(side, side, o.level).map((p) => resizeGrey(extractRegion(image, side, p), p.width, p.height, o.size, o.size)));
      files.push(e.path);
    } catch (err) {
      const s = skippedBy(e.path, err);
      skippedFiles.push(s);
      o.onSkip?.(s);
    }
  }
  // A part is matched in the other images: one image has none.
  if (files.length < 2) throw new EdenError('data', `matching needs at least 2 readable images, found ${files.length} in ${inputs.join(', ')}`);
  const emb: Float32Array[][] = [];
  for (const parts of crops) {
    const x = imageBatch(parts, o.size);
    const y = tf.tidy(() => backbone.forward(x, { training: false }).pooled);
    const data = (await y.data()) as Float32Array;
    const d = y.shape[1];
    emb.push(parts.map((_, k) => data.slice(k * d, (k + 1) * d)));
    tf.dispose([x, y]);
  }
  const raw = crops.map((parts) => parts.map(pixelVector(o.size)));
  const eve = bestMatches(emb);
  const pixels = bestMatches(raw);
  // Every query image has the same number of matches, so the mean of the per-image shares is samePart's difference.
  const overRawPixels = files.length > 1 ? pairedBootstrap([eve.perImage], [pixels.perImage]) : { mean: NaN, lo: NaN, hi: NaN, significant: false, seeds: 1, images: files.length };
  return { files, level: o.level, parts: 2 ** o.level, images: eve.images, samePart: eve.samePart, samePartRawPixels: pixels.samePart, overRawPixels, skipped: skippedFiles };
}
