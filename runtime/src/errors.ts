// Errors the runtime raises for bad input. Each one says what was wrong, where (the file),
// and what to do, so the CLI and the editor can show it verbatim. Errors that cross a boundary
// (UsageError, DeviceUnavailableError, …) and how each boundary reads them: protocol/errors.ts.

import { UsageError } from '../../protocol/errors.js';

/** A checkpoint file is missing, malformed, or holds something this runtime refuses to load. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    /** The file at fault (absolute or as the user gave it), or the model folder. */
    readonly file: string,
    /** What is wrong, in one sentence. */
    readonly problem: string,
    /** What the user can do about it, if anything. */
    readonly hint?: string,
  ) {
    super(`${file}: ${problem}${hint ? ` (${hint})` : ''}`);
  }
}

/**
 * Bad input quoted briefly for a message: at most `max` characters, JSON-escaped (so control
 * characters and raw bytes never reach a terminal), with `…` when cut.
 */
export function quote(text: string, max = 60): string {
  const cut = text.length > max;
  // Never split a surrogate pair: JSON.stringify would escape the lone half, which reads as noise.
  let end = cut ? max : text.length;
  if (cut && /[\ud800-\udbff]/.test(text[end - 1] ?? '')) end--;
  return `${JSON.stringify(text.slice(0, end))}${cut ? '…' : ''}`;
}

/** A name from a file (a tensor, a zip entry) as is when it is short and plain, else quoted briefly. */
export function shown(name: string): string {
  return /^[\w.\-/:+]{1,120}$/.test(name) ? name : quote(name);
}

/** Any parsed JSON value, quoted briefly; safe on values too large or too deep to stringify. */
export function brief(value: unknown, max = 60): string {
  if (typeof value === 'string') return quote(value, max);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // Nested too deeply for the stack, or a bigint.
  }
  text ??= Array.isArray(value) ? '[…]' : typeof value === 'object' && value !== null ? '{…}' : String(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * A file the runtime was told to use (a cache folder, a model folder) that the operating system
 * refuses: a file where a folder should be, no permission, a full or read-only disk.
 */
export class FileAccessError extends UsageError {
  override readonly name: string = 'FileAccessError';
  constructor(
    readonly file: string,
    readonly code: string,
    problem: string,
  ) {
    super(`${file}: ${problem} (${code})`);
  }
}

const FS_PROBLEMS: Readonly<Record<string, string>> = {
  ENOTDIR: 'part of this path is a file where a folder is needed',
  EISDIR: 'is a folder where a file is needed',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space is left on the device',
  EDQUOT: 'the disk quota is exhausted',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the path is too long',
  EEXIST: 'already exists and is in the way',
};

/**
 * Node's file-system errors (`ENOTDIR: not a directory, mkdir '/x/y'`) as a FileAccessError that
 * names the path, so the CLI and the editor show one line instead of a stack trace; undefined for
 * any other error. Callers: `err = fileAccessError(err) ?? err` where errors reach the user.
 */
export function fileAccessError(err: unknown): FileAccessError | undefined {
  if (err instanceof FileAccessError) return err;
  const e = err as Partial<NodeJS.ErrnoException> | null;
  if (typeof e !== 'object' || e === null || typeof e.code !== 'string' || typeof e.syscall !== 'string') return undefined;
  const problem = FS_PROBLEMS[e.code];
  if (problem === undefined) return undefined;
  return new FileAccessError(typeof e.path === 'string' ? e.path : `(${e.syscall})`, e.code, problem);
}
