import { Command, Option } from 'commander';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { useBackend, BACKENDS, type BackendName } from '../engine/backend.js';
import { defaultEncoderSpec, finetuneClassification, finetuneSegmentation } from '../apply/finetune.js';
import { BACKBONES } from '../models/resnet.js';
import { nativeStatus } from '../engine/native.js';
import { describeWebGpuEngine } from '../engine/webgpu.js';
import { describeConvTuning } from '../engine/webgpu-conv-tune.js';
import { createProgress } from './progress.js';
import { MASKS_HELP, parseList, parseNonNegativeInt, parsePositiveInt, rleOrderOption, maskRowsOption, THREADS_HELP } from './options.js';
import type { RunOrder } from '../data/mask-table.js';
import { interruptOnSigint } from './interrupt.js';
import { parseCombine } from './evaluate.js';

interface FinetuneFlags {
  data?: string;
  masks?: string;
  rleOrder?: RunOrder;
  maskRows?: string;
  task: 'segment' | 'classify';
  checkpoint?: string;
  arch?: string;
  width?: number;
  structures?: string[];
  combine: Record<string, string[]>;
  shots: string;
  valImages?: number;
  mode: 'finetune' | 'frozen';
  size: number;
  steps: number;
  batchSize: number;
  microBatch?: number;
  lr: number;
  encoderLr: number;
  evalEvery: number;
  patience: number;
  seed: number;
  labels?: string;
  labelColumn?: string;
  backend: BackendName;
  out: string;
  threads?: number;
  resume?: boolean;
  saveEvery: number;
}

