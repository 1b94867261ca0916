/**
 * EXIF orientation: files are read as they display (as browsers and the explorer show them), and a
 * mask drawn on an image's stored pixels is turned with it — on a real radiograph stored sideways.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { decodeImageBytes, decodeImageFile } from '../src/data/decode.js';
import { applyOrientation } from '../src/data/orientation.js';
import { ImageDataset, readMaskOf } from '../src/data/dataset.js';
import { scanDataset } from '../src/data/scan.js';
import { formatInspectReport, inspectDataset } from '../src/data/inspect.js';

const wingspan = path.join(import.meta.dirname, '..', '..', 'shared', 'data', 'wingspan_ctr');

// A 3 x 2 image [[10, 20, 30], [40, 50, 60]] as it displays under each EXIF orientation, by hand.
const STORED = [10, 20, 30, 40, 50, 60];
const DISPLAYED: Record<number, { width: number; rows: number[][] }> = {
  1: { width: 3, rows: [[10, 20, 30], [40, 50, 60]] },
  2: { width: 3, rows: [[30, 20, 10], [60, 50, 40]] },
  3: { width: 3, rows: [[60, 50, 40], [30, 20, 10]] },
  4: { width: 3, rows: [[40, 50, 60], [10, 20, 30]] },
  5: { width: 2, rows: [[10, 40], [20, 50], [30, 60]] },
  6: { width: 2, rows: [[40, 10], [50, 20], [60, 30]] },
  7: { width: 2, rows: [[60, 30], [50, 20], [40, 10]] },
  8: { width: 2, rows: [[30, 60], [20, 50], [10, 40]] },
};

async function pngWithOrientation(file: string, pixels: number[] | Buffer, width: number, height: number, orientation?: number): Promise<void> {
  const img = sharp(Buffer.from(pixels), { raw: { width, height, channels: 1 } });
  await (orientation ? img.withMetadata({ orientation }) : img).png().toFile(file);
}

describe('EXIF orientation', () => {
  it('applyOrientation and decoding both give the hand-computed pixels for all 8 orientations', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eden-orient-'));
    for (const [o, expected] of Object.entries(DISPLAYED)) {
      const orientation = Number(o);
      const turned = applyOrientation(Float32Array.from(STORED), 3, 2, orientation);
      assert.equal(turned.width, expected.width, `orientation ${o}`);
      assert.deepEqual([...turned.data], expected.rows.flat(), `applyOrientation ${o}`);
      const file = path.join(dir, `o${o}.png`);
      await pngWithOrientation(file, STORED, 3, 2, orientation);
      const decoded = await decodeImageFile(file);
      assert.deepEqual([decoded.width, decoded.height], [expected.width, expected.rows.length], `decoded size ${o}`);
      assert.deepEqual([...decoded.data], expected.rows.flat(), `decoded ${o}`);
      assert.equal(decoded.orientation, orientation === 1 ? undefined : orientation);
      // Uploads (the explorer's server decode, eden serve) read the same.
      assert.deepEqual((await decodeImageBytes(readFileSync(file))).data, decoded.data);
    }
    assert.throws(() => applyOrientation(new Float32Array(6), 3, 2, 9), /EXIF orientation must be 1-8, got 9/);
  });

  it('a radiograph stored sideways (Orientation 6) gives the upright samples, its mask drawn on the stored pixels turned with it', async () => {
    const name = readdirSync(path.join(wingspan, 'images')).sort()[0]!;
    // Cropped to 512 x 400 (the heart kept): not square, so a mask in the wrong frame has the wrong shape.
    const crop = { left: 0, top: 80, width: 512, height: 400 };
    const upright = mkdtempSync(path.join(tmpdir(), 'eden-orient-upright-'));
    mkdirSync(path.join(upright, 'images'));
    mkdirSync(path.join(upright, 'masks', 'heart'), { recursive: true });
    const uprightImage = path.join(upright, 'images', name);
    const uprightMask = path.join(upright, 'masks', 'heart', name);
    await sharp(path.join(wingspan, 'images', name)).extract(crop).toFile(uprightImage);
    await sharp(path.join(wingspan, 'masks', 'heart', name)).extract(crop).toFile(uprightMask);
    const original = await decodeImageFile(uprightImage);
    assert.deepEqual([original.width, original.height], [512, 400]);

    // The same radiograph stored turned 90 degrees anticlockwise, displaying upright through its tag.
    const make = async (root: string, maskFrame: 'stored' | 'displayed'): Promise<void> => {
      mkdirSync(path.join(root, 'images'), { recursive: true });
      mkdirSync(path.join(root, 'masks', 'heart'), { recursive: true });
      await sharp(uprightImage).rotate(270).withMetadata({ orientation: 6 }).png().toFile(path.join(root, 'images', name));
      const mask = maskFrame === 'stored' ? sharp(uprightMask).rotate(270) : sharp(uprightMask);
      await mask.png().toFile(path.join(root, 'masks', 'heart', name));
    };
    const stored = mkdtempSync(path.join(tmpdir(), 'eden-orient-stored-'));
    const displayed = mkdtempSync(path.join(tmpdir(), 'eden-orient-displayed-'));
    await make(stored, 'stored');
    await make(displayed, 'displayed');

    const sideways = await decodeImageFile(path.join(stored, 'images', name));
    assert.equal(sideways.orientation, 6);
    assert.deepEqual([sideways.width, sideways.height], [original.width, original.height]);
    assert.deepEqual(sideways.data, original.data, 'read as it displays: the upright pixels');

    // Both masks lay on the image; only the one in the stored frame is turned.
    const storedRead = await readMaskOf(path.join(stored, 'masks', 'heart', name), sideways, name);
    const displayedRead = await readMaskOf(path.join(displayed, 'masks', 'heart', name), sideways, name);
    assert.ok(storedRead.problem === undefined && displayedRead.problem === undefined);
    assert.equal(storedRead.turned, true);
    assert.equal(displayedRead.turned, false);

    const sample = async (root: string) => {
      const ds = new ImageDataset((await scanDataset([root])).images, { size: 64 });
      return (await ds.get(0))!;
    };
    const fromStoredFrame = await sample(stored);
    const reference = await sample(upright);
    for (const s of [fromStoredFrame, await sample(displayed)]) {
      assert.deepEqual(s.image, reference.image);
      assert.deepEqual(s.masks.heart, reference.masks.heart);
      assert.ok(reference.masks.heart!.some((v) => v > 0), 'the heart is in the mask');
    }

    const report = await inspectDataset([stored]);
    assert.deepEqual([report.images, report.oriented, report.orientedMasks, report.structures.heart], [1, 1, 1, 1]);
    assert.match(formatInspectReport(report), /orientation: 1 image\(s\) carry an EXIF orientation and are read as they display, turned from how they are stored; 1 mask\(s\) fitting only the stored pixels turned with their image/);
    assert.equal((await inspectDataset([displayed])).orientedMasks, 0);
  });
});
