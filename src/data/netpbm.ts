/**
 * Netpbm images (PBM, PGM, PPM: P1-P6; PAM: P7), which sharp does not read. Older research
 * datasets ship in them (mini-MIAS mammograms are 8-bit binary PGM; 16-bit PGM is a common export
 * of DICOM converters). The format is a text header and the samples: ASCII or binary, 1 or 2
 * bytes (big-endian) per sample as the header's maximum value needs. No npm package reads it
 * completely and installs from the registry as it is here (@thi.ng/pixel-io-netpbm: binary
 * types only, and its current release depends on a version the registry lacks), so it is read here,
 * to the specification (netpbm.sourceforge.net/doc: pbm, pgm, ppm, pam), tested against Pillow.
 */

/** A Netpbm file's first image: samples interleaved per pixel, as stored (PBM: 1 = white, as displayed). */
export interface NetpbmImage {
  width: number;
  height: number;
  /** Samples per pixel: 1 (grey), 2 (grey and alpha), 3 (RGB), 4 (RGB and alpha). */
  channels: number;
  /** The largest value a sample may take (1 for PBM). */
  maxValue: number;
  samples: Uint8Array | Uint16Array;
  /** 'pbm', 'pgm', 'ppm' or 'pam', and '/ascii' for the plain (P1-P3) variants. */
  encoding: string;
}

/** True when the bytes start as a Netpbm file: 'P1'..'P7' and whitespace. */
export function isNetpbm(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0x50 && bytes[1]! >= 0x31 && bytes[1]! <= 0x37 && isSpace(bytes[2]!);
}

const isSpace = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;

/** Reads the header's whitespace-separated numbers, skipping '#' comments to the end of their line. */
class HeaderReader {
  constructor(
    private readonly bytes: Uint8Array,
    public at: number,
  ) {}

  token(what: string): string {
    const b = this.bytes;
    for (;;) {
      while (this.at < b.length && isSpace(b[this.at]!)) this.at++;
      if (b[this.at] !== 0x23) break;
      while (this.at < b.length && b[this.at] !== 0x0a && b[this.at] !== 0x0d) this.at++;
    }
    const start = this.at;
    while (this.at < b.length && !isSpace(b[this.at]!) && b[this.at] !== 0x23) this.at++;
    if (start === this.at) throw new Error(`Netpbm header ends before its ${what}`);
    return String.fromCharCode(...b.subarray(start, this.at));
  }

  number(what: string): number {
    const t = this.token(what);
    if (!/^\d+$/.test(t)) throw new Error(`Netpbm header's ${what} is '${t.slice(0, 20)}', not a number`);
    return Number(t);
  }
}

/** Decode a Netpbm file's first image; errors name what is wrong (bad header, too few samples). */
export function decodeNetpbm(bytes: Uint8Array, maxPixels: number): NetpbmImage {
  if (!isNetpbm(bytes)) throw new Error('not a Netpbm file (no P1-P7 magic number)');
  const kind = bytes[1]! - 0x30;
  const header = new HeaderReader(bytes, 2);
  let width: number;
  let height: number;
  let channels: number;
  let maxValue: number;
  if (kind === 7) {
    [width, height, channels, maxValue] = pamHeader(header);
  } else {
    width = header.number('width');
    height = header.number('height');
    channels = kind === 3 || kind === 6 ? 3 : 1;
    maxValue = kind === 1 || kind === 4 ? 1 : header.number('maximum value');
  }
  if (width < 1 || height < 1) throw new Error(`Netpbm image is ${width}x${height}`);
  if (maxValue < 1 || maxValue > 65535) throw new Error(`Netpbm maximum value ${maxValue} is outside 1..65535`);
  if (width * height > maxPixels) throw new Error(`image too large (${width}x${height}, over ${maxPixels} pixels)`);
  const count = width * height * channels;
  const encoding = kind === 7 ? 'pam' : `${['pbm', 'pgm', 'ppm'][(kind - 1) % 3]}${kind <= 3 ? '/ascii' : ''}`;
  let samples: Uint8Array | Uint16Array;
  if (kind <= 3) samples = asciiSamples(bytes, header, count, maxValue, kind === 1);
  else {
    // Exactly one whitespace character separates the header from binary samples (PAM: the newline after ENDHDR).
    const start = kind === 7 ? header.at : header.at + 1;
    samples = kind === 4 ? packedBits(bytes, start, width, height) : binarySamples(bytes, start, count, maxValue);
  }
  return { width, height, channels, maxValue, samples, encoding };
}

