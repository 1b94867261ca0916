/**
 * The anatomy explorer: open or drop two images; the decomposer's parts at level n are drawn on
 * image A; a click on A shows the cosine similarity of dense Eve at that point over A and over B,
 * with B's best match marked (cross-image anatomy matching); with a dataset on the server, the
 * most similar patches appear as thumbnails. Inference runs in the browser with TF.js (webgl,
 * else cpu) on the exported encoder; `?inference=server` (or a model too large for the page) uses
 * the server's /api/dense instead. With a segmentation model on the server (`eden serve --model`),
 * image A's masks are drawn over it, with the heart's and the thorax's widest extents, and its
 * areas and cardiothoracic ratio are shown.
 */
import * as tf from '@tensorflow/tfjs';
import { encoderFromTfjs, type TfjsEncoderManifest } from '../../src/models/encoder-tfjs.js';
import type { Encoder } from '../../src/models/encoder.js';
import type { Measurements } from '../../src/apply/segment.js';
import { normalizeIntensity } from '../../src/data/intensity.js';
import { resizeGrey } from '../../src/data/resize.js';
import { decompose, gridShape } from '../../src/anatomy/decomposer.js';

interface Loaded {
  name: string;
  width: number;
  height: number;
  /** Display image in [0, 1]. */
  grey: Float32Array;
  /** Dense Eve [h * w * d] of the preprocessed image. */
  features?: { h: number; w: number; d: number; data: Float32Array };
}

interface Info {
  model: { backbone: string; width: number; featureDim: number; inputSize: number; parameters: number; source: string };
  data: { images: number } | null;
  segmentation: { structures: string[]; inputSize: number; backbone: string } | null;
  maxBytes: number;
}

interface Segmentation {
  structures: string[];
  /** Per structure: 0/1 at the image's own size. */
  masks: Uint8Array[];
  measurements: Measurements;
}

const MASK_COLOURS: [number, number, number][] = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]];

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const MAX_PIXELS = 8192 * 8192;
/** Models above this many parameters are run on the server instead of in the page. */
const BROWSER_PARAMETER_LIMIT = 40e6;

const state: {
  info?: Info;
  encoder?: Encoder;
  mode: 'browser' | 'server';
  a?: Loaded;
  b?: Loaded;
  level: number;
  click?: { u: number; v: number };
  heat: { a?: Float32Array; b?: Float32Array; grid?: [number, number] };
  bestB?: { u: number; v: number };
  segmentation?: Segmentation;
} = { mode: 'browser', level: 0, heat: {} };
// Exposed for end-to-end tests and for the curious.
(window as unknown as { eden: typeof state }).eden = state;

function status(text: string): void {
  $('status').textContent = text;
}

function showError(text: string): void {
  $('error').textContent = text;
}

async function init(): Promise<void> {
  try {
    state.info = (await (await fetch('api/info')).json()) as Info;
    const m = state.info.model;
    const forced = new URLSearchParams(location.search).get('inference');
    state.mode = forced === 'server' || m.parameters > BROWSER_PARAMETER_LIMIT ? 'server' : 'browser';
    if (state.mode === 'browser') {
      try {
        if (!(await tf.setBackend('webgl'))) throw new Error('webgl unavailable');
      } catch {
        await tf.setBackend('cpu');
      }
      await tf.ready();
      const manifest = (await (await fetch('model/model.json')).json()) as TfjsEncoderManifest;
      const weights = await (await fetch(`model/${manifest.weightsManifest[0]!.paths[0]}`)).arrayBuffer();
      state.encoder = encoderFromTfjs(manifest, weights);
    }
    const seg = state.info.segmentation;
    $('model').textContent = `${m.backbone} width ${m.width} (${(m.parameters / 1e6).toFixed(1)}M parameters), input ${m.inputSize} px, inference ${state.mode === 'browser' ? `in the page (TF.js ${tf.getBackend()})` : 'on the server'}${state.info.data ? `; dataset: ${state.info.data.images} images` : ''}${seg ? `; segmentation: ${seg.structures.join(', ')} (${seg.backbone}, ${seg.inputSize} px, on the server)` : ''}`;
    status('ready: open an image for A');
  } catch (err) {
    showError(`cannot load the model: ${(err as Error).message}`);
  }
}

function isDicom(bytes: Uint8Array): boolean {
  return bytes.length > 132 && String.fromCharCode(...bytes.subarray(128, 132)) === 'DICM';
}

