/**
 * The fused InfoNCE of the webgpu backend (engine/webgpu-infonce.ts) against the tensor-op InfoNCE
 * on the cpu backend (the numerical reference, itself checked against PyTorch in ssl.test.ts): the
 * loss, every diagnostic (the 99.9th percentile exactly, by radix select) and the gradients with
 * respect to q, k and the queue, with and without the pruner, at shapes that leave partial
 * workgroups (B > 256 rows, K and C not multiples of 256), with tied values, with every negative
 * pruned, and with a non-finite input; each case with the reductions in subgroup operations (where
 * the adapter offers subgroups: lavapipe does, 8 lanes) and in workgroup memory. Also: the dispatch
 * count, and no tensor leaks. Runs on Mesa's lavapipe in CI.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../src/engine/backend.js';
import { checkWebGpuSwitches, describeWebGpuEngine, probeWebGpu } from '../src/engine/webgpu.js';
import { webGpuInfoNceAvailable } from '../src/engine/webgpu-infonce.js';
import { webGpuSubgroupSizes, withSubgroupBuiltins } from '../src/engine/webgpu-subgroups.js';
import { infoNce, infoNceLoss, l2Normalize } from '../src/ssl/loss.js';
import { Rng } from '../src/core/rng.js';
import { skipOrFail } from './helpers/tools.js';

interface Case {
  name: string;
  batch: number;
  negatives: number;
  dim: number;
  temperature: number;
  pruneThreshold?: number;
  /** Queue rows drawn from this many distinct rows (ties in the percentile and the pruner). */
  distinctRows?: number;
}

const CASES: Case[] = [
  { name: 'cpu-preset shape, pruner firing', batch: 32, negatives: 2048, dim: 128, temperature: 0.2, pruneThreshold: 0.25 },
  { name: '300 rows, 1000 negatives, 20 dims, no pruner', batch: 300, negatives: 1000, dim: 20, temperature: 0.07 },
  { name: '5 rows, 300 dims, tied negatives', batch: 5, negatives: 777, dim: 300, temperature: 0.5, pruneThreshold: 0.05, distinctRows: 3 },
  { name: 'every negative pruned', batch: 7, negatives: 64, dim: 16, temperature: 0.2, pruneThreshold: -2 },
];

function unitRows(rows: number, dim: number, rng: Rng, distinct = rows): number[][] {
  const base = Array.from({ length: distinct }, () => Array.from({ length: dim }, () => rng.uniform(-1, 1)));
  return Array.from({ length: rows }, (_, i) => base[i % distinct]!);
}

interface Outcome {
  values: number[];
  grads: Float32Array[];
}

type Variant = 'subgroups' | 'workgroup memory';

/** The shader keys of the programs the webgpu backend dispatches from now until stop(), in order. */
function recordPrograms(): { keys: string[]; stop(): void } {
  const backend = tf.backend() as unknown as { recordAndSubmit: (program: { shaderKey: string }, ...a: unknown[]) => unknown };
  const record = backend.recordAndSubmit;
  const keys: string[] = [];
  backend.recordAndSubmit = function (this: unknown, program, ...a) {
    keys.push(program.shaderKey);
    return record.call(this, program, ...a);
  };
  return { keys, stop: () => (backend.recordAndSubmit = record) };
}

/** Runs `fn` with the InfoNCE programs of `variant`, and returns the shader keys of the programs that ran. */
async function withVariant<T>(variant: Variant, fn: () => Promise<T>): Promise<{ result: T; keys: Set<string> }> {
  const recording = recordPrograms();
  const saved = process.env['EDEN_WEBGPU_SUBGROUPS'];
  if (variant === 'workgroup memory') process.env['EDEN_WEBGPU_SUBGROUPS'] = '0';
  try {
    return { result: await fn(), keys: new Set(recording.keys) };
  } finally {
    if (saved === undefined) delete process.env['EDEN_WEBGPU_SUBGROUPS'];
    else process.env['EDEN_WEBGPU_SUBGROUPS'] = saved;
    recording.stop();
  }
}

