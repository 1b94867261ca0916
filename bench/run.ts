/**
 * `npm run bench`: one Adam pretraining step (teacher forward, student forward/backward, SGD,
 * EMA, enqueue, purposive pruner on) on random single-channel images, as in
 * ../shared/bench/torch_adam_step.py. Prints one JSON line per workload with images_per_s
 * (median over steps after warm-up) and peak_rss_mb; each workload runs in its own process so
 * its peak RSS is its own. A benchmark, not a test: nothing fails on time.
 *
 *   npm run bench                                  # workloads a and b on wasm
 *   npm run bench -- --workload a --with-torch     # also the PyTorch reference, and the ratio
 *   npm run bench -- --workload a --profile        # time per kernel for one step (pretraining, seg256, ft18, ft50)
 *   npm run bench -- --backend webgpu              # also kernels (dispatches), host time, GPU time in kernels
 *                                                  # (timestamp queries) and its share of the step
 *   npm run bench -- --backend webgpu --workload a --size 32 --batch 2 --defer-submit   # host time of (a)'s graph
 *     (--defer-submit: one queue submit per read-back, so that a CPU driver such as lavapipe does not
 *     run earlier kernels on the same cores while the step's JavaScript is timed)
 *   npm run bench -- --backend webgpu --workload a --replay   # steps after the first captured and replayed
 *   npm run bench -- --workload cpu --contend --with-torch   # also with another process busy on one core
 *   npm run bench -- --workload cpu --threads 1              # the native kernels on one thread
 *   npm run bench -- --workload seg256                       # U-Net inference (ResNet-18, 256 px): images/s
 *   npm run bench -- --workload ft18 --with-torch            # U-Net fine-tuning step beside PyTorch's (bench/torch_unet_step.py)
 *   npm run bench -- --workload ft50 --batch 4               # U-Net fine-tuning step (ResNet-50, 224 px)
 *   npm run bench -- --workload state18 --with-torch         # saving eden finetune's training state (ResNet-18 U-Net) beside torch.save
 *   npm run bench -- --workload ft50 --batch 8 --micro-batch 4   # the same, batch 8 in 2 passes (gradient accumulation)
 *   npm run bench -- --backend webgpu --workload ft18 --size 32 --batch 2 [--replay]   # fine-tuning's dispatches and host time
 *   npm run bench -- --workload eval [--data DIR] [--seeds n]   # cost of `eden evaluate --preset cpu` (few-shot segmentation)
 *   npm run bench -- --workload adam --steps 20                  # Eden's fused Adam against tf.train.adam
 *   npm run bench -- --backend webgpu --workload convs [--size 64 --batch 4]   # each convolution: TF.js's kernels vs Eden's
 *   npm run bench -- --backend webgpu --workload infonce [--batch 32]   # InfoNCE: tensor ops vs Eden's programs, with and without subgroups
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { useBackend, type BackendName } from '../src/engine/backend.js';
import { Encoder } from '../src/models/encoder.js';
import { MemoryQueue } from '../src/ssl/queue.js';
import { infoNceLoss, l2Normalize } from '../src/ssl/loss.js';
import { Adam, SgdMomentum } from '../src/train/optimizer.js';
import { webGpuInPlaceDispatches } from '../src/engine/webgpu-inplace.js';
import { StepReplay, pinnedBytes } from '../src/engine/webgpu-replay.js';
import { subgroupsOn, webGpuSubgroupSizes } from '../src/engine/webgpu-subgroups.js';
import { AdamStepRunner, adamStep } from '../src/train/adam-step.js';
import { timeGpuPasses } from '../src/engine/webgpu-timing.js';
import { convTuningCounts, convTuningSeconds, tuneWebGpuConvolutions } from '../src/engine/webgpu-conv-tune.js';
import { convTuningOn } from '../src/engine/webgpu-conv.js';
import { copyVariables } from '../src/ssl/momentum.js';
import { createBackbone } from '../src/models/resnet.js';
import { UNet } from '../src/models/unet.js';
import { segmentationLoss, unetTrainingParts } from '../src/train/segmenter.js';
import { snapshot, trainingTensors } from '../src/train/early-stopping.js';
import { encodeTensorFile, saveTensorFile, toRecords, writeFileAtomic } from '../src/engine/tensor-file.js';
import { accumulatedGradients } from '../src/train/accumulate.js';
import { resolveEvaluateConfig } from '../src/config/evaluate.js';
import { fewShotSegmentation, loadSegmentationData } from '../src/eval/fewshot.js';
import { checkpointSource } from '../src/eval/models.js';

interface Workload {
  name: string;
  /** pretrain: an Adam step (student, teacher, queue); segment: U-Net inference; finetune: a U-Net training step (encoder and decoder, 3 structures). */
  kind?: 'pretrain' | 'segment' | 'finetune' | 'evaluate' | 'optimizer' | 'convs' | 'infonce' | 'save';
  arch: string;
  width: number;
  size: number;
  batch: number;
  queue: number;
}

