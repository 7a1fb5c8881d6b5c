// Reads the header of a `.safetensors` file (8-byte little-endian length, then a JSON table of
// tensors) and turns it into TensorRefs. Only the header is read here; tensor bytes are read
// later, one tensor at a time, so a 26 GB shard never sits in memory.

import { open } from 'node:fs/promises';
import { CheckpointError } from '../errors.js';
import { DTYPE_BYTES, type StorageDtype, type TensorRef } from './tensorRef.js';

/** A header larger than this is not a real safetensors file (the format itself caps it at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export async function readSafetensors(file: string): Promise<TensorRef[]> {
  const fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new CheckpointError(file, err.code === 'ENOENT' ? 'file is missing' : `cannot open: ${err.message}`);
  });
  try {
    const { size } = await fh.stat();
    if (size < 8) throw new CheckpointError(file, `file is ${size} bytes, too short to be safetensors`, 'the download is incomplete: delete it and download again');
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
      throw new CheckpointError(file, `header length ${headerLen} does not fit in a ${size}-byte file`, 'the file is truncated or not safetensors: download it again');
    }
    const headerBuf = Buffer.alloc(headerLen);
    await fh.read(headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new CheckpointError(file, `header is not valid JSON (${(err as Error).message})`, 'the file is corrupt: download it again');
    }
    const dataStart = 8 + headerLen;
    const refs: TensorRef[] = [];
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      refs.push(toRef(file, name, entry, dataStart, size));
    }
    return refs;
  } finally {
    await fh.close();
  }
}

function toRef(file: string, name: string, entry: unknown, dataStart: number, fileSize: number): TensorRef {
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const dtype = e.dtype as StorageDtype;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
    throw new CheckpointError(file, `tensor ${name} has unknown dtype ${JSON.stringify(e.dtype)}`, `supported: ${Object.keys(DTYPE_BYTES).join(', ')}`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new CheckpointError(file, `tensor ${name} has an invalid shape ${JSON.stringify(shape)}`);
  }
  const offsets = e.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
    throw new CheckpointError(file, `tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const length = offsets[1] - offsets[0];
  const expected = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  if (length !== expected) {
    throw new CheckpointError(file, `tensor ${name}: ${length} bytes stored but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}`);
  }
  const offset = dataStart + offsets[0];
  if (offset + length > fileSize) {
    throw new CheckpointError(file, `tensor ${name} ends at byte ${offset + length} but the file has ${fileSize}`, 'the file is truncated: download it again');
  }
  return { name, dtype, shape: shape as number[], file, offset, length };
}
