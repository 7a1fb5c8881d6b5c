// Maps a `pytorch_model.bin` written by torch.save (the zip format of torch >= 1.6) to TensorRefs:
// the pickled state dict says which storage entry and offset each tensor uses, and the entries
// are stored uncompressed, so each tensor is a plain byte range of the file.

import type { FileHandle } from 'node:fs/promises';
import { CheckpointError, quote, shown } from '../errors.js';
import { openRegularFile } from './modelFiles.js';
import { PyCall, PyDict, PyGlobal, PyPersistent, PyTuple, TORCH_DTYPE_GLOBALS, unpickle, type PyValue } from './pickle.js';
import { DTYPE_BYTES, type TensorRef } from './tensorRef.js';
import { assertStored, readAt, readStoredEntry, readZipIndex, type ZipEntry } from './zipIndex.js';

// data.pkl of the largest state dicts is a few MB; refuse to allocate for an absurd claim.
const MAX_PICKLE_BYTES = 64 << 20;
// torch writes "little" or "big".
const MAX_BYTEORDER_BYTES = 16;
// A state dict is flat, or one level deep (a module's state dict inside a checkpoint dict); a
// Parameter wraps its tensor once. Deeper is not a state dict, and recursion must stay bounded.
const MAX_DICT_DEPTH = 32;
const MAX_PARAMETER_WRAPPING = 8;
// What torch < 1.6 wrote first: pickle PROTO 2, then LONG1 with the magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC = Buffer.from('80028a0a6cfc9c46f9206aa85019', 'hex');

/** Every tensor of the state dict in `file`, in pickle order; tied tensors share one byte range. */
export async function readTorchBin(file: string): Promise<TensorRef[]> {
  const { fh } = await openRegularFile(file);
  try {
    await checkMagic(fh, file);
    const entries = await readZipIndex(fh, file);
    const pickles = entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (pickles.length !== 1) {
      throw new CheckpointError(
        file,
        pickles.length
          ? `the archive holds ${pickles.length} data.pkl records, expected one`
          : 'the zip archive has no <archive>/data.pkl, so it was not written by torch.save',
        'pass a state dict saved with torch.save, or its safetensors conversion',
      );
    }
    const pkl = pickles[0]!;
    const prefix = pkl.name.slice(0, -'data.pkl'.length);
    const byName = new Map(entries.map((e) => [e.name, e]));
    if (byName.has(`${prefix}constants.pkl`)) {
      throw new CheckpointError(
        file,
        'this is a TorchScript archive (torch.jit.save), not a state dict saved with torch.save',
        'save the model with torch.save(model.state_dict(), path)',
      );
    }
    const byteorder = byName.get(`${prefix}byteorder`);
    if (byteorder && byteorder.uncompressedSize > MAX_BYTEORDER_BYTES)
      throw new CheckpointError(
        file,
        `${byteorder.name} is ${byteorder.uncompressedSize} bytes, not "little" or "big"`,
        'the checkpoint is damaged: download it again',
      );
    if (byteorder && (await readStoredEntry(fh, file, byteorder)).toString('latin1') !== 'little') {
      throw new CheckpointError(
        file,
        'the checkpoint was saved on a big-endian machine',
        're-save it on a little-endian machine or convert it to safetensors',
      );
    }
    if (pkl.uncompressedSize > MAX_PICKLE_BYTES)
      throw new CheckpointError(file, `${pkl.name} is implausibly large (${pkl.uncompressedSize} bytes)`);
    const root = unpickle(await readStoredEntry(fh, file, pkl), file);
    if (!(root instanceof PyDict)) {
      throw new CheckpointError(
        file,
        'data.pkl does not hold a state dict (a dict of tensors)',
        'save the model with torch.save(model.state_dict(), path)',
      );
    }
    const refs: TensorRef[] = [];
    collect(file, root, '', 0, new Set(), (name, call) => refs.push(tensorRef(file, name, call, prefix, byName)));
    return refs;
  } finally {
    await fh.close();
  }
}

async function checkMagic(fh: FileHandle, file: string): Promise<void> {
  const size = (await fh.stat()).size;
  const head = size ? await readAt(fh, file, 0, Math.min(size, LEGACY_MAGIC.length)) : Buffer.alloc(0);
  // PK\3\4 starts any archive with entries; PK\5\6 an empty one.
  const signature = head.length >= 4 ? head.readUInt32LE(0) : 0;
  if (signature === 0x04034b50 || signature === 0x06054b50) return;
  // Any pickle protocol byte may precede the magic number.
  if (head.length === LEGACY_MAGIC.length && head[0] === 0x80 && head.subarray(2).equals(LEGACY_MAGIC.subarray(2))) {
    throw new CheckpointError(
      file,
      'the checkpoint uses the legacy (pre-1.6) PyTorch format, which this runtime cannot read',
      're-save it with a current torch (torch.save(torch.load(path), path)) or convert it to safetensors',
    );
  }
  throw new CheckpointError(
    file,
    size ? 'not a PyTorch checkpoint (not a zip archive written by torch.save)' : 'the file is empty',
    'expected a pytorch_model.bin written by torch.save, or a .safetensors file',
  );
}