const WORKLOADS: Record<string, Workload> = {
  a: { name: 'a', arch: 'resnet18', width: 64, size: 128, batch: 16, queue: 16384 },
  b: { name: 'b', arch: 'resnet50', width: 64, size: 224, batch: 8, queue: 16384 },
  // The `cpu` pretraining preset's step (not in the default run).
  cpu: { name: 'cpu', arch: 'resnet18', width: 64, size: 112, batch: 32, queue: 2048 },
  // Smoke test of a backend (seconds).
  tiny: { name: 'tiny', arch: 'resnet-tiny', width: 8, size: 64, batch: 8, queue: 256 },
  // `eden segment`'s batched inference (issue 12): a ResNet-18 U-Net at 256 px, 3 structures.
  seg256: { name: 'seg256', kind: 'segment', arch: 'resnet18', width: 64, size: 256, batch: 8, queue: 0 },
  // `eden finetune` with the paper's backbone: a ResNet-50 U-Net training step at 224 px.
  ft50: { name: 'ft50', kind: 'finetune', arch: 'resnet50', width: 64, size: 224, batch: 8, queue: 0 },
  ft18: { name: 'ft18', kind: 'finetune', arch: 'resnet18', width: 64, size: 256, batch: 8, queue: 0 },
  // What `eden finetune` saves for --resume (a ResNet-18 U-Net's weights, Adam's moments and the
  // best weights so far, ~230 MB), streamed and through one buffer (as before), timed per save.
  state18: { name: 'state18', kind: 'save', arch: 'resnet18', width: 64, size: 64, batch: 2, queue: 0 },
  // The cost of `eden evaluate --preset cpu` (few-shot segmentation, its default modes and shots):
  // one seed of one model (the builtin Eve) on --data, timed per run, and the default's total
  // (every model and seed costs the same runs) projected for three models.
  eval: { name: 'eval', kind: 'evaluate', arch: 'resnet18', width: 64, size: 128, batch: 8, queue: 0 },
  // One Adam step over a ResNet-18 U-Net's parameters (decoder, then encoder): Eden's fused Adam
  // against tf.train.adam.
  adam: { name: 'adam', kind: 'optimizer', arch: 'resnet18', width: 64, size: 128, batch: 0, queue: 0 },
  // webgpu: every distinct convolution of a ResNet-18 step at --size / --batch, forward and both
  // gradients, TF.js's kernels against Eden's implicit GEMM (engine/webgpu-conv.ts).
  convs: { name: 'convs', kind: 'convs', arch: 'resnet18', width: 64, size: 64, batch: 4, queue: 0 },
  // webgpu: InfoNCE with the pruner at the `cpu` preset's shape (batch 32, K 2048, 128 dimensions):
  // loss, gradient and diagnostics as tensor ops, as Eden's programs in workgroup memory and with
  // subgroup operations (where the adapter has them), interleaved in one process.
  infonce: { name: 'infonce', kind: 'infonce', arch: '', width: 0, size: 0, batch: 32, queue: 2048 },
};
const DEFAULT_WORKLOADS = ['a', 'b'];

