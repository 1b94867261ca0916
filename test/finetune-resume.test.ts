/**
 * `eden finetune --resume`: a segmentation run stopped anywhere (Ctrl-C, or killed outright after a
 * save at a validation check) goes on from its saved training state to exactly the model an
 * uninterrupted run writes; the state is refused when the settings or the images changed, and gone
 * once the model is written. On a copy of 12 wingspan_ctr radiographs, a tiny encoder at 64 px; and
 * the same for a classifier on pneumoniamnist.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { finetuneClassification, finetuneSegmentation, type FinetuneClassificationOptions, type FinetuneSegmentationOptions } from '../src/apply/finetune.js';
import { finetuneStateMeta, trainingStatePath } from '../src/apply/finetune-state.js';
import { diffCheckpoints } from '../src/train/checkpoint-diff.js';
import { EdenError } from '../src/core/errors.js';
import { loadTensorFile } from '../src/engine/tensor-file.js';
import { taskModelMeta } from '../src/models/task-model-file.js';
import { eden } from './helpers/cli.js';
import { loadSegmentationData } from '../src/data/segmentation-data.js';
import { deriveSeed, Rng } from '../src/core/rng.js';

const root = path.join(import.meta.dirname, '..');
const wingspan = path.join(root, '..', 'shared', 'data', 'wingspan_ctr');
const pneumonia = path.join(root, '..', 'shared', 'data', 'pneumoniamnist', 'pneumoniamnist.npz');
const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'eden-ft-resume-'));

/** A labelled folder of the first `n` wingspan_ctr images with their heart and lung masks. */
function smallFolder(n: number): string {
  const dir = tmp();
  const names = readdirSync(path.join(wingspan, 'images')).sort().slice(0, n);
  for (const sub of ['images', 'masks/heart', 'masks/left_lung', 'masks/right_lung']) {
    mkdirSync(path.join(dir, sub), { recursive: true });
    for (const f of names) cpSync(path.join(wingspan, sub, f), path.join(dir, sub, f));
  }
  return dir;
}

const STEPS = 20;

/** What a model file says of its training: steps run, the step kept, validation scores. */
async function trainingRecord(file: string, task = 'segment'): Promise<unknown> {
  const m = taskModelMeta(await loadTensorFile(file))!;
  if (task === 'classify') assert.ok(m.classes && m.validation['mean_auc'] !== undefined);
  return { steps: m.training.steps, bestStep: m.training.bestStep, validation: m.validation };
}