type TensorSink = (name: string, call: PyCall) => void;

/** Visits the tensors of a (possibly nested) state dict; nested keys are joined with dots. */
function collect(file: string, dict: PyDict, prefix: string, depth: number, seen: Set<PyDict>, sink: TensorSink): void {
  if (seen.has(dict)) return;
  if (depth > MAX_DICT_DEPTH) {
    throw new CheckpointError(
      file,
      `data.pkl nests dicts more than ${MAX_DICT_DEPTH} deep (at ${quote(prefix)}), which no state dict does`,
      'the checkpoint is damaged or was not written by torch.save',
    );
  }
  seen.add(dict);
  for (const [key, value] of dict) {
    const name = `${prefix}${typeof key === 'string' || typeof key === 'number' ? key : String(key)}`;
    if (value instanceof PyCall) sink(name, value);
    else if (value instanceof PyDict) collect(file, value, `${name}.`, depth + 1, seen, sink);
  }
}

function tensorRef(file: string, name: string, call: PyCall, prefix: string, entries: Map<string, ZipEntry>): TensorRef {
  const bad = (problem: string): never => {
    throw new CheckpointError(file, `tensor ${shown(name)}: ${problem}`);
  };
  for (let wrapping = 0; call.callee.qualifiedName === 'torch._utils._rebuild_parameter'; wrapping++) {
    if (wrapping === MAX_PARAMETER_WRAPPING)
      bad(`parameters wrapped in parameters more than ${MAX_PARAMETER_WRAPPING} deep, which torch never writes`);
    const inner = call.args[0];
    call = inner instanceof PyCall ? inner : bad('a parameter that wraps no tensor');
  }
  if (call.callee.qualifiedName !== 'torch._utils._rebuild_tensor_v2')
    bad(`built by ${call.callee.qualifiedName}, which is not a plain tensor`);
  const [storage, storageOffset, size, stride] = call.args;

  const pid = storage instanceof PyPersistent && storage.id instanceof PyTuple ? storage.id.items : [];
  const [tag, storageType, key] = pid;
  if (pid.length !== 5 || tag !== 'storage' || typeof key !== 'string' || !(storageType instanceof PyGlobal)) {
    return bad("its storage is not a ('storage', type, key, location, numel) reference");
  }
  const dtype = TORCH_DTYPE_GLOBALS[storageType.qualifiedName] ?? bad(`unsupported storage type ${storageType.qualifiedName}`);
  const shape = ints(size) ?? bad('its size is not a tuple of non-negative integers');
  const strides = ints(stride) ?? bad('its stride is not a tuple of non-negative integers');
  if (typeof storageOffset !== 'number' || !Number.isSafeInteger(storageOffset) || storageOffset < 0)
    bad('its storage offset is not a non-negative integer');
  if (strides.length !== shape.length) bad(`it has ${shape.length} dimensions but ${strides.length} strides`);

  const numel = shape.reduce((a, b) => a * b, 1);
  // Size-1 dimensions may carry any stride in torch and are still contiguous; empty tensors have no layout.
  let expected = 1;
  for (let i = shape.length - 1; i >= 0 && numel > 0; i--) {
    if (shape[i] !== 1 && strides[i] !== expected) {
      bad(
        `it is not contiguous (size [${shape.join(', ')}], stride [${strides.join(', ')}]); only row-major contiguous tensors are supported`,
      );
    }
    expected *= shape[i]!;
  }

  const entryName = `${prefix}data/${key}`;
  const entry = entries.get(entryName) ?? bad(`its storage ${shown(entryName)} is missing from the archive (truncated or damaged file)`);
  assertStored(file, entry);
  const itemSize = DTYPE_BYTES[dtype];
  const start = (storageOffset as number) * itemSize;
  const length = numel * itemSize;
  if (!Number.isSafeInteger(start + length) || start + length > entry.uncompressedSize) {
    bad(
      `it needs bytes ${start}..${start + length} of ${entryName}, which holds only ${entry.uncompressedSize} (truncated or damaged file)`,
    );
  }
  return { name, dtype, shape, file, offset: entry.dataOffset + start, length };
}

function ints(v: PyValue | undefined): number[] | undefined {
  if (!(v instanceof PyTuple)) return undefined;
  const out = v.items.filter((x): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0);
  return out.length === v.items.length ? out : undefined;
}
