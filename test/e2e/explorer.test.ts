/**
 * The anatomy explorer in a real browser (Debian's chromium, driven by playwright-core): load the
 * page, upload bundled radiographs, click inside the heart, check that the similarity map is drawn
 * and peaks at the click, on both inference paths (in the page, and the server fallback); bad
 * files show a message and the page keeps working; the server refuses paths outside the viewer.
 * The screenshot is saved to test-artifacts/explorer.png.
 */
import { isRequired } from '../helpers/tools.js';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { useBackend } from '../../src/engine/backend.js';
import { loadEncoder } from '../../src/models/encoder-file.js';
import { buildServer } from '../../src/server/app.js';
import { checkpointPaths } from '../../src/train/pretrain.js';
import { loadSegmenter } from '../../src/models/task-model-file.js';
import { builtinModelPath, hasBuiltinModel } from '../../src/models/builtin.js';

const root = path.join(import.meta.dirname, '..', '..');
const samples = path.join(root, 'samples', 'hannover_covid19');
const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) ? `${CHROMIUM} not found: apt-get install chromium (.ci/run does)` : !existsSync(path.join(root, 'dist', 'viewer', 'index.html')) ? "the viewer is not built: run 'npm run build'" : undefined;

describe('anatomy explorer (chromium)', { skip: skip && !isRequired('chromium') ? skip : undefined }, () => {
  if (skip) it('needs Chromium and the built viewer', () => assert.fail(`${skip} (required here: EDEN_REQUIRE=${process.env['EDEN_REQUIRE']})`));
  let app: FastifyInstance;
  let url: string;
  let browser: Browser;
  let trained = false;
  const tmp = mkdtempSync(path.join(tmpdir(), 'eden-e2e-'));

  before(async () => {
    // EDEN_E2E_CHECKPOINT, else the pretrained Eve shipped with Eden (what a user sees), else a
    // tiny run (a checkout without the model file: the shifted-copy matching test then skips).
    let checkpoint = process.env['EDEN_E2E_CHECKPOINT'] ?? (hasBuiltinModel() ? builtinModelPath() : undefined);
    trained = checkpoint !== undefined;
    if (!checkpoint) {
      const run = path.join(tmp, 'run');
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'pretrain', '--preset', 'tiny', '--out', run], { cwd: root, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      checkpoint = checkpointPaths(run).last;
    }
    await useBackend('wasm');
    const { encoder, meta } = await loadEncoder(checkpoint);
    app = await buildServer({ encoder, meta, data: samples, maxDataImages: 8 });
    url = `${await app.listen({ port: 0, host: '127.0.0.1' })}/`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  after(async () => {
    await browser?.close();
    await app?.close();
  });

  async function open(query = ''): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(url + query);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('ready'), undefined, { timeout: 60000 });
    return page;
  }

  async function clickHeartAndCheck(page: Page): Promise<void> {
    await page.setInputFiles('#file-a', path.join(samples, '00870a9c.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('click a point'), undefined, { timeout: 60000 });
    await page.setInputFiles('#file-b', path.join(samples, '00d96e05.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('B:'), undefined, { timeout: 60000 });
    // The heart: below the middle, to the image's right of the centre line (the patient's left).
    const canvas = page.locator('#canvas-a');
    const box = (await canvas.boundingBox())!;
    const [u, v] = [0.56, 0.66];
    await canvas.click({ position: { x: u * box.width, y: v * box.height } });
    await page.waitForFunction(() => (window as unknown as { eden: { heat: { a?: Float32Array } } }).eden.heat.a !== undefined);
    const result = await page.evaluate(() => {
      const s = (window as unknown as { eden: { heat: { a: Float32Array; b?: Float32Array; grid: [number, number] }; bestB?: unknown } }).eden;
      const heat = Array.from(s.heat.a);
      const best = heat.indexOf(Math.max(...heat));
      const [h, w] = s.heat.grid;
      // Is the map drawn? Sample the canvas where the click was: the overlay tints the grey.
      const c = document.getElementById('canvas-a') as HTMLCanvasElement;
      const px = c.getContext('2d')!.getImageData(Math.round(0.56 * c.width), Math.round(0.6 * c.height), 1, 1).data;
      return { best, h, w, max: heat[best], tinted: !(px[0] === px[1] && px[1] === px[2]), hasB: s.heat.b !== undefined && s.bestB !== undefined };
    });
    const [bu, bv] = [((result.best % result.w) + 0.5) / result.w, (Math.floor(result.best / result.w) + 0.5) / result.h];
    console.log(`heat map ${result.h}x${result.w}: maximum ${result.max!.toFixed(3)} at (${bu.toFixed(2)}, ${bv.toFixed(2)}), click at (${u}, ${v})`);
    assert.ok(Math.abs(bu - u) <= 1 / result.w && Math.abs(bv - v) <= 1 / result.h, 'the similarity maximum is not at the click');
    assert.ok(result.tinted, 'no heat map drawn over the image');
    assert.ok(result.hasB, 'no map or best match on image B');
  }

  it('in-page inference: upload, click inside the heart, heat map peaks at the click; dataset matches shown', async () => {
    const page = await open();
    assert.match((await page.textContent('#model'))!, /inference in the page/);
    await clickHeartAndCheck(page);
    await page.waitForSelector('#matches figure img', { timeout: 30000 });
    assert.ok((await page.locator('#matches figure').count()) >= 1);
    const dir = path.join(root, 'test-artifacts');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, 'explorer.png') });
    await page.close();
  });

  it('server inference (the fallback for large models) gives the same behaviour', async () => {
    const page = await open('?inference=server');
    assert.match((await page.textContent('#model'))!, /inference on the server/);
    await clickHeartAndCheck(page);
    await page.close();
  });

  it('bad input shows a readable message and the page keeps working', async () => {
    const page = await open();
    const text = path.join(tmp, 'notes.png');
    writeFileSync(text, 'this is not an image');
    await page.setInputFiles('#file-a', text);
    await page.waitForFunction(() => (document.getElementById('error')?.textContent ?? '').length > 0);
    assert.match((await page.textContent('#error'))!, /notes\.png: not an image Eden can read/);
    const dicom = path.join(tmp, 'broken.dcm');
    const bytes = Buffer.alloc(600, 7);
    bytes.write('DICM', 128, 'latin1');
    writeFileSync(dicom, bytes);
    await page.setInputFiles('#file-a', dicom);
    await page.waitForFunction(() => /broken\.dcm/.test(document.getElementById('error')?.textContent ?? ''));
    assert.match((await page.textContent('#error'))!, /broken\.dcm: .*(DICOM|pixel)/);
    const huge = path.join(tmp, 'huge.png');
    await sharp({ create: { width: 10000, height: 9000, channels: 3, background: '#000' } }).toColourspace('b-w').png().toFile(huge);
    await page.setInputFiles('#file-a', huge);
    await page.waitForFunction(() => /huge\.png/.test(document.getElementById('error')?.textContent ?? ''));
    assert.match((await page.textContent('#error'))!, /huge\.png: image too large \(10000x9000/);
    // Still working:
    await clickHeartAndCheck(page);
    await page.close();
  });

  it('matches across two images: in a copy shifted by a known offset, the best match of a point is that point moved by the offset', async (t) => {
    // A property of a trained encoder (a tiny random one matches textures, not places).
    if (!trained) return t.skip(`needs a trained encoder: ${builtinModelPath()} is not in this checkout`);
    // A 320 px wide strip of a radiograph; A is its left 256 px, B its right 256 px: B = A shifted
    // left by 64 px (two feature cells of the 32-stride encoder at the page's 256 px input).
    const strip = await sharp(path.join(samples, '00870a9c.png')).resize(320, 256, { fit: 'fill' }).toColourspace('b-w').raw().toBuffer();
    const cropPng = async (x0: number, file: string): Promise<string> => {
      const out = Buffer.alloc(256 * 256);
      for (let y = 0; y < 256; y++) strip.copy(out, y * 256, y * 320 + x0, y * 320 + x0 + 256);
      await sharp(out, { raw: { width: 256, height: 256, channels: 1 } }).png().toFile(file);
      return file;
    };
    const a = await cropPng(0, path.join(tmp, 'shift-a.png'));
    const b = await cropPng(64, path.join(tmp, 'shift-b.png'));
    const page = await open();
    await page.setInputFiles('#file-a', a);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('click a point'), undefined, { timeout: 60000 });
    await page.setInputFiles('#file-b', b);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('B:'), undefined, { timeout: 60000 });
    const canvas = page.locator('#canvas-a');
    const box = (await canvas.boundingBox())!;
    for (const [u, v] of [[0.5625, 0.6875], [0.6875, 0.3125], [0.8125, 0.5625]] as const) {
      await page.evaluate(() => ((window as unknown as { eden: { heat: object } }).eden.heat = {}));
      await canvas.click({ position: { x: u * box.width, y: v * box.height } });
      await page.waitForFunction(() => (window as unknown as { eden: { bestB?: unknown; heat: { b?: unknown } } }).eden.heat.b !== undefined);
      const best = await page.evaluate(() => (window as unknown as { eden: { bestB: { u: number; v: number } } }).eden.bestB);
      const expected = { u: u - 64 / 256, v };
      console.log(`click (${u}, ${v}) in A: best match in B at (${best.u.toFixed(3)}, ${best.v.toFixed(3)}), expected (${expected.u.toFixed(3)}, ${expected.v})`);
      // Within one feature cell (1/8 of the side).
      assert.ok(Math.abs(best.u - expected.u) <= 1 / 8 + 1e-9 && Math.abs(best.v - expected.v) <= 1 / 8 + 1e-9, `best match (${best.u}, ${best.v}), expected (${expected.u}, ${expected.v})`);
    }
    await page.close();
  });

  it('in-page and server inference give the same similarity map (numerically)', async () => {
    const maps: Float32Array[] = [];
    for (const query of ['', '?inference=server']) {
      const page = await open(query);
      await page.setInputFiles('#file-a', path.join(samples, '00870a9c.png'));
      await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('click a point'), undefined, { timeout: 60000 });
      const box = (await page.locator('#canvas-a').boundingBox())!;
      await page.locator('#canvas-a').click({ position: { x: 0.56 * box.width, y: 0.66 * box.height } });
      await page.waitForFunction(() => (window as unknown as { eden: { heat: { a?: unknown } } }).eden.heat.a !== undefined);
      maps.push(Float32Array.from(await page.evaluate(() => Array.from((window as unknown as { eden: { heat: { a: Float32Array } } }).eden.heat.a))));
      await page.close();
    }
    assert.equal(maps[0]!.length, maps[1]!.length);
    let worst = 0;
    for (let i = 0; i < maps[0]!.length; i++) worst = Math.max(worst, Math.abs(maps[0]![i]! - maps[1]![i]!));
    console.log(`similarity map, in-page vs server inference: max |difference| ${worst.toExponential(2)} over ${maps[0]!.length} cells`);
    assert.ok(worst < 1e-3, `in-page and server maps differ by up to ${worst}`);
  });

  it('with a segmentation model (eden serve --model): masks over image A, and its areas and cardiothoracic ratio', async () => {
    // A small segmentation model of heart and lungs, made as a user would (eden finetune).
    const model = path.join(tmp, 'seg.safetensors');
    const wingspan = path.join(root, '..', 'shared', 'data', 'wingspan_ctr');
    const data = existsSync(wingspan) ? wingspan : undefined;
    if (!data) return;
    const f = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'finetune', data, '--checkpoint', 'random', '--arch', 'resnet-tiny', '--width', '8', '--structures', 'heart,lungs', '--combine', 'lungs=left_lung+right_lung', '--shots', '8', '--size', '64', '--steps', '30', '--eval-every', '10', '--out', model], { cwd: root, encoding: 'utf8' });
    assert.equal(f.status, 0, f.stderr);
    const segmenter = await loadSegmenter(model);
    const { encoder, meta } = await loadEncoder(model);
    const segApp = await buildServer({ encoder, meta, segmenter });
    const segUrl = `${await segApp.listen({ port: 0, host: '127.0.0.1' })}/`;
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
      await page.goto(segUrl);
      await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('ready'), undefined, { timeout: 60000 });
      assert.match((await page.textContent('#model'))!, /segmentation: heart, lungs \(resnet-tiny, 64 px, on the server\)/);
      const image = path.join(samples, '00870a9c.png');
      await page.setInputFiles('#file-a', image);
      await page.waitForFunction(() => (document.getElementById('segmentation')?.textContent ?? '').length > 0, undefined, { timeout: 60000 });
      const text = (await page.textContent('#segmentation'))!;
      // What the page shows is what the server measures for the same bytes.
      const api = (await (await fetch(`${segUrl}api/segment`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: readFileSync(image) })).json()) as { measurements: { areaPx: Record<string, number>; ctr?: number } };
      assert.match(text, new RegExp(`heart ${api.measurements.areaPx['heart']!.toLocaleString('en')} px`));
      if (api.measurements.ctr !== undefined) assert.match(text, new RegExp(`cardiothoracic ratio ${api.measurements.ctr.toFixed(3)} \\(heart \\d+ px / thorax \\d+ px\\)`));
      const shown = await page.evaluate(() => {
        const s = (window as unknown as { eden: { segmentation?: { masks: Uint8Array[] } } }).eden.segmentation!;
        return s.masks.map((m) => m.reduce((a, b) => a + b, 0));
      });
      assert.equal(shown[0], api.measurements.areaPx['heart']);
      await page.close();
    } finally {
      await segApp.close();
      segmenter.dispose();
      encoder.dispose();
    }
  });

  it('the API answers over HTTP (raw-request path traversal is tested without a browser: test/server.test.ts)', async () => {
    const info = await (await fetch(`${url}api/info`)).json();
    assert.equal(info.data.images, 8);
  });
});