describe('eden finetune --resume', { skip: existsSync(wingspan) ? undefined : `${wingspan} not found` }, () => {
  let data: string;
  let whole: string;
  let wholeFrozen: string;
  const options = (o: Partial<FinetuneSegmentationOptions> = {}): FinetuneSegmentationOptions => ({
    data,
    encoder: { checkpoint: 'random', backbone: 'resnet-tiny', width: 8 },
    structures: ['heart', 'lungs'],
    combine: { lungs: ['left_lung', 'right_lung'] },
    shots: 6,
    valImages: 4,
    mode: 'finetune',
    encoderLrMultiplier: 0.1,
    size: 64,
    steps: STEPS,
    batchSize: 4,
    // Checks every 2 steps, patience 2, a high rate: on this folder the best comes at step 10, the
    // checks at 12 and 14 fall short and stop the run (so the checks since the best must carry over).
    lr: 1e-2,
    evalEvery: 2,
    patience: 2,
    seed: 0,
    saveEverySeconds: 0,
    ...o,
  });

  before(async () => {
    await useBackend('wasm');
    data = smallFolder(12);
    whole = path.join(tmp(), 'whole.safetensors');
    await finetuneSegmentation(options(), whole);
    wholeFrozen = path.join(tmp(), 'whole-frozen.safetensors');
    await finetuneSegmentation(options({ mode: 'frozen' }), wholeFrozen);
  });

  /** Run `o` stopped by a signal after step `at`, then resumed; the steps each part ran. */
  async function interruptedThenResumed(o: FinetuneSegmentationOptions, at: number, out: string): Promise<{ first: number[]; second: number[] }> {
    const controller = new AbortController();
    const first: number[] = [];
    await assert.rejects(
      finetuneSegmentation({ ...o, signal: controller.signal, onProgress: (p) => (first.push(p.step), p.step === at && controller.abort()) }, out),
      (err: unknown) => err instanceof EdenError && err.kind === 'interrupted' && err.message.includes(`interrupted after step ${at}: the training state is saved in ${trainingStatePath(out)}`),
    );
    assert.ok(existsSync(trainingStatePath(out)) && !existsSync(out));
    const second: number[] = [];
    await finetuneSegmentation({ ...o, resume: true, onProgress: (p) => second.push(p.step) }, out);
    return { first, second };
  }

  it('stopped after any step, resumes to the uninterrupted run\'s model to the bit (best weights, Adam moments, batch order, patience carried over)', async () => {
    const tensors = tf.memory().numTensors;
    // Before the first check, at a check, between checks after a best, and where patience is counting.
    for (const at of [1, 2, 5, 12, 13]) {
      const out = path.join(tmp(), 'model.safetensors');
      const { first, second } = await interruptedThenResumed(options(), at, out);
      const wholeSteps = first.length + second.length;
      assert.deepEqual(first, Array.from({ length: at }, (_, i) => i + 1));
      // A real resume: it goes on at the next step (a silent restart would begin at 1 again).
      assert.equal(second[0], at + 1, `resumed after ${at}: ${second}`);
      const d = await diffCheckpoints(whole, out);
      assert.equal(d.maxAbsDiff, 0, `resumed after step ${at} (${wholeSteps} steps), the model differs: ${JSON.stringify(d.tensors.filter((t) => t.maxAbsDiff > 0).slice(0, 3))}`);
      assert.deepEqual(await trainingRecord(out), await trainingRecord(whole), `resumed after step ${at}`);
      assert.ok(!existsSync(trainingStatePath(out)), 'the training state is removed once the model is written');
    }
    assert.equal(tf.memory().numTensors, tensors, 'interrupted and resumed runs leave no tensors behind');
  });

  it('resumes a frozen-encoder run too', async () => {
    const out = path.join(tmp(), 'frozen.safetensors');
    await interruptedThenResumed(options({ mode: 'frozen' }), 4, out);
    assert.equal((await diffCheckpoints(wholeFrozen, out)).maxAbsDiff, 0);
  });

  it('saves at validation checks no more often than saveEverySeconds', async () => {
    const out = path.join(tmp(), 'model.safetensors');
    const seen: boolean[] = [];
    const stop = new AbortController();
    const run = (everySeconds: number): Promise<unknown> =>
      finetuneSegmentation({ ...options({ saveEverySeconds: everySeconds }), signal: stop.signal, onProgress: (p) => p.step === 4 && (seen.push(existsSync(trainingStatePath(out))), stop.abort()) }, out).catch((err: unknown) => err);
    // An hour apart: nothing saved at the check of step 3 (only on the signal, after step 4).
    await run(3600);
    rmSync(trainingStatePath(out));
    const again = new AbortController();
    await finetuneSegmentation({ ...options(), signal: again.signal, onProgress: (p) => p.step === 4 && (seen.push(existsSync(trainingStatePath(out))), again.abort()) }, out).catch(() => undefined);
    assert.deepEqual(seen, [false, true]);
  });

  it('on the command line: killed outright (SIGKILL) after a save, --resume writes the same model; changed settings and images are refused by name', async () => {
    const out = path.join(tmp(), 'cli.safetensors');
    const args = ['finetune', data, '--checkpoint', 'random', '--arch', 'resnet-tiny', '--width', '8', '--structures', 'heart,lungs', '--combine', 'lungs=left_lung+right_lung', '--shots', '6', '--val-images', '4', '--size', '64', '--steps', String(STEPS), '--batch-size', '4', '--lr', '0.01', '--eval-every', '2', '--patience', '2', '--seed', '0', '--save-every', '0', '--out', out];
    const state = trainingStatePath(out);
    // Killed once the state has been saved at a check: no handler runs, nothing is saved on the way out.
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), ...args], { cwd: root, env: { ...process.env, CI: '1' }, stdio: 'ignore' });
      const poll = setInterval(() => existsSync(state) && child.kill('SIGKILL'), 20);
      child.on('exit', (code, signal) => {
        clearInterval(poll);
        if (signal === 'SIGKILL') resolve();
        else reject(new Error(`the run ended (${code}) before it was killed`));
      });
    });
    assert.ok(!existsSync(out));
    const show = eden(['checkpoint', 'show', state]);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /^format: eden-finetune-state-1 \(Eden [\d.]+, .*, backend wasm\)\ntraining state of: .*cli\.safetensors \(eden finetune --resume goes on from it\)\nnext step: \d+ of at most 20; best validation Dice (0\.\d{4} \(step \d+\), \d check\(s\) since|none yet)\ntrained on: .*, 6 images \(4 for validation\), segmentation, mode finetune, 64 px, seed 0\ntensors: \d+ /);
    const changed = eden([...args, '--lr', '0.02', '--resume'], { CI: '1' });
    assert.equal(changed.status, 2);
    assert.match(changed.stderr, new RegExp(`cannot resume ${state.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: it was saved by a run with another lr \\(then 0\\.01, now 0\\.02\\)`));
    const resumed = eden([...args, '--resume'], { CI: '1' });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming from .*cli\.training\.safetensors: \d+ of at most 20 steps done/);
    assert.equal((await diffCheckpoints(whole, out)).maxAbsDiff, 0);
    assert.ok(!existsSync(state));
    const again = eden([...args, '--resume'], { CI: '1' });
    assert.equal(again.status, 2);
    assert.match(again.stderr, /nothing to resume: .*cli\.safetensors is written and no training state is left .*so its run finished/);
  });

  it('on the command line, Ctrl-C saves the state at the current step and exits 130 saying how to go on', async () => {
    const out = path.join(tmp(), 'sigint.safetensors');
    const args = ['finetune', data, '--checkpoint', 'random', '--arch', 'resnet-tiny', '--width', '8', '--shots', '6', '--size', '64', '--steps', '200', '--eval-every', '2', '--patience', '100', '--out', out];
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), ...args], { cwd: root, env: { ...process.env, CI: '1' } });
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/step 2\/200/.test(err) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve({ code: c, stderr: err }));
    });
    assert.equal(code, 130, stderr);
    // The step under way when the signal came is finished (and may print its check) before the save.
    assert.match(stderr, /eden: interrupted: saving the training state at the current step \(Ctrl-C again to quit without saving\)\n(step \d+\/200: .*\n)?eden: interrupted after step \d+: the training state is saved in .*sigint\.training\.safetensors; the same command with --resume goes on from there\n$/);
    assert.ok(existsSync(trainingStatePath(out)) && !existsSync(out));
  });

  it("with the masks' folder named apart (--masks; images in scans/, masks in labels/<structure>/ inside it) trains the same model; a resume with other masks is refused by name", async () => {
    const apart = tmp();
    cpSync(path.join(data, 'images'), path.join(apart, 'scans'), { recursive: true });
    cpSync(path.join(data, 'masks'), path.join(apart, 'scans', 'labels'), { recursive: true });
    const out = path.join(tmp(), 'apart.safetensors');
    const args = ['finetune', path.join(apart, 'scans'), '--masks', path.join(apart, 'scans', 'labels'), '--checkpoint', 'random', '--arch', 'resnet-tiny', '--width', '8', '--structures', 'heart,lungs', '--combine', 'lungs=left_lung+right_lung', '--shots', '6', '--val-images', '4', '--size', '64', '--steps', String(STEPS), '--batch-size', '4', '--lr', '0.01', '--eval-every', '2', '--patience', '2', '--seed', '0', '--out', out];
    const run = eden(args, { CI: '1' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal((await diffCheckpoints(whole, out)).maxAbsDiff, 0);
    const show = eden(['checkpoint', 'show', out]);
    assert.match(show.stdout, new RegExp(`\ntrained on: ${path.join(apart, 'scans')} with the masks in ${path.join(apart, 'scans', 'labels')}, 6 images`));
    // Stopped, then resumed with a copy of the masks elsewhere: another run's state.
    const o = options({ data: path.join(apart, 'scans'), masks: path.join(apart, 'scans', 'labels') });
    const stopped = path.join(tmp(), 'stopped.safetensors');
    const controller = new AbortController();
    await finetuneSegmentation({ ...o, signal: controller.signal, onProgress: (p) => p.step === 2 && controller.abort() }, stopped).catch(() => undefined);
    cpSync(path.join(apart, 'scans', 'labels'), path.join(apart, 'copy'), { recursive: true });
    await assert.rejects(finetuneSegmentation({ ...o, masks: path.join(apart, 'copy'), resume: true }, stopped), (err: unknown) => err instanceof EdenError && err.message.includes(`another masks (then ${JSON.stringify(path.join(apart, 'scans', 'labels'))}, now ${JSON.stringify(path.join(apart, 'copy'))})`));
    const classify = eden(['finetune', apart, '--masks', path.join(apart, 'copy'), '--task', 'classify', '--out', path.join(apart, 'c.safetensors')]);
    assert.equal(classify.status, 2);
    assert.match(classify.stderr, /--masks is for segmentation; a classifier takes its labels from a CSV \(--labels\) or class folders/);
  });

  it('with k shots decodes only the images drawn: the same split as the whole folder decoded gives, an unreadable image not drawn never read, one drawn replaced by the next', async () => {
    // The whole folder decoded (as 'all' and evaluation do), then drawn as splitPool draws.
    const decoded = await loadSegmentationData(data, 64, { combine: { lungs: ['left_lung', 'right_lung'] }, structures: ['heart', 'lungs'], testFraction: 0, maxTestImages: 0, seed: 0 });
    const order = new Rng(deriveSeed(0, 101)).shuffle([...decoded.trainPool]);
    const files = (idx: number[]): string[] => [...idx].sort((a, b) => a - b).map((i) => decoded.samples[i]!.file);
    const record = async (file: string): Promise<{ train: string[]; val: string[] }> => {
      const t = taskModelMeta(await loadTensorFile(file))!.training;
      return { train: t.files, val: t.validationFiles as string[] };
    };
    assert.deepEqual(await record(whole), { train: files(order.slice(0, 6)), val: files(order.slice(6, 10)) });
    // A copy with an unreadable image not drawn (the last in the draw) and, then, one drawn.
    const copy = smallFolder(12);
    const inCopy = (f: string): string => path.join(copy, 'images', path.basename(f));
    const corrupt = (f: string): void => writeFileSync(inCopy(f), Buffer.from('not a PNG at all'));
    corrupt(decoded.samples[order[11]!]!.file);
    const logged: string[] = [];
    const out = path.join(tmp(), 'lazy.safetensors');
    await finetuneSegmentation(options({ data: copy, steps: 1, onLog: (l) => logged.push(l) }), out);
    assert.ok(!logged.some((l) => l.includes(path.basename(decoded.samples[order[11]!]!.file))), logged.join('\n'));
    assert.deepEqual(await record(out), { train: files(order.slice(0, 6)).map(inCopy), val: files(order.slice(6, 10)).map(inCopy) });
    corrupt(decoded.samples[order[0]!]!.file);
    logged.length = 0;
    await finetuneSegmentation(options({ data: copy, steps: 1, onLog: (l) => logged.push(l) }), out);
    assert.ok(logged.some((l) => l.startsWith(`skipped ${inCopy(decoded.samples[order[0]!]!.file)}: `)), logged.join('\n'));
    assert.deepEqual(await record(out), { train: files(order.slice(1, 7)).map(inCopy), val: files(order.slice(7, 11)).map(inCopy) });
  });

  it('with all shots, keeps on disk a folder whose images and masks would not fit in memory, and trains the same model', async () => {
    const dir = tmp();
    const [inMemory, onDisk] = [path.join(dir, 'memory.safetensors'), path.join(dir, 'disk.safetensors')];
    await finetuneSegmentation(options({ shots: 'all', steps: 3 }), inMemory);
    // A killed run's store is removed; this run's is removed at its end.
    writeFileSync(path.join(dir, '.disk.safetensors.decoded-99999.tmp'), 'left by a killed run');
    const logged: string[] = [];
    await finetuneSegmentation(options({ shots: 'all', steps: 3, memoryBytes: 500_000, onLog: (l) => logged.push(l) }), onDisk);
    assert.ok(logged.some((l) => l.startsWith(`${data}: 12 labelled images at 64 px take 589.8 KB decoded, more than the 500.0 KB of memory allowed (by default half of this machine's): kept on disk while training, in ${path.join(dir, `.disk.safetensors.decoded-${process.pid}.tmp`)} (removed at the end)`)), logged.join('\n'));
    assert.deepEqual(readdirSync(dir).sort(), ['disk.safetensors', 'memory.safetensors']);
    const [a, b] = [await loadTensorFile(inMemory), await loadTensorFile(onDisk)];
    assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort());
    for (const [name, t] of a.tensors) assert.deepEqual(b.tensors.get(name)!.data, t.data, name);
  });

  it('refuses a state whose images changed, naming the one that went', async () => {
    const folder = smallFolder(12);
    const out = path.join(tmp(), 'model.safetensors');
    const controller = new AbortController();
    await finetuneSegmentation({ ...options({ data: folder }), signal: controller.signal, onProgress: (p) => p.step === 2 && controller.abort() }, out).catch(() => undefined);
    const saved = finetuneStateMeta(await loadTensorFile(trainingStatePath(out)), out);
    const gone = saved.files.train[0]!;
    rmSync(gone);
    await assert.rejects(finetuneSegmentation({ ...options({ data: folder }), resume: true }, out), (err: unknown) => err instanceof EdenError && err.message.includes(`the labelled images changed since it was saved (6 training images then, 6 now; ${gone} is gone`));
  });
});