const { values } = parseArgs({
  options: {
    workload: { type: 'string', multiple: true },
    backend: { type: 'string', default: 'wasm' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    child: { type: 'string' },
    profile: { type: 'boolean', default: false },
    'with-torch': { type: 'boolean', default: false },
    threads: { type: 'string' },
    contend: { type: 'boolean', default: false },
    batch: { type: 'string' },
    size: { type: 'string' },
    'defer-submit': { type: 'boolean', default: false },
    replay: { type: 'boolean', default: false },
    'micro-batch': { type: 'string' },
    data: { type: 'string', default: path.join(import.meta.dirname, '..', '..', 'shared', 'data', 'wingspan_ctr') },
    seeds: { type: 'string', default: '1' },
  },
});

/**
 * Another process keeping one core busy (a tight loop), for the contended measurements: a shared
 * machine. Returns a function that stops it.
 */
function contender(): () => void {
  const child = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  return () => child.kill('SIGKILL');
}

/** `run` with the EDEN_* switches in `env` set, and the environment as it was afterwards (the variants of one process). */
async function withEnv<T>(env: Record<string, string>, run: () => Promise<T>): Promise<T> {
  const saved = Object.keys(env).map((key) => [key, process.env[key]] as const);
  Object.assign(process.env, env);
  try {
    return await run();
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** The middle value (the upper one of an even count), as every median in this file. */
function medianOf(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/**
 * Median seconds of `run` over the measured steps, after warm-up. On webgpu, a caller that takes
 * `after` also gets the GPU's time in the step's compute passes (timestamp queries, read after the
 * step); the others are not timed on the GPU.
 */
async function timeSteps(run: (i: number) => Promise<void>, after?: (i: number, seconds: number, kernelS?: number) => void): Promise<number> {
  const times: number[] = [];
  const [steps, warmup] = [Number(values.steps), Number(values.warmup)];
  for (let i = 0; i < warmup + steps; i++) {
    await tf.ready();
    // EDEN_WEBGPU_CONV=tune: the steps' convolutions measured (as the training loops do before a step), off the clock.
    await tuneWebGpuConvolutions();
    let seconds = 0;
    const step = async (): Promise<void> => {
      const t0 = performance.now();
      await run(i);
      seconds = (performance.now() - t0) / 1000;
    };
    const kernelS = values.backend === 'webgpu' && after ? (await timeGpuPasses(step)).time?.gpuS : void (await step());
    if (i >= warmup) times.push(seconds);
    after?.(i, seconds, kernelS);
  }
  return medianOf(times);
}

/**
 * U-Net inference or fine-tuning steps (segmentation workloads). Fine-tuning runs as `eden
 * finetune` does: Eden's Adam, gradient accumulation over --micro-batch; with --replay on webgpu,
 * the second step captured and later ones replayed (as train/segmenter.ts). On webgpu also the
 * dispatches and host time per step.
 */
async function runSegmentation(w: Workload): Promise<{ median: number; gpu: Record<string, number | boolean> }> {
  const backbone = createBackbone(w.arch, { width: w.width, seed: 0 });
  const unet = new UNet(backbone, { classes: 3, seed: 0 });
  const optimizer = new Adam(1e-3);
  const vars = [...unet.decoder.trainable(), ...backbone.store.trainable()];
  const watch = values.backend === 'webgpu' ? watchWebGpu() : undefined;
  const gpu: GpuStepStats[] = [];
  let replay: StepReplay | undefined;
  let replayed = false;
  const train = async (x: tf.Tensor4D, y: tf.Tensor4D): Promise<void> => {
    // A step of w.batch images in passes of --micro-batch (gradient accumulation, as eden finetune does).
    const micro = values['micro-batch'] ? Number(values['micro-batch']) : w.batch;
    const { loss, grads } = accumulatedGradients((xs: tf.Tensor4D, ys: tf.Tensor4D) => segmentationLoss(unet.forward(xs, { training: true }), ys), x, y, micro, vars);
    optimizer.applyGradients(vars, grads);
    await loss.data();
    tf.dispose([loss, ...Object.values(grads)]);
  };
  try {
    const median = await timeSteps(
      async (i) => {
        watch?.reset();
        const x = tf.randomNormal([w.batch, w.size, w.size, 1], 0, 1, 'float32', i) as tf.Tensor4D;
        if (w.kind === 'segment') {
          const p = tf.tidy(() => tf.sigmoid(unet.forward(x, { training: false })));
          await p.data();
          tf.dispose([x, p]);
          return;
        }
        // 0/1 targets as float32 data (as eden finetune's masks): TF.js's webgpu cast of a bool
        // tensor to float32 keeps the int32 buffer, which its transpose program then fails to compile.
        const y = tf.tidy(() => tf.round(tf.randomUniform([w.batch, w.size, w.size, 3], 0, 1, 'float32', i))) as tf.Tensor4D;
        replayed = replay !== undefined;
        if (replay) await replay.run([x, y], { adamStep: optimizer.advance() });
        else if (values.replay && i === 1) {
          const captured = await StepReplay.capture([x, y], () => train(x, y));
          if (captured.replay) replay = captured.replay;
          else console.error(`# no replay: ${captured.refused}`);
        } else await train(x, y);
        tf.dispose([x, y]);
      },
      (i, seconds, kernelS) => {
        if (watch && i >= Number(values.warmup)) gpu.push(watch.read(seconds, replayed && replay ? { dispatches: replay.dispatches, waitMs: replay.lastWaitMs } : undefined, kernelS));
      },
    );
    watch?.restore();
    if (values.profile) {
      const x = tf.randomNormal([w.batch, w.size, w.size, 1]) as tf.Tensor4D;
      const y = tf.tidy(() => tf.round(tf.randomUniform([w.batch, w.size, w.size, 3]))) as tf.Tensor4D;
      printProfile(await tf.profile(async () => (w.kind === 'segment' ? void (await tf.tidy(() => tf.sigmoid(unet.forward(x, { training: false }))).data()) : train(x, y))));
      tf.dispose([x, y]);
    }
    return { median, gpu: gpu.length ? { ...gpuReport(gpu), ...(values.replay ? { replayed } : {}), ...convTuningReport() } : {} };
  } finally {
    replay?.dispose();
    optimizer.dispose();
    unet.dispose();
    backbone.dispose();
  }
}

/**
 * Saving a fine-tuning run's training state (workload `state18`): the tensors trainUNet's save
 * hands to saveFinetuneState after one step (trainingTensors of unetTrainingParts, the best weights
 * kept), written with saveTensorFile (streamed) and with the one-buffer writer it replaced
 * (encodeTensorFile, then writeFileAtomic), alternately.
 */
async function runStateSave(w: Workload): Promise<void> {
  const backbone = createBackbone(w.arch, { width: w.width, seed: 0 });
  const unet = new UNet(backbone, { classes: 3, seed: 0 });
  const [decoderOpt, encoderOpt] = [new Adam(1e-3), new Adam(1e-4)];
  const [decoderVars, encoderVars] = [unet.decoder.trainable(), backbone.store.trainable()];
  const x = tf.randomNormal([w.batch, w.size, w.size, 1]) as tf.Tensor4D;
  const y = tf.tidy(() => tf.round(tf.randomUniform([w.batch, w.size, w.size, 3]))) as tf.Tensor4D;
  const { loss, grads } = accumulatedGradients((xs: tf.Tensor4D, ys: tf.Tensor4D) => segmentationLoss(unet.forward(xs, { training: true }), ys), x, y, w.batch, [...decoderVars, ...encoderVars]);
  decoderOpt.applyGradients(decoderVars, grads);
  encoderOpt.applyGradients(encoderVars, grads);
  tf.dispose([x, y, loss, ...Object.values(grads)]);
  const parts = unetTrainingParts(unet, decoderOpt, encoderOpt);
  const kept = snapshot(parts.snapshotNames.map((n) => parts.named.get(n)!));
  const state = trainingTensors(parts, { step: 1, best: 0.5, bestStep: 1, sinceBest: 0, kept });
  const dir = mkdtempSync(path.join(tmpdir(), 'eden-bench-state-'));
  const file = path.join(dir, 'model.training.safetensors');
  const streamed: number[] = [];
  const buffered: number[] = [];
  for (let i = 0; i < Number(values.warmup) + Number(values.steps); i++) {
    let t0 = performance.now();
    await saveTensorFile(file, state);
    const s = (performance.now() - t0) / 1000;
    t0 = performance.now();
    await writeFileAtomic(file, encodeTensorFile(await toRecords(state)));
    const b = (performance.now() - t0) / 1000;
    if (i >= Number(values.warmup)) {
      streamed.push(s);
      buffered.push(b);
    }
  }
  const mb = statSync(file).size / 1e6;
  rmSync(dir, { recursive: true, force: true });
  tf.dispose(kept);
  decoderOpt.dispose();
  encoderOpt.dispose();
  unet.dispose();
  backbone.dispose();
  const median = medianOf(streamed);
  console.log(JSON.stringify({ engine: `eden-tfjs-${tf.version.tfjs}-${values.backend}`, workload: w.name, kind: w.kind, arch: w.arch, tensors: state.size, file_mb: Number(mb.toFixed(1)), save_s_median: Number(median.toFixed(3)), saves_per_s: Number((1 / median).toFixed(3)), one_buffer_save_s_median: Number(medianOf(buffered).toFixed(3)), peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) }));
}

/** Few-shot segmentation runs of the cpu evaluation preset, timed (workload `eval`). */
async function runEvaluation(): Promise<void> {
  const config = resolveEvaluateConfig('cpu', { seeds: Number(values.seeds) });
  const cfg = config.segmentation;
  const t0 = performance.now();
  const data = await loadSegmentationData(values.data!, cfg.size, { testFraction: cfg.testFraction, maxTestImages: cfg.maxTestImages, seed: config.seed });
  const loadS = (performance.now() - t0) / 1000;
  const runs = await fewShotSegmentation([await checkpointSource('builtin')], data, config, {
    onRun: (r) => console.error(`# ${r.model} ${r.mode} ${r.shots} shots seed ${r.seed}: ${r.seconds.toFixed(1)} s, ${r.steps} steps`),
  });
  const perRun: Record<string, number> = {};
  for (const r of runs) perRun[`${r.mode}_${r.shots}`] = Number(((perRun[`${r.mode}_${r.shots}`] ?? 0) + r.seconds / cfg.seeds).toFixed(1));
  const atlas = runs.filter((r) => r.mode === 'atlas').reduce((a, r) => a + r.seconds, 0) / cfg.seeds;
  const model = Object.entries(perRun).filter(([k]) => !k.startsWith('atlas')).reduce((a, [, v]) => a + v, 0);
  const defaultSeeds = resolveEvaluateConfig('cpu').segmentation.seeds;
  console.log(JSON.stringify({
    engine: `eden-tfjs-${tf.version.tfjs}-${values.backend}`, workload: 'eval', data: values.data, images: data.samples.length, test_images: data.test.length,
    modes: cfg.modes, shots: cfg.shots, seeds_measured: cfg.seeds, seconds_per_run: perRun, load_s: Number(loadS.toFixed(1)),
    model_seed_s: Number(model.toFixed(1)),
    projected_default_3_models_s: Math.round(loadS + defaultSeeds * (atlas + 3 * model)),
  }));
}

/** Adam over the U-Net's decoder and encoder parameters: tf.train.adam and Eden's (workload `adam`). */
async function runOptimizers(w: Workload): Promise<void> {
  const backbone = createBackbone(w.arch, { width: w.width, seed: 0 });
  const unet = new UNet(backbone, { classes: 3, seed: 0 });
  for (const [part, vars] of [['decoder', unet.decoder.trainable()], ['encoder', backbone.store.trainable()]] as const) {
    const grads: tf.NamedTensorMap = Object.fromEntries(vars.map((v) => [v.name, tf.randomNormal(v.shape)]));
    const tfjs = tf.train.adam(1e-3);
    const eden = new Adam(1e-3);
    const ms: Record<string, number> = {};
    for (const [name, step] of [['tfjs', () => tfjs.applyGradients(vars.map((v) => ({ name: v.name, tensor: grads[v.name]! })))], ['eden', () => eden.applyGradients(vars, grads)]] as const) {
      ms[name] = await timeSteps(async () => {
        step();
        await vars[0]!.data();
      });
    }
    console.log(JSON.stringify({ engine: `eden-tfjs-${tf.version.tfjs}-${values.backend}`, workload: 'adam', part, parameters: vars.reduce((a, v) => a + v.size, 0), tfjs_adam_ms: Number((1000 * ms['tfjs']!).toFixed(1)), eden_adam_ms: Number((1000 * ms['eden']!).toFixed(1)) }));
    tf.dispose(Object.values(grads));
    tfjs.dispose();
    eden.dispose();
  }
  unet.dispose();
  backbone.dispose();
}

/** Workload `infonce` (webgpu): one loss + gradient + diagnostics read-back, timed per variant (median of --steps after --warmup), the variants interleaved. */
async function runInfoNce(w: Workload): Promise<void> {
  if (values.backend !== 'webgpu') throw new Error('workload infonce compares the webgpu programs with the tensor ops: run it with --backend webgpu');
  const dim = 128;
  const q = tf.variable(l2Normalize(tf.randomNormal([w.batch, dim], 0, 1, 'float32', 1) as tf.Tensor2D));
  const k = l2Normalize(tf.randomNormal([w.batch, dim], 0, 1, 'float32', 2) as tf.Tensor2D);
  const queue = l2Normalize(tf.randomNormal([w.queue, dim], 0, 1, 'float32', 3) as tf.Tensor2D);
  const step = async (): Promise<void> => {
    let diagnostics: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const r = infoNceLoss(q as tf.Tensor2D, k, queue, { temperature: 0.2, pruneThreshold: 0.5 });
      diagnostics = tf.keep(r.diagnostics);
      return r.loss;
    }, [q]);
    await Promise.all([grads[q.name]!.data(), diagnostics!.data()]);
    tf.dispose([value, diagnostics!, ...Object.values(grads)]);
  };
  const variants: [string, Record<string, string>][] = [['tensor_ops', { EDEN_WEBGPU_FUSED: '0' }], ['workgroup_memory', { EDEN_WEBGPU_SUBGROUPS: '0' }], ['subgroups', {}]];
  const ms: Record<string, number[]> = {};
  for (let round = 0; round < 3; round++) {
    for (const [name, env] of variants) {
      if (name === 'subgroups' && subgroupsReport() === 'off') continue;
      (ms[name] ??= []).push(Number((1000 * (await withEnv(env, () => timeSteps(step)))).toFixed(2)));
    }
  }
  console.log(JSON.stringify({ engine: `eden-tfjs-${tf.version.tfjs}-${values.backend}`, workload: 'infonce', batch: w.batch, negatives: w.queue, dim, subgroups: subgroupsReport(), ...Object.fromEntries(Object.entries(ms).map(([name, t]) => [`${name}_ms`, t])) }));
  tf.dispose([q, k, queue]);
}

/**
 * Workload `convs` (webgpu): the distinct convolutions of a ResNet-18 step at w.size / w.batch,
 * each op timed (median of --steps, after --warmup) with TF.js's kernel (EDEN_WEBGPU_CONV=0) and
 * with Eden's implicit GEMM (EDEN_WEBGPU_CONV=all), interleaved in one process.
 */
async function runConvolutions(w: Workload): Promise<void> {
  type Shape4 = [number, number, number, number];
  const layers: [Shape4, Shape4, number][] = [[[w.batch, w.size, w.size, 1], [7, 7, 1, 64], 2]];
  let [side, channels] = [w.size / 4, 64];
  for (const out of [64, 128, 256, 512]) {
    const stride = out === 64 ? 1 : 2;
    layers.push([[w.batch, side, side, channels], [3, 3, channels, out], stride]);
    if (stride === 2) layers.push([[w.batch, side, side, channels], [1, 1, channels, out], 2]);
    side /= stride;
    layers.push([[w.batch, side, side, out], [3, 3, out, out], 1]);
    channels = out;
  }
  // Median ms of the op, its result read back.
  const time = async (op: () => tf.Tensor): Promise<number> =>
    1000 *
    (await timeSteps(async () => {
      const out = op();
      await out.data();
      out.dispose();
    }));
  for (const [xShape, wShape, stride] of layers) {
    const pad = wShape[0] === 1 ? 'valid' : 'same';
    const x = tf.randomNormal(xShape) as tf.Tensor4D;
    const filter = tf.randomNormal(wShape, 0, 0.1) as tf.Tensor4D;
    const y = tf.conv2d(x, filter, stride, pad);
    const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
    const attrs = { strides: [stride, stride], pad, dataFormat: 'NHWC' };
    const ops: Record<string, () => tf.Tensor> = {
      forward: () => tf.conv2d(x, filter, stride, pad),
      filter_grad: () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: wShape }) as tf.Tensor,
      input_grad: () => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, { ...attrs, inputShape: xShape }) as tf.Tensor,
    };
    for (const [op, run] of Object.entries(ops)) {
      const tfjs = await withEnv({ EDEN_WEBGPU_CONV: '0' }, () => time(run));
      const eden = await withEnv({ EDEN_WEBGPU_CONV: 'all' }, () => time(run));
      console.log(JSON.stringify({ engine: `eden-tfjs-${tf.version.tfjs}-${values.backend}`, workload: 'convs', op, x: xShape, filter: wShape, stride, tfjs_ms: Number(tfjs.toFixed(1)), eden_ms: Number(eden.toFixed(1)), speedup: Number((tfjs / eden).toFixed(2)) }));
    }
    tf.dispose([x, filter, y, dy]);
  }
}

