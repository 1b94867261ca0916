/**
 * The pretrained Eve shipped with Eden (models/eve-resnet18.safetensors): small enough for the
 * package, loadable by name, the default of the commands that need an encoder, and trained: on the
 * bundled radiographs it matches image quarters to the same quarter of other patients far above
 * chance and above a random encoder of the same architecture. (hannover_covid19 was among its
 * training images, so this checks that it learned, not how it generalises: the held-out evaluation
 * is in docs/results/.)
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseNpy } from 'npyjs';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { builtinModelPath } from '../src/models/builtin.js';
import { loadEncoder } from '../src/models/encoder-file.js';
import { createBackbone } from '../src/models/resnet.js';
import { matchAnatomy } from '../src/apply/match.js';
import { embedFiles } from '../src/embed/embed.js';
import { embedToFile } from '../src/embed/embedding-file.js';
import { spawnSync } from 'node:child_process';
import { eden as runEden } from './helpers/cli.js';

const root = path.join(import.meta.dirname, '..');
const samples = path.join(root, 'samples', 'hannover_covid19');

const eden = (...args: string[]): ReturnType<typeof runEden> => runEden(args);

describe('the shipped pretrained Eve', () => {
  before(async () => {
    await useBackend('wasm');
  });

  it('is in the checkout, at most 25 MB, a half-precision ResNet-18 that loads by name', async () => {
    const file = builtinModelPath();
    assert.ok(existsSync(file), `${file} is missing`);
    const mb = statSync(file).size / 2 ** 20;
    assert.ok(mb <= 25, `${mb.toFixed(1)} MB`);
    const header = JSON.parse(readFileSync(file).subarray(8, 8 + Number(readFileSync(file).readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype?: string }>;
    assert.ok(Object.values(header).some((t) => t.dtype === 'F16'), 'no float16 tensor in the file');
    const { encoder, meta } = await loadEncoder('builtin');
    assert.equal(meta.args.backbone, 'resnet18');
    assert.equal(meta.args.width, 64);
    assert.equal(encoder.backbone.featureDim, 512);
    encoder.dispose();
  });

  it('matches image quarters to the same quarter of other patients, far above chance, a random encoder and raw pixels', async () => {
    const { encoder, meta } = await loadEncoder('builtin');
    const trained = await matchAnatomy(encoder.backbone, [samples], { level: 2, size: meta.inputSize ?? 112 });
    encoder.dispose();
    const random = createBackbone('resnet18', { width: 64, seed: 1 });
    const untrained = await matchAnatomy(random, [samples], { level: 2, size: meta.inputSize ?? 112 });
    random.dispose();
    console.log(`same quarter matched: pretrained Eve ${(100 * trained.samePart).toFixed(1)}%, random ResNet-18 ${(100 * untrained.samePart).toFixed(1)}%, raw pixels ${(100 * trained.samePartRawPixels).toFixed(1)}%, chance 25%`);
    assert.equal(trained.files.length, 24);
    assert.ok(trained.samePart > 0.5, `${trained.samePart}`);
    assert.ok(trained.samePart > untrained.samePart + 0.1, `${trained.samePart} vs random ${untrained.samePart}`);
    // ... and above the no-network floor (raw pixels of each quarter, mean-centred at 16 x 16).
    assert.ok(trained.samePart > trained.samePartRawPixels + 0.05, `${trained.samePart} vs raw pixels ${trained.samePartRawPixels}`);
    // The paired interval is over images: its mean is the difference of the two shares (every image
    // has the same number of matches), and with 24 images it excludes 0.
    const d = trained.overRawPixels;
    assert.ok(Math.abs(d.mean - (trained.samePart - trained.samePartRawPixels)) < 1e-12, JSON.stringify(d));
    assert.ok(d.lo <= d.mean && d.mean <= d.hi && d.significant && d.images === 24, JSON.stringify(d));
  });

  it('eden match --json hands a pipe its whole report, and exits 0 when the reader stops early', () => {
    // spawnSync reads through a pipe: the report (~250 KB) used to be cut at 64 KiB by process.exit.
    const m = eden('match', '--json');
    assert.equal(m.status, 0, m.stderr);
    const report = JSON.parse(m.stdout) as { files: string[]; images: unknown[][]; overRawPixels: { mean: number } };
    assert.ok(m.stdout.length > 2 ** 17, `${m.stdout.length} characters`);
    assert.equal(report.files.length, 24);
    assert.equal(report.images.length, 24);
    assert.ok(Number.isFinite(report.overRawPixels.mean));
    // `| head` closes the pipe after a few bytes: no EPIPE stack trace, status 0.
    const cli = `"${process.execPath}" --import tsx "${path.join(root, 'src', 'cli', 'main.ts')}"`;
    const head = spawnSync('bash', ['-c', `set -o pipefail; ${cli} match --json | head -c 10 > /dev/null`], { cwd: root, encoding: 'utf8' });
    assert.equal(head.status, 0, head.stderr.slice(-2000));
    assert.doesNotMatch(head.stderr, /EPIPE/, head.stderr.slice(-2000));
  });

  it('eden checkpoint show describes it; a file that is not Eden\'s is named', () => {
    const r = eden('checkpoint', 'show', 'builtin');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'format: eden-encoder-1\nmodel: resnet18 width 64, projection head to 128, trained on 112 px views\nsource: eve-resnet18, the pretrained Eve shipped with Eden (Adam, cpu preset, step 7560 of runs/adam-cpu; see models/MODEL_CARD.md)\ntensors: 112 (11.5M values)\n');
    const other = path.join(mkdtempSync(path.join(tmpdir(), 'eden-show-')), 'other.safetensors');
    writeFileSync(other, Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]));
    const o = eden('checkpoint', 'show', other);
    assert.equal(o.status, 1);
    assert.match(o.stderr, /other\.safetensors is not an Eden file \(format 'none'\): eden checkpoint show reads pretraining checkpoints, encoders, fine-tuned models and their training states/);
  });

  it('eden match with fewer than two readable images says so (it crashed with a TypeError)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-match-one-'));
    copyFileSync(path.join(samples, '00870a9c.png'), path.join(dir, 'a.png'));
    writeFileSync(path.join(dir, 'b.png'), 'not a png');
    const m = eden('match', dir);
    assert.equal(m.status, 1, m.stderr);
    assert.match(m.stderr, /b\.png: corrupt/);
    assert.match(m.stderr, /eden: matching needs at least 2 readable images, found 1 in .*eden-match-one-\w+\n$/);
  });

  it('is what eden match and eden embed use when no checkpoint is given', async () => {
    const m = eden('match');
    assert.equal(m.status, 0, m.stderr);
    assert.match(m.stdout, /^Eve of .*\n24 images, each cut into 4 parts \(level 2\)/);
    assert.match(m.stdout, /same anatomical region matched: \d+\.\d% of part-to-image matches \(raw pixels: \d+\.\d%, chance: 25\.0%\)\nEve − raw pixels: \+\d+\.\d \[\+\d+\.\d, \+\d+\.\d\]\* points \(95% bootstrap over the 24 images; \* excludes 0\)\n$/);
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'eden-builtin-')), 'eve.npy');
    const e = eden('embed', path.join(samples, '00870a9c.png'), path.join(samples, '0957ce54.png'), '--out', out);
    assert.equal(e.status, 0, e.stderr);
    const npy = readFileSync(out);
    const a = parseNpy(npy.buffer.slice(npy.byteOffset, npy.byteOffset + npy.byteLength) as ArrayBuffer);
    assert.deepEqual(a.shape, [2, 512]);
    assert.equal(readFileSync(out.replace(/\.npy$/, '.files.csv'), 'utf8'), `row,file\n0,${path.join(samples, '00870a9c.png')}\n1,${path.join(samples, '0957ce54.png')}\n`);

    // A folder: searched recursively, a corrupt image reported and left out, non-images passed over
    // quietly, and a CSV that says which image each row is (a name with a comma and a quote quoted).
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-embed-folder-'));
    mkdirSync(path.join(dir, 'sub'));
    copyFileSync(path.join(samples, '0957ce54.png'), path.join(dir, 'b.png'));
    copyFileSync(path.join(samples, '00870a9c.png'), path.join(dir, 'sub', 'a, "first".png'));
    writeFileSync(path.join(dir, 'broken.png'), 'not a png');
    writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
    const folderOut = path.join(dir, 'out', 'eve.npy');
    const f = eden('embed', dir, '--out', folderOut);
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /float32 \[2, 512\], skipped 1; the image of each row: .*eve\.files\.csv\n$/);
    assert.match(f.stderr, /skipped .*broken\.png: corrupt/);
    assert.doesNotMatch(f.stderr, /notes\.txt/);
    assert.equal(readFileSync(path.join(dir, 'out', 'eve.files.csv'), 'utf8'), `row,file\n0,${path.join(dir, 'b.png')}\n1,"${path.join(dir, 'sub', 'a, ""first"".png')}"\n`);
    const bytes = readFileSync(folderOut);
    const b = parseNpy(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    assert.deepEqual(b.shape, [2, 512]);
    // The same image gives the same row whichever way it was found (rows swapped: b.png sorts first).
    const row = (x: { data: unknown }, i: number): number[] => Array.from((x.data as Float32Array).subarray(i * 512, (i + 1) * 512));
    for (const [i, j] of [[0, 1], [1, 0]] as const) row(b, i).forEach((v, k) => assert.ok(Math.abs(v - row(a, j)[k]!) <= 1e-5 * (1 + Math.abs(v)), `row ${i}, feature ${k}`));
    const none = eden('embed', path.join(dir, 'broken.png'), '--out', path.join(dir, 'none.npy'));
    assert.equal(none.status, 1);
    assert.match(none.stderr, /broken\.png: corrupt.*\n.*eden: none of the 1 image\(s\) could be read/s);
    assert.ok(!existsSync(path.join(dir, 'none.npy')));
    assert.ok(!existsSync(path.join(dir, 'none.npy.partial')), 'no partial files left of a run that wrote nothing');
    // The library, asked for chosen files with no onSkip, stops at a bad one and names it.
    const { encoder } = await loadEncoder('builtin');
    await assert.rejects(embedFiles(encoder, [path.join(dir, 'b.png'), path.join(dir, 'broken.png')]), /broken\.png: corrupt/);
    encoder.dispose();
  });

  it('eden embed writes as it goes: an interrupted run resumes to the bytes of an uninterrupted one; other settings are refused', async () => {
    await useBackend('wasm');
    const { encoder } = await loadEncoder('builtin');
    const files = readdirSync(samples).filter((f) => f.endsWith('.png')).sort().slice(0, 10).map((f) => path.join(samples, f));
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-embed-resume-'));
    const settings = { checkpoint: 'builtin', preprocess: 'default', dense: false };
    const tensors = tf.memory().numTensors;
    const whole = await embedToFile(encoder, files, path.join(dir, 'whole.npy'), settings, { inputSize: 64, batchSize: 4 });
    assert.deepEqual(whole, { shape: [10, 512], kept: 0 });
    // Stopped after two batches were written, and then (as a kill in the third would leave it) with
    // part of the next batch's data and half a row line on disk.
    const out = path.join(dir, 'cut.npy');
    await assert.rejects(embedToFile(encoder, files, out, settings, { inputSize: 64, batchSize: 4, onProgress: (done) => { if (done >= 8) throw new Error('killed'); } }), /killed/);
    assert.ok(!existsSync(out) && existsSync(`${out}.partial`));
    assert.equal(readFileSync(path.join(dir, 'cut.files.csv.partial'), 'utf8').trim().split('\n').length, 1 + 8, 'the rows written before the stop');
    appendFileSync(`${out}.partial`, Buffer.alloc(7000, 7)); // more than the two rows still to come
    appendFileSync(path.join(dir, 'cut.files.csv.partial'), `8,${files[8]!.slice(0, 10)}`);
    writeFileSync(path.join(dir, '.cut.npy.partial.json.4242.1764612345678.tmp'), '{"chec'); // a write cut off
    await assert.rejects(embedToFile(encoder, files, out, { ...settings, size: 128 }, { inputSize: 64, size: 128, resume: true }), /--resume: .*cut\.npy\.partial was computed with another size \(then the default, now 128\); run without --resume to start over/);
    const resumed = await embedToFile(encoder, files, out, settings, { inputSize: 64, batchSize: 4, resume: true });
    assert.deepEqual(resumed, { shape: [10, 512], kept: 8 });
    assert.equal(tf.memory().numTensors, tensors, 'the streaming loop, also stopped and resumed, frees its tensors');
    assert.ok(readFileSync(out).equals(readFileSync(path.join(dir, 'whole.npy'))), 'the .npy');
    assert.equal(readFileSync(path.join(dir, 'cut.files.csv'), 'utf8').replaceAll('cut', 'whole'), readFileSync(path.join(dir, 'whole.files.csv'), 'utf8'));
    assert.deepEqual(readdirSync(dir).sort(), ['cut.files.csv', 'cut.npy', 'whole.files.csv', 'whole.npy']);
    const npy = readFileSync(out);
    const parsed = parseNpy(npy.buffer.slice(npy.byteOffset, npy.byteOffset + npy.byteLength) as ArrayBuffer);
    assert.deepEqual(parsed.shape, [10, 512]);
    encoder.dispose();
  });
});
