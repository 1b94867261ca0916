/**
 * Reading PyTorch's checkpoint format (torch.save since 1.6): a zip archive holding `data.pkl`
 * (the pickled object, with tensors as persistent references) and one file per storage under
 * `data/`. Tensors are rebuilt from storage, offset, size and stride, and converted to float32
 * (float16, bfloat16, float64) or kept as integers. The pickle is read by ./pickle.ts, which
 * executes nothing.
 */
import { unzipSync } from 'fflate';
import { promises as fs } from 'node:fs';
import { bf16ToF32, f16ToF32 } from '../core/half.js';
import { EdenError } from '../core/errors.js';
import { PickleError, PyObject, PyTuple, unpickle, type PyGlobal, type PyValue } from './pickle.js';

export interface TorchTensor {
  readonly kind: 'tensor';
  dtype: 'float32' | 'int64' | 'int32' | 'uint8' | 'bool';
  shape: number[];
  /** Row-major values; int64 as float64-safe numbers. */
  data: Float32Array | Float64Array | Int32Array | Uint8Array;
}

interface StorageRef {
  readonly kind: 'storage';
  type: string;
  key: string;
}

const STORAGE_TYPES: Record<string, { bytes: number }> = {
  FloatStorage: { bytes: 4 },
  HalfStorage: { bytes: 2 },
  BFloat16Storage: { bytes: 2 },
  DoubleStorage: { bytes: 8 },
  LongStorage: { bytes: 8 },
  IntStorage: { bytes: 4 },
  ByteStorage: { bytes: 1 },
  BoolStorage: { bytes: 1 },
};

function global(module: string, name: string, call?: (args: PyValue[]) => PyValue): PyGlobal {
  return { module, name, call };
}

/** Read a storage's elements as numbers (float32 for float types). */
function readStorage(bytes: Uint8Array, type: string): Float32Array | Float64Array | Int32Array | Uint8Array {
  const copy = new Uint8Array(bytes); // aligned
  const dv = new DataView(copy.buffer);
  switch (type) {
    case 'FloatStorage':
      return new Float32Array(copy.buffer);
    case 'HalfStorage':
      return Float32Array.from({ length: copy.length / 2 }, (_, i) => f16ToF32(dv.getUint16(2 * i, true)));
    case 'BFloat16Storage':
      return Float32Array.from({ length: copy.length / 2 }, (_, i) => bf16ToF32(dv.getUint16(2 * i, true)));
    case 'DoubleStorage':
      return Float32Array.from(new Float64Array(copy.buffer));
    case 'LongStorage':
      return Float64Array.from({ length: copy.length / 8 }, (_, i) => Number(dv.getBigInt64(8 * i, true)));
    case 'IntStorage':
      return new Int32Array(copy.buffer);
    default:
      return copy;
  }
}

