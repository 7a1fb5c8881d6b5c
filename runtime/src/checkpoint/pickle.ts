// A restricted pickle virtual machine (protocols 2-5) for the data.pkl of a torch.save archive.
// It never runs code: a global resolves only if it is on the allowlist below, and calling one
// (REDUCE/NEWOBJ) just records the call as inert data for the caller to interpret.

import { CheckpointError, quote } from '../errors.js';
import type { StorageDtype } from './tensorRef.js';

/** An allowlisted Python global, e.g. `torch._utils._rebuild_tensor_v2`. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A recorded, never executed, call `callee(*args)`; `state` holds what BUILD applied to it. */
export class PyCall {
  state?: PyValue;
  constructor(
    readonly callee: PyGlobal,
    readonly args: PyValue[],
  ) {}
}

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** dict and OrderedDict alike; insertion order is kept. */
export class PyDict extends Map<PyValue, PyValue> {
  state?: PyValue;
}

/** What BINPERSID referred to; torch uses it for storages that live outside the pickle. */
export class PyPersistent {
  constructor(readonly id: PyValue) {}
}

/** Python lists are JS arrays; ints beyond 2^53 are bigints; str and Python 2 str are strings. */
export type PyValue =
  null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyTuple | PyDict | PyGlobal | PyCall | PyPersistent;

/** Storage classes and dtype objects a state dict may name, with the element type each stands for. */
export const TORCH_DTYPE_GLOBALS: Readonly<Record<string, StorageDtype>> = {
  'torch.DoubleStorage': 'F64',
  'torch.FloatStorage': 'F32',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
  // torch.load treats an UntypedStorage as bytes.
  'torch.storage.UntypedStorage': 'U8',
  'torch.UntypedStorage': 'U8',
  'torch.float64': 'F64',
  'torch.float32': 'F32',
  'torch.float16': 'F16',
  'torch.bfloat16': 'BF16',
  'torch.int64': 'I64',
  'torch.int32': 'I32',
  'torch.int16': 'I16',
  'torch.int8': 'I8',
  'torch.uint8': 'U8',
  'torch.bool': 'BOOL',
};

/** Everything a tensor state dict needs; nothing here has side effects when Python calls it either. */
export const STATE_DICT_GLOBALS: ReadonlySet<string> = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch.Size',
  'torch.storage.TypedStorage',
  ...Object.keys(TORCH_DTYPE_GLOBALS),
]);

/**
 * A state dict takes about 25 values per tensor (OPT-175B's 1,500 tensors: ~40,000); the cap keeps
 * a hostile pickle of one-byte opcodes (EMPTY_DICT, DUP, ...) from filling memory with objects.
 */
export const MAX_PICKLE_VALUES = 4_000_000;

function typeName(v: PyValue): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return v.constructor.name;
  return typeof v;
}

/**
 * Runs the pickle in `data` and returns the object it builds. `file` names the checkpoint in
 * errors; `allowed` lists the `module.name` globals that may appear.
 */
