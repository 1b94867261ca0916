/** IEEE 754 half precision (float16) and bfloat16 conversions, for model files stored at 16 bits. */

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

export function bf16ToF32(u: number): number {
  scratchBits[0] = u << 16;
  return scratch[0]!;
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Every float16 bit pattern's value (f16ToF32), built on first use: decoding by table is exact and cheap. */
let f16Values: Float32Array | undefined;

/** float16 bits -> float32 for a whole array: the values of f16ToF32, looked up (the shipped Eve: 11M of them). */
export function f16ArrayToF32(bits: Uint16Array): Float32Array {
  if (!f16Values) {
    f16Values = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Values[h] = f16ToF32(h);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Values[bits[i]!]!;
  return out;
}

/** float32 -> float16 bits, rounding to nearest even; overflow to infinity, underflow through subnormals to 0. */
export function f32ToF16(v: number): number {
  scratch[0] = v;
  const x = scratchBits[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly increments the exponent (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return half;
}

/** The largest finite float16. */
export const F16_MAX = 65504;