/** Loss, diagnostics and the gradients with respect to q, k and the queue on `backend`. */
async function run(backend: 'cpu' | 'webgpu', c: Case): Promise<Outcome> {
  await useBackend(backend);
  const rng = new Rng(c.batch * 7 + c.negatives);
  const q = tf.variable(tf.tensor2d(unitRows(c.batch, c.dim, rng)), true, `q${backend}`);
  const k = tf.variable(tf.tensor2d(unitRows(c.batch, c.dim, rng)), true, `k${backend}`);
  const queue = tf.variable(tf.tensor2d(unitRows(c.negatives, c.dim, rng, c.distinctRows)), true, `queue${backend}`);
  let diagnostics: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const r = infoNceLoss(l2Normalize(q as tf.Tensor2D), l2Normalize(k as tf.Tensor2D), l2Normalize(queue as tf.Tensor2D), c);
    diagnostics = tf.keep(tf.concat([tf.reshape(r.loss, [1]), r.diagnostics]));
    return r.loss;
  }, [q, k, queue]);
  const out = { values: Array.from(await diagnostics!.data()), grads: await Promise.all([q, k, queue].map(async (v) => (await grads[v.name]!.data()) as Float32Array)) };
  tf.dispose([value, diagnostics!, q, k, queue, ...Object.values(grads)]);
  return out;
}

