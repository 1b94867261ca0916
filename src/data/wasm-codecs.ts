/**
 * The Cornerstone wasm codecs (libjpeg-turbo, CharLS, OpenJPEG, OpenJPH), loaded once each: DICOM's
 * compressed pixel data (./dicom.ts) and JPEG 2000 files (./decode.ts) go through them.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): WasmFrameInfo;
  delete?(): void;
}

export interface WasmFrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}

export type WasmCodec = '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs' | '@cornerstonejs/codec-charls/decodewasmjs' | '@cornerstonejs/codec-openjpeg/decodewasmjs' | '@cornerstonejs/codec-openjph';

const codecs = new Map<string, Promise<Record<string, new () => WasmDecoder>>>();

function loadCodec(module: WasmCodec): Promise<Record<string, new () => WasmDecoder>> {
  let lib = codecs.get(module);
  if (!lib) {
    const factory = require(module) as ((opts: object) => Promise<Record<string, new () => WasmDecoder>>) | { default: (opts: object) => Promise<Record<string, new () => WasmDecoder>> };
    const f = typeof factory === 'function' ? factory : factory.default;
    // The emscripten modules print to stdout unless given print hooks.
    lib = f({ print: () => undefined, printErr: () => undefined });
    codecs.set(module, lib);
  }
  return lib;
}

/**
 * Decode one compressed frame: its geometry and its samples, interleaved, as bytes copied out of
 * the wasm heap (2 per sample, native order, above 8 bits). A codec's failure is an Error naming it.
 */
export async function decodeWithWasm(module: WasmCodec, className: string, encoded: Uint8Array): Promise<{ info: WasmFrameInfo; decoded: Uint8Array }> {
  const lib = await loadCodec(module);
  const decoder = new lib[className]!();
  try {
    decoder.getEncodedBuffer(encoded.length).set(encoded);
    try {
      decoder.decode();
    } catch (err) {
      throw new Error(`${className} failed: ${typeof err === 'number' ? `codec error ${err}` : err instanceof Error ? err.message : String(err)}`);
    }
    return { info: decoder.getFrameInfo(), decoded: new Uint8Array(decoder.getDecodedBuffer()) };
  } finally {
    decoder.delete?.();
  }
}