/** PAM's header: WIDTH, HEIGHT, DEPTH, MAXVAL lines (TUPLTYPE and comments aside) up to ENDHDR and its newline. */
function pamHeader(header: HeaderReader): [number, number, number, number] {
  const fields: Record<string, number> = {};
  for (;;) {
    const key = header.token('ENDHDR');
    if (key === 'ENDHDR') break;
    if (key === 'TUPLTYPE') {
      header.token('tuple type');
      continue;
    }
    if (!['WIDTH', 'HEIGHT', 'DEPTH', 'MAXVAL'].includes(key)) throw new Error(`PAM header has an unknown field '${key.slice(0, 20)}'`);
    fields[key] = header.number(key);
  }
  for (const k of ['WIDTH', 'HEIGHT', 'DEPTH', 'MAXVAL']) if (fields[k] === undefined) throw new Error(`PAM header lacks ${k}`);
  if (fields['DEPTH']! < 1 || fields['DEPTH']! > 4) throw new Error(`PAM depth ${fields['DEPTH']} (1-4 samples per pixel are read: grey, grey and alpha, RGB, RGB and alpha)`);
  header.at++; // the newline that ends ENDHDR's line
  return [fields['WIDTH']!, fields['HEIGHT']!, fields['DEPTH']!, fields['MAXVAL']!];
}

function binarySamples(bytes: Uint8Array, start: number, count: number, maxValue: number): Uint8Array | Uint16Array {
  const wide = maxValue > 255;
  const needed = count * (wide ? 2 : 1);
  if (bytes.length - start < needed) throw new Error(`truncated image data (${Math.max(0, bytes.length - start)} bytes of samples, ${needed} expected)`);
  if (!wide) return bytes.slice(start, start + count);
  const out = new Uint16Array(count);
  for (let i = 0, at = start; i < count; i++, at += 2) out[i] = (bytes[at]! << 8) | bytes[at + 1]!;
  return out;
}

/** P4: rows of bits, most significant first, each row padded to a byte; 1 is black, so read as 0. */
function packedBits(bytes: Uint8Array, start: number, width: number, height: number): Uint8Array {
  const rowBytes = Math.ceil(width / 8);
  if (bytes.length - start < rowBytes * height) throw new Error(`truncated image data (${Math.max(0, bytes.length - start)} bytes of samples, ${rowBytes * height} expected)`);
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) out[y * width + x] = (bytes[start + y * rowBytes + (x >> 3)]! >> (7 - (x & 7))) & 1 ? 0 : 1;
  }
  return out;
}

/** P1-P3: decimal samples separated by whitespace (P1 may run its 0s and 1s together). */
function asciiSamples(bytes: Uint8Array, header: HeaderReader, count: number, maxValue: number, bitmap: boolean): Uint8Array | Uint16Array {
  const out = maxValue > 255 ? new Uint16Array(count) : new Uint8Array(count);
  let at = header.at;
  for (let i = 0; i < count; i++) {
    while (at < bytes.length && (isSpace(bytes[at]!) || bytes[at] === 0x23)) {
      if (bytes[at] === 0x23) while (at < bytes.length && bytes[at] !== 0x0a) at++;
      else at++;
    }
    if (at >= bytes.length) throw new Error(`truncated image data (${i} samples, ${count} expected)`);
    if (bitmap) {
      const b = bytes[at++]!;
      if (b !== 0x30 && b !== 0x31) throw new Error(`PBM sample '${String.fromCharCode(b)}' is not 0 or 1`);
      out[i] = b === 0x31 ? 0 : 1;
      continue;
    }
    let v = 0;
    const start = at;
    while (at < bytes.length && bytes[at]! >= 0x30 && bytes[at]! <= 0x39) v = v * 10 + bytes[at++]! - 0x30;
    if (at === start) throw new Error(`sample ${i + 1} is not a number`);
    out[i] = Math.min(v, maxValue);
  }
  return out;
}