describe('fused InfoNCE on webgpu (lavapipe in CI)', () => {
  let skip: string | undefined;
  let adapterSubgroups = false;
  before(async () => {
    const probe = await probeWebGpu();
    if ('reason' in probe) skip = probe.reason;
    else {
      const { create } = (await import('webgpu')) as unknown as { create(o: string[]): { requestAdapter(): Promise<{ features: Set<string> } | null> } };
      // EDEN_WEBGPU_SUBGROUPS=0 in the environment: the device is created without them.
      adapterSubgroups = process.env['EDEN_WEBGPU_SUBGROUPS'] !== '0' && ((await create([]).requestAdapter())?.features.has('subgroups') ?? false);
    }
  });

  for (const variant of ['subgroups', 'workgroup memory'] as const) for (const c of CASES) {
    it(`equals the tensor ops on cpu (${variant}): ${c.name}`, async (t) => {
      if (skip) return skipOrFail(t, 'webgpu', skip);
      if (variant === 'subgroups' && !adapterSubgroups) return t.skip('no subgroups: the adapter offers none, or EDEN_WEBGPU_SUBGROUPS=0');
      const ref = await run('cpu', c);
      await useBackend('webgpu');
      const { result: got, keys } = await withVariant(variant, () => run('webgpu', c));
      assert.ok(webGpuInfoNceAvailable(), 'the fused kernels are registered on webgpu');
      // The device got subgroups, and the variant asked for is the one that ran.
      if (variant === 'subgroups') assert.ok(webGpuSubgroupSizes(), 'the adapter offers subgroups, the device has them');
      // TF.js appends the shapes to a program's key: `eden_infonce_rows_sg_256,...` with subgroups.
      for (const p of ['rows', 'loss', 'diagnostics']) {
        const ran = [...keys].filter((k) => k.startsWith(`eden_infonce_${p}_`)).map((k) => k.startsWith(`eden_infonce_${p}_sg_`));
        assert.deepEqual(ran, [variant === 'subgroups'], `${p}: ${[...keys].join(' ')}`);
      }
      const names = ['loss', 'prunedFraction', 'positive', 'negativeMean', 'negativeP999'];
      console.log(`${c.name} (${variant}): ${names.map((n, i) => `${n} ${got.values[i]!.toPrecision(7)} (cpu ${ref.values[i]!.toPrecision(7)})`).join(', ')}`);
      // Loss and cosine means: relative 1e-5 (sums in another order); the pruned count is exact
      // (the fraction is rounded differently: f32 division vs mean); the percentile is one of lneg's values, which the two matmuls round alike
      // to ~1e-7.
      assert.ok(Math.abs(got.values[0]! - ref.values[0]!) <= 1e-5 * Math.max(1, Math.abs(ref.values[0]!)), `loss ${got.values[0]} vs ${ref.values[0]}`);
      const count = (fraction: number): number => Math.round(fraction * c.batch * c.negatives);
      assert.equal(count(got.values[1]!), count(ref.values[1]!), 'pruned count');
      assert.ok(Math.abs(got.values[1]! - ref.values[1]!) < 1e-7, `pruned fraction ${got.values[1]} vs ${ref.values[1]}`);
      for (const i of [2, 3]) assert.ok(Math.abs(got.values[i]! - ref.values[i]!) < 1e-6, `${names[i]} ${got.values[i]} vs ${ref.values[i]}`);
      assert.ok(Math.abs(got.values[4]! - ref.values[4]!) < 1e-6, `p999 ${got.values[4]} vs ${ref.values[4]}`);
      if (c.pruneThreshold === -2) assert.equal(got.values[1], 1);
      for (const [g, name] of [[0, 'q'], [1, 'k'], [2, 'queue']] as const) {
        const scale = ref.grads[g]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        let worst = 0;
        got.grads[g]!.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref.grads[g]![i]!))));
        // Every negative pruned: the loss is 0 and so is every gradient, on both.
        assert.ok(worst <= 1e-5 * Math.max(scale, 1e-3), `d${name}: max |diff| ${worst}, max |ref| ${scale}`);
      }
    });
  }

  it('refuses to rewrite a shader whose entry point it does not know, with a message that says what to do', () => {
    assert.throws(() => withSubgroupBuiltins('@compute @workgroup_size(1) fn main() {}'), /TF\.js's WGSL entry point .* EDEN_WEBGPU_SUBGROUPS=0/);
    const code = withSubgroupBuiltins('fn _start(@builtin(local_invocation_id) LocalId : vec3<u32>) {\n localId = LocalId;\n main(); }');
    assert.ok(code.startsWith('enable subgroups;'), code);
    assert.match(code, /fn _start\(@builtin\(subgroup_invocation_id\) EdenSgLane : u32, .*@builtin\(num_subgroups\) EdenNumSg : u32, @builtin\(local_invocation_id\)/);
    assert.match(code, /localId = LocalId; edenSgLane = EdenSgLane; edenSgSize = EdenSgSize; edenSgId = EdenSgId; edenNumSg = EdenNumSg;/);
  });

  it('names the adapter and what runs on it in the CLI\'s engine line (subgroups included)', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await useBackend('webgpu');
    const sizes = webGpuSubgroupSizes();
    const line = describeWebGpuEngine();
    assert.match(line, /^webgpu on \S.* \(fused kernels, step replay, implicit-GEMM convolutions \(measured routing\), /, line);
    assert.ok(line.endsWith(adapterSubgroups ? `subgroups of ${sizes!.min === sizes!.max ? sizes!.min : `${sizes!.min}-${sizes!.max}`})` : 'no subgroups)'), line);
    process.env['EDEN_WEBGPU_SUBGROUPS'] = '0';
    process.env['EDEN_WEBGPU_CONV'] = '0';
    try {
      assert.match(describeWebGpuEngine(), /TF\.js's convolutions, no subgroups\)$/);
      process.env['EDEN_WEBGPU_CONV'] = 'tune';
      assert.match(describeWebGpuEngine(), /, convolutions tuned per layer on this device, no subgroups\)$/);
      // A misspelt switch is refused, not ignored.
      process.env['EDEN_WEBGPU_CONV'] = 'tuned';
      assert.throws(() => describeWebGpuEngine(), /EDEN_WEBGPU_CONV='tuned' is not one of 0, 1, all, tune \(unset: the default\)/);
      assert.throws(() => checkWebGpuSwitches({ EDEN_WEBGPU_REPLAY: 'off' }), /EDEN_WEBGPU_REPLAY='off' is not one of 0, 1/);
      assert.doesNotThrow(() => checkWebGpuSwitches({ EDEN_WEBGPU_REPLAY: '0', EDEN_WEBGPU_CONV: '', OTHER: 'x' }));
    } finally {
      delete process.env['EDEN_WEBGPU_SUBGROUPS'];
      delete process.env['EDEN_WEBGPU_CONV'];
    }
  });

  it('returns the same results through infoNce (the public scalars)', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await useBackend('webgpu');
    const rng = new Rng(5);
    const [q, k, queue] = [unitRows(6, 8, rng), unitRows(6, 8, rng), unitRows(50, 8, rng)].map((rows) => l2Normalize(tf.tensor2d(rows))) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    const r = infoNce(q, k, queue, { temperature: 0.2, pruneThreshold: 0.5 });
    const l = infoNceLoss(q, k, queue, { temperature: 0.2, pruneThreshold: 0.5 });
    const scalars = await Promise.all([r.loss, r.prunedFraction, r.positive, r.negativeMean, r.negativeP999].map(async (s) => (await s.data())[0]!));
    assert.deepEqual(scalars, [(await l.loss.data())[0]!, ...(await l.diagnostics.data())]);
    tf.dispose([q, k, queue, l.loss, l.diagnostics, ...Object.values(r)]);
  });

  it('gives a NaN loss when an input is not finite (so a training step skips its update)', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await useBackend('webgpu');
    const rng = new Rng(9);
    const rows = unitRows(4, 8, rng);
    rows[2]![3] = NaN;
    const q = tf.tensor2d(rows);
    const [k, queue] = [unitRows(4, 8, rng), unitRows(40, 8, rng)].map((r) => l2Normalize(tf.tensor2d(r))) as [tf.Tensor2D, tf.Tensor2D];
    const l = infoNceLoss(q, k, queue, { temperature: 0.2, pruneThreshold: 0.8 });
    assert.ok(Number.isNaN((await l.loss.data())[0]), 'loss is NaN');
    tf.dispose([q, k, queue, l.loss, l.diagnostics]);
  });

  it('issues a handful of dispatches (the tensor ops: over a hundred) and leaks no tensor', async (t) => {
    if (skip) return skipOrFail(t, 'webgpu', skip);
    await useBackend('webgpu');
    const rng = new Rng(3);
    const q = tf.variable(tf.tensor2d(unitRows(16, 128, rng)), true, 'qcount');
    const [k, queue] = [unitRows(16, 128, rng), unitRows(1024, 128, rng)].map((r) => l2Normalize(tf.tensor2d(r))) as [tf.Tensor2D, tf.Tensor2D];
    const recording = recordPrograms();
    const step = async (): Promise<number> => {
      recording.keys.length = 0;
      const { value, grads } = tf.variableGrads(() => infoNceLoss(q as tf.Tensor2D, k, queue, { temperature: 0.2, pruneThreshold: 0.8 }).loss, [q]);
      await grads[q.name]!.data();
      tf.dispose([value, ...Object.values(grads)]);
      return recording.keys.length;
    };
    try {
      await step();
      const before = tf.memory().numTensors;
      const fused = await step();
      await step();
      assert.equal(tf.memory().numTensors, before, 'tensor count flat over steps');
      process.env['EDEN_WEBGPU_FUSED'] = '0';
      const ops = await step();
      console.log(`InfoNCE loss + gradient: ${fused} dispatches fused, ${ops} as tensor ops`);
      assert.ok(fused <= 10, `fused: ${fused} dispatches`);
      assert.ok(ops > 5 * fused, `tensor ops: ${ops} dispatches`);
    } finally {
      delete process.env['EDEN_WEBGPU_FUSED'];
      recording.stop();
      tf.dispose([q, k, queue]);
    }
  });
});