/** Decode in the page when the browser can; DICOM and the rest go through the server. */
async function decode(file: File): Promise<Loaded> {
  if (state.info && file.size > state.info.maxBytes) throw new Error(`${file.name}: ${(file.size / 2 ** 20).toFixed(0)} MB is over the ${(state.info.maxBytes / 2 ** 20).toFixed(0)} MB limit`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (bytes.length === 0) throw new Error(`${file.name}: empty file`);
  // PNG stores its size in the header: refuse huge images before decoding them.
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes.length > 24) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    const [w, h] = [dv.getUint32(16), dv.getUint32(20)];
    if (w * h > MAX_PIXELS) throw new Error(`${file.name}: image too large (${w}x${h} pixels; at most ${MAX_PIXELS})`);
  }
  if (!isDicom(bytes)) {
    try {
      const bitmap = await createImageBitmap(new Blob([bytes]));
      if (bitmap.width * bitmap.height > MAX_PIXELS) throw new Error(`${file.name}: image too large (${bitmap.width}x${bitmap.height})`);
      const c = document.createElement('canvas');
      c.width = bitmap.width;
      c.height = bitmap.height;
      const ctx = c.getContext('2d')!;
      ctx.drawImage(bitmap, 0, 0);
      const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
      const grey = new Float32Array(c.width * c.height);
      for (let i = 0; i < grey.length; i++) grey[i] = 0.299 * rgba[4 * i]! + 0.587 * rgba[4 * i + 1]! + 0.114 * rgba[4 * i + 2]!;
      const norm = normalizeIntensity({ width: c.width, height: c.height, data: grey, bitDepth: 8, encoding: 'browser' });
      return { name: file.name, width: c.width, height: c.height, grey: norm };
    } catch (err) {
      if ((err as Error).message.includes('too large')) throw err;
      // Not decodable here (TIFF, 16-bit...): let the server try.
    }
  }
  const r = await fetch('api/decode', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
  const body = (await r.json()) as { error?: string; width: number; height: number; png: string };
  if (!r.ok) throw new Error(`${file.name}: ${body.error ?? r.statusText}`);
  const rgba = await pngPixels(body.png, body.width, body.height);
  return { name: file.name, width: body.width, height: body.height, grey: Float32Array.from({ length: body.width * body.height }, (_, i) => rgba[4 * i]! / 255) };
}

/** The RGBA pixels of a base64 PNG of the given size (the server's answers). */
async function pngPixels(base64: string, width: number, height: number): Promise<Uint8ClampedArray> {
  const img = new Image();
  img.src = `data:image/png;base64,${base64}`;
  await img.decode();
  const c = document.createElement('canvas');
  [c.width, c.height] = [width, height];
  const ctx = c.getContext('2d')!;
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, width, height).data;
}

/** Masks and measurements of the server's segmentation model for an image. */
async function segment(file: File): Promise<Segmentation> {
  const r = await fetch('api/segment', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(await file.arrayBuffer()) });
  const body = (await r.json()) as { error?: string; width: number; height: number; structures: string[]; masks: string[]; measurements: Measurements };
  if (!r.ok) throw new Error(`${file.name}: ${body.error ?? r.statusText}`);
  const masks = await Promise.all(
    body.masks.map(async (png) => {
      const rgba = await pngPixels(png, body.width, body.height);
      return Uint8Array.from({ length: body.width * body.height }, (_, i) => (rgba[4 * i]! > 127 ? 1 : 0));
    }),
  );
  return { structures: body.structures, masks, measurements: body.measurements };
}

function describeSegmentation(s: Segmentation): string {
  const m = s.measurements;
  const areas = s.structures.map((n) => `${n} ${m.areaPx[n]!.toLocaleString('en')} px${m.areaMm2 ? ` (${(m.areaMm2[n]! / 100).toFixed(1)} cm²)` : ''}`).join('; ');
  return `${areas}${m.ctr !== undefined ? `; cardiothoracic ratio ${m.ctr.toFixed(3)} (heart ${m.heartWidthPx} px / thorax ${m.thoraxWidthPx} px)` : ''}`;
}

