/**
 * Named tensors on disk in the safetensors format (8-byte little-endian header length, a JSON
 * header, then raw little-endian bytes), which PyTorch, NumPy and Rust tooling read directly.
 * Eden stores model weights, buffers and optimizer state in it, with its own metadata (config,
 * step, RNG states) as a JSON string under `__metadata__.eden`.
 *
 * Writes are atomic: a temporary file in the same folder, fsync, then rename, so a crash leaves
 * either the old file or the new one, never half of one.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import { bf16ToF32, f16ArrayToF32, f32ToF16, F16_MAX } from '../core/half.js';

const DTYPES: Record<string, { st: string; bytes: number }> = {
  float32: { st: 'F32', bytes: 4 },
  int32: { st: 'I32', bytes: 4 },
  bool: { st: 'BOOL', bytes: 1 },
};

export interface TensorRecord {
  dtype: 'float32' | 'int32' | 'bool';
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

export interface TensorFile {
  tensors: Map<string, TensorRecord>;
  metadata: Record<string, string>;
}

/**
 * Encode named tensors and metadata to safetensors bytes. Names keep their insertion order.
 * `float16`: float32 tensors are stored as F16 (half the size; read back as float32), except any
 * whose values do not fit float16's range, which stay F32.
 */
export function encodeTensorFile(tensors: Map<string, TensorRecord>, metadata: Record<string, string> = {}, o: { float16?: boolean } = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const payload: Uint8Array[] = [];
  for (const [name, t] of tensors) {
    const spec = DTYPES[t.dtype];
    if (!spec) throw new EdenError('checkpoint', `tensor '${name}' has unsupported dtype ${t.dtype}`);
    let bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    let st = spec.st;
    if (o.float16 && t.dtype === 'float32' && (t.data as Float32Array).every((v) => Math.abs(v) <= F16_MAX)) {
      const half = mapInto(new Uint16Array(t.data.length), t.data as Float32Array, f32ToF16);
      bytes = new Uint8Array(half.buffer);
      st = 'F16';
    }
    header[name] = { dtype: st, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    payload.push(bytes);
    offset += bytes.length;
  }
  const head = headerBytes(header);
  const out = new Uint8Array(head.length + offset);
  out.set(head);
  let at = head.length;
  for (const bytes of payload) {
    out.set(bytes, at);
    at += bytes.length;
  }
  return out;
}

/** The file's first bytes: the header's length (8 bytes, little-endian) and the header itself. */
function headerBytes(header: Record<string, unknown>): Uint8Array {
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned (the format allows it).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const text = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + text.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  return out;
}

/** Decode safetensors bytes; `source` names the file in errors. */
export function decodeTensorFile(bytes: Uint8Array, source = 'tensor file'): TensorFile {
  if (bytes.length < 8) throw new EdenError('checkpoint', `${source}: file is ${bytes.length} bytes, too short for a safetensors header`);
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > bytes.length - 8) throw new EdenError('checkpoint', `${source}: header length ${headerLength} exceeds the file size (truncated or not a safetensors file)`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8'));
  } catch (err) {
    throw new EdenError('checkpoint', `${source}: header is not valid JSON (${(err as Error).message})`);
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, TensorRecord>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (entry ?? {}) as Record<string, string>;
      continue;
    }
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const half = e.dtype === 'F16' || e.dtype === 'BF16';
    const dtype = half ? 'float32' : (Object.entries(DTYPES).find(([, d]) => d.st === e.dtype)?.[0] as TensorRecord['dtype'] | undefined);
    if (!dtype) throw new EdenError('checkpoint', `${source}: tensor '${name}' has dtype ${e.dtype}; Eden reads F32, F16, BF16, I32 and BOOL`);
    const [begin, end] = e.data_offsets;
    if (end > bytes.length - dataStart || begin > end) throw new EdenError('checkpoint', `${source}: tensor '${name}' lies outside the file (truncated?)`);
    // A copy (Buffer.slice would be a view): aligned for the typed array and detached from the file.
    const slice = new Uint8Array(bytes.subarray(dataStart + begin, dataStart + end));
    const data = half ? (e.dtype === 'F16' ? f16ArrayToF32(new Uint16Array(slice.buffer)) : mapInto(new Float32Array(slice.length / 2), new Uint16Array(slice.buffer), bf16ToF32)) : dtype === 'float32' ? new Float32Array(slice.buffer) : dtype === 'int32' ? new Int32Array(slice.buffer) : new Uint8Array(slice.buffer);
    const expected = e.shape.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new EdenError('checkpoint', `${source}: tensor '${name}' has ${data.length} values for shape [${e.shape}]`);
    tensors.set(name, { dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Remove the temporary files of writeFileAtomic ('.<name>.<pid>.<time>.tmp') that a killed run left
 * in `dirs` (missing folders are fine); with `names`, only those of these files.
 */
export async function removeLeftTemporaries(dirs: string[], names?: string[]): Promise<void> {
  for (const dir of dirs) {
    const entries = await fs.readdir(dir).catch(() => [] as string[]);
    const left = entries.filter((e) => {
      const m = /^\.(.+)\.\d+\.\d+\.tmp$/.exec(e);
      return m !== null && (!names || names.includes(m[1]!));
    });
    await Promise.all(left.map((e) => fs.rm(path.join(dir, e), { force: true })));
  }
}

/**
 * Write a file atomically: temp file in the same folder, fsync, rename, fsync the folder. `content`
 * is the bytes, or a function that writes them to the open file (for files written in parts).
 */
export async function writeFileAtomic(file: string, content: Uint8Array | string | ((handle: fs.FileHandle) => Promise<void>)): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const handle = await fs.open(tmp, 'w');
  try {
    if (typeof content === 'function') await content(handle);
    else await handle.writeFile(content);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  await fs.rename(tmp, file);
  try {
    const dirHandle = await fs.open(dir, 'r');
    await dirHandle.sync();
    await dirHandle.close();
  } catch {
    // Some filesystems cannot fsync a directory; the rename itself is still atomic.
  }
}

/** Read tensors' values into records (downloads from the backend). */
export async function toRecords(tensors: Map<string, tf.Tensor>): Promise<Map<string, TensorRecord>> {
  const out = new Map<string, TensorRecord>();
  for (const [name, t] of tensors) {
    const dtype = t.dtype as TensorRecord['dtype'];
    if (!DTYPES[dtype]) throw new EdenError('checkpoint', `tensor '${name}' has unsupported dtype ${t.dtype}`);
    const data = await t.data();
    out.set(name, { dtype, shape: t.shape, data: dtype === 'bool' ? Uint8Array.from(data as Uint8Array) : (data as Float32Array | Int32Array) });
  }
  return out;
}

/**
 * Save tensors (atomically). In float32 the file is streamed: the header from the shapes alone, then
 * each tensor's bytes as the backend gives them, never the whole file in one buffer (a fine-tuning
 * state, 229 MB: 1.6 s through one buffer, 0.64 s streamed; docs/PERFORMANCE.md).
 */
export async function saveTensorFile(file: string, tensors: Map<string, tf.Tensor>, metadata: Record<string, string> = {}, o: { float16?: boolean } = {}): Promise<void> {
  if (o.float16) return writeFileAtomic(file, encodeTensorFile(await toRecords(tensors), metadata, o));
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    const spec = DTYPES[t.dtype];
    if (!spec) throw new EdenError('checkpoint', `tensor '${name}' has unsupported dtype ${t.dtype}`);
    header[name] = { dtype: spec.st, shape: t.shape, data_offsets: [offset, (offset += t.size * spec.bytes)] };
  }
  await writeFileAtomic(file, async (handle) => {
    await handle.writeFile(headerBytes(header));
    for (const t of tensors.values()) {
      const data = await t.data();
      await handle.writeFile(t.dtype === 'bool' ? Uint8Array.from(data as Uint8Array) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  });
}

export async function loadTensorFile(file: string): Promise<TensorFile> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw new EdenError('checkpoint', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return decodeTensorFile(bytes, file);
}

/**
 * out[i] = convert(src[i]), returned. A loop: `TypedArray.from(src, fn)` goes through the iterator
 * protocol (with it, decoding the shipped fp16 Eve, 11M values, took 3.7-4.1 s; see f16ArrayToF32).
 */
function mapInto<T extends Float32Array | Uint16Array>(out: T, src: ArrayLike<number>, convert: (v: number) => number): T {
  for (let i = 0; i < src.length; i++) out[i] = convert(src[i]!);
  return out;
}
