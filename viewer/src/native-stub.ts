// The browser build replaces src/engine/native.ts (an N-API addon loader) with this stub: the
// fused native kernels never exist in a browser.
import type * as tf from '@tensorflow/tfjs';

export function nativeFusedAvailable(): boolean {
  return false;
}
export function nativeBatchNormRelu(): boolean {
  return false;
}
export function fusedBatchNormTrain(): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  throw new Error('native kernels are not available in the browser');
}
export function fusedSgdEma(): boolean {
  return false;
}
export function fusedAdam(): boolean {
  return false;
}
// What the webgpu batch norm (src/engine/webgpu-batchnorm.ts) imports from the native loader; the
// viewer runs inference only, so no gradient is registered here.
export const FUSED_BATCH_NORM = 'EdenBatchNormTrain';
export const FUSED_BATCH_NORM_GRAD = 'EdenBatchNormTrainGrad';
export function registerFusedBatchNormGradient(): void {}