describe('eden finetune --task classify --resume', { skip: existsSync(pneumonia) ? undefined : `${pneumonia} not found` }, () => {
  const options = (o: Partial<FinetuneClassificationOptions> = {}): FinetuneClassificationOptions => ({
    data: pneumonia,
    encoder: { checkpoint: 'random', backbone: 'resnet-tiny', width: 8 },
    size: 32,
    steps: 12,
    batchSize: 8,
    lr: 3e-3,
    evalEvery: 2,
    patience: 2,
    seed: 1,
    saveEverySeconds: 0,
    ...o,
  });

  it('stopped after any step, resumes to the uninterrupted run\'s classifier to the bit; another label column is refused', async () => {
    await useBackend('wasm');
    const whole = path.join(tmp(), 'whole.safetensors');
    await finetuneClassification(options(), whole);
    const tensors = tf.memory().numTensors;
    for (const at of [1, 2, 5]) {
      const out = path.join(tmp(), 'model.safetensors');
      const controller = new AbortController();
      await assert.rejects(
        finetuneClassification({ ...options(), signal: controller.signal, onProgress: (p) => p.step === at && controller.abort() }, out),
        (err: unknown) => err instanceof EdenError && err.kind === 'interrupted' && err.message.startsWith(`interrupted after step ${at}:`),
      );
      const saved = finetuneStateMeta(await loadTensorFile(trainingStatePath(out)), out);
      // The images are named by the archive and their place in it.
      assert.match(saved.files.train[0]!, /pneumoniamnist\.npz#(train|val)\/\d+$/);
      const second: number[] = [];
      await finetuneClassification({ ...options(), resume: true, onProgress: (p) => second.push(p.step) }, out);
      assert.equal(second[0], at + 1);
      const d = await diffCheckpoints(whole, out);
      assert.equal(d.maxAbsDiff, 0, `resumed after step ${at}, the classifier differs: ${JSON.stringify(d.tensors.filter((t) => t.maxAbsDiff > 0).slice(0, 3))}`);
      assert.deepEqual(await trainingRecord(out, 'classify'), await trainingRecord(whole, 'classify'));
    }
    assert.equal(tf.memory().numTensors, tensors);
    const out = path.join(tmp(), 'model.safetensors');
    const controller = new AbortController();
    await finetuneClassification({ ...options(), signal: controller.signal, onProgress: (p) => p.step === 1 && controller.abort() }, out).catch(() => undefined);
    await assert.rejects(finetuneClassification({ ...options({ labelColumn: 'finding' }), resume: true }, out), /it was saved by a run with another labelColumn \(then the default, now "finding"\)/);
  });
});
