/**
 * Adam pretraining end to end on the bundled radiographs (tiny preset): checkpoints, exact resume
 * after an interruption (in-process abort, SIGINT and SIGKILL of the CLI), a non-finite loss
 * stopping the run with the last good checkpoint intact, and config validation.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resolvePretrainConfig, type PretrainConfig } from '../src/config/pretrain.js';
import { pretrain, checkpointPaths } from '../src/train/pretrain.js';
import { readCheckpoint } from '../src/train/checkpoint.js';
import { diffCheckpoints } from '../src/train/checkpoint-diff.js';
import { probeWebGpu } from '../src/engine/webgpu.js';
import { replayedSteps } from '../src/engine/webgpu-replay.js';
import { clearTunedConvolutions, setTunedConvolution, takeUntunedConvolutions, tunedConvolutions } from '../src/engine/webgpu-conv.js';
import { skipOrFail } from './helpers/tools.js';

const root = path.join(import.meta.dirname, '..');
const samples = path.join(root, 'samples', 'hannover_covid19');
const cli = path.join(root, 'src', 'cli', 'main.ts');
const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'eden-pretrain-'));

/** Two stages (n = 0, 2), two epochs each, 2 steps per epoch: 8 steps. */
function config(dir: string, extra: object = {}): PretrainConfig {
  return resolvePretrainConfig('tiny', { data: { paths: [samples] }, curriculum: { levels: [0, 2], epochs: 2 }, run: { dir, checkpointEverySteps: 1 } }, extra);
}

