/**
 * Training-dynamics parity, Eden's side: run `eden pretrain` for the first N steps and export what
 * an independent implementation needs to train on exactly the same batches from exactly the same
 * state (bench/parity/adam_reference.py reads it):
 *
 *   OUT/meta.json           resolved config, image counts, steps per epoch, N
 *   OUT/init.safetensors    student.* and teacher.* (PyTorch names and layouts) and queue [K, C]
 *   OUT/views/NNNNNN.f32    per step: queries then keys, float32 [B, S, S] each (NHWC, 1 channel)
 *   OUT/val/sS-NNN.f32      per stage: the fixed validation views, queries then keys
 *   OUT/run/                Eden's own run (metrics.jsonl has Eden's per-step diagnostics)
 *
 *   node --import tsx bench/parity/dump.ts --steps 300 --out /tmp/parity [--preset cpu] [--set k=v]... DIR...
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseAssignment, resolvePretrainConfig, type PretrainConfig } from '../../src/config/pretrain.js';
import { encodeTensorFile, type TensorRecord } from '../../src/engine/tensor-file.js';
import { torchStateDict } from '../../src/interop/export.js';
import { pretrain } from '../../src/train/pretrain.js';
import type { TrainingState } from '../../src/train/checkpoint.js';

export interface DumpMeta {
  config: PretrainConfig;
  trainImages: number;
  valImages: number;
  stepsPerEpoch: number;
  steps: number;
}

async function writeInit(file: string, state: TrainingState): Promise<void> {
  const tensors = new Map<string, TensorRecord>();
  for (const [role, encoder] of [['student', state.student], ['teacher', state.teacher]] as const) {
    for (const [name, t] of await torchStateDict(encoder, true)) tensors.set(`${role}.${name}`, t);
  }
  tensors.set('queue', { dtype: 'float32', shape: state.queue.keys.shape, data: (await state.queue.keys.data()) as Float32Array });
  await fs.writeFile(file, encodeTensorFile(tensors, { format: 'eden-parity-1', queue_pointer: String(state.queue.pointer) }));
}

function concat(a: Float32Array, b: Float32Array): Uint8Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return new Uint8Array(out.buffer);
}

/** Run Eden for `steps` steps with `config` and export batches, state and metrics to `out`. */
export async function dumpParityRun(config: PretrainConfig, steps: number, out: string, log: (line: string) => void = () => undefined): Promise<DumpMeta> {
  await fs.rm(out, { recursive: true, force: true });
  await fs.mkdir(path.join(out, 'views'), { recursive: true });
  await fs.mkdir(path.join(out, 'val'), { recursive: true });
  const controller = new AbortController();
  let meta: DumpMeta | undefined;
  const valSeen = new Map<number, number>();
  await pretrain(config, {
    signal: controller.signal,
    hooks: {
      onStart: (i) => {
        const batches = Math.floor(i.trainImages / config.optim.batchSize);
        const stepsPerEpoch = config.run.maxStepsPerEpoch > 0 ? Math.min(batches, config.run.maxStepsPerEpoch) : batches;
        meta = { config, trainImages: i.trainImages, valImages: i.valImages, stepsPerEpoch, steps: Math.min(steps, i.totalSteps) };
        log(`${i.trainImages} training images, ${stepsPerEpoch} steps per epoch; exporting ${meta.steps} steps to ${out}`);
      },
      onBatch: async (e) => {
        if (e.position.globalStep === 0) await writeInit(path.join(out, 'init.safetensors'), e.state);
        await fs.writeFile(path.join(out, 'views', `${String(e.position.globalStep).padStart(6, '0')}.f32`), concat(e.queries, e.keys));
      },
      onValidationBatch: async (e) => {
        // The validation views are the same every epoch of a stage: keep the first epoch's.
        const n = valSeen.get(e.stage) ?? 0;
        const file = path.join(out, 'val', `s${e.stage}-${String(n).padStart(3, '0')}.f32`);
        try {
          await fs.access(file);
        } catch {
          await fs.writeFile(file, concat(e.queries, e.keys));
        }
        valSeen.set(e.stage, n + 1);
      },
      onEpoch: (e) => {
        valSeen.clear();
        log(`epoch ${e.epoch + 1} of stage ${e.stage + 1}: train loss ${e.trainLoss.toFixed(4)}, validation ${e.valLoss?.toFixed(4)}`);
      },
      onStep: (e) => {
        if (e.globalStep >= steps) controller.abort();
      },
    },
  });
  await fs.writeFile(path.join(out, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  return meta!;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { steps: { type: 'string', default: '300' }, out: { type: 'string', default: '/tmp/eden-parity' }, preset: { type: 'string', default: 'cpu' }, set: { type: 'string', multiple: true, default: [] } } });
  const out = path.resolve(values.out!);
  const config = resolvePretrainConfig(values.preset!, { data: { paths: positionals }, run: { dir: path.join(out, 'run') } }, ...values.set!.map(parseAssignment));
  await dumpParityRun(config, Number(values.steps), out, (l) => process.stderr.write(`${l}\n`));
}
