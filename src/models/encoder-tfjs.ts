/**
 * Loading an encoder exported with `eden export --format tfjs` (model.json + weights.bin). No
 * Node APIs here: the browser viewer uses it with fetched bytes.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { Encoder, type EncoderArgs } from './encoder.js';

export interface TfjsEncoderManifest {
  format: 'eden-encoder-tfjs-1';
  args: EncoderArgs;
  hasHead: boolean;
  inputSize?: number;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

/** Build the encoder from the parsed model.json and the concatenated weight files. */
export function encoderFromTfjs(manifest: TfjsEncoderManifest, weightData: ArrayBuffer): Encoder {
  if (manifest.format !== 'eden-encoder-tfjs-1') throw new EdenError('checkpoint', `not an Eden TF.js encoder (format '${String(manifest.format)}')`);
  const specs = manifest.weightsManifest.flatMap((g) => g.weights);
  const named = tf.io.decodeWeights(weightData, specs);
  const encoder = new Encoder(manifest.args);
  try {
    for (const [name, v] of encoder.namedVariables()) {
      if (name.startsWith('head.') && !manifest.hasHead) continue;
      const t = named[name];
      if (!t) throw new EdenError('checkpoint', `model.json has no weight '${name}'`);
      if (t.shape.join(',') !== v.shape.join(',')) throw new EdenError('checkpoint', `weight '${name}' is [${t.shape}], the encoder expects [${v.shape}]`);
      v.assign(t);
    }
  } catch (err) {
    encoder.dispose();
    throw err;
  } finally {
    tf.dispose(Object.values(named));
  }
  return encoder;
}