interface GpuStepStats {
  /** Dispatches recorded in the step: TF.js's kernels and Eden's fused optimiser kernels. */
  kernels: number;
  fused: number;
  /** Seconds the step took, the step's JavaScript ran (encoding the kernels), and it waited for read-backs. */
  stepS: number;
  hostS: number;
  waitS: number;
  /** Seconds the GPU spent in the step's compute passes (timestamp queries; undefined without them). */
  kernelS?: number;
}

/** The subgroup sizes Eden's programs run with on this device ("8-8"), or "off" (none offered, or EDEN_WEBGPU_SUBGROUPS=0). */
function subgroupsReport(): string {
  const sizes = webGpuSubgroupSizes();
  return sizes && subgroupsOn() ? `${sizes.min}-${sizes.max}` : 'off';
}

/** With EDEN_WEBGPU_CONV=tune: how many convolutions chose each kernel, and the seconds tuning took. */
function convTuningReport(): Record<string, Record<string, number>> {
  if (!convTuningOn()) return {};
  return { conv_tuning: { ...convTuningCounts(), seconds: Number(convTuningSeconds().toFixed(1)) } };
}

/**
 * Medians over the measured steps: dispatches, host and read-back wait per step, and where the
 * device has timestamp queries the GPU's time in kernels and its share of the step (issue 13: near
 * 1 the step is bound by the GPU, far below by the JavaScript that feeds it).
 */