const DTYPE_OF: Record<string, TorchTensor['dtype']> = {
  FloatStorage: 'float32',
  HalfStorage: 'float32',
  BFloat16Storage: 'float32',
  DoubleStorage: 'float32',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

export function latin1Bytes(args: PyValue[]): Uint8Array {
  const [text, encoding] = args as [string, string | undefined];
  if (typeof text !== 'string' || !['latin1', 'latin-1', 'iso-8859-1', undefined].includes(encoding)) throw new PickleError(`_codecs.encode with encoding ${String(encoding)}`);
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

/** Parse the bytes of a torch.save file. `source` names it in errors. */
export function parseTorchFile(bytes: Uint8Array, source: string): PyValue {
  if (bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    if (bytes[0] === 0x80) {
      throw new EdenError('data', `${source}: legacy (pre-1.6, non-zip) PyTorch file; load it in PyTorch and save it again with torch.save(obj, path) to convert it`);
    }
    throw new EdenError('data', `${source}: not a PyTorch checkpoint (no zip container)`);
  }
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (err) {
    throw new EdenError('data', `${source}: corrupt zip container (${(err as Error).message})`);
  }
  const pklName = Object.keys(files).find((n) => n.endsWith('/data.pkl') || n === 'data.pkl');
  if (!pklName) throw new EdenError('data', `${source}: the archive has no data.pkl; not a torch.save file`);
  const root = pklName.slice(0, -'data.pkl'.length);
  const byteorder = files[`${root}byteorder`];
  if (byteorder && new TextDecoder().decode(byteorder).trim() !== 'little') throw new EdenError('data', `${source}: big-endian tensors are not supported`);

  const storages = new Map<string, Float32Array | Float64Array | Int32Array | Uint8Array>();
  const storageGlobals = Object.fromEntries(Object.keys(STORAGE_TYPES).map((t) => [`torch.${t}`, (m: string, n: string) => global(m, n)]));
  const rebuildTensor = (args: PyValue[]): PyValue => {
    const [storage, offset, size, stride] = args as [StorageRef, number, PyTuple, PyTuple];
    if (!storage || storage.kind !== 'storage') throw new PickleError('tensor without storage');
    let cached = storages.get(storage.key);
    if (!cached) {
      const raw = files[`${root}data/${storage.key}`];
      if (!raw) throw new EdenError('data', `${source}: storage '${storage.key}' is missing from the archive (truncated file?)`);
      cached = readStorage(raw, storage.type);
      storages.set(storage.key, cached);
    }
    const data = cached;
    const shape = size.items.map(Number);
    const strides = stride.items.map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    const out: typeof data = new (data.constructor as new (n: number) => typeof data)(n);
    // Gather through the strides (contiguous tensors are the common, fast case).
    const contiguous = strides.every((s, i) => s === shape.slice(i + 1).reduce((a, b) => a * b, 1) || shape[i] === 1);
    if (contiguous) {
      if (offset + n > data.length) throw new EdenError('data', `${source}: a tensor reads past the end of storage '${storage.key}'`);
      out.set(data.subarray(offset, offset + n));
    } else {
      const idx = new Array<number>(shape.length).fill(0);
      for (let i = 0; i < n; i++) {
        let at = offset;
        for (let d = 0; d < shape.length; d++) at += idx[d]! * strides[d]!;
        out[i] = data[at]!;
        for (let d = shape.length - 1; d >= 0; d--) {
          if (++idx[d]! < shape[d]!) break;
          idx[d] = 0;
        }
      }
    }
    const tensor: TorchTensor = { kind: 'tensor', dtype: DTYPE_OF[storage.type] ?? 'float32', shape, data: out };
    return tensor as unknown as PyValue;
  };
  try {
    return unpickle(files[pklName]!, {
      globals: {
        'collections.OrderedDict': (m, n) => global(m, n, () => new Map()),
        'torch._utils._rebuild_tensor_v2': (m, n) => global(m, n, rebuildTensor),
        'torch._utils._rebuild_parameter': (m, n) => global(m, n, (args) => args[0]!),
        // Training scripts save their argparse arguments: kept as inert data.
        'argparse.Namespace': (m, n) => global(m, n, (args) => new PyObject('argparse.Namespace', args)),
        'torch.device': (m, n) => global(m, n, (args) => String(args[0])),
        // Protocol 2 pickles bytes as _codecs.encode(str, 'latin1'): rebuilt here, nothing imported.
        '_codecs.encode': (m, n) => global(m, n, (args) => latin1Bytes(args)),
        ...storageGlobals,
      },
      persistentLoad: (pid) => {
        const items = pid instanceof PyTuple ? pid.items : [];
        if (items[0] !== 'storage') throw new PickleError(`unknown persistent reference ${String(items[0])}`);
        const type = items[1] as PyGlobal;
        if (!type || !STORAGE_TYPES[type.name]) throw new PickleError(`unsupported storage type ${type?.name ?? '?'}`);
        return { kind: 'storage', type: type.name, key: String(items[2]) };
      },
    });
  } catch (err) {
    if (err instanceof PickleError) throw new EdenError('data', `${source}: ${err.message}`);
    throw err;
  }
}

export function isTorchTensor(v: unknown): v is TorchTensor {
  return typeof v === 'object' && v !== null && (v as { kind?: string }).kind === 'tensor';
}

export async function readTorchFile(file: string): Promise<PyValue> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw new EdenError('data', `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return parseTorchFile(bytes, file);
}
