/**
 * ResNet backbones (He et al. 2016) for single-channel images, with a width multiplier for
 * CPU-sized runs. Layout and parameter names follow torchvision exactly (conv1 7x7/2, bn1, max
 * pool 3x3/2, layer1..layer4, downsample.0/.1), so PyTorch checkpoints map onto them by name.
 *
 *   x [B, H, W, 1] -> featureMap [B, H/32, W/32, D] -> pooled (Eve) [B, D]
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../core/rng.js';
import { configError } from '../core/errors.js';
import { convBatchNorm, defineBatchNorm, defineConv, maxPool3x3s2, ParameterStore, type ForwardContext } from './layers.js';

export interface ResNetArgs {
  /** Residual block kind and blocks per stage. */
  block: 'basic' | 'bottleneck';
  depths: [number, number, number, number];
  /** Channels of the stem and first stage (64 in torchvision). */
  width: number;
  inChannels?: number;
  seed?: number;
}

export interface BackboneOutput {
  /** [B, h, w, D]: dense Eve before pooling. */
  featureMap: tf.Tensor4D;
  /** [B, D]: Eve, the global-average-pooled feature. */
  pooled: tf.Tensor2D;
}

/** The stem after ReLU (stride 2) and each stage's output (strides 4, 8, 16, 32). */
export interface EncoderFeatures {
  stem: tf.Tensor4D;
  stages: tf.Tensor4D[];
}

export class ResNet {
  readonly store = new ParameterStore();
  readonly args: Required<ResNetArgs>;
  /** D, the size of the pooled feature. */
  readonly featureDim: number;
  private readonly blocks: { name: string; stride: number; downsample: boolean }[] = [];

  constructor(args: ResNetArgs) {
    this.args = { inChannels: 1, seed: 0, ...args };
    const { block, depths, width, inChannels } = this.args;
    if (!Number.isInteger(width) || width < 1) throw configError(`ResNet width must be a positive integer, got ${width}`);
    const rng = new Rng(this.args.seed);
    const expansion = block === 'basic' ? 1 : 4;
    defineConv(this.store, 'conv1', 7, inChannels, width, rng);
    defineBatchNorm(this.store, 'bn1', width);
    let cin = width;
    depths.forEach((n, stage) => {
      const c = width * 2 ** stage;
      for (let j = 0; j < n; j++) {
        const name = `layer${stage + 1}.${j}`;
        const stride = j === 0 && stage > 0 ? 2 : 1;
        const downsample = stride !== 1 || cin !== c * expansion;
        if (block === 'basic') {
          defineConv(this.store, `${name}.conv1`, 3, cin, c, rng);
          defineBatchNorm(this.store, `${name}.bn1`, c);
          defineConv(this.store, `${name}.conv2`, 3, c, c, rng);
          defineBatchNorm(this.store, `${name}.bn2`, c);
        } else {
          defineConv(this.store, `${name}.conv1`, 1, cin, c, rng);
          defineBatchNorm(this.store, `${name}.bn1`, c);
          defineConv(this.store, `${name}.conv2`, 3, c, c, rng);
          defineBatchNorm(this.store, `${name}.bn2`, c);
          defineConv(this.store, `${name}.conv3`, 1, c, c * 4, rng);
          defineBatchNorm(this.store, `${name}.bn3`, c * 4);
        }
        if (downsample) {
          defineConv(this.store, `${name}.downsample.0`, 1, cin, c * expansion, rng);
          defineBatchNorm(this.store, `${name}.downsample.1`, c * expansion);
        }
        this.blocks.push({ name, stride, downsample });
        cin = c * expansion;
      }
    });
    this.featureDim = cin;
  }

  /** x: [B, H, W, C] -> feature map and pooled Eve. */
  forward(x: tf.Tensor4D, ctx: ForwardContext): BackboneOutput {
    const { stages } = this.forwardFeatures(x, ctx);
    const h = stages[stages.length - 1]!;
    return { featureMap: h, pooled: tf.mean(h, [1, 2]) as tf.Tensor2D };
  }

  /**
   * The multi-scale features a U-Net decoder needs: the stem after ReLU (stride 2) and the output
   * of each stage (strides 4, 8, 16, 32).
   */
  forwardFeatures(x: tf.Tensor4D, ctx: ForwardContext): EncoderFeatures {
    const s = this.store;
    const stem = convBatchNorm(s, 'conv1', 'bn1', x, 2, 3, ctx, true);
    let h = maxPool3x3s2(stem);
    const stages: tf.Tensor4D[] = [];
    let stage = 0;
    for (const b of this.blocks) {
      const n = Number(b.name.slice('layer'.length, b.name.indexOf('.')));
      if (n !== stage && stage > 0) stages.push(h); // the previous stage ended
      stage = n;
      h = this.block(h, b, ctx);
    }
    stages.push(h);
    return { stem, stages };
  }

  /** Channels of the stem and of each stage's output. */
  get stageChannels(): { stem: number; stages: number[] } {
    const expansion = this.args.block === 'basic' ? 1 : 4;
    return { stem: this.args.width, stages: this.args.depths.map((_, i) => this.args.width * 2 ** i * expansion) };
  }

  private block(x: tf.Tensor4D, b: { name: string; stride: number; downsample: boolean }, ctx: ForwardContext): tf.Tensor4D {
    const s = this.store;
    const n = b.name;
    let y: tf.Tensor4D;
    if (this.args.block === 'basic') {
      y = convBatchNorm(s, `${n}.conv1`, `${n}.bn1`, x, b.stride, 1, ctx, true);
      y = convBatchNorm(s, `${n}.conv2`, `${n}.bn2`, y, 1, 1, ctx);
    } else {
      y = convBatchNorm(s, `${n}.conv1`, `${n}.bn1`, x, 1, 0, ctx, true);
      y = convBatchNorm(s, `${n}.conv2`, `${n}.bn2`, y, b.stride, 1, ctx, true);
      y = convBatchNorm(s, `${n}.conv3`, `${n}.bn3`, y, 1, 0, ctx);
    }
    const shortcut = b.downsample ? convBatchNorm(s, `${n}.downsample.0`, `${n}.downsample.1`, x, b.stride, 0, ctx) : x;
    return tf.relu(tf.add(y, shortcut)) as tf.Tensor4D;
  }

  dispose(): void {
    this.store.dispose();
  }
}

/** Backbones by name (timm-style registry): `createBackbone('resnet18', { width: 32 })`. */
const REGISTRY: Record<string, Omit<ResNetArgs, 'width' | 'seed'>> = {
  resnet18: { block: 'basic', depths: [2, 2, 2, 2] },
  resnet34: { block: 'basic', depths: [3, 4, 6, 3] },
  resnet50: { block: 'bottleneck', depths: [3, 4, 6, 3] },
  /** Tests only: one basic block per stage. */
  'resnet-tiny': { block: 'basic', depths: [1, 1, 1, 1] },
};

export const BACKBONES = Object.keys(REGISTRY);

export function createBackbone(name: string, options: { width?: number; seed?: number; inChannels?: number } = {}): ResNet {
  const spec = REGISTRY[name];
  if (!spec) throw configError(`unknown backbone '${name}': expected one of ${BACKBONES.join(', ')}`);
  return new ResNet({ ...spec, width: options.width ?? 64, seed: options.seed ?? 0, inChannels: options.inChannels ?? 1 });
}
