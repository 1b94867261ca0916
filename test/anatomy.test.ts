/** The anatomy decomposer and the view pipeline. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decompose, gridShape, sampleAnchor } from '../src/anatomy/decomposer.js';
import { Rng, deriveSeed } from '../src/core/rng.js';
import { DEFAULT_VIEW_OPTIONS, makeView, randomResizedCropBox } from '../src/data/views.js';
import { resizeGrey } from '../src/data/resize.js';

describe('anatomy decomposer', () => {
  it('follows the 2^n rule: rows 2^floor(n/2), cols 2^ceil(n/2)', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map(gridShape), [
      { rows: 1, cols: 1 }, { rows: 1, cols: 2 }, { rows: 2, cols: 2 }, { rows: 2, cols: 4 }, { rows: 4, cols: 4 }, { rows: 4, cols: 8 },
    ]);
  });

  for (const [w, h] of [[512, 512], [257, 301], [33, 17], [640, 524]] as [number, number][]) {
    it(`parts tile a ${w}x${h} image exactly for n = 0..5`, () => {
      for (let n = 0; n <= 5; n++) {
        const parts = decompose(w, h, n);
        assert.equal(parts.length, 2 ** n);
        const cover = new Uint8Array(w * h);
        for (const p of parts) {
          assert.ok(p.width > 0 && p.height > 0);
          for (let y = p.y; y < p.y + p.height; y++) for (let x = p.x; x < p.x + p.width; x++) cover[y * w + x]!++;
        }
        assert.ok(cover.every((c) => c === 1), `level ${n}: some pixel is covered twice or not at all`);
        // Part sizes differ by at most one pixel.
        const widths = parts.map((p) => p.width);
        assert.ok(Math.max(...widths) - Math.min(...widths) <= 1);
      }
    });
  }

  it('n = 1 is a left | right split', () => {
    assert.deepEqual(decompose(10, 6, 1).map((p) => [p.x, p.y, p.width, p.height]), [[0, 0, 5, 6], [5, 0, 5, 6]]);
  });

  it('draws grid anchors uniformly, random anchors inside the margins', () => {
    const counts = new Array<number>(16).fill(0);
    const rng = new Rng(3);
    for (let i = 0; i < 16000; i++) counts[sampleAnchor(256, 256, 4, rng).index]!++;
    for (const c of counts) assert.ok(Math.abs(c - 1000) < 150, `counts ${counts}`);
    for (let i = 0; i < 200; i++) {
      const a = sampleAnchor(256, 200, 2, rng, { mode: 'random', margin: 1 / 16 });
      assert.equal(a.width, 128);
      assert.equal(a.height, 100);
      assert.ok(a.x >= 16 && a.x + a.width <= 256 - 16 + 1, `x ${a.x}`);
      assert.ok(a.y >= 12 && a.y + a.height <= 200 - 12 + 1, `y ${a.y}`);
    }
  });

  it('rejects an image too small for the level', () => {
    assert.throws(() => decompose(3, 3, 4), /too small for level 4/);
  });
});

describe('views', () => {
  const side = 64;
  const image = Float32Array.from({ length: side * side }, (_, i) => ((i % side) + Math.floor(i / side)) / (2 * side));
  const region = { x: 0, y: 0, width: 32, height: 48 };

  it('are reproducible from the seed and differ between seeds', () => {
    const a = makeView(image, side, region, { ...DEFAULT_VIEW_OPTIONS, size: 24 }, new Rng(deriveSeed(1, 2, 3)));
    const b = makeView(image, side, region, { ...DEFAULT_VIEW_OPTIONS, size: 24 }, new Rng(deriveSeed(1, 2, 3)));
    const c = makeView(image, side, region, { ...DEFAULT_VIEW_OPTIONS, size: 24 }, new Rng(deriveSeed(1, 2, 4)));
    assert.equal(a.length, 24 * 24);
    assert.deepEqual(Array.from(a), Array.from(b));
    assert.notDeepEqual(Array.from(a), Array.from(c));
  });

  it('with every augmentation off, equal the resized anchor, unflipped, normalised', () => {
    const off = { ...DEFAULT_VIEW_OPTIONS, size: 16, cropScale: [1, 1] as [number, number], cropAspect: [32 / 48, 32 / 48] as [number, number], jitterProbability: 0, blurProbability: 0, rotationDegrees: 0 };
    const v = makeView(image, side, region, off, new Rng(9));
    const crop = new Float32Array(32 * 48);
    for (let y = 0; y < 48; y++) for (let x = 0; x < 32; x++) crop[y * 32 + x] = image[y * side + x]!;
    const expected = resizeGrey(crop, 32, 48, 16, 16).map((x) => (x - off.mean) / off.std);
    for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i]! - expected[i]!) < 1e-6);
    // Left-to-right the intensity increases, as in the source: no flip.
    assert.ok(v[15]! > v[0]!);
  });

  it('crop boxes respect the area and aspect ranges', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 500; i++) {
      const b = randomResizedCropBox(200, 150, [0.2, 1], [3 / 4, 4 / 3], rng);
      assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.width <= 200 && b.y + b.height <= 150);
      const area = (b.width * b.height) / (200 * 150);
      assert.ok(area >= 0.19 && area <= 1.0001, `area ${area}`);
    }
  });
});
