import type { Command } from 'commander';
import path from 'node:path';
import { useBackend } from '../engine/backend.js';
import { matchAnatomy } from '../apply/match.js';
import { loadEncoder } from '../models/encoder-file.js';
import { BUILTIN_NAME, hasBuiltinModel } from '../models/builtin.js';
import { EdenError } from '../core/errors.js';
import { formatDifference } from '../eval/statistics.js';
import { bundledSamples } from './pretrain.js';
import { parsePositiveInt } from './options.js';

/** Names of the parts of levels 0-4 for the output (row-major, image orientation). */
function partName(level: number, part: number): string {
  const names: Record<number, string[]> = { 0: ['whole'], 1: ['left', 'right'], 2: ['upper left', 'upper right', 'lower left', 'lower right'] };
  return names[level]?.[part] ?? `part ${part}`;
}

export function registerMatch(program: Command): void {
  program
    .command('match')
    .description("Eve at work: cut each image into the decomposer's parts and find, for every part, the most similar part of the other images; an encoder that knows anatomy matches the same region across patients")
    .argument('[paths...]', 'images and folders (default: the bundled sample radiographs)')
    .option('--checkpoint <ckpt>', "encoder (default: 'builtin', the pretrained Eve shipped with Eden)")
    .option('--level <n>', 'decomposition level: 2^n parts (2: quarters)', (v) => Number(v), 2)
    .option('--size <px>', 'input size of each part (default: the encoder\'s training view size)', parsePositiveInt)
    .option('--json', 'print the full report as JSON')
    .action(async (paths: string[], opts: { checkpoint?: string; level: number; size?: number; json?: boolean }) => {
      if (!Number.isInteger(opts.level) || opts.level < 0 || opts.level > 4) throw new EdenError('config', `--level must be 0..4, got ${opts.level}`);
      const checkpoint = opts.checkpoint ?? BUILTIN_NAME;
      if (!opts.checkpoint && !hasBuiltinModel()) throw new EdenError('checkpoint', 'the pretrained Eve is not part of this installation: give --checkpoint');
      await useBackend('wasm');
      const { encoder, meta } = await loadEncoder(checkpoint);
      const inputs = paths.length ? paths : [bundledSamples()];
      try {
        const r = await matchAnatomy(encoder.backbone, inputs, { level: opts.level, size: opts.size ?? meta.inputSize ?? 224, onSkip: (s) => s.category !== 'not an image file' && process.stderr.write(`skipped ${s.message}\n`) });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return;
        }
        process.stdout.write(`Eve of ${meta.source}\n${r.files.length} images, each cut into ${r.parts} parts (level ${r.level}); for each part, the most similar part of any other image:\n`);
        const width = Math.max(...r.files.map((f) => path.basename(f).length));
        r.images.forEach((parts, i) => {
          const cells = parts.map((p) => {
            const best = p.matches.reduce((a, b) => (b.cosine > a.cosine ? b : a));
            return `${partName(r.level, p.part)} -> ${path.basename(r.files[best.image]!)} ${partName(r.level, best.part)}${best.part === p.part ? '' : ' (!)'} ${best.cosine.toFixed(2)}`;
          });
          process.stdout.write(`${path.basename(r.files[i]!).padEnd(width)}  ${cells.join(' | ')}\n`);
        });
        process.stdout.write(
          `same anatomical region matched: ${(100 * r.samePart).toFixed(1)}% of part-to-image matches (raw pixels: ${(100 * r.samePartRawPixels).toFixed(1)}%, chance: ${(100 / r.parts).toFixed(1)}%)\n`,
        );
        if (Number.isFinite(r.overRawPixels.mean)) {
          process.stdout.write(`Eve − raw pixels: ${formatDifference(r.overRawPixels)} points (95% bootstrap over the ${r.files.length} images; * excludes 0)\n`);
        }
      } finally {
        encoder.dispose();
      }
    });
}
