import { Command, Option } from 'commander';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { BACKENDS, useBackend, type BackendName } from '../engine/backend.js';
import { loadTensorFile } from '../engine/tensor-file.js';
import { loadEncoder, saveEncoder } from '../models/encoder-file.js';
import { BACKBONES } from '../models/resnet.js';
import { importTorchCheckpoint } from '../interop/import-torch.js';
import { type Preprocess } from '../embed/embed.js';
import { embedToFile, rowsFileOf } from '../embed/embedding-file.js';
import { scanDataset, type SkippedFile } from '../data/scan.js';
import { exportSafetensors, exportTfjs } from '../interop/export.js';
import { exportClassifierOnnx, exportOnnx, exportSegmenterOnnx } from '../interop/onnx.js';
import { loadClassifier, loadSegmenter, SEGMENTER_FORMAT, taskModelMeta } from '../models/task-model-file.js';
import { resolveModelSpec } from '../models/builtin.js';
import { createProgress } from './progress.js';
import { parsePositiveInt } from './options.js';

export function registerInterop(program: Command): void {
  program
    .command('import-torch')
    .description("convert a PyTorch ResNet checkpoint (.pth: torchvision, MoCo-style, the Adam authors' ResNet-50) into an Eden encoder checkpoint")
    .argument('<file.pth>', 'a torch.save file: a state dict, or a training checkpoint holding one')
    .addOption(new Option('--arch <name>', 'the architecture the weights are for').choices(BACKBONES).makeOptionMandatory())
    .requiredOption('--out <ckpt>', 'encoder checkpoint to write (.safetensors)')
    .action(async (file: string, opts: { arch: string; out: string }) => {
      await useBackend('cpu');
      const { encoder, report } = await importTorchCheckpoint(file, { arch: opts.arch });
      await saveEncoder(opts.out, encoder, { hasHead: report.head === 'imported', source: file });
      encoder.dispose();
      process.stdout.write(
        [
          `imported ${report.loaded} tensors of ${report.arch} (width ${report.width}) from ${file}`,
          report.conv1ChannelsSummed ? `conv1: ${report.conv1ChannelsSummed} input channels summed into 1 (grey input)` : 'conv1: 1 input channel',
          `projection head: ${report.head}`,
          `ignored: ${report.ignored.length ? report.ignored.slice(0, 8).join(', ') + (report.ignored.length > 8 ? `, ... (${report.ignored.length} in all)` : '') : 'nothing'}`,
          `wrote ${opts.out}`,
        ].join('\n') + '\n',
      );
    });

  program
    .command('embed')
    .description('write Eve (pooled embeddings [N, D], or dense feature maps) of images as a NumPy .npy file, and which image each row is in a CSV beside it')
    .option('--checkpoint <ckpt>', "encoder or pretraining checkpoint (default: 'builtin', the pretrained Eve shipped with Eden)", 'builtin')
    .argument('<paths...>', 'image files (PNG, JPEG, TIFF, DICOM...) and folders of them (searched recursively)')
    .requiredOption('--out <file.npy>', 'output .npy (float32); the rows\' images go to <file>.files.csv')
    .option('--dense', 'write the feature maps [N, h, w, D] instead of the pooled embeddings')
    .addOption(new Option('--preprocess <mode>', "'default': intensity window, resize, normalise as in training; 'none': pixel / 255 at the image's own size").choices(['default', 'none']).default('default'))
    .option('--size <px>', "input size for --preprocess default (default: the checkpoint's training view size)", parsePositiveInt)
    .addOption(new Option('--backend <name>', 'TF.js backend').choices([...BACKENDS]).default('wasm'))
    .option('--resume', 'go on with an interrupted run into the same --out (same checkpoint and preprocessing): its rows are kept')
    .action(async (paths: string[], opts: { checkpoint: string; out: string; dense?: boolean; preprocess: Preprocess; size?: number; backend: BackendName; resume?: boolean }) => {
      // Folders are searched as every other command does; files given one by one keep their order.
      const scan = await scanDataset(paths, { imagesOnly: true });
      let skippedCount = 0;
      const report = (s: SkippedFile): void => {
        if (s.category === 'not an image file' && scan.layout !== 'files') return;
        skippedCount++;
        process.stderr.write(`skipped ${s.message}\n`);
      };
      scan.skipped.forEach(report);
      if (!scan.images.length) throw new EdenError('data', `no images found in ${paths.join(', ')}`);
      await useBackend(opts.backend);
      const { encoder, meta } = await loadEncoder(opts.checkpoint);
      const progress = createProgress('embedding');
      // The rows depend on the checkpoint file itself (a file rewritten in place is another one).
      const checkpointFile = path.resolve(resolveModelSpec(opts.checkpoint));
      const stamp = await fs.stat(checkpointFile).then((st) => `${checkpointFile} (${st.size} bytes, modified ${st.mtime.toISOString()})`, () => checkpointFile);
      await fs.mkdir(path.dirname(path.resolve(opts.out)), { recursive: true });
      const out = await embedToFile(
        encoder,
        scan.images.map((e) => e.path),
        opts.out,
        { checkpoint: stamp, preprocess: opts.preprocess, size: opts.size, dense: opts.dense ?? false },
        { preprocess: opts.preprocess, size: opts.size, inputSize: meta.inputSize, dense: opts.dense, resume: opts.resume, onProgress: (d, t) => progress.update(d, t), onSkip: report },
      ).finally(() => {
        progress.stop();
        encoder.dispose();
      });
      const kept = out.kept ? `, ${out.kept} rows kept from the earlier run` : '';
      process.stdout.write(`wrote ${opts.out}: float32 [${out.shape.join(', ')}]${kept}${skippedCount ? `, skipped ${skippedCount}` : ''}; the image of each row: ${rowsFileOf(opts.out)}\n`);
    });

  program
    .command('export')
    .description('export an encoder (ONNX, safetensors with PyTorch names, or TF.js for the browser) or a fine-tuned segmentation / classification model (ONNX) for deployment')
    .argument('<ckpt>', "encoder or pretraining checkpoint, 'builtin', or a model from eden finetune")
    .addOption(new Option('--format <format>', "output format: onnx, safetensors (PyTorch names), tfjs, or eden (an Eden encoder file: backbone and head, no training state)").choices(['onnx', 'safetensors', 'tfjs', 'eden']).makeOptionMandatory())
    .option('--fp16', 'eden format: store the weights at half precision (half the size)')
    .requiredOption('--out <path>', 'output file (onnx, safetensors, eden) or folder (tfjs)')
    .action(async (ckpt: string, opts: { format: 'onnx' | 'safetensors' | 'tfjs' | 'eden'; out: string; fp16?: boolean }) => {
      await useBackend('cpu');
      const task = taskModelMeta(await loadTensorFile(resolveModelSpec(ckpt)));
      if (task && opts.format === 'onnx') {
        // A fine-tuned model to ONNX: the whole model. (In the other formats, its encoder, below.)
        if (task.format === SEGMENTER_FORMAT) {
          const model = await loadSegmenter(ckpt);
          await exportSegmenterOnnx(model, opts.out).finally(() => model.dispose());
        } else {
          const model = await loadClassifier(ckpt);
          await exportClassifierOnnx(model, opts.out).finally(() => model.dispose());
        }
        process.stdout.write(`wrote ${opts.out} (onnx, ${task.format === SEGMENTER_FORMAT ? `segmentation of ${task.structures!.join(', ')}` : `classification into ${task.classes!.join(', ')}`}, ${task.backbone.name} at ${task.inputSize} px)\n`);
        return;
      }
      const { encoder, meta } = await loadEncoder(ckpt);
      try {
        if (opts.format === 'onnx') await exportOnnx(encoder, meta, opts.out);
        else if (opts.format === 'safetensors') await exportSafetensors(encoder, meta, opts.out);
        else if (opts.format === 'tfjs') await exportTfjs(encoder, meta, opts.out);
        else if (opts.format === 'eden') await saveEncoder(opts.out, encoder, { hasHead: meta.hasHead, inputSize: meta.inputSize, source: meta.source }, { float16: opts.fp16 });
        else throw new EdenError('config', `unknown format ${String(opts.format)}`);
      } finally {
        encoder.dispose();
      }
      // A fine-tuned model in these formats is its encoder only: say so, and how to get the whole model.
      const whose = task ? `the encoder of the ${task.format === SEGMENTER_FORMAT ? `segmentation model of ${task.structures!.join(', ')}` : `classifier into ${task.classes!.join(', ')}`}, ` : '';
      process.stdout.write(`wrote ${opts.out} (${opts.format}, ${whose}${meta.args.backbone} width ${meta.args.width})${task ? '; --format onnx exports the whole model' : ''}\n`);
    });
}
