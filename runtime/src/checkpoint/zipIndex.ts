// The central directory of a zip archive, read with positioned reads so a 10+ GB checkpoint is
// never loaded whole. ZIP64 is supported because large PyTorch shards pass 4 GB. Only stored
// (uncompressed) entries can be handed out as byte ranges; that is all torch.save writes.

import type { FileHandle } from 'node:fs/promises';
import { CheckpointError } from '../errors.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated, ... */
  method: number;
  /** General-purpose bit flags (bit 0 = encrypted). */
  flags: number;
  compressedSize: number;
  uncompressedSize: number;
  /** Absolute offset of the entry's (possibly compressed) bytes in the archive. */
  dataOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
// A central directory is ~100 bytes per entry; anything far larger is corruption, not a model.
const MAX_CENTRAL_DIR = 64 << 20;

const REDOWNLOAD = 're-download the file; the copy on disk is incomplete or damaged';

/** Reads exactly `length` bytes at `position`; a short read means the file ends early. */
export async function readAt(fh: FileHandle, file: string, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new CheckpointError(
        file,
        `the file ends at byte ${position + done}, before the ${length} bytes expected at ${position}`,
        REDOWNLOAD,
      );
    }
    done += bytesRead;
  }
  return buf;
}

function u64(file: string, buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new CheckpointError(file, `the zip archive holds an impossible 64-bit size or offset (${v})`, REDOWNLOAD);
  return Number(v);
}

/** Lists every entry of the zip archive open as `fh`. */
export async function readZipIndex(fh: FileHandle, file: string): Promise<ZipEntry[]> {
  const fileSize = (await fh.stat()).size;
  const tailLength = Math.min(fileSize, EOCD_SIZE + MAX_COMMENT);
  const tailStart = fileSize - tailLength;
  const tail = await readAt(fh, file, tailStart, tailLength);
  let eocd = -1;
  for (let i = tail.length - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + EOCD_SIZE + tail.readUInt16LE(i + 20) <= tail.length) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new CheckpointError(file, 'the zip archive is truncated or incomplete: it has no end-of-central-directory record', REDOWNLOAD);
  }

  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdAbs = tailStart + eocd;
  // The ZIP64 locator sits right before the classic record; when present its record is the truth.
  if (eocdAbs >= 20) {
    const locator = await readAt(fh, file, eocdAbs - 20, 20);
    if (locator.readUInt32LE(0) === ZIP64_LOCATOR_SIG) {
      const recordAt = u64(file, locator, 8);
      if (recordAt + 56 > eocdAbs)
        throw new CheckpointError(file, 'the zip archive has a ZIP64 locator pointing outside the file', REDOWNLOAD);
      const record = await readAt(fh, file, recordAt, 56);
      if (record.readUInt32LE(0) !== ZIP64_EOCD_SIG)
        throw new CheckpointError(file, 'the zip archive has a damaged ZIP64 end-of-central-directory record', REDOWNLOAD);
      count = u64(file, record, 32);
      cdSize = u64(file, record, 40);
      cdOffset = u64(file, record, 48);
    }
  }
  if (cdOffset + cdSize > eocdAbs || cdSize > MAX_CENTRAL_DIR) {
    throw new CheckpointError(
      file,
      `the zip archive's central directory (${cdSize} bytes at ${cdOffset}) does not fit in the file`,
      REDOWNLOAD,
    );
  }

  const cd = await readAt(fh, file, cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) {
      throw new CheckpointError(file, `the zip archive's central directory is damaged at entry ${n} of ${count}`, REDOWNLOAD);
    }
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    const end = p + 46 + nameLength + extraLength + commentLength;
    if (end > cd.length)
      throw new CheckpointError(file, `the zip archive's central directory is damaged at entry ${n} of ${count}`, REDOWNLOAD);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLength);
    let uncompressedSize = cd.readUInt32LE(p + 24);
    let compressedSize = cd.readUInt32LE(p + 20);
    let localOffset = cd.readUInt32LE(p + 42);
    // A ZIP64 extra field carries, in this order, only the values whose 32-bit slot is saturated.
    for (let x = p + 46 + nameLength; x + 4 <= p + 46 + nameLength + extraLength;) {
      const id = cd.readUInt16LE(x);
      const size = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        const next = (): number => {
          if (q + 8 > x + 4 + size) throw new CheckpointError(file, `the ZIP64 field of zip entry ${name} is too short`, REDOWNLOAD);
          const v = u64(file, cd, q);
          q += 8;
          return v;
        };
        if (uncompressedSize === 0xffffffff) uncompressedSize = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      x += 4 + size;
    }
    // The local header's extra field often differs from the central one (torch pads it to align
    // the data), so the data offset can only be known by reading the local header itself.
    const local = await readAt(fh, file, localOffset, 30);
    if (local.readUInt32LE(0) !== LOCAL_SIG)
      throw new CheckpointError(file, `the local header of zip entry ${name} is missing or damaged`, REDOWNLOAD);
    const dataOffset = localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    if (dataOffset + compressedSize > fileSize) {
      throw new CheckpointError(file, `zip entry ${name} extends past the end of the file (truncated)`, REDOWNLOAD);
    }
    entries.push({ name, method: cd.readUInt16LE(p + 10), flags: cd.readUInt16LE(p + 8), compressedSize, uncompressedSize, dataOffset });
    p = end;
  }
  return entries;
}

/** Throws unless the entry's bytes are stored as-is, so they can be read in place. */
export function assertStored(file: string, entry: ZipEntry): void {
  if (entry.flags & 1) throw new CheckpointError(file, `zip entry ${entry.name} is encrypted`, 're-save the checkpoint without encryption');
  if (entry.method !== 0 || entry.compressedSize !== entry.uncompressedSize) {
    throw new CheckpointError(
      file,
      `zip entry ${entry.name} is compressed (method ${entry.method}); only stored entries can be read in place`,
      're-save it with torch.save, which stores entries uncompressed, or convert the model to safetensors',
    );
  }
}

/** The whole content of a small stored entry. */
export async function readStoredEntry(fh: FileHandle, file: string, entry: ZipEntry): Promise<Buffer> {
  assertStored(file, entry);
  return readAt(fh, file, entry.dataOffset, entry.uncompressedSize);
}
