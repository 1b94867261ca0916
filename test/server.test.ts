/**
 * The explorer's server without a browser: requests sent raw (fastify's inject passes the URL
 * exactly as written, where an HTTP client would normalise `../` and `%2e%2e` away before sending)
 * must not reach any file outside the viewer's folder, nor a dotfile inside it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { useBackend } from '../src/engine/backend.js';
import { Encoder } from '../src/models/encoder.js';
import { buildServer } from '../src/server/app.js';

describe('eden serve: what a raw request can reach', () => {
  let app: FastifyInstance;
  let encoder: Encoder;
  before(async () => {
    await useBackend('wasm');
    // A viewer folder with a dotfile inside it, and a secret beside it.
    const base = mkdtempSync(path.join(tmpdir(), 'eden-serve-'));
    const viewer = path.join(base, 'viewer');
    mkdirSync(path.join(viewer, 'assets'), { recursive: true });
    writeFileSync(path.join(viewer, 'index.html'), '<!doctype html><title>viewer</title>');
    writeFileSync(path.join(viewer, 'assets', 'app.js'), 'console.log(1)');
    writeFileSync(path.join(viewer, '.env'), 'SECRET_IN_DOTFILE');
    mkdirSync(path.join(viewer, '.git'));
    writeFileSync(path.join(viewer, '.git', 'config'), 'SECRET_IN_DOTDIR');
    writeFileSync(path.join(base, 'secret.txt'), 'SECRET_OUTSIDE');
    encoder = new Encoder({ backbone: 'resnet-tiny', width: 4, projectionDim: 8, seed: 1 });
    app = await buildServer({ encoder, meta: { format: 'eden-encoder-1', args: encoder.args, hasHead: false, source: 'test' }, viewerDir: viewer });
  });
  after(async () => {
    await app.close();
    encoder.dispose();
  });

  it('serves the viewer and its assets', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/assets/app.js' })).body, 'console.log(1)');
  });

  for (const url of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/%2e%2e%2fsecret.txt', '/assets/%2e%2e/%2e%2e/secret.txt', '/%252e%252e/secret.txt', '/..\\secret.txt', '/.env', '/.git/config', '/assets/../.env', '/%2eenv', '/%2e%65nv']) {
    it(`refuses ${url}`, async () => {
      const r = await app.inject({ method: 'GET', url });
      assert.ok([400, 403, 404].includes(r.statusCode), `${url} answered ${r.statusCode}`);
      assert.doesNotMatch(r.body, /SECRET/);
    });
  }

  it('answers bad uploads with 400 and a reason, not a crash', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/dense', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from('no image') });
    assert.equal(r.statusCode, 400);
    assert.match(JSON.parse(r.body).error, /not an image Eden can read/);
    const s = await app.inject({ method: 'POST', url: '/api/similar', payload: { vector: [1, 2] } });
    assert.equal(s.statusCode, 400);
  });

  it('an upload in a format sharp does not read (PGM, BMP, JPEG 2000, NIfTI, .npy) gives the features of the same picture as PNG', async () => {
    const fixtures = path.join(import.meta.dirname, 'fixtures', 'raster');
    const dense = async (file: string): Promise<{ statusCode: number; body: string }> => app.inject({ method: 'POST', url: '/api/dense', headers: { 'content-type': 'application/octet-stream' }, payload: readFileSync(file) });
    const png = path.join(mkdtempSync(path.join(tmpdir(), 'eden-serve-png-')), 'grey8.png');
    await sharp(readFileSync(path.join(fixtures, 'grey8.pgm')).subarray(-61 * 47), { raw: { width: 61, height: 47, channels: 1 } }).png().toFile(png);
    const reference = await dense(png);
    assert.equal(reference.statusCode, 200, reference.body);
    // The same pattern as NIfTI (nibabel, fixtures/nifti) and as .npy.
    const npy = path.join(path.dirname(png), 'grey8.npy');
    const header = "{'descr': '|u1', 'fortran_order': False, 'shape': (47, 61), }";
    writeFileSync(npy, Buffer.concat([Buffer.from([0x93]), Buffer.from(`NUMPY\x01\x00`, 'latin1'), Buffer.from([118, 0]), Buffer.from(header.padEnd(117) + '\n', 'latin1'), readFileSync(path.join(fixtures, 'grey8.pgm')).subarray(-61 * 47)]));
    for (const file of ['grey8.pgm', 'grey8.bmp', 'grey8.jp2', path.join('..', 'nifti', 'grey8-slice.nii.gz'), npy]) {
      const r = await dense(path.resolve(fixtures, file));
      assert.equal(r.statusCode, 200, `${file}: ${r.body}`);
      assert.equal(r.body, reference.body, file);
    }
  });

  it('indexes --data as the other commands read a folder: an unreadable image named with its problem, the rest kept', async () => {
    const data = mkdtempSync(path.join(tmpdir(), 'eden-serve-data-'));
    copyFileSync(path.join(import.meta.dirname, '..', 'samples', 'hannover_covid19', '00870a9c.png'), path.join(data, 'a.png'));
    writeFileSync(path.join(data, 'b.png'), 'not a png');
    const log: string[] = [];
    const withData = await buildServer({ encoder, meta: { format: 'eden-encoder-1', args: encoder.args, hasHead: false, source: 'test' }, viewerDir: path.join(data, 'none'), data, onLog: (m) => log.push(m) });
    await withData.close();
    assert.deepEqual(log, [`skipped ${path.join(data, 'b.png')}: corrupt or not image data (its content matches no known image format)`, `indexed 1 image(s) of ${data}`]);
    // More than it indexes: said, with the way to index more.
    copyFileSync(path.join(data, 'a.png'), path.join(data, 'c.png'));
    log.length = 0;
    await (await buildServer({ encoder, meta: { format: 'eden-encoder-1', args: encoder.args, hasHead: false, source: 'test' }, viewerDir: path.join(data, 'none'), data, maxDataImages: 2, onLog: (m) => log.push(m) })).close();
    assert.equal(log.at(-1), `indexed 1 image(s) of ${data} (the first 2 of 3; --max-data-images N indexes more)`);
  });
});
