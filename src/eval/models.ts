/** The encoders an evaluation compares: checkpoints, and baselines built by Eden. */
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { loadEncoder } from '../models/encoder-file.js';
import { createBackbone, type ResNet } from '../models/resnet.js';
import { resolveCheckpointPath } from '../train/checkpoint-diff.js';

export interface ModelSource {
  /** Label in tables and plots. */
  name: string;
  /** A fresh backbone each call (fine-tuning changes it). */
  create(): Promise<ResNet>;
  description: string;
}

/** A checkpoint file or run directory (its `best`, else `last`, checkpoint). */
export async function checkpointSource(spec: string): Promise<ModelSource> {
  let file = await resolveCheckpointPath(spec);
  if (file !== spec && spec !== 'builtin') {
    const best = path.join(spec, 'checkpoints', 'best.safetensors');
    const { existsSync } = await import('node:fs');
    if (existsSync(best)) file = best;
  }
  const probe = await loadEncoder(file);
  const args = probe.meta.args;
  probe.encoder.dispose();
  const name = spec === 'builtin' ? 'eve-builtin' : path.basename(spec.replace(/[\\/]+$/, '')).replace(/\.safetensors$/, '');
  // The file's size and time in the description: a resumed evaluation reuses a model's runs only if it is the same file.
  const { statSync } = await import('node:fs');
  const st = statSync(file);
  return {
    name,
    description: `${file} (${args.backbone} width ${args.width}; ${(st.size / 2 ** 20).toFixed(1)} MiB, ${st.mtime.toISOString()})`,
    async create() {
      const { encoder } = await loadEncoder(file);
      encoder.head.dispose();
      return encoder.backbone;
    },
  };
}

/** Random initialisation with the architecture of `like` (He init, as in training from scratch). */
export function randomSource(backbone: string, width: number, seed: number): ModelSource {
  return { name: 'random', description: `${backbone} width ${width}, random initialisation`, create: async () => createBackbone(backbone, { width, seed }) };
}

export async function resolveSources(checkpoints: string[], baselines: string[], arch: { backbone?: string; width?: number }): Promise<ModelSource[]> {
  const sources: ModelSource[] = [];
  for (const c of checkpoints) sources.push(await checkpointSource(c));
  const names = new Set<string>();
  for (const s of sources) {
    let n = s.name;
    for (let i = 2; names.has(n); i++) n = `${s.name}-${i}`;
    s.name = n;
    names.add(n);
  }
  for (const b of baselines) {
    if (b !== 'random') throw new EdenError('config', `unknown baseline '${b}': Eden builds 'random'; other baselines (MoCo-v2, ablations) are checkpoints trained with eden pretrain (e.g. --levels 0 --no-prune)`);
    let backbone = arch.backbone;
    let width = arch.width;
    if (!backbone && checkpoints.length) {
      const { encoder } = await loadEncoder(await resolveCheckpointPath(checkpoints[0]!));
      backbone = encoder.args.backbone;
      width = encoder.args.width;
      encoder.dispose();
    }
    sources.push(randomSource(backbone ?? 'resnet18', width ?? 64, 1));
  }
  if (sources.length === 0) throw new EdenError('config', 'nothing to evaluate: give --checkpoint and/or --baseline random');
  return sources;
}