export function registerFinetune(program: Command): void {
  program
    .command('finetune')
    .description('train a segmentation model (U-Net on an encoder) or an image classifier on labelled images; writes one self-describing model file for eden segment / eden classify')
    .argument('[data]', 'the labelled data, as --data')
    .option('--data <dir>', 'segmentation: images/ + masks/<structure>/; classification: a folder with a label CSV, a folder of class folders (<class>/ or train|val|test/<class>/), or a MedMNIST .npz')
    .option('--masks <dir|table>', MASKS_HELP)
    .addOption(rleOrderOption())
    .addOption(maskRowsOption())
    .addOption(new Option('--task <task>', 'segment | classify').choices(['segment', 'classify']).default('segment'))
    .option('--checkpoint <ckpt>', "encoder to start from: a checkpoint, a run directory, 'builtin' (the pretrained Eve, the default when installed) or 'random'")
    .addOption(new Option('--arch <name>', "architecture for --checkpoint random").choices(BACKBONES))
    .option('--width <n>', 'width for --checkpoint random', parsePositiveInt)
    .option('--structures <list>', 'structures to segment (after --combine; derived targets such as lungs:apex, and one value of a label map such as labels:2, work too)', parseList)
    .option('--combine <name=a+b>', 'unite masks into one structure, e.g. lungs=left_lung+right_lung, or name a label map\'s value, e.g. heart=labels:3 (repeatable)', parseCombine, {})
    .option('--shots <k|all>', "labelled images to train on: a number (drawn with --seed) or 'all'", 'all')
    .option('--val-images <n>', 'validation images for early stopping (default 15% of the labelled images, 2 to 32)', parsePositiveInt)
    .addOption(new Option('--mode <mode>', 'finetune: decoder and encoder (encoder at --encoder-lr x the rate); frozen: decoder only').choices(['finetune', 'frozen']).default('finetune'))
    .option('--size <px>', 'input size (a multiple of 32)', parsePositiveInt, 256)
    .option('--steps <n>', 'most training steps (early stopping usually ends sooner)', parsePositiveInt, 1000)
    .option('--batch-size <n>', 'images per step', parsePositiveInt, 8)
    .option('--micro-batch <n>', 'images per forward/backward pass; a step accumulates the passes of one batch (default: the whole batch, split automatically when it does not fit in the wasm heap)', parsePositiveInt)
    .option('--lr <x>', 'Adam learning rate', Number, 1e-3)
    .option('--encoder-lr <x>', 'encoder learning rate multiplier (finetune mode)', Number, 0.1)
    .option('--eval-every <n>', 'steps between validation checks', parsePositiveInt, 25)
    .option('--patience <n>', 'validation checks without improvement before stopping', parsePositiveInt, 6)
    .option('--seed <n>', 'seed of the split, initialisation and augmentation', Number, 0)
    .option('--labels <csv>', 'classify: label CSV (default: labels.csv in the folder)')
    .option('--label-column <name>', "classify: the label column (default 'label'); COLUMN=FINDING for one finding of a multi-label column against the rest, e.g. 'Finding Labels=Effusion'")
    .addOption(new Option('--backend <name>', 'TF.js backend').choices([...BACKENDS]).default('wasm'))
    .option('--threads <n>', THREADS_HELP, parsePositiveInt)
    .requiredOption('--out <file>', 'model file to write (.safetensors)')
    .option('--resume', 'go on from the training state an interrupted run with the same settings saved beside --out (<name>.training.safetensors)')
    .option('--save-every <seconds>', 'least seconds between saves of the training state, at validation checks (Ctrl-C also saves it)', parseNonNegativeInt, 60)
    .action(async (positional: string | undefined, f: FinetuneFlags) => {
      const data = f.data ?? positional;
      if (!data) throw new EdenError('config', 'no labelled data: give a folder (eden finetune DIR ...) or --data DIR');
      if (f.masks && f.task !== 'segment') throw new EdenError('config', '--masks is for segmentation; a classifier takes its labels from a CSV (--labels) or class folders');
      if (f.size % 32 !== 0) throw new EdenError('config', `--size must be a multiple of 32 (the encoder's stride), got ${f.size}`);
      const shots = f.shots === 'all' ? 'all' : Number(f.shots);
      if (shots !== 'all' && (!Number.isInteger(shots) || shots < 1)) throw new EdenError('config', `--shots must be a positive integer or 'all', got '${f.shots}'`);
      if (f.threads) process.env['EDEN_THREADS'] = String(f.threads);
      await useBackend(f.backend);
      if (f.backend === 'wasm' && !nativeStatus().active) process.stderr.write(`engine: wasm without native kernels (${nativeStatus().detail}); training is several times slower\n`);
      if (f.backend === 'webgpu') process.stderr.write(`engine: ${describeWebGpuEngine()}\n`);
      const encoder = f.checkpoint ? { checkpoint: f.checkpoint, backbone: f.arch, width: f.width } : defaultEncoderSpec();
      const bar = createProgress('fine-tuning', process.stderr, 'fine-tuning [{bar}] step {value}/{total} | loss {loss} | validation {val}');
      let lastVal = '—';
      const common = {
        data,
        encoder,
        size: f.size,
        steps: f.steps,
        batchSize: f.batchSize,
        microBatch: f.microBatch,
        lr: f.lr,
        evalEvery: f.evalEvery,
        patience: f.patience,
        seed: f.seed,
        onLog: (l: string) => process.stderr.write(`${l}\n`),
        onProgress: (p: { step: number; steps: number; loss: number; valScore?: number }) => {
          if (p.valScore !== undefined) {
            lastVal = p.valScore.toFixed(4);
            if (!process.stderr.isTTY || process.env['CI']) process.stderr.write(`step ${p.step}/${p.steps}: loss ${p.loss.toFixed(4)}, validation ${f.task === 'segment' ? 'Dice' : 'AUC'} ${lastVal}\n`);
          }
          bar.update(p.step, p.steps, { loss: p.loss.toFixed(4), val: lastVal });
        },
      };
      const t0 = Date.now();
      const interrupt = interruptOnSigint('the training state');
      const resumable = { resume: f.resume, saveEverySeconds: f.saveEvery, signal: interrupt.signal };
      const meta = await (f.task === 'segment'
        ? finetuneSegmentation({ ...common, ...resumable, masks: f.masks, rleOrder: f.rleOrder, maskRows: f.maskRows, structures: f.structures, combine: f.combine, shots, valImages: f.valImages, mode: f.mode, encoderLrMultiplier: f.encoderLr }, f.out)
        : finetuneClassification({ ...common, ...resumable, labels: f.labels, labelColumn: f.labelColumn }, f.out)
      ).finally(() => {
        interrupt.release();
        bar.stop();
      });
      const tuning = describeConvTuning(); // EDEN_WEBGPU_CONV=tune
      if (tuning) process.stderr.write(`${tuning}\n`);
      const scores = Object.entries(meta.validation).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ');
      process.stdout.write(`wrote ${path.resolve(f.out)} (${meta.training.steps} steps, kept step ${meta.training.bestStep}; validation: ${scores || 'none'}) in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    });
}
