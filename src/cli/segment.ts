import type { Command } from 'commander';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { useBackend } from '../engine/backend.js';
import { loadClassifier, loadSegmenter } from '../models/task-model-file.js';
import { segmentFiles } from '../apply/segment.js';
import { classifyToFile } from '../apply/classify.js';
import { createProgress } from './progress.js';
import { parsePositiveInt } from './options.js';

export function registerSegment(program: Command): void {
  program
    .command('segment')
    .description('apply a segmentation model (eden finetune) to images and folders: mask PNGs, overlays, areas and the cardiothoracic ratio in measurements.csv, DICOM SEG for DICOM input, NIfTI / MetaImage masks for NIfTI / MetaImage input')
    .argument('<model>', 'segmentation model file (eden finetune)')
    .argument('<paths...>', 'images (PNG, JPEG, TIFF, DICOM...) and folders (searched recursively)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--batch-size <n>', 'images per forward pass', parsePositiveInt, 8)
    .option('--threshold <p>', 'probability threshold of a mask pixel', Number, 0.5)
    .option('--no-dicom-seg', 'do not write DICOM SEG files for DICOM input')
    .option('--resume', "keep the images an interrupted run of the same model and threshold measured in --out, segment the rest")
    .action(async (modelFile: string, paths: string[], opts: { out: string; batchSize: number; threshold: number; dicomSeg: boolean; resume?: boolean }) => {
      await useBackend('wasm');
      const model = await loadSegmenter(modelFile);
      if (!opts.resume && existsSync(path.join(opts.out, 'measurements.csv'))) process.stderr.write(`note: ${opts.out} holds an earlier run's measurements.csv, now replaced (--resume keeps its images)\n`);
      const bar = createProgress('segmenting');
      let skippedCount = 0;
      try {
        const r = await segmentFiles(model, paths, {
          out: opts.out,
          batchSize: opts.batchSize,
          threshold: opts.threshold,
          dicomSeg: opts.dicomSeg,
          resume: opts.resume,
          onSkip: (s) => {
            if (s.category === 'not an image file') return;
            skippedCount++;
            process.stderr.write(`skipped ${s.message}\n`);
          },
          onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
          onImage: (_, done, total) => bar.update(done, total),
        });
        bar.stop();
        const withCtr = r.rows.filter((x) => x.ctr !== undefined).length;
        const kept = r.kept ? `, kept ${r.kept} from the earlier run` : '';
        process.stdout.write(`segmented ${r.rows.length} image(s) in ${r.seconds.toFixed(1)} s (${(r.rows.length / Math.max(r.seconds, 1e-3)).toFixed(1)} images/s)${kept}${skippedCount ? `, skipped ${skippedCount}` : ''}; ${withCtr ? `cardiothoracic ratio for ${withCtr}; ` : ''}measurements: ${r.csv}\n`);
      } finally {
        bar.stop();
        model.dispose();
      }
    });

  program
    .command('classify')
    .description('apply a classification model (eden finetune --task classify) to images and folders: a CSV of class probabilities')
    .argument('<model>', 'classification model file')
    .argument('<paths...>', 'images and folders')
    .requiredOption('--out <file>', 'CSV to write')
    .option('--resume', 'go on with an interrupted run of the same model into the same --out: its rows are kept')
    .action(async (modelFile: string, paths: string[], opts: { out: string; resume?: boolean }) => {
      await useBackend('wasm');
      const model = await loadClassifier(modelFile);
      const bar = createProgress('classifying');
      try {
        await fs.mkdir(path.dirname(path.resolve(opts.out)), { recursive: true });
        const r = await classifyToFile(model, paths, opts.out, { resume: opts.resume, onSkip: (s) => s.category !== 'not an image file' && process.stderr.write(`skipped ${s.message}\n`), onProgress: (done, total) => bar.update(done, total) });
        bar.stop();
        process.stdout.write(`classified ${r.rows - r.kept} image(s)${r.kept ? `, kept ${r.kept} from the earlier run` : ''}: ${opts.out}\n`);
      } finally {
        bar.stop();
        model.dispose();
      }
    });
}