export function unpickle(data: Uint8Array, file: string, allowed: ReadonlySet<string> = STATE_DICT_GLOBALS): PyValue {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8');
  const latin1 = new TextDecoder('latin1');
  const stack: PyValue[] = []; // MARKs live in `marks`, as stack heights
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opStart = 0;

  const fail = (problem: string): never => {
    throw new CheckpointError(
      file,
      `data.pkl: ${problem} (at byte ${opStart})`,
      'the checkpoint is damaged or was not written by torch.save; re-download it',
    );
  };
  const take = (n: number): Uint8Array => {
    if (n > data.length - pos) fail('the pickle stream is truncated');
    pos += n;
    return data.subarray(pos - n, pos);
  };
  const u8 = (): number => take(1)[0]!;
  const u32 = (): number => {
    take(4);
    return view.getUint32(pos - 4, true);
  };
  const u64 = (): number => {
    take(8);
    const v = view.getBigUint64(pos - 8, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? fail('a length does not fit in memory') : Number(v);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('the pickle stream is truncated');
    const text = latin1.decode(data.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const pop = (): PyValue => {
    const floor = marks.length ? marks[marks.length - 1]! : 0;
    if (stack.length <= floor) fail('stack underflow');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    const floor = marks.length ? marks[marks.length - 1]! : 0;
    if (stack.length <= floor) fail('stack underflow');
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const at = marks.pop();
    if (at === undefined) fail('stack underflow: no MARK');
    return stack.splice(at!);
  };
  let pushes = 0;
  const push = (v: PyValue): void => {
    // Every value a container ends up holding was pushed first, so this bounds what the pickle can make us allocate.
    if (++pushes > MAX_PICKLE_VALUES) fail(`the pickle builds more than ${MAX_PICKLE_VALUES} values, far more than any state dict`);
    stack.push(v);
  };
  const remember = (key: number): void => {
    if (++pushes > MAX_PICKLE_VALUES) fail(`the pickle builds more than ${MAX_PICKLE_VALUES} values, far more than any state dict`);
    memo.set(key, top());
  };
  const resolveGlobal = (module: string, name: string): PyGlobal => {
    const qualified = `${module}.${name}`;
    // A dotted name is an attribute path in Python; refuse it rather than reason about aliases.
    if (name.includes('.') || !allowed.has(qualified)) {
      const shown = /^[\w.]{1,120}$/.test(qualified) ? qualified : quote(qualified);
      throw new CheckpointError(
        file,
        `data.pkl references the Python global ${shown}, which a tensor state dict never needs; the file could run code when loaded by Python, so it is refused`,
        'only load checkpoints from sources you trust; a .safetensors copy of the model cannot carry code',
      );
    }
    return new PyGlobal(module, name);
  };
  const call = (callee: PyValue, args: PyValue): PyValue => {
    if (!(callee instanceof PyGlobal)) return fail(`cannot call a ${typeName(callee)}`);
    if (!(args instanceof PyTuple)) return fail(`call arguments must be a tuple, not a ${typeName(args)}`);
    // The two container builders are rebuilt as the containers they make, not as recorded calls.
    if (callee.qualifiedName === 'collections.OrderedDict' && args.items.length === 0) return new PyDict();
    if (callee.qualifiedName === 'torch.Size' && args.items.length === 1 && args.items[0] instanceof PyTuple) return args.items[0];
    return new PyCall(callee, args.items);
  };
  const setItems = (target: PyValue, items: PyValue[]): void => {
    if (!(target instanceof PyDict)) return fail(`cannot set items on a ${typeName(target)}`);
    if (items.length % 2) fail('SETITEMS needs key/value pairs');
    for (let i = 0; i < items.length; i += 2) target.set(items[i]!, items[i + 1]!);
  };
  const appendItems = (target: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(target)) return fail(`cannot append to a ${typeName(target)}`);
    for (const item of items) target.push(item);
  };
  const int = (bytes: Uint8Array): number | bigint => {
    // Nothing in a state dict needs more; the cap also keeps a hostile LONG4 from eating CPU.
    if (bytes.length > 32) fail(`an integer of ${bytes.length} bytes is too large`);
    let v = 0n;
    for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
    if (bytes.length && bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(8 * bytes.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  while (pos < data.length) {
    opStart = pos;
    const op = data[pos++]!;
    switch (op) {
      case 0x80: {
        const proto = u8();
        if (proto < 2 || proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      } // PROTO
      case 0x95:
        u64();
        break; // FRAME: framing is only a hint for buffered readers
      case 0x2e: {
        // STOP
        const result = pop();
        return result;
      }
      case 0x28:
        marks.push(stack.length);
        break; // MARK
      case 0x7d:
        push(new PyDict());
        break; // EMPTY_DICT
      case 0x5d:
        push([]);
        break; // EMPTY_LIST
      case 0x29:
        push(new PyTuple([]));
        break; // EMPTY_TUPLE
      case 0x74:
        push(new PyTuple(popMark()));
        break; // TUPLE
      case 0x85:
        push(new PyTuple([pop()]));
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b]));
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b, c]));
        break;
      } // TUPLE3
      case 0x6c:
        push(popMark());
        break; // LIST
      case 0x64: {
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      } // DICT
      case 0x4a:
        take(4);
        push(view.getInt32(pos - 4, true));
        break; // BININT
      case 0x4b:
        push(u8());
        break; // BININT1
      case 0x4d:
        take(2);
        push(view.getUint16(pos - 2, true));
        break; // BININT2
      case 0x8a:
        push(int(take(u8())));
        break; // LONG1
      case 0x8b:
        push(int(take(u32())));
        break; // LONG4
      case 0x47:
        take(8);
        push(view.getFloat64(pos - 8, false));
        break; // BINFLOAT is big-endian
      case 0x58:
        push(utf8.decode(take(u32())));
        break; // BINUNICODE
      case 0x8c:
        push(utf8.decode(take(u8())));
        break; // SHORT_BINUNICODE
      case 0x8d:
        push(utf8.decode(take(u64())));
        break; // BINUNICODE8
      case 0x54:
        push(latin1.decode(take(u32())));
        break; // BINSTRING
      case 0x55:
        push(latin1.decode(take(u8())));
        break; // SHORT_BINSTRING
      case 0x42:
        push(new Uint8Array(take(u32())));
        break; // BINBYTES
      case 0x43:
        push(new Uint8Array(take(u8())));
        break; // SHORT_BINBYTES
      case 0x8e:
        push(new Uint8Array(take(u64())));
        break; // BINBYTES8
      case 0x4e:
        push(null);
        break; // NONE
      case 0x88:
        push(true);
        break; // NEWTRUE
      case 0x89:
        push(false);
        break; // NEWFALSE
      case 0x71:
        remember(u8());
        break; // BINPUT
      case 0x72:
        remember(u32());
        break; // LONG_BINPUT
      case 0x94:
        remember(memo.size);
        break; // MEMOIZE
      case 0x68:
      case 0x6a: {
        // BINGET, LONG_BINGET
        const key = op === 0x68 ? u8() : u32();
        if (!memo.has(key)) fail(`memo key ${key} was never stored`);
        push(memo.get(key)!);
        break;
      }
      case 0x63: {
        const module = line();
        push(resolveGlobal(module, line()));
        break;
      } // GLOBAL
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52:
      case 0x81: {
        const args = pop();
        push(call(pop(), args));
        break;
      } // REDUCE, NEWOBJ
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof PyDict) || kwargs.size) fail('keyword arguments are not supported');
        push(call(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const target = top();
        if (!(target instanceof PyDict || target instanceof PyCall)) fail(`cannot BUILD a ${typeName(target)}`);
        (target as PyDict | PyCall).state = state;
        break;
      }
      case 0x73: {
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      } // SETITEMS
      case 0x61: {
        const item = pop();
        appendItems(top(), [item]);
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      } // APPENDS
      case 0x51:
        push(new PyPersistent(pop()));
        break; // BINPERSID
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popMark();
        break; // POP_MARK
      case 0x32:
        push(top());
        break; // DUP
      default: {
        const shown = op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : '';
        fail(`unknown or unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${shown}`);
      }
    }
  }
  opStart = pos;
  return fail('the pickle stream is truncated: it ends without STOP');
}