function gpuReport(gpu: GpuStepStats[]): Record<string, number> {
  const middle = (f: (s: GpuStepStats) => number): number => medianOf(gpu.map(f));
  const timed = gpu.every((s) => s.kernelS !== undefined);
  return {
    kernels_per_step: middle((s) => s.kernels),
    host_s_per_step: Number(middle((s) => s.hostS).toFixed(4)),
    gpu_wait_s_per_step: Number(middle((s) => s.waitS).toFixed(4)),
    ...(timed ? { kernel_s_per_step: Number(middle((s) => s.kernelS!).toFixed(4)), kernel_share: Number(middle((s) => s.kernelS! / s.stepS).toFixed(3)) } : {}),
  };
}

/**
 * Counts the webgpu backend's dispatches and times its read-backs (TF.js internals, bench only):
 * host time = the step's wall time minus the time spent waiting for the GPU's results.
 */
function watchWebGpu(): { reset(): void; read(stepS: number, replayed?: { dispatches: number; waitMs: number }, kernelS?: number): GpuStepStats; restore(): void } {
  const b = tf.backend() as unknown as { recordAndSubmit: (...a: unknown[]) => unknown; read: (...a: unknown[]) => Promise<unknown> };
  const [record, read] = [b.recordAndSubmit, b.read];
  let [kernels, waitMs, fused0] = [0, 0, webGpuInPlaceDispatches()];
  b.recordAndSubmit = function (this: unknown, ...a: unknown[]) {
    kernels++;
    return record.apply(this, a);
  };
  b.read = async function (this: unknown, ...a: unknown[]) {
    const t0 = performance.now();
    try {
      return await read.apply(this, a);
    } finally {
      waitMs += performance.now() - t0;
    }
  };
  return {
    reset: () => {
      [kernels, waitMs, fused0] = [0, 0, webGpuInPlaceDispatches()];
    },
    read: (stepS, replayed, kernelS) => {
      const fused = webGpuInPlaceDispatches() - fused0;
      // A replayed step issues its captured dispatches without TF.js (none counted above).
      const wait = waitMs + (replayed?.waitMs ?? 0);
      return { kernels: kernels + fused + (replayed?.dispatches ?? 0), fused, stepS, hostS: stepS - wait / 1000, waitS: wait / 1000, kernelS };
    },
    restore: () => {
      b.recordAndSubmit = record;
      b.read = read;
    },
  };
}

