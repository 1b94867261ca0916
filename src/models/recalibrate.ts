/**
 * Re-estimate a backbone's batch-norm running statistics on new inputs, before it is used frozen.
 *
 * A randomly initialised network's running statistics are 0 / 1, and a pretrained one's describe
 * its pretraining views, not the images it is now probed on; either way a frozen probe would
 * measure the statistics rather than the weights. Each batch is passed in training mode with a
 * running-average momentum of 1 / (i + 1), so that after the last batch the running mean and
 * variance are exactly the average of the per-batch statistics (PyTorch's `momentum=None`).
 * The weights are not touched. Every model of an evaluation gets the same treatment.
 */
import * as tf from '@tensorflow/tfjs';
import type { ResNet } from './resnet.js';

export function recalibrateBatchNorm(backbone: ResNet, batches: Iterable<tf.Tensor4D>): number {
  let i = 0;
  for (const x of batches) {
    const momentum = 1 / (i + 1);
    tf.tidy(() => {
      backbone.forwardFeatures(x, { training: true, bnMomentum: momentum });
    });
    i++;
  }
  return i;
}
