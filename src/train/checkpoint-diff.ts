/** Tensor-by-tensor comparison of two checkpoints (or the `last` checkpoints of two runs). */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadTensorFile } from '../engine/tensor-file.js';
import { checkpointPaths } from './pretrain.js';
import { resolveModelSpec } from '../models/builtin.js';

export interface TensorDiff {
  name: string;
  maxAbsDiff: number;
}

export interface CheckpointDiff {
  a: string;
  b: string;
  tensors: TensorDiff[];
  onlyInA: string[];
  onlyInB: string[];
  shapeMismatch: string[];
  maxAbsDiff: number;
}

/** A run directory means its checkpoints/last.safetensors; `builtin` the pretrained Eve shipped with Eden. */
export async function resolveCheckpointPath(spec: string): Promise<string> {
  const p = resolveModelSpec(spec);
  const stat = await fs.stat(p).catch(() => undefined);
  return stat?.isDirectory() ? checkpointPaths(p).last : p;
}

export async function diffCheckpoints(aPath: string, bPath: string): Promise<CheckpointDiff> {
  const [a, b] = [await resolveCheckpointPath(aPath), await resolveCheckpointPath(bPath)];
  const [ta, tb] = [await loadTensorFile(a), await loadTensorFile(b)];
  const out: CheckpointDiff = { a, b, tensors: [], onlyInA: [], onlyInB: [], shapeMismatch: [], maxAbsDiff: 0 };
  for (const [name, ra] of ta.tensors) {
    const rb = tb.tensors.get(name);
    if (!rb) {
      out.onlyInA.push(name);
      continue;
    }
    if (ra.shape.join(',') !== rb.shape.join(',')) {
      out.shapeMismatch.push(`${name}: [${ra.shape}] vs [${rb.shape}]`);
      out.maxAbsDiff = Infinity;
      continue;
    }
    let m = 0;
    for (let i = 0; i < ra.data.length; i++) {
      const d = Math.abs(ra.data[i]! - rb.data[i]!);
      if (d > m || Number.isNaN(d)) m = Number.isNaN(d) ? Infinity : d;
    }
    out.tensors.push({ name, maxAbsDiff: m });
    out.maxAbsDiff = Math.max(out.maxAbsDiff, m);
  }
  for (const name of tb.tensors.keys()) if (!ta.tensors.has(name)) out.onlyInB.push(name);
  if (out.onlyInA.length || out.onlyInB.length) out.maxAbsDiff = Infinity;
  return out;
}

export function formatCheckpointDiff(d: CheckpointDiff, top = 10): string {
  const lines = [`a: ${path.normalize(d.a)}`, `b: ${path.normalize(d.b)}`, `tensors compared: ${d.tensors.length}`];
  const differing = d.tensors.filter((t) => t.maxAbsDiff > 0).sort((x, y) => y.maxAbsDiff - x.maxAbsDiff);
  lines.push(`tensors that differ: ${differing.length}`);
  for (const t of differing.slice(0, top)) lines.push(`  ${t.name}: ${t.maxAbsDiff.toExponential(3)}`);
  if (differing.length > top) lines.push(`  ... and ${differing.length - top} more`);
  for (const n of d.onlyInA) lines.push(`only in a: ${n}`);
  for (const n of d.onlyInB) lines.push(`only in b: ${n}`);
  for (const n of d.shapeMismatch) lines.push(`shape differs: ${n}`);
  lines.push(`max_abs_diff=${d.maxAbsDiff}`);
  return lines.join('\n');
}
