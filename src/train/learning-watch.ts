/**
 * Is the run learning? Per-epoch checks of the step diagnostics (adam-step.ts), turned into
 * warnings that carry the numbers. A contrastive run that does not learn drifts towards
 * log(K + 1) (the loss of logits uniform over the queue) while positive and negative cosines meet
 * and the keys gather in one direction; a run that learns shows a loss clearly below log(K + 1),
 * positives well above negatives, spread keys and a held-out retrieval well above chance.
 * Each kind of warning is given once per stage, and not before a quarter of the stage has run.
 */
import type { StepMetrics } from './adam-step.js';

type Diagnostics = Omit<StepMetrics, 'loss'>;

/** Means of the step diagnostics over an epoch. */
export class RunningMeans {
  private sums: Record<keyof Diagnostics, number> = { prunedFraction: 0, positive: 0, negativeMean: 0, negativeP999: 0, keySpread: 0 };
  private n = 0;

  add(m: Diagnostics): void {
    for (const k of Object.keys(this.sums) as (keyof Diagnostics)[]) this.sums[k] += m[k];
    this.n++;
  }

  means(): Diagnostics | undefined {
    if (!this.n) return undefined;
    return Object.fromEntries(Object.entries(this.sums).map(([k, v]) => [k, v / this.n])) as unknown as Diagnostics;
  }
}

export interface EpochSummary extends Diagnostics {
  stage: number;
  level: number;
  epoch: number;
  epochs: number;
  queueSize: number;
  loss: number;
  valRetrieval: number | null;
  retrievalChance: number | null;
}

/** Thresholds, exported so that the docs and tests name the same numbers. */
export const WATCH = {
  /** Loss within this fraction of log(K + 1) counts as "not fallen". */
  lossNearUniform: 0.05,
  /** Positive minus mean negative cosine below this: positives not separated. */
  minGap: 0.05,
  /** keySpread below this: keys collapsed to one direction (uniform keys give ~1). */
  minKeySpread: 0.15,
  /** Held-out retrieval below this multiple of chance: no learning signal. */
  minRetrievalOverChance: 2,
} as const;

export class LearningWatch {
  private readonly given = new Set<string>();

  /** Warnings for the epoch just finished (empty when all is well or already said this stage). */
  check(e: EpochSummary): string[] {
    if (e.epoch + 1 < Math.max(2, Math.ceil(e.epochs / 4))) return [];
    const where = `stage ${e.stage + 1} (n=${e.level}), epoch ${e.epoch + 1}`;
    const uniform = Math.log(e.queueSize + 1);
    const out: string[] = [];
    const once = (kind: string, message: string): void => {
      const key = `${e.stage}:${kind}`;
      if (this.given.has(key)) return;
      this.given.add(key);
      out.push(message);
    };
    const gap = e.positive - e.negativeMean;
    if (e.loss > (1 - WATCH.lossNearUniform) * uniform || gap < WATCH.minGap) {
      once(
        'loss',
        `${where}: not learning visibly: training loss ${e.loss.toFixed(3)} against log(K+1) = ${uniform.toFixed(3)} (logits uniform over the queue); mean positive cosine ${e.positive.toFixed(3)}, mean negative ${e.negativeMean.toFixed(3)}. ` +
          'At small scale a queue that holds more than a fraction of an epoch of keys, or a high teacher momentum, can keep a run there; see docs/PRETRAINING.md.',
      );
    }
    if (e.keySpread < WATCH.minKeySpread) {
      once('collapse', `${where}: the keys are collapsing: key spread ${e.keySpread.toFixed(3)} (uniform keys give ~1, identical keys 0); mean positive cosine ${e.positive.toFixed(3)}, mean negative ${e.negativeMean.toFixed(3)}.`);
    }
    if (e.valRetrieval !== null && e.retrievalChance !== null && e.valRetrieval < WATCH.minRetrievalOverChance * e.retrievalChance) {
      once('retrieval', `${where}: no held-out learning signal: a validation view finds its own key among the batch's in ${(100 * e.valRetrieval).toFixed(1)}% of cases (chance ${(100 * e.retrievalChance).toFixed(1)}%).`);
    }
    return out;
  }
}
