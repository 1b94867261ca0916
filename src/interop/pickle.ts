/**
 * A small, safe unpickler for PyTorch checkpoints. It interprets the pickle opcodes that state
 * dicts use (protocol 2 to 5) and builds plain values; it never executes anything. A GLOBAL is
 * resolved only through the `globals` table the caller passes (e.g. OrderedDict, the tensor
 * rebuild functions, storage types); any other global is refused with an error naming it, so a
 * .pth from a stranger cannot run code.
 */

export class PickleError extends Error {}

/** A Python tuple (kept apart from lists: rebuild functions take tuples). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** An instance of an allowed class, built with NEWOBJ/REDUCE and filled by BUILD. */
export class PyObject {
  state: PyValue = null;
  constructor(
    readonly className: string,
    readonly args: PyValue[],
  ) {}
}

/** A global the caller allowed, as found in the pickle; `call` builds its value. */
export interface PyGlobal {
  readonly module: string;
  readonly name: string;
  call?(args: PyValue[]): PyValue;
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | Map<PyValue, PyValue>
  | Set<PyValue>
  | PyObject
  | PyGlobal
  | { readonly kind: string; [k: string]: unknown };

export interface UnpickleOptions {
  /** Allowed globals by 'module.name'. */
  globals: Record<string, (module: string, name: string) => PyGlobal>;
  /** BINPERSID / PERSID: turns a persistent id into a value (PyTorch storages). */
  persistentLoad?: (pid: PyValue) => PyValue;
}

const MARK = Symbol('mark');

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: (PyValue | typeof MARK)[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  const need = (n: number): void => {
    if (pos + n > bytes.length) throw new PickleError(`pickle data ends early (at byte ${pos}, ${n} more needed)`);
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = Number(view.getBigUint64(pos, true));
    pos += 8;
    return v;
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError('pickle data ends inside a text line');
    const s = new TextDecoder('latin1').decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const utf8 = (b: Uint8Array): string => new TextDecoder('utf-8').decode(b);
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw new PickleError('pickle stack underflow');
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw new PickleError('pickle stack underflow');
    return v;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) throw new PickleError('pickle MARK missing');
    const items = stack.splice(m) as PyValue[];
    items.shift(); // the MARK itself
    return items;
  };
  const resolve = (module: string, name: string): PyGlobal => {
    const factory = options.globals[`${module}.${name}`];
    if (!factory) {
      throw new PickleError(`refusing to load global '${module}.${name}': Eden reads only tensors and plain containers from checkpoints, and never runs code from them`);
    }
    return factory(module, name);
  };
  const call = (fn: PyValue, args: PyValue[]): PyValue => {
    if (!fn || typeof fn !== 'object' || !('module' in fn) || typeof (fn as PyGlobal).call !== 'function') {
      throw new PickleError(`pickle calls something that is not an allowed function (${describe(fn)})`);
    }
    return (fn as PyGlobal).call!(args);
  };
  const setItems = (target: PyValue, items: PyValue[]): void => {
    if (!(target instanceof Map)) throw new PickleError(`SETITEM on ${describe(target)}`);
    for (let i = 0; i + 1 < items.length; i += 2) target.set(items[i]!, items[i + 1]!);
  };
  const append = (target: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(target)) throw new PickleError(`APPEND on ${describe(target)}`);
    target.push(...items);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: u64(); break; // FRAME
      case 0x2e: return pop(); // STOP
      case 0x28: marks.push(stack.length); stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      case 0x74: stack.push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: stack.push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(new PyTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PyTuple([a, b, c])); break; } // TUPLE3
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x64: { const items = popMark(); const d = new Map<PyValue, PyValue>(); setItems(d, items); stack.push(d); break; } // DICT
      case 0x61: { const v = pop(); append(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); append(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x90: { const items = popMark(); const s = top(); if (!(s instanceof Set)) throw new PickleError('ADDITEMS on a non-set'); for (const i of items) s.add(i); break; } // ADDITEMS
      case 0x91: stack.push(new Set(popMark())); break; // FROZENSET
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: case 0x8b: { // LONG1, LONG4: little-endian two's complement
        const n = op === 0x8a ? u8() : u32();
        const b = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (n > 0 && b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: { need(8); stack.push(view.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x58: stack.push(utf8(take(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(take(u64()))); break; // BINUNICODE8
      case 0x54: stack.push(new TextDecoder('latin1').decode(take(i32()))); break; // BINSTRING
      case 0x55: stack.push(new TextDecoder('latin1').decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: stack.push(take(u64()).slice()); break; // BINBYTES8
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw new PickleError(`pickle memo has no entry ${k}`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x63: { const module = line(); const name = line(); stack.push(resolve(module, name)); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); stack.push(resolve(String(module), String(name))); break; } // STACK_GLOBAL
      case 0x52: { const args = pop(); const fn = pop(); stack.push(call(fn, args instanceof PyTuple ? args.items : [])); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); stack.push(call(cls, args instanceof PyTuple ? args.items : [])); break; } // NEWOBJ
      case 0x92: { pop(); const args = pop(); const cls = pop(); stack.push(call(cls, args instanceof PyTuple ? args.items : [])); break; } // NEWOBJ_EX
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        else if (obj instanceof Map && state instanceof Map) for (const [k, v] of state) obj.set(k, v);
        else if (state !== null && !(obj && typeof obj === 'object' && 'kind' in obj)) throw new PickleError(`BUILD on ${describe(obj)}`);
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!options.persistentLoad) throw new PickleError('pickle refers to external data, but none was given');
        stack.push(options.persistentLoad(pid));
        break;
      }
      case 0x50: { // PERSID
        const pid = line();
        if (!options.persistentLoad) throw new PickleError('pickle refers to external data, but none was given');
        stack.push(options.persistentLoad(pid));
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      default:
        throw new PickleError(`unsupported pickle opcode 0x${op.toString(16)} at byte ${pos - 1}`);
    }
  }
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof Map) return 'a dict';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof PyObject) return `an object of ${v.className}`;
  if (typeof v === 'object' && v && 'module' in v) return `${(v as PyGlobal).module}.${(v as PyGlobal).name}`;
  return typeof v;
}
