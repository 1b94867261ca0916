import { Command, Option } from 'commander';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAssignment, PRESET_NAMES, resolvePretrainConfig } from '../config/pretrain.js';
import { BACKENDS } from '../engine/backend.js';
import { describeWebGpuEngine } from '../engine/webgpu.js';
import { describeConvTuning } from '../engine/webgpu-conv-tune.js';
import { EdenError } from '../core/errors.js';
import { checkpointPaths, pretrain, type StepEvent } from '../train/pretrain.js';
import { plotLossCurve } from '../report/loss-curve.js';
import { interruptOnSigint } from './interrupt.js';
import { createProgress } from './progress.js';
import { nativeStatus, nativeThreads } from '../engine/native.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { collect, parseList, parseNonNegativeInt, parsePositiveInt, THREADS_HELP } from './options.js';

/** The bundled sample radiographs, used when no data are given. */
export function bundledSamples(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'samples', 'hannover_covid19');
}

interface PretrainFlags {
  preset: string;
  data: string[];
  config?: string;
  set: string[];
  out?: string;
  resume?: string;
  backend?: string;
  backbone?: string;
  width?: number;
  imageSize?: number;
  viewSize?: number;
  batchSize?: number;
  queueSize?: number;
  levels?: string[];
  epochs?: string[];
  prune: boolean;
  seed?: number;
  lr?: number;
  checkpointEvery?: number;
  maxStepsPerEpoch?: number;
  cache?: string;
  threads?: number;
  viewWorkers?: number;
}

/** Flags -> a partial config (only what was given). */
function flagOverrides(f: PretrainFlags, paths: string[]): Record<string, unknown> {
  const o: Record<string, Record<string, unknown>> = { data: {}, model: {}, views: {}, contrast: {}, curriculum: {}, optim: {}, run: {} };
  const top: Record<string, unknown> = {};
  if (paths.length) o['data']!['paths'] = paths;
  if (f.imageSize) o['data']!['imageSize'] = f.imageSize;
  if (f.cache) o['data']!['cache'] = f.cache;
  if (f.backbone) o['model']!['backbone'] = f.backbone;
  if (f.width) o['model']!['width'] = f.width;
  if (f.viewSize) o['views']!['size'] = f.viewSize;
  if (f.queueSize) o['contrast']!['queueSize'] = f.queueSize;
  if (!f.prune) o['contrast']!['prune'] = false;
  if (f.levels) o['curriculum']!['levels'] = f.levels.map(Number);
  if (f.epochs) o['curriculum']!['epochs'] = f.epochs.length === 1 ? Number(f.epochs[0]) : f.epochs.map(Number);
  if (f.batchSize) o['optim']!['batchSize'] = f.batchSize;
  if (f.lr !== undefined) o['optim']!['baseLr'] = f.lr;
  if (f.out) o['run']!['dir'] = f.out;
  if (f.checkpointEvery !== undefined) o['run']!['checkpointEverySteps'] = f.checkpointEvery;
  if (f.maxStepsPerEpoch !== undefined) o['run']!['maxStepsPerEpoch'] = f.maxStepsPerEpoch;
  if (f.seed !== undefined) top['seed'] = f.seed;
  if (f.backend) top['backend'] = f.backend;
  for (const k of Object.keys(o)) if (Object.keys(o[k]!).length === 0) delete o[k];
  return { ...top, ...o };
}