/** Dense Eve of an image, in the page or on the server. */
async function dense(img: Loaded, file: File): Promise<NonNullable<Loaded['features']>> {
  const size = state.info!.model.inputSize;
  if (state.mode === 'server') {
    const r = await fetch('api/dense', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(await file.arrayBuffer()) });
    const body = (await r.json()) as { error?: string; h: number; w: number; d: number; features: string };
    if (!r.ok) throw new Error(`${file.name}: ${body.error}`);
    const raw = Uint8Array.from(atob(body.features), (ch) => ch.charCodeAt(0));
    return { h: body.h, w: body.w, d: body.d, data: new Float32Array(raw.buffer) };
  }
  const input = resizeGrey(img.grey, img.width, img.height, size, size).map((v) => (v - 0.5) / 0.25);
  const x = tf.tensor4d(input, [1, size, size, 1]);
  const y = tf.tidy(() => state.encoder!.backbone.forward(x, { training: false }).featureMap);
  const data = (await y.data()) as Float32Array;
  const [, h, w, d] = y.shape;
  tf.dispose([x, y]);
  return { h, w, d, data };
}

function displaySize(img: Loaded): [number, number] {
  const scale = Math.min(512 / img.width, 512 / img.height);
  return [Math.round(img.width * scale), Math.round(img.height * scale)];
}

const JET = (t: number): [number, number, number] => {
  const c = (x: number): number => Math.round(255 * Math.min(1, Math.max(0, x)));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
};

function draw(which: 'a' | 'b'): void {
  const img = state[which];
  const canvas = $<HTMLCanvasElement>(`canvas-${which}`);
  if (!img) return;
  const [w, h] = displaySize(img);
  [canvas.width, canvas.height] = [w, h];
  const ctx = canvas.getContext('2d')!;
  const shown = resizeGrey(img.grey, img.width, img.height, w, h);
  const data = ctx.createImageData(w, h);
  for (let i = 0; i < shown.length; i++) {
    const g = Math.round(Math.min(1, Math.max(0, shown[i]!)) * 255);
    data.data.set([g, g, g, 255], 4 * i);
  }
  if (which === 'a' && state.segmentation) {
    // The masks, tinted, at display size; then the extents the cardiothoracic ratio measures.
    const { masks, measurements } = state.segmentation;
    const small = masks.map((m) => resizeGrey(Float32Array.from(m), img.width, img.height, w, h));
    for (let i = 0; i < w * h; i++) {
      small.forEach((m, k) => {
        if (m[i]! <= 0.5) return;
        const [r, g, b] = MASK_COLOURS[k % MASK_COLOURS.length]!;
        data.data[4 * i] = 0.6 * data.data[4 * i]! + 0.4 * r;
        data.data[4 * i + 1] = 0.6 * data.data[4 * i + 1]! + 0.4 * g;
        data.data[4 * i + 2] = 0.6 * data.data[4 * i + 2]! + 0.4 * b;
      });
    }
    ctx.putImageData(data, 0, 0);
    const line = (col: number, colour: string): void => {
      const x = ((col + 0.5) / img.width) * w;
      ctx.strokeStyle = colour;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, h);
      ctx.stroke();
      ctx.setLineDash([]);
    };
    if (measurements.heartExtent) [measurements.heartExtent.left, measurements.heartExtent.right].forEach((c) => line(c, '#ff5252'));
    if (measurements.thoraxExtent) [measurements.thoraxExtent.left, measurements.thoraxExtent.right].forEach((c) => line(c, '#40c4ff'));
  } else {
    ctx.putImageData(data, 0, 0);
  }
  const heat = state.heat[which];
  if (heat && state.heat.grid) {
    const [gh, gw] = state.heat.grid;
    const small = document.createElement('canvas');
    [small.width, small.height] = [gw, gh];
    const sctx = small.getContext('2d')!;
    const cells = sctx.createImageData(gw, gh);
    // Colours span this map's own range, so the structure of similar anatomy stands out.
    let lo = Infinity;
    let hi = -Infinity;
    for (const x of heat) [lo, hi] = [Math.min(lo, x), Math.max(hi, x)];
    for (let i = 0; i < heat.length; i++) cells.data.set([...JET((heat[i]! - lo) / Math.max(hi - lo, 1e-6)), 255], 4 * i);
    sctx.putImageData(cells, 0, 0);
    ctx.globalAlpha = 0.45;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, w, h);
    ctx.globalAlpha = 1;
  }
  const mark = (u: number, v: number, color: string): void => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(u * w, v * h, 7, 0, 2 * Math.PI);
    ctx.stroke();
  };
  if (which === 'a') {
    // The decomposer's parts at the chosen level.
    ctx.strokeStyle = '#ffb000';
    ctx.lineWidth = 1;
    for (const p of decompose(w, h, state.level)) ctx.strokeRect(p.x + 0.5, p.y + 0.5, p.width - 1, p.height - 1);
    if (state.click) mark(state.click.u, state.click.v, '#fff');
  } else if (state.bestB) {
    mark(state.bestB.u, state.bestB.v, '#0f0');
  }
}

