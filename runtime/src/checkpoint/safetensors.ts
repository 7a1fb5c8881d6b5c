// Reads the header of a `.safetensors` file (8-byte little-endian length, then a JSON table of
// tensors) and turns it into TensorRefs. Only the header is read here; tensor bytes are read
// later, one tensor at a time, so a 26 GB shard never sits in memory. The header is held to the
// format's rules (huggingface/safetensors README and its reference reader): a JSON object without
// duplicate keys, `__metadata__` a map of strings, and tensors that tile the data region exactly,
// with no overlap, no gap and nothing after the last one.

import { CheckpointError, brief, quote, shown } from '../errors.js';
import { jsonProblem, openRegularFile, readFully } from './modelFiles.js';
import { DTYPE_BYTES, type StorageDtype, type TensorRef } from './tensorRef.js';

/** A header larger than this is not a real safetensors file (the format itself caps it at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
const REDOWNLOAD = 'the file is corrupt or not safetensors: download it again';

export async function readSafetensors(file: string): Promise<TensorRef[]> {
  const { fh, size } = await openRegularFile(file);
  try {
    if (size < 8)
      throw new CheckpointError(
        file,
        `file is ${size} bytes, too short to be safetensors`,
        'the download is incomplete: delete it and download again',
      );
    const lenBuf = Buffer.alloc(8);
    await readFully(fh, lenBuf, 8, 0);
    const claimed = lenBuf.readBigUInt64LE(0);
    if (claimed > BigInt(MAX_HEADER_BYTES) || 8n + claimed > BigInt(size)) {
      throw new CheckpointError(
        file,
        `header length ${claimed} does not fit in a ${size}-byte file`,
        'the file is truncated or not safetensors: download it again',
      );
    }
    const headerLen = Number(claimed);
    const headerBuf = Buffer.alloc(headerLen);
    if ((await readFully(fh, headerBuf, headerLen, 8)) !== headerLen)
      throw new CheckpointError(file, 'the file ended while its header was read', REDOWNLOAD);
    const dataStart = 8 + headerLen;
    return parseHeader(file, headerBuf, dataStart, size);
  } finally {
    await fh.close();
  }
}

/** Validates a header (the bytes after the length prefix) and maps it to TensorRefs with absolute offsets. */
function parseHeader(file: string, bytes: Uint8Array, dataStart: number, fileSize: number): TensorRef[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new CheckpointError(file, 'header is not UTF-8 text', REDOWNLOAD);
  }
  // The reference reader insists on this too: a header is a JSON object, padded with spaces at most.
  if (!text.startsWith('{')) throw new CheckpointError(file, `header is not a JSON object: it starts ${quote(text)}`, REDOWNLOAD);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(file, `header is not valid JSON: ${jsonProblem((err as Error).message, text)}`, REDOWNLOAD);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new CheckpointError(file, `header is not a JSON object: it starts ${quote(text)}`, REDOWNLOAD);
  }
  // JSON.parse keeps the last of two equal keys silently; the format forbids them, and two readers could disagree.
  const duplicate = duplicateTopLevelKey(text);
  if (duplicate !== undefined) throw new CheckpointError(file, `header names ${quote(duplicate)} twice`, REDOWNLOAD);

  const refs: TensorRef[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      checkMetadata(file, entry);
      continue;
    }
    refs.push(toRef(file, name, entry, dataStart, fileSize));
  }
  checkTiling(file, refs, dataStart, fileSize);
  return refs;
}

function checkMetadata(file: string, metadata: unknown): void {
  if (
    typeof metadata !== 'object' ||
    metadata === null ||
    Array.isArray(metadata) ||
    !Object.values(metadata).every((v) => typeof v === 'string')
  ) {
    throw new CheckpointError(file, `__metadata__ must map strings to strings, got ${brief(metadata)}`, REDOWNLOAD);
  }
}

function toRef(file: string, name: string, entry: unknown, dataStart: number, fileSize: number): TensorRef {
  const tensor = `tensor ${shown(name)}`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new CheckpointError(
      file,
      `${tensor} is described by ${brief(entry)}, not by an object with dtype, shape and data_offsets`,
      REDOWNLOAD,
    );
  }
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const dtype = e.dtype;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw new CheckpointError(file, `${tensor} has unknown dtype ${brief(dtype)}`, `supported: ${Object.keys(DTYPE_BYTES).join(', ')}`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new CheckpointError(file, `${tensor} has an invalid shape ${brief(shape)}`, REDOWNLOAD);
  }
  const offsets = e.data_offsets;
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[1] < offsets[0]
  ) {
    throw new CheckpointError(file, `${tensor} has invalid data_offsets ${brief(offsets)}`, REDOWNLOAD);
  }
  const length = offsets[1] - offsets[0];
  let expected = DTYPE_BYTES[dtype as StorageDtype];
  for (const d of shape as number[]) {
    expected *= d;
    if (!Number.isSafeInteger(expected))
      throw new CheckpointError(file, `${tensor} has a shape ${brief(shape)} too large for any file`, REDOWNLOAD);
  }
  if (length !== expected) {
    throw new CheckpointError(
      file,
      `${tensor}: ${length} bytes stored but shape ${brief(shape)} of ${dtype} needs ${expected}`,
      REDOWNLOAD,
    );
  }
  const offset = dataStart + offsets[0];
  if (offset + length > fileSize) {
    throw new CheckpointError(
      file,
      `${tensor} ends at byte ${offset + length} but the file has ${fileSize}`,
      'the file is truncated: download it again',
    );
  }
  return { name, dtype: dtype as StorageDtype, shape: shape as number[], file, offset, length };
}

/** The tensors must cover the data region exactly once: sorted by offset, each starts where the previous ended. */
function checkTiling(file: string, refs: TensorRef[], dataStart: number, fileSize: number): void {
  const sorted = [...refs].sort((a, b) => a.offset - b.offset || a.length - b.length);
  let end = dataStart;
  let previous: TensorRef | undefined;
  for (const ref of sorted) {
    if (ref.offset < end) {
      throw new CheckpointError(
        file,
        `tensors ${shown(previous!.name)} and ${shown(ref.name)} overlap (data bytes ${ref.offset - dataStart}..${end - dataStart})`,
        REDOWNLOAD,
      );
    }
    if (ref.offset > end) {
      throw new CheckpointError(
        file,
        `data bytes ${end - dataStart}..${ref.offset - dataStart} belong to no tensor (a gap before ${shown(ref.name)})`,
        REDOWNLOAD,
      );
    }
    end = ref.offset + ref.length;
    if (ref.length > 0) previous = ref;
  }
  if (end !== fileSize) {
    throw new CheckpointError(file, `the tensors end at byte ${end} but the file goes on to ${fileSize}`, REDOWNLOAD);
  }
}

/** The first key that occurs twice in the top-level object of `text` (known to be valid JSON). */
function duplicateTopLevelKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: find its end, skipping escapes
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < text.length && ' \t\n\r'.includes(text[k]!)) k++;
        if (text[k] === ':') {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return undefined;
}