const CLI_FLAGS = ['--preset', 'tiny', '--levels', '0,2', '--epochs', '2', '--checkpoint-every', '1'];

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('eden pretrain (tiny preset, bundled radiographs)', () => {
  let reference: string;
  before(async () => {
    reference = tmp();
    await pretrain(config(reference));
  });

  it('writes self-describing checkpoints and per-step metrics', async () => {
    const p = checkpointPaths(reference);
    for (const f of [p.last, p.best, p.stage(0, 0), p.stage(1, 2)]) assert.ok(existsSync(f), `${f} missing`);
    const { meta, content } = await readCheckpoint(p.last);
    assert.deepEqual(meta.position, { stage: 2, epoch: 0, batch: 0, globalStep: 8 });
    assert.equal(meta.config.contrast.temperature, 0.2);
    assert.equal(meta.split.train.length + meta.split.val.length, 24);
    for (const prefix of ['student/backbone.conv1.weight', 'teacher/backbone.conv1.weight', 'queue/keys', 'optimizer/velocity/backbone.conv1.weight', 'student/head.fc.3.weight', 'student/head.fc.1.running_var']) {
      assert.ok(content.tensors.has(prefix), prefix);
    }
    const lines = readFileSync(path.join(reference, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = lines.filter((l) => l.type === 'step');
    assert.deepEqual(steps.map((l) => l.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.ok(steps.every((l) => Number.isFinite(l.loss) && l.lr > 0 && l.images_per_s > 0));
    // The pruner is off at n = 0 (see the wiring test below for n = 2).
    assert.ok(steps.filter((l) => l.level === 0).every((l) => l.pruned === 0));
    assert.equal(lines.filter((l) => l.type === 'epoch').length, 4);
    // Diagnostics of every step and every epoch.
    for (const l of steps) for (const k of ['pos', 'neg', 'neg_p999', 'key_spread']) assert.ok(Number.isFinite(l[k]), `step ${l.step} ${k}`);
    for (const l of lines.filter((x) => x.type === 'epoch')) assert.ok(l.val_retrieval >= 0 && l.val_retrieval <= 1 && l.retrieval_chance > 0);
  });

  it('pretrains on a labelled folder (images/ + masks/) from its images alone: masks neither decoded, cached, reported nor a reason to drop an image', async () => {
    const dir = tmp();
    for (const d of ['data/images', 'data/masks/lungs']) mkdirSync(path.join(dir, d), { recursive: true });
    const files = readdirSync(samples).filter((f) => f.endsWith('.png'));
    for (const f of files) copyFileSync(path.join(samples, f), path.join(dir, 'data', 'images', f));
    writeFileSync(path.join(dir, 'data', 'masks', 'lungs', files[0]!), 'not a png'); // a corrupt mask
    copyFileSync(path.join(samples, files[2]!), path.join(dir, 'data', 'masks', 'lungs', 'no-such-image.png')); // a mask of no image
    await sharp(path.join(samples, files[3]!)).jpeg().toFile(path.join(dir, 'data', 'images', files[3]!.replace('.png', '.jpg'))); // a second image of one stem
    const { width, height } = await sharp(path.join(samples, files[1]!)).metadata();
    await sharp(Uint8Array.from({ length: width! * height! }, (_, i) => (i % 3)), { raw: { width: width!, height: height!, channels: 1 } }).png().toFile(path.join(dir, 'data', 'masks', 'lungs', files[1]!)); // a label map
    const said: string[] = [];
    const run = path.join(dir, 'run');
    await pretrain(resolvePretrainConfig('tiny', { data: { paths: [path.join(dir, 'data')] }, curriculum: { levels: [0], epochs: 1 }, run: { dir: run } }), {
      hooks: { onSkip: (s) => said.push(s.message), onWarning: (m) => said.push(m), onCachePlan: (p) => said.push(p.reason) },
    });
    assert.deepEqual(said.filter((m) => /mask|label map/.test(m)), []);
    const { meta } = await readCheckpoint(checkpointPaths(run).last);
    assert.equal(meta.split.train.length + meta.split.val.length, files.length + 1);
  });

  it('wires the pruner to the stage: a level-2 stage prunes, a level-0 stage never does', async () => {
    // A threshold low enough that a level-2 stage must prune something in a real run.
    const dir = tmp();
    await pretrain(config(dir, { contrast: { pruneThreshold: 0.2 } }));
    const steps = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'step');
    assert.ok(steps.filter((l) => l.level === 0).every((l) => l.pruned === 0), 'level 0 pruned');
    assert.ok(steps.filter((l) => l.level === 2).every((l) => l.pruned > 0), `level 2 did not prune: ${steps.map((l) => l.pruned)}`);
    // And with the pruner off (the ablation) nothing is pruned at level 2 either.
    const off = tmp();
    await pretrain(config(off, { contrast: { pruneThreshold: 0.2, prune: false } }));
    const offSteps = readFileSync(path.join(off, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'step');
    assert.ok(offSteps.every((l) => l.pruned === 0));
  });

  it('resumes after an in-process interruption at every step to exactly the same weights (mid-stage at n = 0 and n = 2, and at the stage boundary)', async () => {
    // Steps 1-4 are stage 1 (n = 0), 5-8 stage 2 (n = 2, pruner on, optimiser restarted, queue full).
    // An interruption after step 4 lands exactly on the boundary; after 5-7, mid-stage at n = 2.
    const expected = [
      { stage: 0, epoch: 0, batch: 1 }, { stage: 0, epoch: 1, batch: 0 }, { stage: 0, epoch: 1, batch: 1 }, { stage: 1, epoch: 0, batch: 0 },
      { stage: 1, epoch: 0, batch: 1 }, { stage: 1, epoch: 1, batch: 0 }, { stage: 1, epoch: 1, batch: 1 },
    ];
    for (let at = 1; at <= 7; at++) {
      const dir = tmp();
      const controller = new AbortController();
      const first = await pretrain(config(dir), { signal: controller.signal, hooks: { onStep: (e) => e.globalStep === at && controller.abort() } });
      assert.equal(first.interrupted, true);
      assert.deepEqual(first.position, { ...expected[at - 1], globalStep: at });
      const resumedSteps: number[] = [];
      const second = await pretrain(config(dir), { resumeFrom: checkpointPaths(dir).last, hooks: { onStep: (e) => resumedSteps.push(e.globalStep) } });
      assert.equal(second.interrupted, false);
      // A real resume: it continues at the saved step (a silent restart would run all 8 again).
      assert.deepEqual(resumedSteps, Array.from({ length: 8 - at }, (_, i) => at + 1 + i));
      const d = await diffCheckpoints(reference, dir);
      assert.equal(d.maxAbsDiff, 0, `resumed after step ${at}, the run differs: ${JSON.stringify(d.tensors.filter((t) => t.maxAbsDiff > 0).slice(0, 3))}`);
      // metrics.jsonl has each step once.
      const steps = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'step').map((l) => l.step);
      assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
  });

  it('draws views in worker threads to the same run, to the bit, across an interruption that changes their number', async () => {
    const dir = tmp();
    const controller = new AbortController();
    // Interrupted mid-stage at n = 2 with the next batch in flight in a worker, resumed with two.
    const first = await pretrain(config(dir), { viewWorkers: 1, signal: controller.signal, hooks: { onStep: (e) => e.globalStep === 5 && controller.abort() } });
    assert.equal(first.interrupted, true);
    await pretrain(config(dir), { viewWorkers: 2, resumeFrom: checkpointPaths(dir).last });
    const d = await diffCheckpoints(reference, dir);
    assert.equal(d.maxAbsDiff, 0, `with view workers the run differs: ${JSON.stringify(d.tensors.filter((t) => t.maxAbsDiff > 0).slice(0, 3))}`);
  });

  it('checkpoint diff reports a difference when there is one', async () => {
    const { loadTensorFile, saveTensorFile } = await import('../src/engine/tensor-file.js');
    const tf = await import('@tensorflow/tfjs');
    const file = path.join(tmp(), 'perturbed.safetensors');
    const content = await loadTensorFile(checkpointPaths(reference).last);
    const tensors = new Map([...content.tensors].map(([n, r]) => [n, tf.tensor(r.data, r.shape, r.dtype)] as const));
    const name = 'teacher/backbone.layer2.0.bn1.running_var';
    const perturbed = content.tensors.get(name)!.data.slice();
    perturbed[3] = perturbed[3]! + 1e-6;
    tensors.get(name)!.dispose();
    tensors.set(name, tf.tensor(perturbed, content.tensors.get(name)!.shape));
    await saveTensorFile(file, tensors, content.metadata);
    tf.dispose([...tensors.values()]);
    const r = runCli(['checkpoint', 'diff', reference, file]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^tensors that differ: 1$/m);
    assert.match(r.stdout, new RegExp(`^  ${name.replace(/[./]/g, '\\$&')}: \\d\\.\\d+e-\\d+$`, 'm'));
    assert.doesNotMatch(r.stdout, /^max_abs_diff=0$/m);
  });

  it('a CLI run killed with SIGKILL resumes with --resume to the same weights (checkpoint diff prints max_abs_diff=0)', async () => {
    const dir = tmp();
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'pretrain', samples, ...CLI_FLAGS, '--out', dir], { cwd: root, stdio: 'ignore' });
    const last = checkpointPaths(dir).last;
    const exited = new Promise((r) => child.on('exit', r));
    // Kill as soon as the first checkpoint exists (mid-run), or let it finish if it is faster.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(last) || child.exitCode !== null) {
          clearInterval(poll);
          child.kill('SIGKILL');
          resolve();
        }
      }, 5);
    });
    await exited;
    const killedAt = (await readCheckpoint(last)).meta.position.globalStep;
    assert.ok(killedAt < 8, `the run finished (step ${killedAt}) before it could be killed`);
    const resumed = runCli(['pretrain', '--resume', dir]);
    assert.equal(resumed.status, 0, resumed.stderr);
    // It resumed at the saved step, not from scratch: it says so, and its first step is the next one.
    assert.match(resumed.stderr, new RegExp(`^resuming at step ${killedAt} `, 'm'));
    const firstLogged = /\[(\d+)\/8\]/.exec(resumed.stderr);
    assert.equal(Number(firstLogged?.[1]), killedAt + 1, resumed.stderr);
    const diff = runCli(['checkpoint', 'diff', reference, dir]);
    assert.equal(diff.status, 0, diff.stderr);
    assert.match(diff.stdout, /^max_abs_diff=0$/m);
    // checkpoint show: where the finished run stands.
    const show = runCli(['checkpoint', 'show', dir]);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /^format: eden-pretrain-1 \(Eden \d+\.\d+\.\d+, .*, backend wasm\)\nnext step: stage \d+, epoch 1, batch 0 \(8 steps done\)\nmodel: resnet-tiny width \d+, views \d+ px, levels [\d,]+\nbest validation loss: \d\.\d{4} \(stage \d, step \d\)\ntensors: \d+ \([\d.]+k values\); images: \d+ train, \d+ validation\n$/);
  });

  it('--resume of a run killed before its first checkpoint starts it afresh from its config.json, and says so', async () => {
    const dir = tmp();
    const { writeFileSync } = await import('node:fs');
    // What a run leaves when it dies before its first checkpoint: config.json and an empty metrics.jsonl.
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config(dir), null, 2));
    writeFileSync(path.join(dir, 'metrics.jsonl'), '');
    const r = runCli(['pretrain', '--resume', dir]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /has no checkpoint yet \(stopped before its first one\): starting it afresh from its config\.json/);
    const d = runCli(['checkpoint', 'diff', reference, dir]);
    assert.match(d.stdout, /^max_abs_diff=0$/m);
    const none = runCli(['pretrain', '--resume', tmp()]);
    assert.equal(none.status, 1);
    assert.match(none.stderr, /nothing to resume \(no .*last\.safetensors and no config\.json\)/);
  });

  it('takes its folders as positional arguments or as --data, as eden evaluate does', () => {
    const a = runCli(['pretrain', '--data', samples, ...CLI_FLAGS, '--max-steps-per-epoch', '1', '--levels', '0', '--epochs', '1', '--out', tmp()]);
    assert.equal(a.status, 0, a.stderr);
    assert.match(a.stderr, /20 training and 4 validation images/);
    // Where the decoded images are kept, said before they are decoded (data/cache-plan.ts).
    assert.match(a.stderr, /^data: 24 images at 96 px take up to 884\.7 KB as float32: kept in memory$/m);
    const e = runCli(['evaluate', '--checkpoint', reference, '--out', tmp()]);
    assert.equal(e.status, 2);
    assert.match(e.stderr, /no labelled data: give a folder \(eden evaluate DIR \.\.\.\) or --data DIR/);
  });

  it('Ctrl-C (SIGINT) saves a checkpoint at the current step and exits with 130', async () => {
    const dir = tmp();
    // A longer run (60 steps), interrupted as soon as its first step is reported.
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'pretrain', samples, '--preset', 'tiny', '--levels', '0', '--epochs', '30', '--out', dir], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CI: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (/\[1\/60\]/.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    assert.equal(code, 130, stderr);
    assert.match(stdout, /interrupted; resume with: eden pretrain --resume /);
    assert.match(stderr, /saving a checkpoint at the current step/);
    const { meta } = await readCheckpoint(checkpointPaths(dir).last);
    assert.ok(meta.position.globalStep >= 1 && meta.position.globalStep < 60, `saved at step ${meta.position.globalStep}`);
  });

  it('stops on a non-finite loss, naming the step, with the last good checkpoint intact', async () => {
    const dir = tmp();
    await assert.rejects(pretrain(config(dir, { optim: { baseLr: 1e30 } })), (err: Error & { kind?: string }) => {
      assert.equal(err.kind, 'non-finite-loss');
      assert.match(err.message, /the loss became (NaN|Infinity|-Infinity) at stage 1 \(level 0\), epoch 1, step \d/);
      assert.match(err.message, /still holds the last good state/);
      return true;
    });
    const { meta, content } = await readCheckpoint(checkpointPaths(dir).last);
    assert.ok(meta.position.globalStep >= 1);
    for (const [name, rec] of content.tensors) assert.ok(rec.data.every((v) => Number.isFinite(v)), `${name} holds non-finite values`);
  });

  it('trains on webgpu too, with the same first-step loss as wasm (where an adapter exists)', async (t) => {
    const probe = await probeWebGpu();
    if ('reason' in probe) return skipOrFail(t, 'webgpu', probe.reason);
    const losses: Record<string, number> = {};
    for (const backend of ['webgpu', 'wasm'] as const) {
      const dir = tmp();
      await pretrain(config(dir, { backend, curriculum: { levels: [2], epochs: 1 }, run: { maxStepsPerEpoch: 1 } }), {
        hooks: { onStep: (e) => (losses[backend] ??= e.loss) },
      });
    }
    console.log(`first-step loss: webgpu ${losses['webgpu']}, wasm ${losses['wasm']}`);
    assert.ok(Math.abs(losses['webgpu']! - losses['wasm']!) < 1e-3 * Math.abs(losses['wasm']!), JSON.stringify(losses));
  });

  it('on webgpu, a run interrupted mid-stage and resumed saves the weights of an uninterrupted one, to the bit', async (t) => {
    const probe = await probeWebGpu();
    if ('reason' in probe) return skipOrFail(t, 'webgpu', probe.reason);
    // Two stages, replayed steps, checkpoints every step, an interruption mid-stage at n = 2: the
    // resumed run re-captures its steps and must end where the uninterrupted one does.
    const webgpu = (dir: string): ReturnType<typeof config> => config(dir, { backend: 'webgpu', curriculum: { levels: [0, 2], epochs: 2 }, run: { maxStepsPerEpoch: 3 } });
    const whole = tmp();
    await pretrain(webgpu(whole));
    const dir = tmp();
    const controller = new AbortController();
    const first = await pretrain(webgpu(dir), { signal: controller.signal, hooks: { onStep: (e) => e.globalStep === 8 && controller.abort() } });
    assert.equal(first.interrupted, true);
    await pretrain(webgpu(dir), { resumeFrom: checkpointPaths(dir).last });
    const d = await diffCheckpoints(whole, dir);
    assert.equal(d.maxAbsDiff, 0, `resumed on webgpu, the run differs: ${JSON.stringify(d.tensors.filter((x) => x.maxAbsDiff > 0).slice(0, 3))}`);
  });

  it('on webgpu with tuned convolutions, a resumed run restores the interrupted one\'s kernels and ends with its weights, to the bit', async (t) => {
    const probe = await probeWebGpu();
    if ('reason' in probe) return skipOrFail(t, 'webgpu', probe.reason);
    // Kernels chosen by hand after step 1 (tuning every convolution would compile ~400 candidate
    // pipelines on lavapipe): Eden's 2 x 2 tiles, TF.js's input gradients; no validation (its
    // convolutions would be tuned for real).
    const decide = (): void => {
      for (const s of takeUntunedConvolutions()) setTunedConvolution(s.key, s.kind === 'input' ? 'tfjs' : { ri: 2, rj: 2, splits: 1 });
    };
    const webgpu = (dir: string): ReturnType<typeof config> => config(dir, { backend: 'webgpu', data: { valFraction: 0 }, curriculum: { levels: [0, 2], epochs: 2 }, run: { maxStepsPerEpoch: 3 } });
    process.env['EDEN_WEBGPU_CONV'] = 'tune';
    try {
      clearTunedConvolutions();
      const whole = tmp();
      await pretrain(webgpu(whole), { hooks: { onStep: decide } });
      const choices = new Map(tunedConvolutions());
      assert.ok(choices.size >= 6, `${choices.size} convolutions`);
      clearTunedConvolutions();
      const dir = tmp();
      const controller = new AbortController();
      await pretrain(webgpu(dir), { signal: controller.signal, hooks: { onStep: (e) => (decide(), e.globalStep === 8 && controller.abort()) } });
      const { meta } = await readCheckpoint(checkpointPaths(dir).last);
      assert.deepEqual(meta.convTuning, Object.fromEntries(choices));
      clearTunedConvolutions(); // as a new process would start
      // No decisions by hand now: the checkpoint's must be there before the first step.
      await pretrain(webgpu(dir), { resumeFrom: checkpointPaths(dir).last, hooks: { onStart: () => assert.deepEqual(new Map(tunedConvolutions()), choices) } });
      const d = await diffCheckpoints(whole, dir);
      assert.equal(d.maxAbsDiff, 0, `resumed with tuned kernels, the run differs: ${JSON.stringify(d.tensors.filter((x) => x.maxAbsDiff > 0).slice(0, 3))}`);
    } finally {
      delete process.env['EDEN_WEBGPU_CONV'];
      clearTunedConvolutions();
    }
  });

  it('on webgpu, replayed steps (after one captured per stage) give the losses of normal steps', async (t) => {
    const probe = await probeWebGpu();
    if ('reason' in probe) return skipOrFail(t, 'webgpu', probe.reason);
    const losses: Record<string, number[]> = { normal: [], replay: [] };
    let replays = 0;
    for (const mode of ['normal', 'replay'] as const) {
      process.env['EDEN_WEBGPU_REPLAY'] = mode === 'replay' ? '1' : '0';
      const before = replayedSteps();
      try {
        // Two stages (a re-capture at the transition), validation and checkpoints between epochs.
        await pretrain(config(tmp(), { backend: 'webgpu', curriculum: { levels: [0, 2], epochs: 2 }, run: { maxStepsPerEpoch: 3 } }), {
          hooks: { onStep: (e) => losses[mode]!.push(e.loss) },
        });
      } finally {
        delete process.env['EDEN_WEBGPU_REPLAY'];
      }
      if (mode === 'replay') replays = replayedSteps() - before;
    }
    console.log(`webgpu losses, normal: ${losses['normal']!.map((l) => l.toFixed(6)).join(' ')}; replayed: ${losses['replay']!.map((l) => l.toFixed(6)).join(' ')} (${replays} steps replayed)`);
    // Per stage, the first step creates the optimiser state, the second is captured, the rest replayed.
    assert.equal(losses['replay']!.length, losses['normal']!.length);
    assert.ok(replays > 0);
    assert.equal(replays, losses['replay']!.length - 2 * 2);
    losses['normal']!.forEach((l, i) => assert.ok(Math.abs(losses['replay']![i]! - l) <= 1e-6 * Math.abs(l), `step ${i + 1}: ${losses['replay']![i]} vs ${l}`));
  });

  it('refuses to overwrite a run, and validates config with hints', async () => {
    await assert.rejects(pretrain(config(reference)), /already holds a run .* --resume/);
    assert.throws(() => resolvePretrainConfig('tiny', { optim: { batchsize: 4 } }), /unknown config field 'optim.batchsize' \(did you mean 'batchSize'\?\)/);
    assert.throws(() => resolvePretrainConfig('tiny', { optim: { batchSize: 1 } }), /at least 2/);
    assert.throws(() => resolvePretrainConfig('tny'), /unknown preset 'tny' \(did you mean 'tiny'\?\)/);
    assert.throws(() => resolvePretrainConfig('tiny', { curriculum: { levels: [0, 2], epochs: [1, 2, 3] } }), /lists 3 stages/);
    assert.throws(() => resolvePretrainConfig('tiny', { data: { cache: 'ram' } }), /data\.cache must be auto, memory, disk, none, got 'ram'/);
    assert.equal(resolvePretrainConfig('tiny').data.cache, 'auto');
    const r = runCli(['pretrain', '--set', 'contrast.tau=0.1']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^eden: unknown config field 'contrast.tau'/m);
    // 24 images, 4 held out: 20 for a batch of 32, said in the flag's words.
    await assert.rejects(pretrain(config(tmp(), { optim: { batchSize: 32 } })), { message: '20 training images (of 24: 4 held out for validation) are fewer than one batch of 32; lower the batch (--batch-size, optim.batchSize in a config) or add images' });
    const w = runCli(['pretrain', '--view-workers', 'two']);
    assert.notEqual(w.status, 0);
    assert.match(w.stderr, /--view-workers <n>' argument 'two' is invalid\. expected an integer >= 0, got 'two'/);
  });
});
