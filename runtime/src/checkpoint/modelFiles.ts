// Every file the loaders read from a model folder goes through here, so the rules hold for all of
// them: a name a checkpoint gives is a plain relative path; what it resolves to (links followed)
// stays inside the folder, or in the Hub cache's blobs/ of the same repository; only regular files
// are opened (a FIFO would block, a folder or device would read forever); text files are read
// whole only below a cap; and bad JSON is quoted briefly, never dumped.

import { constants, type FileHandle, open, realpath } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, sep } from 'node:path';
import { CheckpointError, quote } from '../errors.js';
import { blobsDirOfSnapshot } from '../hub/hubCache.js';

/** config.json, generation_config.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json, *.index.json: kilobytes in practice. */
export const CONFIG_FILE_CAP = 4 << 20;
/** vocab.json, merges.txt, tokenizer.json: a few MB for GPT-2's 50k tokens; room for vocabularies ten times larger. */
export const TOKENIZER_FILE_CAP = 64 << 20;

const OUTSIDE_HINT =
  "a checkpoint may only use files inside its own folder (or, in the Hugging Face cache, its repository's blobs/): copy the file into the model folder";

/**
 * Checks a file name a checkpoint gives (a shard in an index): a `/`-separated relative path
 * without `.`, `..` or empty parts, absolute or drive-letter forms, backslashes or NUL bytes.
 * `namedBy` is the file that gave it, blamed in the error.
 */
export function checkFileName(name: unknown, namedBy: string, what: string): string {
  if (typeof name !== 'string')
    throw new CheckpointError(
      namedBy,
      `${what} is not a file name but ${typeof name === 'object' ? (name === null ? 'null' : 'an object') : `a ${typeof name}`}`,
    );
  const parts = name.split('/');
  if (
    name === '' ||
    isAbsolute(name) ||
    /^[A-Za-z]:/.test(name) ||
    /[\\\0]/.test(name) ||
    parts.some((p) => p === '' || p === '.' || p === '..')
  ) {
    throw new CheckpointError(namedBy, `${what} ${quote(name)} is not a plain relative path inside the model folder`, OUTSIDE_HINT);
  }
  return name;
}

/** The real folders a model folder's files may resolve into: itself, and its repository's blobs/ when it is a Hub snapshot. */
async function allowedRoots(dir: string): Promise<string[]> {
  const real = await realpath(dir).catch((err: NodeJS.ErrnoException) => {
    throw new CheckpointError(dir, `the model folder cannot be opened (${err.code ?? err.message})`);
  });
  const roots = [real];
  for (const blobs of new Set([blobsDirOfSnapshot(dir), blobsDirOfSnapshot(real)])) {
    if (blobs === undefined) continue;
    const realBlobs = await realpath(blobs).catch(() => undefined);
    if (realBlobs !== undefined) roots.push(realBlobs);
  }
  return roots;
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !isAbsolute(rel) && rel.split(sep)[0] !== '..';
}

/**
 * The path of `name` (checked with checkFileName by the caller when a checkpoint gave it) in the
 * model folder `dir`, after making sure that it, links followed, stays inside the folder or the
 * same Hub repository's blobs/; undefined when there is no such file (a dangling link included).
 */
export async function locateModelFile(dir: string, name: string): Promise<string | undefined> {
  const path = join(dir, ...name.split('/'));
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new CheckpointError(
      path,
      code === 'ELOOP' ? 'is a loop of symbolic links' : `cannot be opened (${code ?? (err as Error).message})`,
    );
  }
  const roots = await allowedRoots(dir);
  if (!roots.some((root) => isInside(root, real))) {
    throw new CheckpointError(path, `resolves to ${real}, outside the model folder ${dir}`, OUTSIDE_HINT);
  }
  return path;
}

/**
 * Opens a file for reading, refusing anything but a regular file. O_NONBLOCK makes the open of a
 * FIFO return at once (a plain open waits for a writer forever); regular files ignore the flag.
 */
