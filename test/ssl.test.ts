/**
 * Contrastive pieces against golden numbers from PyTorch 1.13 (Debian python3-torch). The snippet:
 *
 *   import torch, torch.nn.functional as F
 *   q = torch.tensor([[1., 0.2, -0.3, 0.5], [0.1, 1., 0.4, -0.2], [-0.5, 0.3, 1., 0.1]], requires_grad=True)
 *   k = torch.tensor([[0.9, 0.1, -0.2, 0.6], [0.3, 0.8, 0.2, 0.1], [-0.4, 0.2, 0.9, 0.3]])
 *   queue = torch.tensor([[1., 0.1, -0.2, 0.4], [0., 1., 0., 0.], [0., 0., 1., 0.], [-1., 0., 0., 0.], [0.2, 0.9, 0.5, -0.3]])
 *   qn, kn, Q = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
 *   lpos = (qn * kn).sum(1, keepdim=True); lneg = qn @ Q.t()
 *   for prune in [False, True]:
 *       l = lneg.masked_fill(lneg.detach() >= 0.8, float('-inf')) if prune else lneg
 *       loss = F.cross_entropy(torch.cat([lpos, l], 1) / 0.2, torch.zeros(3, dtype=torch.long))
 *       g, = torch.autograd.grad(loss, q, retain_graph=True)
 *       print(loss.item(), (lneg >= 0.8).int().tolist(), g.tolist())
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { infoNce, l2Normalize, pruneMask, upperQuantile } from '../src/ssl/loss.js';
import { MemoryQueue } from '../src/ssl/queue.js';
import { updateMomentum, copyVariables } from '../src/ssl/momentum.js';
import { Encoder } from '../src/models/encoder.js';
import { SgdMomentum, cosineLearningRate } from '../src/train/optimizer.js';
import { adamStep, keySpread } from '../src/train/adam-step.js';
import { nativeCallCounts, nativeStatus } from '../src/engine/native.js';

const Q = [[1, 0.2, -0.3, 0.5], [0.1, 1, 0.4, -0.2], [-0.5, 0.3, 1, 0.1]];
const K = [[0.9, 0.1, -0.2, 0.6], [0.3, 0.8, 0.2, 0.1], [-0.4, 0.2, 0.9, 0.3]];
const QUEUE = [[1, 0.1, -0.2, 0.4], [0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, 0], [0.2, 0.9, 0.5, -0.3]];
const GOLDEN = {
  plain: { loss: 0.8378825187683105, grad: [[0.0641297996044159, 0.018296923488378525, 0.0038195401430130005, -0.13328665494918823], [-0.2519926130771637, -0.05588385462760925, 0.05958777293562889, -0.2862400412559509], [0.13683700561523438, 0.004768796265125275, 0.08549337089061737, -0.18505516648292542]] },
  pruned: { loss: 0.0930851623415947, grad: [[-5.081668496131897e-5, 0.0368955098092556, 0.00719704944640398, -0.01033833622932434], [-0.025969285517930984, -0.0358085110783577, 0.0859757661819458, -0.02007572539150715], [-0.022911783307790756, 0.11578741669654846, -0.0376354455947876, -0.08556671440601349]] },
  mask: [[1, 0, 0, 0, 0], [0, 1, 0, 0, 1], [0, 0, 1, 0, 0]],
};

function lossAndGrad(prune: boolean): { loss: number; grad: number[][] } {
  const k = l2Normalize(tf.tensor2d(K));
  const queue = l2Normalize(tf.tensor2d(QUEUE));
  const { value, grads } = tf.variableGrads(() => infoNce(l2Normalize(qVar as tf.Tensor2D), k, queue, { temperature: 0.2, pruneThreshold: prune ? 0.8 : undefined }).loss, [qVar]);
  const out = { loss: value.dataSync()[0]!, grad: grads[qVar.name]!.arraySync() as number[][] };
  tf.dispose([k, queue, value, ...Object.values(grads)]);
  return out;
}
let qVar: tf.Variable;

describe('InfoNCE and the purposive pruner', () => {
  before(async () => {
    await useBackend('wasm');
    qVar = tf.variable(tf.tensor2d(Q));
  });

  for (const [name, prune] of [['plain', false], ['pruned', true]] as const) {
    it(`${name} loss and gradient match PyTorch`, () => {
      const r = lossAndGrad(prune);
      const g = GOLDEN[name];
      console.log(`InfoNCE ${name}: loss ${r.loss} vs PyTorch ${g.loss}`);
      assert.ok(Math.abs(r.loss - g.loss) < 1e-5, `loss ${r.loss} vs ${g.loss}`);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 4; j++) assert.ok(Math.abs(r.grad[i]![j]! - g.grad[i]![j]!) < 1e-5, `grad[${i}][${j}]`);
    });
  }

  it('reports the positive and negative cosines it saw (diagnostics), computed by hand', () => {
    const unit = (v: number[]): number[] => v.map((x) => x / Math.hypot(...v));
    const [q, k, queue] = [Q.map(unit), K.map(unit), QUEUE.map(unit)];
    const dot = (a: number[], b: number[]): number => a.reduce((s, x, i) => s + x * b[i]!, 0);
    const pos = q.reduce((s, qi, i) => s + dot(qi, k[i]!), 0) / 3;
    const negs = q.flatMap((qi) => queue.map((kj) => dot(qi, kj)));
    const r = infoNce(l2Normalize(tf.tensor2d(Q)), l2Normalize(tf.tensor2d(K)), l2Normalize(tf.tensor2d(QUEUE)), { temperature: 0.2, pruneThreshold: 0.8 });
    assert.ok(Math.abs(r.positive.dataSync()[0]! - pos) < 1e-6);
    assert.ok(Math.abs(r.negativeMean.dataSync()[0]! - negs.reduce((a, b) => a + b, 0) / negs.length) < 1e-6);
    // 15 values: the 99.9th percentile is the largest (the pruned 0.861 of GOLDEN.mask).
    assert.ok(Math.abs(r.negativeP999.dataSync()[0]! - Math.max(...negs)) < 1e-6);
    // 1000 values 0..999: the top ceil(0.001 * 1000) = 1 value -> 999; 2000 values -> the 2nd largest.
    assert.equal(upperQuantile(tf.range(0, 1000), 0.999).dataSync()[0], 999);
    assert.equal(upperQuantile(tf.range(0, 2000), 0.999).dataSync()[0], 1998);
  });

  it('key spread: ~1 for keys spread over the sphere, 0 for identical keys', () => {
    // The 2 x 2 identity as keys: per-dimension std over the batch (population) 0.5, times sqrt(2).
    assert.ok(Math.abs(keySpread(tf.tensor2d([[1, 0], [0, 1]])).dataSync()[0]! - 0.5 * Math.SQRT2) < 1e-6);
    assert.equal(keySpread(tf.tensor2d([[0.6, 0.8], [0.6, 0.8], [0.6, 0.8]])).dataSync()[0], 0);
    const random = l2Normalize(tf.randomNormal([4096, 128], 0, 1, 'float32', 1) as tf.Tensor2D);
    assert.ok(Math.abs(keySpread(random).dataSync()[0]! - 1) < 0.02);
  });

  it('prunes at the threshold itself and above, not just below (>=, METHOD.md §4)', () => {
    // float32 neighbours of 0.8: the value below, 0.8 itself, the value above.
    const below = Math.fround(0.8) - 2 ** -24 * 2;
    const at = Math.fround(0.8);
    const above = Math.fround(0.8) + 2 ** -24 * 2;
    const mask = pruneMask(tf.tensor2d([[below, at, above, 0.5, 1]]), 0.8).dataSync();
    assert.deepEqual(Array.from(mask), [0, 1, 1, 0, 1]);
    // The same inside the loss, from unit vectors whose cosine with the query is exactly 0.8f.
    const q = tf.tensor2d([[1, 0]]);
    const queue = tf.tensor2d([[at, Math.sqrt(1 - at * at)], [below, Math.sqrt(1 - below * below)], [0.3, Math.sqrt(1 - 0.09)]]);
    const r = infoNce(q, tf.tensor2d([[1, 0]]), queue, { temperature: 0.2, pruneThreshold: 0.8 });
    assert.ok(Math.abs(r.prunedFraction.dataSync()[0]! - 1 / 3) < 1e-7);
  });

  it('masks per query, by threshold, never the positive', () => {
    const q = l2Normalize(tf.tensor2d(Q));
    const queue = l2Normalize(tf.tensor2d(QUEUE));
    const mask = pruneMask(tf.matMul(q, queue, false, true), 0.8);
    assert.deepEqual((mask.arraySync() as unknown as number[][]).map((r) => r.map(Number)), GOLDEN.mask);
    // A queue made only of copies of the positive key: everything pruned, the loss is exactly 0.
    const k = l2Normalize(tf.tensor2d(K));
    const copies = tf.concat([k, k], 0);
    const r = infoNce(q, k, copies, { temperature: 0.2, pruneThreshold: -2 });
    assert.ok(Math.abs(r.loss.dataSync()[0]!) < 1e-6);
    assert.equal(r.prunedFraction.dataSync()[0], 1);
  });
});

describe('memory queue', () => {
  it('is FIFO and wraps around when K is not a multiple of the batch', () => {
    const queue = new MemoryQueue(10, 2, 1);
    const batch = (start: number): tf.Tensor2D => tf.tensor2d(Array.from({ length: 4 }, (_, i) => [start + i, -(start + i)]));
    for (const start of [100, 200, 300]) queue.enqueue(batch(start)); // 12 rows into 10
    const rows = (queue.keys.arraySync() as number[][]).map((r) => r[0]);
    // Rows 0-1 were overwritten by the wrap (302, 303); 100 and 101 are the oldest dropped.
    assert.deepEqual(rows, [302, 303, 102, 103, 200, 201, 202, 203, 300, 301]);
    assert.equal(queue.pointer, 2);
    // 13 rows (more than K) from pointer 2: as if written one by one, rows 2..9, 0..4 in turn.
    queue.enqueue(tf.tensor2d(Array.from({ length: 13 }, (_, i) => [500 + i, 0])));
    assert.deepEqual((queue.keys.arraySync() as number[][]).map((r) => r[0]), [508, 509, 510, 511, 512, 503, 504, 505, 506, 507]);
    assert.equal(queue.pointer, 5);
    queue.dispose();
  });
});

describe('momentum teacher', () => {
  const args = { backbone: 'resnet-tiny', width: 4, projectionDim: 8, seed: 1 };

  it('m = 1 leaves the teacher unchanged, m = 0 copies the student', async () => {
    await useBackend('wasm');
    const student = new Encoder(args);
    const teacher = new Encoder({ ...args, seed: 2 });
    const before = teacher.trainableVariables().get('backbone.conv1.weight')!.arraySync();
    updateMomentum(teacher.trainableVariables(), student.trainableVariables(), 1);
    assert.deepEqual(teacher.trainableVariables().get('backbone.conv1.weight')!.arraySync(), before);
    updateMomentum(teacher.trainableVariables(), student.trainableVariables(), 0);
    for (const [n, v] of student.trainableVariables()) assert.deepEqual(teacher.trainableVariables().get(n)!.arraySync(), v.arraySync(), n);
    // m = 0.5 averages exactly.
    const t0 = (teacher.trainableVariables().get('head.fc.2.bias')!.arraySync() as number[]).map(() => 0);
    teacher.trainableVariables().get('head.fc.2.bias')!.assign(tf.tensor1d(t0));
    updateMomentum(teacher.trainableVariables(), student.trainableVariables(), 0.5);
    const s = student.trainableVariables().get('head.fc.2.bias')!.arraySync() as number[];
    const t = teacher.trainableVariables().get('head.fc.2.bias')!.arraySync() as number[];
    s.forEach((v, i) => assert.ok(Math.abs(t[i]! - v / 2) < 1e-7));
    student.dispose();
    teacher.dispose();
  });

  it('a training step sends no gradient into the teacher and keeps the tensor count flat over 20 steps', async () => {
    await useBackend('wasm');
    const student = new Encoder(args);
    const teacher = new Encoder(args);
    copyVariables(teacher.namedVariables(), student.namedVariables());
    const queue = new MemoryQueue(32, 8, 3);
    const opt = new SgdMomentum({ momentum: 0.9, weightDecay: 1e-4 });
    const x = (seed: number): tf.Tensor4D => tf.randomNormal([4, 32, 32, 1], 0, 1, 'float32', seed) as tf.Tensor4D;
    // With m = 1 the teacher must come out of a step exactly as it went in.
    const teacherBefore = [...teacher.trainableVariables()].map(([n, v]) => [n, v.arraySync()] as const);
    const xq = x(1);
    const xk = x(2);
    await adamStep(student, teacher, queue, opt, { queries: xq, keys: xk }, { temperature: 0.2, pruneThreshold: 0.8, momentum: 1, learningRate: 0.1 });
    for (const [n, v] of teacherBefore) assert.deepEqual(teacher.trainableVariables().get(n)!.arraySync(), v, `teacher ${n} changed`);
    assert.notDeepEqual(student.trainableVariables().get('head.fc.2.bias')!.arraySync(), teacher.trainableVariables().get('head.fc.2.bias')!.arraySync());
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) {
      await adamStep(student, teacher, queue, opt, { queries: xq, keys: xk }, { temperature: 0.2, pruneThreshold: 0.8, momentum: 0.99, learningRate: 0.01 });
      counts.push(tf.memory().numTensors);
    }
    assert.equal(new Set(counts).size, 1, `tensor count moved: ${counts.join(',')}`);
    tf.dispose([xq, xk]);
    student.dispose();
    teacher.dispose();
    queue.dispose();
    opt.dispose();
  });
});

describe('the EMA teacher as training updates it', () => {
  it('SGD with momentum and weight decay, then xi <- m xi + (1 - m) theta: three steps against a hand computation', async () => {
    // On the wasm backend: the native fused SGD+EMA kernel when the addon is active (its calls are
    // counted inside the addon), the TF.js ops otherwise (test/native.test.ts reruns this file with
    // EDEN_NATIVE=0). Non-trivial student, teacher, momentum buffers, m, weight decay and gradients.
    await useBackend('wasm');
    const [mu, wd, m] = [0.9, 0.01, 0.8];
    const p0 = [0.5, -1.2, 2.0, 0.03];
    const t0 = [0.1, 0.3, -0.4, 1.5];
    const grads = [[0.2, -0.1, 0.05, 1.0], [-0.3, 0.4, 0.0, -0.5], [0.1, 0.1, -0.2, 0.25]];
    const lrs = [0.1, 0.05, 0.02];
    // By hand, in doubles.
    let [p, v, t] = [[...p0], [0, 0, 0, 0], [...t0]];
    const expected: { p: number[]; t: number[] }[] = [];
    grads.forEach((g, step) => {
      const gi = g.map((x, i) => x + wd * p[i]!);
      v = step === 0 ? gi : v.map((x, i) => mu * x + gi[i]!);
      p = p.map((x, i) => x - lrs[step]! * v[i]!);
      t = t.map((x, i) => m * x + (1 - m) * p[i]!);
      expected.push({ p: [...p], t: [...t] });
    });
    // A swapped EMA ((1 - m) t + m p) would give a teacher this far from the right one after step 1:
    assert.ok(Math.abs((1 - m) * t0[0]! + m * expected[0]!.p[0]! - expected[0]!.t[0]!) > 0.1);

    // Variables that own their buffers, as ParameterStore makes them (the fused kernel writes in place only then).
    const own = (values: number[]): tf.Variable => {
      const init = tf.tensor1d(values);
      const v = tf.variable(init);
      init.dispose();
      return v;
    };
    const student = own(p0);
    const teacher = own(t0);
    const opt = new SgdMomentum({ momentum: mu, weightDecay: wd });
    const before = nativeCallCounts()['sgdEma'] ?? 0;
    for (let step = 0; step < 3; step++) {
      const g = tf.tensor1d(grads[step]!);
      opt.step(new Map([['w', student]]), new Map([['w', g]]), lrs[step]!, { params: new Map([['w', teacher]]), ema: m });
      g.dispose();
      const [ps, ts] = [student.dataSync(), teacher.dataSync()];
      expected[step]!.p.forEach((e, i) => assert.ok(Math.abs(ps[i]! - e) < 1e-6, `step ${step + 1}: student[${i}] ${ps[i]} vs ${e}`));
      expected[step]!.t.forEach((e, i) => assert.ok(Math.abs(ts[i]! - e) < 1e-6, `step ${step + 1}: teacher[${i}] ${ts[i]} vs ${e}`));
    }
    const fused = (nativeCallCounts()['sgdEma'] ?? 0) - before;
    console.log(`SGD+EMA path: ${nativeStatus().active ? `native fused kernel (${fused} calls)` : `TF.js ops (${nativeStatus().detail})`}`);
    if (nativeStatus().active) assert.equal(fused, 3);
    tf.dispose([student, teacher]);
    opt.dispose();
  });
});

describe('SGD and schedule', () => {
  it('matches PyTorch SGD(momentum=0.9, weight_decay) on two steps by hand', async () => {
    await useBackend('cpu');
    const p = tf.variable(tf.tensor1d([1, -2]));
    const opt = new SgdMomentum({ momentum: 0.9, weightDecay: 0.1 });
    const params = new Map([['p', p]]);
    // g = [0.5, 0.5]; step 1: v = g + wd*p = [0.6, 0.3]; p = p - 0.1 v = [0.94, -2.03]
    opt.step(params, new Map([['p', tf.tensor1d([0.5, 0.5])]]), 0.1);
    // step 2: g' = [0.5, 0.5] + 0.1 * [0.94, -2.03] = [0.594, 0.297]; v = 0.9 v + g' = [1.134, 0.567]; p -= 0.1 v
    opt.step(params, new Map([['p', tf.tensor1d([0.5, 0.5])]]), 0.1);
    const got = p.arraySync() as number[];
    [0.94 - 0.1134, -2.03 - 0.0567].forEach((e, i) => assert.ok(Math.abs(got[i]! - e) < 1e-6, `${got}`));
    opt.dispose();
    p.dispose();
    await useBackend('wasm');
  });

  it('cosine decays from the base to 0 over the stage', () => {
    assert.equal(cosineLearningRate(0, 100, 0.03), 0.03);
    assert.ok(Math.abs(cosineLearningRate(50, 100, 0.03) - 0.015) < 1e-12);
    assert.ok(cosineLearningRate(100, 100, 0.03) < 1e-12);
  });
});