/** The workload with --batch and --size applied (the child runs it, the PyTorch peer matches it). */
function withShapeOptions(w: Workload): Workload {
  return { ...w, ...(values.batch ? { batch: Number(values.batch) } : {}), ...(values.size ? { size: Number(values.size) } : {}) };
}

async function runChild(w: Workload): Promise<void> {
  const backend = values.backend as BackendName;
  await useBackend(backend);
  if (values['defer-submit']) tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', 1e9);
  if (w.kind === 'evaluate') return runEvaluation();
  if (w.kind === 'optimizer') return runOptimizers(w);
  w = withShapeOptions(w);
  if (w.kind === 'convs') return runConvolutions(w);
  if (w.kind === 'infonce') return runInfoNce(w);
  if (w.kind === 'save') return runStateSave(w);
  if (w.kind === 'segment' || w.kind === 'finetune') {
    const { median, gpu } = await runSegmentation(w);
    console.log(JSON.stringify({ engine: `eden-tfjs-${tf.version.tfjs}-${backend}`, workload: w.name, kind: w.kind, arch: w.arch, width: w.width, size: w.size, batch: w.batch, ...(values['micro-batch'] ? { micro_batch: Number(values['micro-batch']) } : {}), step_s_median: Number(median.toFixed(4)), images_per_s: Number((w.batch / median).toFixed(3)), peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), ...gpu }));
    return;
  }
  const args = { backbone: w.arch, width: w.width, projectionDim: 128, seed: 0 };
  const student = new Encoder(args);
  const teacher = new Encoder(args);
  copyVariables(teacher.namedVariables(), student.namedVariables());
  const queue = new MemoryQueue(w.queue, 128, 1);
  const optimizer = new SgdMomentum({ momentum: 0.9, weightDecay: 1e-4 });
  const settings = { temperature: 0.2, pruneThreshold: 0.8, momentum: 0.999, learningRate: (0.03 * w.batch) / 256 };
  const gpu: GpuStepStats[] = [];
  const stats = backend === 'webgpu' ? watchWebGpu() : undefined;
  const runner = values.replay ? new AdamStepRunner(student, teacher, queue, optimizer) : undefined;
  // The batches are drawn before the clock starts, as prefetched ones are (host-side until a step uses them).
  const batches = Array.from({ length: Number(values.warmup) + Number(values.steps) }, (_, i) => ({
    queries: tf.randomNormal([w.batch, w.size, w.size, 1], 0, 1, 'float32', 2 * i) as tf.Tensor4D,
    keys: tf.randomNormal([w.batch, w.size, w.size, 1], 0, 1, 'float32', 2 * i + 1) as tf.Tensor4D,
  }));
  const median = await timeSteps(
    async (i) => {
      const { queries, keys } = batches[i]!;
      stats?.reset();
      // Reads the loss back: synchronised.
      if (runner) await runner.step({ queries, keys }, settings);
      else await adamStep(student, teacher, queue, optimizer, { queries, keys }, settings);
      await student.trainableVariables().values().next().value!.data(); // the optimiser's dispatches too
      tf.dispose([queries, keys]);
    },
    (i, seconds, kernelS) => {
      if (stats && i >= Number(values.warmup)) gpu.push(stats.read(seconds, runner?.replayStats, kernelS));
    },
  );
  stats?.restore();
  const replayed = runner?.replaying ?? false; // the last step
  if (runner && !replayed) console.error(`# no replay: ${runner.refused ?? 'not captured'}`);
  // What the capture holds on the GPU, beside everything TF.js's buffer manager has allocated.
  const mb = (bytes: number): number => Number((bytes / 2 ** 20).toFixed(1));
  const held = runner ? pinnedBytes() : undefined;
  const gpuMemory = backend === 'webgpu' ? (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU : undefined;
  runner?.dispose();
  const line = {
    engine: `eden-tfjs-${tf.version.tfjs}-${backend}`,
    workload: w.name,
    arch: w.arch,
    width: w.width,
    size: w.size,
    batch: w.batch,
    queue: w.queue,
    step_s_median: Number(median.toFixed(4)),
    images_per_s: Number((w.batch / median).toFixed(3)),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    ...(gpu.length
      ? {
          ...gpuReport(gpu),
          fused_optimizer_kernels: medianOf(gpu.map((s) => s.fused)),
          ...(values['defer-submit'] ? { deferred_submit: true } : {}),
          ...(values.replay ? { replayed, pinned_mb: mb(held!.pinned), pinned_released_by_tfjs_mb: mb(held!.retained) } : {}),
          ...(gpuMemory !== undefined ? { gpu_allocated_mb: mb(gpuMemory) } : {}),
          subgroups: subgroupsReport(),
          ...convTuningReport(),
        }
      : {}),
  };
  console.log(JSON.stringify(line));
  if (values.profile) {
    const queries = tf.randomNormal([w.batch, w.size, w.size, 1]) as tf.Tensor4D;
    const keys = tf.randomNormal([w.batch, w.size, w.size, 1]) as tf.Tensor4D;
    const info = await tf.profile(async () => {
      await adamStep(student, teacher, queue, optimizer, { queries, keys }, settings);
    });
    printProfile(info);
  }
}

