/**
 * A contrastive encoder: backbone f (ResNet) plus projection head h (METHOD.md §3):
 *   headNorm 'none':      Linear(D, D) -> ReLU -> Linear(D, 128)                (the paper, MoCo v2)
 *   headNorm 'batchnorm': Linear(D, D) -> BN -> ReLU -> Linear(D, 128) -> BN without affine
 *                         (as MoCo v3 / SimCLR v2; PyTorch names fc.0, fc.1, fc.3, fc.4).
 * Why the second exists (docs/PRETRAINING.md, measured in PyTorch and Eden alike): pooled ReLU
 * features of radiographs share a large common component (cosine ~0.86 between different images at
 * initialisation); the plain head passes it on, and within 40 steps every projection points the
 * same way (cosine 0.998 between different images), so InfoNCE has nothing to separate and the loss
 * drifts to log(K + 1). Batch-normalising the projection removes that common component.
 * Student and teacher are two Encoders of the same architecture.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../core/rng.js';
import { createBackbone, type ResNet } from './resnet.js';
import { batchNorm, defineBatchNorm, defineLinear, linear, ParameterStore, type ForwardContext } from './layers.js';

export type HeadNorm = 'none' | 'batchnorm';

export interface EncoderArgs {
  backbone: string;
  width: number;
  projectionDim: number;
  seed: number;
  /** Normalisation in the projection head (default 'none', the paper's head). */
  headNorm?: HeadNorm;
}

export class Encoder {
  readonly backbone: ResNet;
  readonly head = new ParameterStore();
  readonly args: EncoderArgs;

  constructor(args: EncoderArgs) {
    this.args = args;
    this.backbone = createBackbone(args.backbone, { width: args.width, seed: args.seed });
    const d = this.backbone.featureDim;
    const rng = new Rng(args.seed ^ 0x5eed);
    defineLinear(this.head, 'fc.0', d, d, rng);
    if (this.headNorm === 'batchnorm') {
      defineBatchNorm(this.head, 'fc.1', d);
      defineLinear(this.head, 'fc.3', d, args.projectionDim, rng);
      // No affine parameters: the scale and shift are fixed buffers (1, 0), not learned.
      this.head.add('fc.4.weight', tf.ones([args.projectionDim]), false);
      this.head.add('fc.4.bias', tf.zeros([args.projectionDim]), false);
      this.head.add('fc.4.running_mean', tf.zeros([args.projectionDim]), false);
      this.head.add('fc.4.running_var', tf.ones([args.projectionDim]), false);
    } else {
      defineLinear(this.head, 'fc.2', d, args.projectionDim, rng);
    }
  }

  get headNorm(): HeadNorm {
    return this.args.headNorm ?? 'none';
  }

  /** D, the size of Eve (the pooled backbone feature). */
  get featureDim(): number {
    return this.backbone.featureDim;
  }

  /** Projection z = h(f(x)): [B, projectionDim], not normalised. */
  project(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    const { pooled } = this.backbone.forward(x, ctx);
    return this.projectFeatures(pooled, ctx);
  }

  projectFeatures(pooled: tf.Tensor2D, ctx: ForwardContext = { training: false }): tf.Tensor2D {
    if (this.headNorm === 'none') return linear(this.head, 'fc.2', tf.relu(linear(this.head, 'fc.0', pooled)));
    // Batch norm over [B, D] as over [B, 1, 1, D].
    const bn = (name: string, z: tf.Tensor2D): tf.Tensor2D => tf.reshape(batchNorm(this.head, name, tf.reshape(z, [z.shape[0], 1, 1, z.shape[1]]) as tf.Tensor4D, ctx), z.shape) as tf.Tensor2D;
    return bn('fc.4', linear(this.head, 'fc.3', tf.relu(bn('fc.1', linear(this.head, 'fc.0', pooled)))));
  }

  /** Every variable, named `backbone.<name>` / `head.<name>` (parameters and BN buffers). */
  namedVariables(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [n, v] of this.backbone.store.variables) out.set(`backbone.${n}`, v);
    for (const [n, v] of this.head.variables) out.set(`head.${n}`, v);
    return out;
  }

  /** Trainable variables by name (BN running statistics excluded). */
  trainableVariables(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [n, v] of this.namedVariables()) if (v.trainable) out.set(n, v);
    return out;
  }

  dispose(): void {
    this.backbone.dispose();
    this.head.dispose();
  }
}
