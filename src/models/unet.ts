/**
 * A U-Net on a ResNet encoder for segmentation (METHOD.md §6: few-shot transfer). The decoder
 * follows the common ResNet-U-Net design: from the stride-32 features, five blocks each upsample
 * x2 (bilinear, half-pixel centres), concatenate the encoder's skip features of that scale (stage
 * outputs at strides 16, 8, 4 and the stem at stride 2; none at full resolution) and apply two
 * 3x3 conv + batch norm + ReLU. A 1x1 conv gives one logit per structure.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../core/rng.js';
import { conv, convBatchNorm, defineBatchNorm, defineConv, ParameterStore, type ForwardContext } from './layers.js';
import type { EncoderFeatures, ResNet } from './resnet.js';

export interface UNetArgs {
  classes: number;
  /** Channels of the five decoder blocks, deepest first. */
  decoderChannels?: number[];
  seed?: number;
}

export class UNet {
  readonly decoder = new ParameterStore();
  readonly encoder: ResNet;
  readonly classes: number;
  private readonly channels: number[];

  constructor(encoder: ResNet, args: UNetArgs) {
    this.encoder = encoder;
    this.classes = args.classes;
    const { stem, stages } = encoder.stageChannels;
    // segmentation_models_pytorch's default decoder (256, 128, 64, 32, 16), narrowed for narrow
    // encoders (half of each skip's channels, at least 8) so that a CPU-sized encoder does not
    // carry a decoder many times its size. ResNet-18/50 at full width get the default exactly.
    const scaled = [stages[3]! / 2, stages[2]! / 2, stages[1]! / 2, stages[0]! / 2, stem / 4];
    this.channels = args.decoderChannels ?? [256, 128, 64, 32, 16].map((c, i) => Math.max(8, Math.min(c, scaled[i]!)));
    const rng = new Rng(args.seed ?? 0);
    // Skips for blocks 0..4: stage3 (/16), stage2 (/8), stage1 (/4), stem (/2), none (/1).
    const skips = [stages[2]!, stages[1]!, stages[0]!, stem, 0];
    let cin = stages[3]!;
    this.channels.forEach((c, i) => {
      defineConv(this.decoder, `block${i}.conv1`, 3, cin + skips[i]!, c, rng);
      defineBatchNorm(this.decoder, `block${i}.bn1`, c);
      defineConv(this.decoder, `block${i}.conv2`, 3, c, c, rng);
      defineBatchNorm(this.decoder, `block${i}.bn2`, c);
      cin = c;
    });
    defineConv(this.decoder, 'head', 1, cin, this.classes, rng);
    this.decoder.add('head.bias', tf.zeros([this.classes]));
  }

  /** Channels of the five decoder blocks, deepest first. */
  get decoderChannels(): number[] {
    return [...this.channels];
  }

  /** x [B, H, W, 1] (H, W multiples of 32) -> logits [B, H, W, classes]. */
  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    return this.decode(this.encoder.forwardFeatures(x, ctx), ctx);
  }

  /**
   * The decoder alone, on the encoder's multi-scale features. A frozen encoder's features can be
   * computed outside the gradient tape (in inference mode) and passed here.
   */
  decode(features: EncoderFeatures, ctx: ForwardContext): tf.Tensor4D {
    const { stem, stages } = features;
    const skips: (tf.Tensor4D | undefined)[] = [stages[2], stages[1], stages[0], stem, undefined];
    let h = stages[3]!;
    const d = this.decoder;
    for (let i = 0; i < this.channels.length; i++) {
      const [hh, ww] = [h.shape[1] * 2, h.shape[2] * 2];
      h = tf.image.resizeBilinear(h, [hh, ww], false, true);
      const skip = skips[i];
      if (skip) h = tf.concat([h, skip], 3);
      h = convBatchNorm(d, `block${i}.conv1`, `block${i}.bn1`, h, 1, 1, ctx, true);
      h = convBatchNorm(d, `block${i}.conv2`, `block${i}.bn2`, h, 1, 1, ctx, true);
    }
    return tf.add(conv(d, 'head', h, 1, 0), d.get('head.bias')) as tf.Tensor4D;
  }

  /** Trainable variables of encoder and decoder. */
  trainable(): tf.Variable[] {
    return [...this.encoder.store.trainable(), ...this.decoder.trainable()];
  }

  dispose(): void {
    this.decoder.dispose();
  }
}