export async function openRegularFile(file: string): Promise<{ fh: FileHandle; size: number }> {
  const fh = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0)).catch((err: NodeJS.ErrnoException) => {
    throw new CheckpointError(
      file,
      err.code === 'ENOENT'
        ? 'file is missing'
        : err.code === 'EISDIR'
          ? 'is a folder, not a file'
          : `cannot be opened (${err.code ?? err.message})`,
    );
  });
  try {
    const stats = await fh.stat();
    if (stats.isDirectory()) throw new CheckpointError(file, 'is a folder, not a file');
    if (!stats.isFile())
      throw new CheckpointError(file, 'is not a regular file (a FIFO, socket or device)', 'model files must be plain files');
    return { fh, size: stats.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Reads exactly `length` bytes at `position`, or fewer only where the file ends. */
export async function readFully(fh: FileHandle, buf: Uint8Array, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 1)} MiB`;
}

/** A whole UTF-8 text file of at most `cap` bytes; larger files are refused before anything is read. */
export async function readTextFile(file: string, cap: number): Promise<string> {
  const { fh, size } = await openRegularFile(file);
  try {
    if (size > cap) {
      throw new CheckpointError(
        file,
        `is ${size} bytes (${mib(size)}), more than the ${mib(cap)} a ${basename(file)} may hold`,
        'this is not the file published with the model: download it again',
      );
    }
    const buf = new Uint8Array(size);
    const got = await readFully(fh, buf, size, 0);
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf.subarray(0, got));
    } catch {
      throw new CheckpointError(file, 'is not UTF-8 text', 'the file is damaged or not what its name says: download it again');
    }
  } finally {
    await fh.close();
  }
}

/** `name` in the model folder `dir`, located and read with readTextFile; undefined when absent. */
export async function readModelText(dir: string, name: string, cap: number): Promise<{ file: string; text: string } | undefined> {
  const file = await locateModelFile(dir, name);
  return file === undefined ? undefined : { file, text: await readTextFile(file, cap) };
}

/** Deeper than this, JSON is not a model file, and code that walks it (JSON.stringify, the tokenizers binding's serde, limited to 128) would fail. */
export const MAX_JSON_DEPTH = 100;

/**
 * JSON.parse, failing with a CheckpointError that names the file and quotes the bad spot briefly;
 * values nested deeper than MAX_JSON_DEPTH are refused too.
 */
export function parseJsonText(text: string, file: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(file, `${basename(file)} is not valid JSON: ${jsonProblem((err as Error).message, text)}`);
  }
  if (jsonDepthExceeds(value, MAX_JSON_DEPTH))
    throw new CheckpointError(file, `${basename(file)} nests lists or objects more than ${MAX_JSON_DEPTH} deep, which no model file does`);
  return value;
}

/** Whether a parsed JSON value nests deeper than `max`; iterative, so any depth is safe to ask about. */
function jsonDepthExceeds(root: unknown, max: number): boolean {
  const pending: [unknown, number][] = [[root, 0]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(value) ? value : Object.values(value)) {
      if (typeof child === 'object' && child !== null) pending.push([child, depth + 1]);
    }
  }
  return false;
}

/** V8's JSON.parse message without its raw snippet of the input, plus a brief, escaped quote of where it failed. */
export function jsonProblem(message: string, text: string): string {
  const at = /at position (\d+)/.exec(message);
  const position = at ? Number(at[1]) : undefined;
  const reason = message
    .replace(/, ".*"(?:\.\.\.)? is not valid JSON$/s, '')
    .replace(/,? *(?:in JSON )?at position \d+.*$/s, '')
    // The offending token itself may be a control character or a raw byte.
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (text.trim() === '') return 'the file is empty';
  return position === undefined
    ? `${reason}; it starts ${quote(text)}`
    : `${reason} at character ${position}, near ${quote(text.slice(position))}`;
}
