// The error answers of `opt serve`: every failure, expected or not, leaves as one OpenAI-style JSON
// error with a status, a short message and the field at fault, never a stack trace.

import { STATUS_CODES } from 'node:http';
import { UNKNOWN, kindOf } from '../../../protocol/errors.js';

/** An OpenAI-style error answer: status, message, and the field at fault. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Longest message an unexpected error contributes to a 500 (its first line only). */
const MAX_INTERNAL_MESSAGE = 200;

/**
 * The answer for any error. ApiErrors are kept; the registry's kinds (protocol/errors.ts) answer
 * with their status, e.g. busy 429 and usage 400; anything else is the server's fault: a 500 that
 * carries the first line of its message, cut short, and nothing of its stack (the caller logs that).
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const kind = kindOf(e);
  if (kind !== UNKNOWN) return new ApiError(kind.http.status, e.message, null, kind.http.code, kind.http.type, { ...kind.http.headers });
  const first = String(e.message).split('\n', 1)[0]!.trim();
  const short = first.length > MAX_INTERNAL_MESSAGE ? `${first.slice(0, MAX_INTERNAL_MESSAGE - 3)}...` : first;
  return new ApiError(500, `internal server error${short ? `: ${short}` : ''}`, null, UNKNOWN.http.code, UNKNOWN.http.type);
}

export const errorBody = (e: ApiError) => ({ message: e.message, type: e.type, param: e.param, code: e.code });

/** A complete HTTP/1.1 error response as raw text, for a socket whose request could not even be parsed. */
export function rawErrorResponse(e: ApiError): string {
  const text = JSON.stringify({ error: errorBody(e) });
  return `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
}

/** A string cut to `max` characters (an ellipsis marking the cut), for quoting client input in messages. */
export function clip(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/**
 * A value as an error message quotes it: short, and built without recursion, so a body nested
 * thousands of levels deep cannot overflow the stack while being described.
 */
export function show(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length} item${v.length === 1 ? '' : 's'}`;
  if (typeof v === 'object' && v !== null) return 'an object';
  if (typeof v === 'string') return v.length > 60 ? `${JSON.stringify(v.slice(0, 57)).slice(0, -1)}..."` : JSON.stringify(v);
  return String(v);
}
