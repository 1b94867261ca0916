/**
 * A contrastive encoder: backbone f (ResNet) plus projection head h (METHOD.md §3):
 *   Linear(D, D) -> ReLU -> Linear(D, 128).
 * Student and teacher are two Encoders of the same architecture.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../core/rng.js';
import { createBackbone, type ResNet } from './resnet.js';
import { defineLinear, linear, ParameterStore, type ForwardContext } from './layers.js';

export interface EncoderArgs {
  backbone: string;
  width: number;
  projectionDim: number;
  seed: number;
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
    defineLinear(this.head, 'fc.2', d, args.projectionDim, rng);
  }

  /** D, the size of Eve (the pooled backbone feature). */
  get featureDim(): number {
    return this.backbone.featureDim;
  }

  /** Projection z = h(f(x)): [B, projectionDim], not normalised. */
  project(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    const { pooled } = this.backbone.forward(x, ctx);
    return this.projectFeatures(pooled);
  }

  projectFeatures(pooled: tf.Tensor2D): tf.Tensor2D {
    return linear(this.head, 'fc.2', tf.relu(linear(this.head, 'fc.0', pooled)));
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