/** Time per kernel of one profiled step (tf.profile), and the convolutions by input shapes. */
function printProfile(info: Awaited<ReturnType<typeof tf.profile>>): void {
  const byKernel = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls++;
    byKernel.set(k.name, e);
  }
  const total = [...byKernel.values()].reduce((s, e) => s + e.ms, 0);
  const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms);
  console.log(`# profile of one step (${info.kernels.length} kernel calls, ${total.toFixed(0)} ms in kernels)`);
  for (const [name, e] of rows.slice(0, 25)) console.log(`#   ${name.padEnd(24)} ${e.ms.toFixed(1).padStart(9)} ms  ${((100 * e.ms) / total).toFixed(1).padStart(5)}%  ${String(e.calls).padStart(5)} calls`);
  // The convolutions by shape: where a convolution kernel is slow for one kind of layer.
  const convs = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels.filter((k) => k.name.startsWith('Conv2D'))) {
    const key = `${k.name} ${k.inputShapes.map((s) => `[${s.join(',')}]`).join(' ')}`;
    const e = convs.get(key) ?? { ms: 0, calls: 0 };
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    e.calls++;
    convs.set(key, e);
  }
  console.log('# convolutions by input shapes (ms per call)');
  for (const [key, e] of [...convs.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) console.log(`#   ${(e.ms / e.calls).toFixed(1).padStart(8)} ms x ${e.calls}  ${key}`);
}