function formatStep(e: StepEvent): string {
  return `stage ${e.stage + 1} (n=${e.level}) epoch ${e.epoch + 1}/${e.epochs} step ${e.batch}/${e.batches} loss ${e.loss.toFixed(4)} pos ${e.positive.toFixed(3)} neg ${e.negativeMean.toFixed(3)} (p99.9 ${e.negativeP999.toFixed(3)}) key spread ${e.keySpread.toFixed(3)} pruned ${(100 * e.prunedFraction).toFixed(2)}% lr ${e.lr.toExponential(2)} ${e.imagesPerSecond.toFixed(1)} img/s`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

export function registerPretrain(program: Command): void {
  program
    .command('pretrain')
    .description('Adam pretraining on unlabeled images: coarse-to-fine anatomy decomposition, purposive pruning, momentum contrast')
    .argument('[paths...]', 'image folders or files (default: the bundled sample radiographs)')
    .option('--data <path>', 'an image folder or file, as the positional arguments (repeatable)', collect, [])
    .addOption(new Option('--preset <name>', 'tiny (tests, seconds) | cpu (about an hour on 2 cores) | paper').choices(PRESET_NAMES).default('cpu'))
    .option('--config <file>', 'JSON file with config fields to override (applied after the preset)')
    .option('--set <key=value>', 'override any config field, e.g. --set contrast.queueSize=8192 (repeatable)', collect, [])
    .option('--out <dir>', 'run directory (checkpoints, metrics.jsonl, loss.png)')
    .option('--resume <runDir>', 'continue the run in this directory from its last checkpoint')
    .addOption(new Option('--backend <name>', 'TF.js backend').choices([...BACKENDS]))
    .option('--backbone <name>', 'resnet18 | resnet34 | resnet50 | resnet-tiny')
    .option('--width <n>', 'backbone width (64 = torchvision)', parsePositiveInt)
    .option('--image-size <px>', 'images are cached at this square size; anchors are cut from it', parsePositiveInt)
    .option('--view-size <px>', 'side of each augmented view', parsePositiveInt)
    .option('--batch-size <n>', 'images per step', parsePositiveInt)
    .option('--queue-size <n>', 'memory queue length K', parsePositiveInt)
    .option('--levels <list>', 'decomposition level of each curriculum stage, e.g. 0,2,4', parseList)
    .option('--epochs <list>', 'epochs per stage: one number, or one per stage', parseList)
    .option('--no-prune', 'turn the purposive pruner off (ablation; with --levels 0 this is MoCo-v2)')
    .option('--lr <x>', 'base learning rate for batch 256 (scaled linearly)', Number)
    .option('--seed <n>', 'random seed', Number)
    .option('--cache <mode>', 'auto | memory | disk | none: where decoded images are kept (auto, the default: in memory when they take at most half of it, else on disk, else decoded every epoch)')
    .option('--threads <n>', THREADS_HELP, parsePositiveInt)
    .option('--view-workers <n>', 'worker threads drawing the next batch\'s views during each step; 0: on the main thread (default: 0 below 4 cores, else 1 per 8 cores, at most 4); the views are the same either way', parseNonNegativeInt)
    .option('--checkpoint-every <steps>', 'also write the last checkpoint every N steps', Number)
    .option('--max-steps-per-epoch <n>', 'cap steps per epoch (smoke runs)', parsePositiveInt)
    .action(async (paths: string[], f: PretrainFlags) => {
      if (f.threads) process.env['EDEN_THREADS'] = String(f.threads);
      paths = [...paths, ...f.data];
      let resumeFrom: string | undefined;
      let config;
      if (f.resume) {
        resumeFrom = checkpointPaths(f.resume).last;
        if (!(await exists(resumeFrom))) {
          // Killed before its first checkpoint: start the same run again from its saved config.
          const saved = path.join(f.resume, 'config.json');
          if (!(await exists(saved))) throw new EdenError('checkpoint', `${f.resume}: nothing to resume (no ${resumeFrom} and no config.json); start a new run without --resume`);
          let savedConfig: unknown;
          try {
            savedConfig = JSON.parse(await fs.readFile(saved, 'utf8'));
          } catch (err) {
            throw new EdenError('checkpoint', `${saved}: not a readable run configuration (${(err as Error).message})`);
          }
          const preset = (savedConfig as { preset?: string }).preset ?? 'cpu';
          config = resolvePretrainConfig(preset, savedConfig, { run: { dir: f.resume } });
          await fs.rm(path.join(f.resume, 'metrics.jsonl'), { force: true });
          process.stderr.write(`eden: ${f.resume} has no checkpoint yet (stopped before its first one): starting it afresh from its config.json\n`);
          resumeFrom = undefined;
        }
      } else {
        const fileOverrides = f.config ? JSON.parse(await fs.readFile(f.config, 'utf8').catch(() => { throw new EdenError('config', `cannot read config file ${f.config}`); })) : {};
        if (paths.length === 0) process.stderr.write(`eden: no data given: pretraining on the bundled samples in ${bundledSamples()}\n`);
        const defaults = { data: { paths: paths.length ? paths : [bundledSamples()] }, run: { dir: path.join('runs', `pretrain-${f.preset}`) } };
        config = resolvePretrainConfig(f.preset, defaults, fileOverrides, flagOverrides(f, []), ...f.set.map(parseAssignment));
      }
      const interrupt = interruptOnSigint('a checkpoint');
      const prep = createProgress('decoding images');
      const bar = createProgress('pretraining', process.stderr, 'stage {stage} (n={level}) epoch {epoch} [{bar}] step {value}/{total} | loss {loss} | pos {pos} neg {neg} | {ips} img/s | ETA {eta_formatted}');
      let lastLine = 0;
      let lastTuning: string | undefined;
      let nonImages = 0;
      const plain = !process.stderr.isTTY || !!process.env['CI'];
      try {
        const config0 = config ?? (await readCheckpoint(resumeFrom!)).meta.config;
        const result = await pretrain(config!, {
          resumeFrom,
          viewWorkers: f.viewWorkers,
          signal: interrupt.signal,
          hooks: {
            // Bad images are named one by one; other files (README, CSV...) are only counted.
            onSkip: (s) => (['not an image file', 'DICOM without pixel data', 'DICOM SEG (masks)'].includes(s.category) ? nonImages++ : process.stderr.write(`skipped ${s.message}\n`)),
            onCachePlan: (plan) => process.stderr.write(`data: ${plan.reason}\n`),
            onPrepare: (d, t) => prep.update(d, t),
            onWarning: (m) => process.stderr.write(`eden: warning: ${m}\n`),
            onStart: (i) => {
              prep.stop();
              const engine = nativeStatus();
              if (config0.backend === 'wasm') {
                process.stderr.write(engine.active ? `engine: wasm with native kernels (${engine.detail}, ${nativeThreads()} threads)\n` : `engine: wasm without native kernels (${engine.detail}); CPU training is several times slower\n`);
              } else if (config0.backend === 'webgpu') process.stderr.write(`engine: ${describeWebGpuEngine()}\n`);
              if (nonImages) process.stderr.write(`ignored ${nonImages} file(s) that are not images\n`);
              process.stderr.write(
                `${i.resumedAt ? `resuming at step ${i.resumedAt.globalStep} (stage ${i.resumedAt.stage + 1}, epoch ${i.resumedAt.epoch + 1}, batch ${i.resumedAt.batch}); ` : ''}` +
                  `${i.trainImages} training and ${i.valImages} validation images, ${i.totalSteps} steps, ${(i.parameters / 1e6).toFixed(2)}M backbone parameters\n`,
              );
            },
            onStep: (e) => {
              bar.update(e.globalStep, e.totalSteps, { stage: e.stage + 1, level: e.level, epoch: `${e.epoch + 1}/${e.epochs}`, loss: e.loss.toFixed(4), pos: e.positive.toFixed(2), neg: e.negativeMean.toFixed(2), ips: e.imagesPerSecond.toFixed(1) });
              const now = Date.now();
              if (plain && (now - lastLine > 10000 || e.globalStep === 1 || e.globalStep === e.totalSteps)) {
                process.stderr.write(`${formatStep(e)} [${e.globalStep}/${e.totalSteps}]\n`);
                lastLine = now;
              }
            },
            onEpoch: (e) => {
              bar.stop();
              process.stderr.write(
                `stage ${e.stage + 1} (n=${e.level}) epoch ${e.epoch + 1}: train loss ${e.trainLoss.toFixed(4)}${e.valLoss !== null ? `, validation loss ${e.valLoss.toFixed(4)}${e.isBest ? ' (best)' : ''}` : ''}` +
                  `${e.valRetrieval !== null ? `, held-out retrieval ${(100 * e.valRetrieval).toFixed(1)}% (chance ${(100 * e.retrievalChance!).toFixed(1)}%)` : ''}, ${e.seconds.toFixed(1)} s\n`,
              );
              // EDEN_WEBGPU_CONV=tune: what the epoch's tuning chose, when it tuned anything new.
              const tuning = describeConvTuning();
              if (tuning && tuning !== lastTuning) process.stderr.write(`${(lastTuning = tuning)}\n`);
            },
          },
        });
        bar.stop();
        const runDir = result.runDir;
        await plotLossCurve(path.join(runDir, 'metrics.jsonl'), path.join(runDir, 'loss.png'), { queueSize: config0.contrast.queueSize }).catch((err: unknown) => process.stderr.write(`eden: warning: loss curve not drawn (${String(err)})\n`));
        process.stdout.write(`${result.interrupted ? 'interrupted; resume with: eden pretrain --resume ' + runDir : 'done'}\n`);
        process.stdout.write(`last checkpoint: ${result.lastCheckpoint}\n`);
        if (result.bestCheckpoint) process.stdout.write(`best checkpoint: ${result.bestCheckpoint}\n`);
        process.stdout.write(`metrics: ${path.join(runDir, 'metrics.jsonl')}, loss curve: ${path.join(runDir, 'loss.png')}\n`);
        if (result.interrupted) process.exitCode = 130;
      } finally {
        interrupt.release();
        bar.stop();
        prep.stop();
      }
    });
}
