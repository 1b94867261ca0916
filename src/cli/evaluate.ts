import { Command, Option } from 'commander';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { availableParallelism } from 'node:os';
import { EdenError } from '../core/errors.js';
import { EVALUATE_PRESETS, resolveEvaluateConfig, SEGMENTATION_MODES } from '../config/evaluate.js';
import { BACKENDS, useBackend, type BackendName } from '../engine/backend.js';
import { describeWebGpuEngine } from '../engine/webgpu.js';
import { evaluate, SEGMENTATION_FOLDER_TASKS, TASKS, type Task } from '../eval/evaluate.js';
import { resolveSources } from '../eval/models.js';
import { BACKBONES } from '../models/resnet.js';
import { collect, MASKS_HELP, parseList, parsePositiveInt, rleOrderOption, maskRowsOption, THREADS_HELP } from './options.js';
import type { RunOrder } from '../data/mask-table.js';

/** 'lungs=left_lung+right_lung' -> { lungs: ['left_lung', 'right_lung'] } */
export function parseCombine(value: string, previous: Record<string, string[]>): Record<string, string[]> {
  // Parts are structures or label values (labels:2); one part names a label value (left_lung=labels:1).
  const m = /^([\w-]+)=([\w-]+(?::\d+)?(?:\+[\w-]+(?::\d+)?)*)$/.exec(value);
  if (!m) throw new EdenError('config', `--combine expects name=a+b(+c...) or name=labels:VALUE, got '${value}'`);
  return { ...previous, [m[1]!]: m[2]!.split('+') };
}

function parseShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (!m || Number(m[1]) >= Number(m[2])) throw new EdenError('config', `--worker-index expects i/n with i < n, got '${v}'`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

/**
 * The few-shot runs in `n` child processes (this command again, each with --worker-index i/n and
 * cores/n native threads); each appends its runs to its own file in --out.
 */
async function runWorkers(n: number, resume: boolean): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--workers');
  if (at >= 0) args.splice(at, 2);
  const threads = Math.max(1, Math.floor(availableParallelism() / n));
  process.stderr.write(`few-shot runs in ${n} worker processes, ${threads} native thread(s) each\n`);
  const children = Array.from({ length: n }, (_, i) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args, '--worker-index', `${i}/${n}`, ...(resume ? [] : ['--resume'])], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, EDEN_THREADS: String(threads) },
      });
      child.stderr.on('data', (d: Buffer) => process.stderr.write(d.toString().replace(/^(?=.)/gm, `[worker ${i}] `)));
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new EdenError('config', `evaluation worker ${i} of ${n} failed (exit ${code}); its finished runs are kept: rerun with --resume`))));
    }),
  );
  await Promise.all(children);
}

