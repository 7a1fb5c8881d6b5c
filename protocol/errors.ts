// The one error registry. Every error that crosses a boundary (the engine's worker thread, the
// JSON-RPC connection to the editor, `opt serve`'s HTTP answers, the CLI's exit code) is a class
// here, and its meaning on each boundary is one entry in ERRORS: the reply code, the HTTP status,
// whether it is a cancellation (not a failure to show) and whether the caller's input is at fault.
// Mappers derive from the entry; none matches names of its own. Errors travel as { name, message }
// and are revived by name, so a subclass the far side does not know still arrives as its kind.
// Imports neither `vscode` nor onnxruntime.

import { ErrorCodes } from 'vscode-jsonrpc';
import type { ModelTask } from './engine.js';
import { RuntimeErrorCodes } from './protocol.js';

/** A caller passed an option or input that cannot be honoured; the message says what and what to do. */
export class UsageError extends Error {
  override readonly name: string = 'UsageError';
}

/**
 * The device asked for cannot run this model here (its provider, driver or GPU is missing, or the
 * GPU is too small). The fix is another device, not another model.
 */
export class DeviceUnavailableError extends UsageError {
  override readonly name: string = 'DeviceUnavailableError';
}

/** The request was cancelled (a keystroke, the user, a closed connection). Not an error to show. */
export class CancelledError extends Error {
  override readonly name: string = 'CancelledError';
}

/** A newer inline request for the same document replaced this one. A cancellation. */
export class SupersededError extends CancelledError {
  override readonly name: string = 'SupersededError';
}

/** The engine's queue is full; retry shortly. */
export class EngineBusyError extends Error {
  override readonly name = 'EngineBusyError';
}

/** The engine cannot serve requests now (not loaded, stopped, gave up after crashes); the message says why. */
export class EngineUnavailableError extends Error {
  override readonly name = 'EngineUnavailableError';
}

/**
 * The loaded checkpoint has no head for the request (a classifier asked to complete text, a causal
 * LM asked to classify); the message names the architecture needed. Editor commands say so; inline
 * completions stay quiet.
 */
export class WrongModelTypeError extends Error {
  override readonly name = 'WrongModelTypeError';
  constructor(
    message: string,
    /** The task that was asked for, when known. */
    readonly task?: ModelTask,
    /** The loaded checkpoint's architecture (config.json's architectures[0]), when known. */
    readonly architecture?: string,
  ) {
    super(message);
  }
}

/** How one kind of error reads on each boundary. */
export interface ErrorKind {
  /** Rebuilds the error on the far side of a boundary from its message. */
  revive(message: string): Error;
  /** The JSON-RPC reply code. */
  rpcCode: number;
  /** `opt serve`'s answer: HTTP status and OpenAI's error type and code. */
  http: { status: number; type: string; code: string; headers?: Readonly<Record<string, string>> };
  /** Ended on purpose (the user, a keystroke, a newer request): never shown as a failure. */
  cancellation: boolean;
  /** The caller's input or files are at fault: the CLI prints the message alone and exits 2. */
  userFault: boolean;
}

const named = (name: string) => (message: string) => Object.assign(new Error(message), { name });
const invalid = { status: 400, type: 'invalid_request_error', code: 'invalid_value' };
// 499: nginx's "client closed request"; the client that cancelled reads no answer anyway.
const cancelled = { status: 499, type: 'invalid_request_error', code: 'cancelled' };
const cancellation = { rpcCode: RuntimeErrorCodes.Cancelled, http: cancelled, cancellation: true, userFault: false };
const usage = { rpcCode: ErrorCodes.InvalidParams, http: invalid, cancellation: false, userFault: true };

