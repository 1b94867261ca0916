/**
 * `eden serve`: a local web server for the anatomy explorer (viewer/). It serves the built page,
 * the encoder exported for TF.js (inference runs in the browser), and a small JSON API that is
 * the fallback for large models and for images the browser cannot decode (DICOM):
 *
 *   GET  /api/info              model and dataset summary
 *   GET  /model/model.json      the encoder in TF.js format (+ /model/weights.bin)
 *   POST /api/decode            image bytes -> { width, height, png } (display)
 *   POST /api/dense             image bytes -> dense Eve of the preprocessed image
 *   POST /api/similar           { vector } -> top-k most similar dataset patches, with thumbnails
 *   POST /api/segment           image bytes -> masks (PNG per structure, the image's size), areas
 *                               and the cardiothoracic ratio, with a segmentation model (--model)
 *
 * It reads only what it was given: the viewer's build folder (through @fastify/static, which
 * refuses paths outside it), the checkpoint and the --data folder; requests name nothing else.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../core/errors.js';
import { decodeImageBytes, decodeImageFile, isOwnRasterFormat, looksTruncated } from '../data/decode.js';
import { hasDicomBytes } from '../data/formats.js';
import { normalizeIntensity } from '../data/intensity.js';
import { resizeGrey } from '../data/resize.js';
import { scanDataset, skippedBy } from '../data/scan.js';
import { normaliseInput } from '../models/input.js';
import type { Encoder } from '../models/encoder.js';
import type { EncoderFileMeta } from '../models/encoder-file.js';
import { embedBatch } from '../embed/embed.js';
import { cosine } from '../eval/metrics.js';
import type { Segmenter } from '../models/task-model-file.js';
import { maskPng, segmentImages } from '../apply/segment.js';
import { toBytes, type GreyImage } from '../data/grey-image.js';

export interface ServeOptions {
  encoder: Encoder;
  meta: EncoderFileMeta;
  /** Optional folder of images whose dense Eve is indexed for /api/similar. */
  data?: string;
  /** At most this many dataset images are indexed. */
  maxDataImages?: number;
  /** Largest upload accepted, bytes. */
  maxBytes?: number;
  /** Folder of the built viewer (default: dist/viewer next to the package). */
  viewerDir?: string;
  /** A segmentation model (eden finetune): masks and measurements for uploaded images. */
  segmenter?: Segmenter;
  onLog?: (line: string) => void;
}

interface IndexedImage {
  file: string;
  grey: Float32Array; // [S * S] display image in [0, 1]
  features: Float32Array; // [h * w * d]
}

const MAX_PIXELS = 8192 * 8192;

export function defaultViewerDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'viewer');
}

/** Decode uploaded bytes (raster or DICOM) with a readable error. */
async function decodeUploadGrey(bytes: Buffer): Promise<GreyImage> {
  if (bytes.length === 0) throw new Error('empty file');
  const format = hasDicomBytes(bytes) ? 'dicom' : 'raster';
  const tooLarge = (width: number, height: number): Error => new Error(`image too large: ${width}x${height} pixels (at most ${MAX_PIXELS})`);
  if (format === 'raster' && !isOwnRasterFormat(bytes)) {
    // sharp reads the size from the header: a huge upload is refused before its pixels are decoded.
    const meta = await sharp(bytes).metadata().catch(() => undefined);
    if (!meta?.width || !meta.height) throw new Error(looksTruncated(bytes) ? 'truncated image data' : 'not an image Eden can read (PNG, JPEG, TIFF, WebP, GIF, BMP, PGM/PPM, JPEG 2000, NumPy .npy, NIfTI, MetaImage or DICOM)');
    if (meta.width * meta.height > MAX_PIXELS) throw tooLarge(meta.width, meta.height);
  }
  const img = await decodeImageBytes(bytes, format);
  if (img.width * img.height > MAX_PIXELS) throw tooLarge(img.width, img.height);
  return img;
}