function similarity(f: NonNullable<Loaded['features']>, q: Float32Array): Float32Array {
  const out = new Float32Array(f.h * f.w);
  let qq = 0;
  for (let k = 0; k < f.d; k++) qq += q[k]! * q[k]!;
  for (let c = 0; c < out.length; c++) {
    let dot = 0;
    let nn = 0;
    for (let k = 0; k < f.d; k++) {
      const v = f.data[c * f.d + k]!;
      dot += v * q[k]!;
      nn += v * v;
    }
    out[c] = dot / Math.max(Math.sqrt(qq * nn), 1e-12);
  }
  return out;
}

async function onClick(ev: MouseEvent): Promise<void> {
  const a = state.a;
  if (!a?.features) return;
  const canvas = ev.currentTarget as HTMLCanvasElement;
  const rect = canvas.getBoundingClientRect();
  const u = (ev.clientX - rect.left) / rect.width;
  const v = (ev.clientY - rect.top) / rect.height;
  state.click = { u, v };
  const f = a.features;
  const cell = Math.min(f.h - 1, Math.floor(v * f.h)) * f.w + Math.min(f.w - 1, Math.floor(u * f.w));
  const q = f.data.slice(cell * f.d, (cell + 1) * f.d);
  state.heat = { grid: [f.h, f.w], a: similarity(f, q) };
  if (state.b?.features) {
    const hb = similarity(state.b.features, q);
    state.heat.b = hb;
    let best = 0;
    for (let i = 1; i < hb.length; i++) if (hb[i]! > hb[best]!) best = i;
    state.bestB = { u: ((best % f.w) + 0.5) / f.w, v: (Math.floor(best / f.w) + 0.5) / f.h };
  }
  draw('a');
  draw('b');
  status(`point (${(u * a.width).toFixed(0)}, ${(v * a.height).toFixed(0)}) of ${a.name}${state.bestB ? `; best match in B at (${(state.bestB.u * state.b!.width).toFixed(0)}, ${(state.bestB.v * state.b!.height).toFixed(0)})` : ''}`);
  if (state.info?.data) {
    const r = await fetch('api/similar', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ vector: Array.from(q), k: 8 }) });
    const body = (await r.json()) as { matches?: { file: string; score: number; thumbnail: string }[]; error?: string };
    $('matches').innerHTML = '';
    for (const m of body.matches ?? []) {
      const fig = document.createElement('figure');
      fig.innerHTML = `<img alt="" src="${m.thumbnail}"><figcaption></figcaption>`;
      fig.querySelector('figcaption')!.textContent = `${m.file.split('/').pop()} ${m.score.toFixed(2)}`;
      $('matches').appendChild(fig);
    }
  }
}

async function load(which: 'a' | 'b', file: File | undefined): Promise<void> {
  if (!file) return;
  showError('');
  status(`reading ${file.name}…`);
  try {
    const img = await decode(file);
    status(`computing dense Eve of ${file.name}…`);
    img.features = await dense(img, file);
    if (which === 'a') {
      state.segmentation = undefined;
      $('segmentation').textContent = '';
      if (state.info?.segmentation) {
        status(`segmenting ${file.name}…`);
        state.segmentation = await segment(file);
        $('segmentation').textContent = describeSegmentation(state.segmentation);
      }
    }
    state[which] = img;
    state.heat = {};
    state.click = undefined;
    state.bestB = undefined;
    draw(which);
    status(`${which.toUpperCase()}: ${file.name} (${img.width}x${img.height}), ${img.features.h}x${img.features.w} feature cells${which === 'a' ? ' — click a point' : ''}`);
  } catch (err) {
    // A bad file leaves the page and the other image as they were.
    showError((err as Error).message);
    status('ready');
  }
}

for (const which of ['a', 'b'] as const) {
  const input = $<HTMLInputElement>(`file-${which}`);
  input.addEventListener('change', () => void load(which, input.files?.[0]));
  const drop = $(`drop-${which}`);
  drop.addEventListener('dragover', (e) => e.preventDefault());
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    void load(which, e.dataTransfer?.files[0]);
  });
}
$('canvas-a').addEventListener('click', (e) => void onClick(e));
$<HTMLInputElement>('level').addEventListener('input', (e) => {
  state.level = Number((e.target as HTMLInputElement).value);
  const { rows, cols } = gridShape(state.level);
  $('level-value').textContent = `${state.level} (${rows * cols} part${rows * cols > 1 ? 's' : ''})`;
  draw('a');
});
void init();