/** Every error kind by its `name`. A name not listed is an internal failure (UNKNOWN). */
export const ERRORS = {
  CancelledError: { ...cancellation, revive: (m) => new CancelledError(m) },
  SupersededError: { ...cancellation, revive: (m) => new SupersededError(m) },
  // What AbortController.abort() and fetch reject with.
  AbortError: { ...cancellation, revive: (m) => new DOMException(m, 'AbortError') },
  EngineBusyError: {
    revive: (m) => new EngineBusyError(m),
    rpcCode: RuntimeErrorCodes.Busy,
    http: { status: 429, type: 'rate_limit_error', code: 'server_busy', headers: { 'retry-after': '1' } },
    cancellation: false,
    userFault: false,
  },
  EngineUnavailableError: {
    revive: (m) => new EngineUnavailableError(m),
    rpcCode: RuntimeErrorCodes.NotInitialized,
    http: { status: 503, type: 'server_error', code: 'engine_unavailable' },
    cancellation: false,
    userFault: false,
  },
  WrongModelTypeError: {
    revive: (m) => new WrongModelTypeError(m),
    rpcCode: RuntimeErrorCodes.WrongModelType,
    http: { status: 400, type: 'invalid_request_error', code: 'wrong_model_type' },
    cancellation: false,
    userFault: true,
  },
  UsageError: { ...usage, revive: (m) => new UsageError(m) },
  DeviceUnavailableError: { ...usage, rpcCode: RuntimeErrorCodes.DeviceUnavailable, revive: (m) => new DeviceUnavailableError(m) },
  // The runtime's own subclasses (runtime/src/errors.ts): their extra fields stay on the side that raised them.
  FileAccessError: { ...usage, revive: (m) => new UsageError(m) },
  CheckpointError: {
    ...usage,
    rpcCode: RuntimeErrorCodes.ModelLoadFailed,
    http: { status: 500, type: 'server_error', code: 'model_load_failed' },
    revive: named('CheckpointError'),
  },
} as const satisfies Record<string, ErrorKind>;

export type ErrorName = keyof typeof ERRORS;

/** Anything not in the registry: a failure of the model, the runtime or the server. */
export const UNKNOWN: ErrorKind = {
  revive: (m) => new Error(m),
  rpcCode: RuntimeErrorCodes.GenerationFailed,
  http: { status: 500, type: 'server_error', code: 'internal_error' },
  cancellation: false,
  userFault: false,
};

const nameOf = (err: unknown): string | undefined => {
  const name = (err as { name?: unknown } | null | undefined)?.name;
  return typeof name === 'string' ? name : undefined;
};

/** The registry entry for any thrown value (by its name; UNKNOWN for anything else). */
export function kindOf(err: unknown): ErrorKind {
  const name = nameOf(err);
  return name !== undefined && Object.hasOwn(ERRORS, name) ? ERRORS[name as ErrorName] : UNKNOWN;
}

export const isCancellation = (err: unknown): boolean => kindOf(err).cancellation;

/** An error as it crosses a thread or process boundary. */
export interface SerializedError {
  name: string;
  message: string;
}

export function serializeError(err: unknown): SerializedError {
  const e = err as { name?: unknown; message?: unknown } | null | undefined;
  return { name: nameOf(err) ?? 'Error', message: typeof e?.message === 'string' ? e.message : String(err) };
}

/** The error of the right class for its wire form; an unknown name survives on a plain Error. */
export function reviveError(e: SerializedError): Error {
  if (Object.hasOwn(ERRORS, e.name)) return ERRORS[e.name as ErrorName].revive(e.message);
  return named(e.name)(e.message);
}

/** The JSON-RPC reply for an error: its code and message. */
export function toRpcError(err: unknown): { code: number; message: string } {
  const { message } = serializeError(err);
  return { code: kindOf(err).rpcCode, message: nameOf(err) === 'AbortError' ? 'cancelled' : message };
}

/**
 * The error a JSON-RPC reply code stands for. Codes several kinds share (Cancelled, InvalidParams)
 * revive as the first kind listed with it; codes no kind claims (GenerationFailed, JSON-RPC's own)
 * as a plain Error.
 */
export function fromRpcError(code: number, message: string): Error {
  for (const kind of Object.values(ERRORS) as ErrorKind[]) if (kind.rpcCode === code) return kind.revive(message);
  return new Error(message);
}