async function decodeUpload(bytes: Buffer): Promise<{ width: number; height: number; data: Float32Array }> {
  const img = await decodeUploadGrey(bytes);
  return { width: img.width, height: img.height, data: normalizeIntensity(img, {}, img.data) };
}

/** Eden's default preprocessing to the model's input size. */
function toInput(img: { width: number; height: number; data: Float32Array }, size: number): Float32Array {
  return normaliseInput(resizeGrey(img.data, img.width, img.height, size, size));
}

async function denseFeatures(encoder: Encoder, input: Float32Array, size: number): Promise<{ h: number; w: number; d: number; data: Float32Array }> {
  const x = tf.tensor4d(input, [1, size, size, 1]);
  const y = embedBatch(encoder, x, true);
  const data = (await y.data()) as Float32Array;
  const [, h, w, d] = y.shape as [number, number, number, number];
  tf.dispose([x, y]);
  return { h, w, d, data };
}

async function pngOf(grey: Float32Array, width: number, height: number): Promise<string> {
  const bytes = Buffer.from(toBytes(grey));
  return (await sharp(bytes, { raw: { width, height, channels: 1 } }).png().toBuffer()).toString('base64');
}

export async function buildServer(o: ServeOptions): Promise<FastifyInstance> {
  // Dense maps at 256 px at least (8 x 8 cells for a ResNet): finer than most training views.
  const size = Math.max(256, o.meta.inputSize ?? 0);
  const maxBytes = o.maxBytes ?? 64 * 1024 * 1024;
  const viewerDir = o.viewerDir ?? defaultViewerDir();
  const app = Fastify({ logger: false, bodyLimit: maxBytes });
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: maxBytes }, (_req, body, done) => done(null, body));

  // The model for in-browser inference, exported once in memory.
  const named: tf.NamedTensorMap = {};
  for (const [n, v] of o.encoder.namedVariables()) if (!n.startsWith('head.')) named[n] = v;
  const { data: weights, specs } = await tf.io.encodeWeights(named);
  const manifest = { format: 'eden-encoder-tfjs-1', args: o.meta.args, hasHead: false, inputSize: size, weightsManifest: [{ paths: ['weights.bin'], weights: specs }] };

  // Optional dataset index for /api/similar.
  const index: IndexedImage[] = [];
  if (o.data) {
    const scan = await scanDataset([o.data], { imagesOnly: true });
    const cap = o.maxDataImages ?? 64;
    for (const entry of scan.images.slice(0, cap)) {
      try {
        const img = await decodeImageFile(entry.path);
        const norm = { width: img.width, height: img.height, data: normalizeIntensity(img, {}, img.data) };
        const f = await denseFeatures(o.encoder, toInput(norm, size), size);
        index.push({ file: path.relative(o.data, entry.path), grey: resizeGrey(norm.data, img.width, img.height, size, size), features: f.data });
      } catch (err) {
        // As every command reports an unreadable file.
        o.onLog?.(`skipped ${skippedBy(entry.path, err).message}`);
      }
    }
    const more = scan.images.length > cap ? ` (the first ${cap} of ${scan.images.length}; --max-data-images N indexes more)` : '';
    o.onLog?.(`indexed ${index.length} image(s) of ${o.data}${more}`);
  }

  const badInput = (reply: import('fastify').FastifyReply, err: unknown) => reply.code(400).send({ error: describeError(err) });
  app.get('/api/info', async () => ({
    model: { backbone: o.meta.args.backbone, width: o.meta.args.width, featureDim: o.encoder.featureDim, inputSize: size, parameters: o.encoder.backbone.store.parameterCount(), source: o.meta.source },
    data: o.data ? { images: index.length } : null,
    segmentation: o.segmenter ? { structures: o.segmenter.meta.structures, inputSize: o.segmenter.meta.inputSize, backbone: o.segmenter.meta.backbone.name, validation: o.segmenter.meta.validation } : null,
    maxBytes,
  }));
  app.post('/api/segment', async (req, reply) => {
    if (!o.segmenter) return reply.code(404).send({ error: 'no segmentation model: start eden serve with --model MODEL (from eden finetune)' });
    try {
      const grey = await decodeUploadGrey(req.body as Buffer);
      const normalised = normalizeIntensity(grey, o.segmenter.meta.intensity, grey.data);
      const [r] = await segmentImages(o.segmenter, [{ grey, normalised }]);
      const masks = await Promise.all(r!.masks.map(async (m) => (await maskPng(m, grey.width, grey.height)).toString('base64')));
      return { width: grey.width, height: grey.height, structures: o.segmenter.meta.structures, masks, measurements: r!.measurements };
    } catch (err) {
      return badInput(reply, err);
    }
  });
  app.get('/model/model.json', async () => manifest);
  app.get('/model/weights.bin', async (_req, reply) => reply.type('application/octet-stream').send(Buffer.from(weights)));

  app.post('/api/decode', async (req, reply) => {
    try {
      const img = await decodeUpload(req.body as Buffer);
      return { width: img.width, height: img.height, png: await pngOf(img.data, img.width, img.height) };
    } catch (err) {
      return badInput(reply, err);
    }
  });
  app.post('/api/dense', async (req, reply) => {
    try {
      const img = await decodeUpload(req.body as Buffer);
      const f = await denseFeatures(o.encoder, toInput(img, size), size);
      return { size, h: f.h, w: f.w, d: f.d, features: Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength).toString('base64') };
    } catch (err) {
      return badInput(reply, err);
    }
  });
  app.post('/api/similar', async (req, reply) => {
    const body = req.body as { vector?: number[]; k?: number };
    if (!Array.isArray(body?.vector) || body.vector.length !== o.encoder.featureDim) return reply.code(400).send({ error: `expected { vector: number[${o.encoder.featureDim}] }` });
    if (!index.length) return reply.code(404).send({ error: 'no dataset: start eden serve with --data DIR' });
    const k = Math.min(24, Math.max(1, body.k ?? 8));
    const d = o.encoder.featureDim;
    const matches: { image: number; cell: number; score: number }[] = [];
    index.forEach((im, i) => {
      const cells = im.features.length / d;
      for (let c = 0; c < cells; c++) matches.push({ image: i, cell: c, score: cosine(body.vector!, im.features.subarray(c * d, (c + 1) * d)) });
    });
    matches.sort((a, b) => b.score - a.score);
    const top = matches.slice(0, k);
    const grid = Math.round(Math.sqrt(index[0]!.features.length / d));
    return {
      matches: await Promise.all(
        top.map(async (m) => {
          const im = index[m.image]!;
          const cell = size / grid;
          const cx = ((m.cell % grid) + 0.5) * cell;
          const cy = (Math.floor(m.cell / grid) + 0.5) * cell;
          const half = Math.round(cell);
          const x0 = Math.max(0, Math.min(size - 2 * half, Math.round(cx - half)));
          const y0 = Math.max(0, Math.min(size - 2 * half, Math.round(cy - half)));
          const crop = new Float32Array(4 * half * half);
          for (let y = 0; y < 2 * half; y++) crop.set(im.grey.subarray((y0 + y) * size + x0, (y0 + y) * size + x0 + 2 * half), y * 2 * half);
          return { file: im.file, x: cx / size, y: cy / size, score: m.score, thumbnail: `data:image/png;base64,${await pngOf(crop, 2 * half, 2 * half)}` };
        }),
      ),
    };
  });

  if (existsSync(path.join(viewerDir, 'index.html'))) {
    await app.register(fastifyStatic, { root: viewerDir, prefix: '/', index: ['index.html'], dotfiles: 'deny' });
  } else {
    app.get('/', async (_req, reply) => reply.code(503).type('text/plain').send(`the viewer is not built: run 'npm run build' (expected ${viewerDir}/index.html)`));
  }
  return app;
}
