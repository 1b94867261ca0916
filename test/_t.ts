import { resolvePretrainConfig } from '../src/config/pretrain.js';
import { pretrain } from '../src/train/pretrain.js';
import * as tf from '@tensorflow/tfjs';
const config = resolvePretrainConfig('tiny', { data: { paths: ['samples/hannover_covid19'] }, run: { dir: '/tmp/eden-run1' } });
const t = Date.now();
const r = await pretrain(config, { hooks: {
  onStep: (e) => console.log('step', e.globalStep, e.stage, e.level, e.loss.toFixed(4), e.prunedFraction.toFixed(3), e.imagesPerSecond.toFixed(1)),
  onEpoch: (e) => console.log('epoch', e),
  onSkip: (s) => console.log('skip', s.message),
  onStart: (i) => console.log('start', i),
}});
console.log(r, Date.now() - t, 'ms', tf.memory().numTensors);
