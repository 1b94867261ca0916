/**
 * What the classification benches share: the evaluation's settings for a preset and size, and the
 * labelled data loaded as `eden evaluate --task classify` loads it (same split, same caps).
 */
import { useBackend } from '../../src/engine/backend.js';
import { resolveEvaluateConfig } from '../../src/config/evaluate.js';
import { loadClassificationData } from '../../src/eval/classify.js';

export async function evaluationClassificationData(source: string, o: { preset: string; size: number; labelColumn?: string }) {
  await useBackend('wasm');
  const config = resolveEvaluateConfig(o.preset, { size: o.size });
  const cfg = config.classification;
  const data = await loadClassificationData(source, cfg.size, { labelColumn: o.labelColumn, seed: config.seed, maxTrain: cfg.maxTrain, maxTest: cfg.maxTest });
  return { config, cfg, data };
}
