import type { Command } from 'commander';
import { decodeImageFile } from '../data/decode.js';
import { normalizeIntensity } from '../data/intensity.js';
import { drawParts } from '../anatomy/draw.js';
import { decompose } from '../anatomy/decomposer.js';
import { writeFileAtomic } from '../engine/tensor-file.js';

export function registerDecompose(program: Command): void {
  program
    .command('decompose')
    .description("draw the anatomy decomposer's 2^n parts of an image at level n")
    .argument('<image>', 'an image file (PNG, JPEG, TIFF, DICOM...)')
    .requiredOption('--level <n>', 'granularity level n (2^n parts)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`--level must be a non-negative integer, got '${v}'`);
      return n;
    })
    .requiredOption('--out <file.png>', 'where to write the drawing')
    .action(async (file: string, opts: { level: number; out: string }) => {
      const img = await decodeImageFile(file);
      const png = await drawParts(normalizeIntensity(img), img.width, img.height, opts.level);
      await writeFileAtomic(opts.out, png);
      const parts = decompose(img.width, img.height, opts.level);
      process.stdout.write(`${parts.length} parts of ${img.width}x${img.height} at level ${opts.level} -> ${opts.out}\n`);
    });
}