/**
 * The PyTorch CPU peer of a workload, run with the same shapes and threads: the pretraining step
 * (../shared/bench/torch_adam_step.py) or the U-Net's fine-tuning step or inference
 * (bench/torch_unet_step.py, the same architecture and loss).
 */
function torchReference(w: Workload, extra: string[] = []): Record<string, unknown> | undefined {
  const kind = w.kind ?? 'pretrain';
  const script = kind === 'pretrain' ? path.join(import.meta.dirname, '..', '..', 'shared', 'bench', 'torch_adam_step.py') : path.join(import.meta.dirname, 'torch_unet_step.py');
  if (!existsSync(script)) {
    console.error(`# PyTorch reference skipped: ${script} not found`);
    return undefined;
  }
  const shapes = ['--arch', w.arch, '--width', String(w.width), '--size', String(w.size), '--batch', String(w.batch), '--threads', values.threads ?? '2'];
  const args = kind === 'pretrain' ? [...shapes, '--queue', String(w.queue)] : [...shapes, '--mode', kind, '--steps', values.steps!, '--warmup', values.warmup!];
  const r = spawnSync('/usr/bin/python3', [script, ...args, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`# PyTorch reference failed (is Debian's python3-torch installed?): ${r.stderr.trim().split('\n').pop()}`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

if (values.child) {
  await runChild(WORKLOADS[values.child]!);
} else {
  const names = values.workload?.length ? values.workload : DEFAULT_WORKLOADS;
  for (const name of names) {
    const w = WORKLOADS[name];
    if (!w) throw new Error(`unknown workload '${name}': expected one of ${Object.keys(WORKLOADS).join(', ')}`);
    const args = ['--import', 'tsx', import.meta.filename, '--child', name, '--backend', values.backend!, '--steps', values.steps!, '--warmup', values.warmup!, ...(values.batch ? ['--batch', values.batch] : []), ...(values.size ? ['--size', values.size] : []), ...(values['micro-batch'] ? ['--micro-batch', values['micro-batch']] : []), '--data', values.data!, '--seeds', values.seeds!];
    if (values.profile) args.push('--profile');
    if (values['defer-submit']) args.push('--defer-submit');
    if (values.replay) args.push('--replay');
    const stopContender = values.contend ? contender() : undefined;
    const env = { ...process.env, ...(values.threads ? { EDEN_THREADS: values.threads } : {}) };
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env });
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('{') || l.startsWith('#'));
    for (const l of lines) console.log(values.contend && l.startsWith('{') ? JSON.stringify({ ...JSON.parse(l), contended: true }) : l);
    if (values['with-torch'] && ['pretrain', 'segment', 'finetune', 'save'].includes(w.kind ?? 'pretrain')) {
      // The U-Net peer in both layouts (NCHW, PyTorch's default, and channels-last, oneDNN's
      // preferred one); the ratio is against the faster.
      const shaped = withShapeOptions(w);
      // A `save` workload's peer is torch.save of the same state (--mode save), in one layout.
      const peers = ['pretrain', 'save'].includes(w.kind ?? 'pretrain') ? [torchReference(shaped)] : [torchReference(shaped), torchReference(shaped, ['--channels-last'])];
      for (const p of peers) if (p) console.log(JSON.stringify(p));
      const rate = w.kind === 'save' ? 'saves_per_s' : 'images_per_s';
      const torch = peers.filter((p) => p !== undefined).sort((a, b) => (b[rate] as number) - (a[rate] as number))[0];
      const eden = lines.find((l) => l.startsWith('{'));
      if (torch && eden) {
        const ratio = (JSON.parse(eden)[rate] as number) / (torch[rate] as number);
        console.log(JSON.stringify({ workload: name, ratio_eden_to_pytorch: Number(ratio.toFixed(3)), contended: values.contend }));
      }
    }
    stopContender?.();
  }
}
