// The checks at `opt serve`'s door, each a small total function over untrusted text: the API key
// (normalised once, at start), the Host header (an exact loopback name or address, for a keyless
// server), the request target (a path whose percent-escapes decode), and the model name the
// server shows (never a folder's absolute path).

import { isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../../../protocol/errors.js';
import { ApiError, clip } from './apiError.js';

/**
 * The key as the server compares it: trimmed, as a client's is. HTTP strips the whitespace around
 * a header value anyway, so a key with leading or trailing blanks could never be matched; trimming
 * both sides keeps one rule. A blank key, or one that cannot travel in a header, is refused here,
 * at start, instead of making a server that refuses every request.
 */
export function normalizeApiKey(key: string | undefined): string | undefined {
  if (key === undefined) return undefined;
  const k = key.trim();
  if (k === '')
    throw new UsageError(
      'the API key is blank (an empty or whitespace-only --api-key or OPT_API_KEY): set a real key, or unset it to serve loopback without one',
    );
  if (!/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(k)) {
    throw new UsageError(
      'the API key must be printable ASCII (letters, digits, punctuation; no control characters): clients send it in an HTTP header',
    );
  }
  return k;
}

/**
 * Refuses, before anything is loaded, a bind address beyond this machine without a key. Returns the
 * normalised key. `opt serve` calls it first; startOpenAiServer calls it again.
 */
export function checkServeAccess(host: string, apiKey: string | undefined): string | undefined {
  const key = normalizeApiKey(apiKey);
  if (!isLoopbackAddress(host) && key === undefined) {
    throw new UsageError(
      `binding ${host} would expose the completions server beyond this machine without authentication: set an API key (clients then send "Authorization: Bearer <key>"), or bind 127.0.0.1`,
    );
  }
  return key;
}

/** The key a client sent as `Authorization: Bearer <key>` (trimmed), or undefined when the header is not that. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const h = header.trim();
  let i = 0;
  while (i < h.length && h[i] !== ' ' && h[i] !== '\t') i++;
  if (h.slice(0, i).toLowerCase() !== 'bearer' || i === h.length) return undefined;
  return h.slice(i).trim();
}

/** A bind address or a host name without a port: localhost, 127.0.0.0/8, ::1 or an IPv4-mapped 127.x (brackets allowed around IPv6). */
export function isLoopbackAddress(host: string): boolean {
  const bracketed = host.startsWith('[') && host.endsWith(']');
  const h = bracketed ? host.slice(1, -1) : host;
  if (!bracketed && h.toLowerCase() === 'localhost') return true;
  if (!bracketed && isIPv4(h)) return h.startsWith('127.');
  if (!isIPv6(h) || h.includes('%')) return false; // a zone id names an interface, not loopback
  let canonical: string;
  try {
    canonical = new URL(`http://[${h}]/`).hostname;
  } catch {
    return false;
  }
  return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/**
 * Whether a Host header names this machine's loopback: RFC 9110's `uri-host [":" port]`, where the
 * host is exactly `localhost`, a 127.0.0.0/8 address, or a bracketed loopback IPv6 address, and
 * the port (optional) is decimal digits up to 65535. Anything else (userinfo, a path, a name that
 * merely starts with a loopback address, an empty value) is not.
 */
export function isLoopbackHostHeader(value: string): boolean {
  let host: string;
  let rest: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return false;
    host = value.slice(0, close + 1);
    rest = value.slice(close + 1);
  } else {
    const colon = value.indexOf(':');
    host = colon < 0 ? value : value.slice(0, colon);
    rest = colon < 0 ? '' : value.slice(colon);
    if (host.includes('[') || host.includes(']')) return false;
  }
  if (rest !== '') {
    const port = rest.slice(1);
    if (rest[0] !== ':' || !/^\d{1,5}$/.test(port) || Number(port) > 65535) return false;
  }
  return host !== '' && isLoopbackAddress(host);
}

/**
 * The path of a request target. Only origin-form (`/path?query`) is served; the path is not
 * decoded (routes compare it raw), and trailing slashes are dropped.
 */
export function requestPath(target: string | undefined): string {
  const t = target ?? '/';
  if (!t.startsWith('/'))
    throw new ApiError(
      400,
      `the request target must be a path starting with "/", got ${JSON.stringify(clip(t))}`,
      null,
      'invalid_request_target',
    );
  let end = t.length;
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '?' || t[i] === '#') {
      end = i;
      break;
    }
  }
  while (end > 1 && t[end - 1] === '/') end--;
  return t.slice(0, end);
}

/** A path segment, percent-decoded; a malformed escape is the client's 400, not a URIError. */
export function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ApiError(
      400,
      `the path segment ${JSON.stringify(clip(segment))} has a malformed percent-escape (% must be followed by two hex digits encoding UTF-8)`,
      null,
      'invalid_request_target',
    );
  }
}

/**
 * The model name the server shows: a Hugging Face id as given, a folder as its base name, so that
 * /health (which needs no key) and /v1/models never reveal where the model lives on disk.
 */
export function publicModelName(modelId: string, dir: string): string {
  const hubId = /^(?:[\w][\w.-]*\/)?[\w][\w.-]*$/.test(modelId) && modelId !== dir;
  if (hubId) return modelId;
  const parts = modelId.split(/[\\/]+/).filter((p) => p !== '' && p !== '.' && p !== '..');
  return parts.at(-1) ?? 'model';
}