export function registerEvaluate(program: Command): void {
  program
    .command('evaluate')
    .description('judge checkpoints side by side against floors (atlas, random init, raw pixels) with paired intervals: few-shot segmentation (frozen, fine-tuned, linear), locality, compositionality, classification; writes report.md, report.json and plots')
    .argument('[data]', 'the labelled data, as --data')
    .option('--data <path>', 'labelled folder (images/ + masks/<structure>/ for segmentation; for classify: with a CSV of labels, or one folder per class) or a MedMNIST-style .npz (classify)')
    .option('--masks <dir|table>', MASKS_HELP)
    .addOption(rleOrderOption())
    .addOption(maskRowsOption())
    .option('--max-images <n>', 'segmentation tasks: use at most N of the labelled images, drawn with --seed (a folder too large to hold decoded is refused, naming the N that fits)', parsePositiveInt)
    .option('--checkpoint <ckpt>', "encoder or pretraining checkpoint, a run directory, or 'builtin' (repeatable; default with no --checkpoint and no --baseline: builtin, the pretrained Eve shipped with Eden)", collect, [])
    .option('--baseline <name>', "baseline Eden builds itself: 'random' (repeatable)", collect, [])
    .addOption(new Option('--task <task>', "what to evaluate ('all' = fewshot-seg, locality and compositionality)").choices([...TASKS, 'all']).default('all'))
    .option('--labels <csv>', 'classify: CSV manifest with labels (default: labels.csv in the folder)')
    .option('--label-column <name>', "classify: the manifest's label column (default: 'label'); COLUMN=FINDING for one finding of a multi-label column against the rest, e.g. 'Finding Labels=Effusion'")
    .addOption(new Option('--preset <name>', 'tiny (tests) | cpu (about an hour on 2 cores) | paper').choices(EVALUATE_PRESETS).default('cpu'))
    .option('--shots <list>', 'labelled images per fine-tuning, e.g. 3,6,12,24', parseList)
    .option('--seeds <n>', 'seeds per setting', parsePositiveInt)
    .option('--steps <n>', 'fine-tuning steps per run (segmentation and classification)', parsePositiveInt)
    .option('--size <px>', 'input size (few-shot segmentation: a multiple of 32; classification: any)', parsePositiveInt)
    .option('--seed <n>', 'base seed', Number)
    .option('--mode <list>', `few-shot segmentation modes: ${SEGMENTATION_MODES.join(', ')} (default of the cpu preset: frozen,finetune)`, parseList)
    .option('--structures <list>', 'structures to segment (after --combine); derived targets as BASE:apex, BASE:costophrenic, BASE:border (e.g. lungs:apex,heart:border); one value of a label map as BASE:VALUE (e.g. labels:2)', parseList)
    .option('--combine <name=a+b>', 'unite masks into one structure, e.g. lungs=left_lung+right_lung, or name a label map\'s value, e.g. heart=labels:3 (repeatable)', parseCombine, {})
    .addOption(new Option('--arch <name>', "architecture of the 'random' baseline when no checkpoint gives it").choices(BACKBONES))
    .option('--width <n>', "width of the 'random' baseline", parsePositiveInt)
    .addOption(new Option('--backend <name>', 'TF.js backend').choices([...BACKENDS]).default('wasm'))
    .option('--threads <n>', THREADS_HELP, parsePositiveInt)
    .requiredOption('--out <dir>', 'output folder for report.json, report.md and plots')
    .option('--resume', 'reuse the finished few-shot runs of the same configuration in --out (fewshot-runs*.jsonl)')
    .option('--workers <n>', 'run the few-shot fine-tunes in N processes, each with cores/N native threads (small models use 2 cores better as 2 x 1 thread)', parsePositiveInt, 1)
    .addOption(new Option('--worker-index <i/n>', 'internal: be worker i of n').hideHelp())
    .action(async (positional: string | undefined, opts: { labels?: string; labelColumn?: string; data?: string; masks?: string; rleOrder?: RunOrder; maskRows?: string; maxImages?: number; checkpoint: string[]; baseline: string[]; task: Task | 'all'; preset: string; shots?: string[]; seeds?: number; steps?: number; size?: number; seed?: number; structures?: string[]; combine: Record<string, string[]>; arch?: string; width?: number; backend: BackendName; out: string; mode?: string[]; resume?: boolean; threads?: number; workers: number; workerIndex?: string }) => {
      if (positional && opts.data && positional !== opts.data) throw new EdenError('config', `two data paths given ('${positional}' and --data '${opts.data}'); evaluate one labelled folder at a time`);
      const data = opts.data ?? positional;
      if (!data) throw new EdenError('config', 'no labelled data: give a folder (eden evaluate DIR ...) or --data DIR');
      if (opts.threads) process.env['EDEN_THREADS'] = String(opts.threads);
      await useBackend(opts.backend);
      if (opts.backend === 'webgpu') process.stderr.write(`engine: ${describeWebGpuEngine()}\n`);
      const tasks = opts.task === 'all' ? SEGMENTATION_FOLDER_TASKS : [opts.task];
      if (opts.maxImages && tasks.includes('classify')) throw new EdenError('config', '--max-images is for the segmentation tasks; classification caps its images with the preset (classification.maxTrain, maxTest)');
      if (opts.masks && tasks.includes('classify')) throw new EdenError('config', '--masks is for the segmentation tasks; classification takes its labels from a CSV (--labels), class folders or a .npz');
      const config = resolveEvaluateConfig(opts.preset, { shots: opts.shots?.map(Number), seeds: opts.seeds, steps: opts.steps, size: opts.size, seed: opts.seed, modes: opts.mode }, tasks);
      // Nothing to judge given: the shipped Eve, so that `eden evaluate DIR` measures it on a user's data.
      const checkpoints = opts.checkpoint.length || opts.baseline.length ? opts.checkpoint : ['builtin'];
      const sources = await resolveSources(checkpoints, opts.baseline, { backbone: opts.arch, width: opts.width });
      const t0 = Date.now();
      const shard = opts.workerIndex ? parseShard(opts.workerIndex) : undefined;
      if (!shard && opts.workers > 1 && tasks.includes('fewshot-seg')) {
        if (!opts.resume) {
          // A fresh evaluation: no earlier runs in --out may be taken for this one's.
          await fs.mkdir(opts.out, { recursive: true });
          for (const f of await fs.readdir(opts.out)) if (/^fewshot-runs(-w\d+)?\.jsonl$/.test(f)) await fs.rm(path.join(opts.out, f));
        }
        await runWorkers(opts.workers, opts.resume === true);
        opts.resume = true; // the workers' runs are merged by resuming from their files
      }
      const report = await evaluate({
        data,
        masks: opts.masks,
        rleOrder: opts.rleOrder,
        maskRows: opts.maskRows,
        maxImages: opts.maxImages,
        tasks: shard ? ['fewshot-seg'] : tasks,
        shard,
        labels: opts.labels,
        labelColumn: opts.labelColumn,
        sources,
        config,
        out: opts.out,
        command: ['eden', ...process.argv.slice(2)].join(' '),
        structures: opts.structures,
        combine: opts.combine,
        resume: opts.resume,
        onLog: (line) => process.stderr.write(`${line}\n`),
      });
      if (shard) return;
      const files = [path.join(opts.out, 'report.md'), path.join(opts.out, 'report.json'), ...report.plots.map((p) => path.join(opts.out, p))];
      process.stdout.write(`wrote ${files.join(', ')} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    });
}
