/**
 * Gradient accumulation: one optimiser step's gradients computed over passes of at most `micro`
 * examples, so that a batch larger than memory allows still takes one step. Each pass's loss is
 * weighted by its share of the batch; for a loss that is a mean over examples the result equals the
 * whole batch's gradient (up to float rounding). Terms that are not means over examples (a soft Dice
 * over the batch, batch-norm statistics in training mode) become those of each pass, as with data
 * parallelism over several devices.
 */
import * as tf from '@tensorflow/tfjs';

interface EngineTape {
  state: { gradientDepth: number; activeTape: { saved?: tf.Tensor[] }[] | null };
}

/**
 * After a gradient computation threw (e.g. the wasm heap ran out mid-pass), free what TF.js's tape
 * still holds: the tensors each op saved for its backward pass are kept outside every tidy scope
 * and are only released by a backward pass that completes. Without this, one failed pass leaks a
 * whole forward pass's activations and every retry fails too.
 */
function releaseAbandonedTape(): void {
  const engine = tf.engine() as unknown as EngineTape;
  if (engine.state.gradientDepth !== 0 || !engine.state.activeTape) return;
  for (const node of engine.state.activeTape) for (const t of node.saved ?? []) t.dispose();
  engine.state.activeTape = null;
}

export function accumulatedGradients<X extends tf.Tensor, Y extends tf.Tensor>(
  lossOf: (x: X, y: Y) => tf.Scalar,
  x: X,
  y: Y,
  micro: number,
  vars: tf.Variable[],
): { loss: tf.Scalar; grads: tf.NamedTensorMap } {
  const batch = x.shape[0]!;
  try {
    // tidy frees every intermediate of a pass that throws; the result's tensors are kept.
    return tf.tidy(() => {
      if (micro >= batch) {
        const { value, grads } = tf.variableGrads(() => lossOf(x, y), vars);
        return { loss: value, grads };
      }
      let loss: tf.Scalar = tf.scalar(0);
      let sum: tf.NamedTensorMap = {};
      for (let start = 0; start < batch; start += micro) {
        const n = Math.min(micro, batch - start);
        const xs = tf.slice(x, [start], [n]) as X;
        const ys = tf.slice(y, [start], [n]) as Y;
        const { value, grads } = tf.variableGrads(() => tf.mul(lossOf(xs, ys), n / batch) as tf.Scalar, vars);
        // Free each pass's inputs and the previous partial sums now, not at the end of the tidy.
        const next = start === 0 ? grads : Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.add(sum[k]!, g)]));
        if (start > 0) tf.dispose([...Object.values(sum), ...Object.values(grads)]);
        sum = next;
        const total = tf.add(loss, value) as tf.Scalar;
        tf.dispose([loss, value, xs, ys]);
        loss = total;
      }
      return { loss, grads: sum };
    });
  } catch (err) {
    releaseAbandonedTape();
    throw err;
  }
}
