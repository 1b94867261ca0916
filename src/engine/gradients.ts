/**
 * Gradients Eden replaces in TF.js 4.22 because they give wrong results silently:
 *
 *  - ResizeBilinear: the core gradient drops `halfPixelCenters`, so with half-pixel centres (what
 *    PyTorch's `align_corners=False` means) every backend returns the gradient of a different
 *    function; and the cpu backend's ResizeBilinearGrad returns [B, W, H, C] for non-square images.
 *    Bilinear resizing is separable and linear, y = A_h x A_w^T per image and channel, so its
 *    gradient is dx = A_h^T dy A_w: two matmuls with interpolation matrices built here from the
 *    same formulas TensorFlow's forward kernel uses. Correct on every backend, and fast on wasm.
 */
import * as tf from '@tensorflow/tfjs';

let registered = false;

/**
 * A [outSize, inSize] matrix whose row o holds the weights output o gives each input, matching
 * TensorFlow's ResizeBilinear (legacy, align-corners and half-pixel scalers).
 */
export function interpolationMatrix(inSize: number, outSize: number, alignCorners: boolean, halfPixelCenters: boolean): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = alignCorners && outSize > 1 ? (inSize - 1) / (outSize - 1) : inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = halfPixelCenters ? (o + 0.5) * scale - 0.5 : o * scale;
    const floor = Math.floor(src);
    const lower = Math.max(floor, 0);
    const upper = Math.min(Math.ceil(src), inSize - 1);
    const lerp = src - floor;
    m[o * inSize + Math.min(lower, inSize - 1)]! += 1 - lerp;
    m[o * inSize + upper]! += lerp;
  }
  return m;
}

/** dx for y = resizeBilinear(x): dy [B, oh, ow, C] -> dx [B, h, w, C]. */
export function resizeBilinearBackward(dy: tf.Tensor4D, inHeight: number, inWidth: number, alignCorners: boolean, halfPixelCenters: boolean): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, oh, ow, c] = dy.shape;
    const ahT = tf.tensor2d(interpolationMatrix(inHeight, oh, alignCorners, halfPixelCenters), [oh, inHeight]).transpose();
    const awT = tf.tensor2d(interpolationMatrix(inWidth, ow, alignCorners, halfPixelCenters), [ow, inWidth]).transpose();
    // Contract the output rows: [oh, B*ow*C] -> [h, B*ow*C].
    const rows = tf.matMul(ahT, tf.transpose(dy, [1, 0, 2, 3]).reshape([oh, b * ow * c]));
    // Contract the output columns: [ow, B*h*C] -> [w, B*h*C].
    const byCol = tf.transpose(rows.reshape([inHeight, b, ow, c]), [2, 1, 0, 3]).reshape([ow, b * inHeight * c]);
    const cols = tf.matMul(awT, byCol).reshape([inWidth, b, inHeight, c]);
    return tf.transpose(cols, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/** Install the corrected gradients (idempotent; applies to every backend). */
export function registerGradientFixes(): void {
  if (registered) return;
  registered = true;
  const warn = console.warn;
  // TF.js warns about overriding a registered gradient; that override is the point here.
  console.warn = () => undefined;
  try {
    tf.registerGradient({
      kernelName: 'ResizeBilinear',
      inputsToSave: ['images'],
      gradFunc: (dy, saved, attrs) => {
        const [images] = saved as [tf.Tensor4D];
        const { alignCorners, halfPixelCenters } = attrs as unknown as { alignCorners: boolean; halfPixelCenters: boolean };
        return {
          images: () => resizeBilinearBackward(dy as tf.Tensor4D, images.shape[1], images.shape[2], alignCorners, halfPixelCenters),
        };
      },
    });
  } finally {
    console.warn = warn;
  }
}
