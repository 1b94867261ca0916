/** Drawing the anatomy decomposer's parts on an image (for `eden decompose` and the docs). */
import sharp from 'sharp';
import { decompose } from './decomposer.js';
import { toBytes } from '../data/grey-image.js';

/**
 * An 8-bit PNG of a normalised image ([height * width] in [0, 1]) with the parts of `level` outlined
 * and numbered in row-major order.
 */
export async function drawParts(image: Float32Array, width: number, height: number, level: number): Promise<Buffer> {
  const grey = Buffer.from(toBytes(image));
  const parts = decompose(width, height, level);
  const stroke = Math.max(1, Math.round(Math.min(width, height) / 256));
  const font = Math.max(10, Math.round(Math.min(width, height) / (4 * Math.sqrt(parts.length))));
  const shapes = parts
    .map(
      (p) =>
        `<rect x="${p.x + stroke / 2}" y="${p.y + stroke / 2}" width="${p.width - stroke}" height="${p.height - stroke}" fill="none" stroke="#ffb000" stroke-width="${stroke}"/>` +
        `<text x="${p.x + p.width / 2}" y="${p.y + p.height / 2}" font-family="sans-serif" font-size="${font}" fill="#ffb000" text-anchor="middle" dominant-baseline="middle">${p.index}</text>`,
    )
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes}</svg>`;
  return sharp(grey, { raw: { width, height, channels: 1 } })
    .toColourspace('srgb')
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .png()
    .toBuffer();
}
