// Reads the runtime's stdin as JSON-RPC frames (`Content-Length: N\r\n\r\n` + N bytes of JSON, the
// framing vscode-jsonrpc writes) and never loses step: anything that is not a well-formed frame is
// reported once and skipped up to the next `Content-Length:` header, from which reading resumes.
//
// vscode-jsonrpc's own StreamMessageReader cannot be made to do this from outside: it trusts the
// first `Content-Length` it parses (`abc` stalls it, `5\n\n…` with LF-only framing makes it read a
// later frame's bytes as this frame's body), buffers any length it is told without a limit, and a
// header line without a colon leaves its buffer in a state no later bytes get it out of.
//
// The rules, each of which keeps a following valid frame readable:
// - A header block is printable ASCII lines ending in CRLF, each `Name: value`, ending with an empty
//   line, within MAX_HEADER_BYTES; it must carry exactly one Content-Length of decimal digits, at most
//   the frame limit (default 64 MiB). Anything else is reported and skipped.
// - The body is checked as JSON while it arrives. A real frame's header appended to any JSON prefix
//   makes it invalid at the latest at the header's CR (a raw CR is not allowed in a JSON string, a
//   letter not between tokens), so a frame whose declared length runs over the next frame is
//   abandoned at once, and reading resumes at the first `Content-Length:` after its own header:
//   the frame it ran into is read whole.
// - Skipped bytes are never buffered beyond the few that could start a `Content-Length:` token.

import type { Readable } from 'node:stream';
import { AbstractMessageReader, type DataCallback, Disposable, type Message, type MessageReader } from 'vscode-jsonrpc/node';

/** The largest frame read by default: a document prefix is a few hundred KiB at most, 64 MiB leaves room for any. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 2 ** 20;
/** A header block longer than this is not a header (vscode-jsonrpc writes about 25 bytes). */
export const MAX_HEADER_BYTES = 8192;
/** JSON nesting beyond this is refused (no protocol message nests more than a few levels). */
export const MAX_JSON_DEPTH = 256;

export interface FrameReaderOptions {
  /** Frames declaring a longer body are refused and skipped (default DEFAULT_MAX_FRAME_BYTES). */
  maxFrameBytes?: number;
  /**
   * Sees every parsed JSON value before the connection does: returns the message to deliver, or
   * undefined to drop it (e.g. after answering an invalid one itself). Default: deliver as is.
   */
  screen?: (value: unknown) => Message | undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CONTENT_LENGTH = Buffer.from('content-length:');
const CR = 13;
const LF = 10;

export class FrameReader extends AbstractMessageReader implements MessageReader {
  private readonly maxFrameBytes: number;
  private readonly screen: (value: unknown) => Message | undefined;
  private callback: DataCallback | undefined;
  /** Bytes not yet consumed: a header being read, or the tail kept while skipping. */
  private pending: Buffer = Buffer.alloc(0);
  /** Skipping malformed input: looking for the next `Content-Length:`. */
  private skipping = false;
  /** The frame whose body is being read. */
  private frame: { header: Buffer; length: number; body: Buffer; filled: number; json: JsonChecker } | undefined;
  private closed = false;

  constructor(
    private readonly readable: Readable,
    options: FrameReaderOptions = {},
  ) {
    super();
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.screen = options.screen ?? ((value) => value as Message);
  }

  listen(callback: DataCallback): Disposable {
    this.callback = callback;
    const onData = (chunk: Buffer | string) => this.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
    const onError = (error: Error) => this.fireError(error);
    const onClose = () => {
      if (this.closed) return;
      this.closed = true;
      this.fireClose();
    };
    this.readable.on('data', onData);
    this.readable.on('error', onError);
    this.readable.on('end', onClose);
    this.readable.on('close', onClose);
    return Disposable.create(() => {
      this.readable.off('data', onData);
      this.readable.off('error', onError);
      this.readable.off('end', onClose);
      this.readable.off('close', onClose);
    });
  }

  /** Consumes a chunk of input: delivers every complete frame in it, reports and skips what is not one. */
  push(chunk: Buffer): void {
    let input = chunk;
    // Each turn consumes input or ends the loop; a frame abandoned mid-body hands its bytes back
    // (after its header's first byte), so every turn moves the start of the stream forward.
    while (input.length > 0) {
      if (this.frame) {
        input = this.readBody(input);
        continue;
      }
      const buf = this.pending.length > 0 ? Buffer.concat([this.pending, input]) : input;
      this.pending = Buffer.alloc(0);
      if (this.skipping) {
        const at = indexOfContentLength(buf, 0);
        if (at < 0) {
          // Keep what could be the start of a `Content-Length:` cut by the chunk boundary.
          this.pending = Buffer.from(buf.subarray(Math.max(0, buf.length - (CONTENT_LENGTH.length - 1))));
          return;
        }
        this.skipping = false;
        input = buf.subarray(at);
        continue;
      }
      const header = parseHeader(buf, this.maxFrameBytes);
      if (header.kind === 'more') {
        this.pending = Buffer.from(buf); // a copy: the chunk's memory is not ours to keep
        return;
      }
      if (header.kind === 'bad') {
        this.fireError(new Error(header.reason));
        this.skipping = true;
        input = buf.subarray(1);
        continue;
      }
      this.frame = {
        header: Buffer.from(buf.subarray(0, header.end)),
        length: header.length,
        body: Buffer.alloc(Math.min(header.length, 64 * 1024)),
        filled: 0,
        json: new JsonChecker(),
      };
      input = buf.subarray(header.end);
      if (header.length === 0) input = this.finishFrame(input);
    }
  }

  /** Adds body bytes to the frame being read; returns the input left over. */
  private readBody(input: Buffer): Buffer {
    const f = this.frame!;
    const take = Math.min(f.length - f.filled, input.length);
    if (f.filled + take > f.body.length) {
      const grown = Buffer.alloc(Math.min(f.length, Math.max(f.filled + take, f.body.length * 2)));
      f.body.copy(grown, 0, 0, f.filled);
      f.body = grown;
    }
    input.copy(f.body, f.filled, 0, take);
    const bad = f.json.feed(f.body, f.filled, f.filled + take);
    f.filled += take;
    const rest = input.subarray(take);
    if (bad !== undefined) return this.abandon(`the body of a ${f.length}-byte frame is not JSON: ${bad}`, rest);
    if (f.filled < f.length) return rest;
    return this.finishFrame(rest);
  }

  /** The frame's body is complete: parses it and hands it on. */
  private finishFrame(rest: Buffer): Buffer {
    const f = this.frame!;
    const incomplete = f.json.end();
    if (incomplete !== undefined) return this.abandon(`the body of a ${f.length}-byte frame is not JSON: ${incomplete}`, rest);
    this.frame = undefined;
    let value: unknown;
    try {
      value = JSON.parse(f.body.toString('utf8', 0, f.filled));
    } catch (err) {
      this.fireError(new Error(`the body of a ${f.length}-byte frame is not JSON: ${(err as Error).message}`));
      return rest;
    }
    try {
      const message = this.screen(value);
      if (message !== undefined) this.callback?.(message);
    } catch (err) {
      // A message the connection could not take: reported like bad input, and the next one is read.
      this.fireError(new Error(`a message could not be handled: ${(err as Error)?.message ?? String(err)}`));
    }
    return rest;
  }

  /** Drops the frame being read: reading resumes at the first `Content-Length:` after its header's start. */
  private abandon(reason: string, rest: Buffer): Buffer {
    const f = this.frame!;
    this.frame = undefined;
    this.fireError(new Error(reason));
    this.skipping = true;
    return Buffer.concat([f.header.subarray(1), f.body.subarray(0, f.filled), rest]);
  }
}

type HeaderResult = { kind: 'more' } | { kind: 'bad'; reason: string } | { kind: 'ok'; end: number; length: number };

/** Reads a header block at the start of `buf`: complete, incomplete so far, or malformed (and why). */
function parseHeader(buf: Buffer, maxFrameBytes: number): HeaderResult {
  const bad = (reason: string): HeaderResult => ({
    kind: 'bad',
    reason: `malformed frame header: ${reason}; expected \`Content-Length: N\\r\\n\\r\\n\` then N bytes of JSON`,
  });
  let length: string | undefined;
  let pos = 0;
  for (;;) {
    let i = pos;
    while (i < buf.length && buf[i] !== CR && buf[i] !== LF) {
      const b = buf[i]!;
      if ((b < 0x20 && b !== 0x09) || b > 0x7e) return bad(`byte 0x${b.toString(16).padStart(2, '0')} is not printable ASCII`);
      i++;
    }
    const line = buf.toString('latin1', pos, i);
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    if (name !== '' && !TOKEN.test(name))
      return bad(colon < 0 ? `a header line without a colon (${show(line)})` : `${show(name)} is not a header name`);
    if (i >= MAX_HEADER_BYTES) return bad(`no end of the headers within ${MAX_HEADER_BYTES} bytes`);
    if (i === buf.length || (buf[i] === CR && i + 1 === buf.length)) return { kind: 'more' };
    if (buf[i] === LF) return bad('header lines must end with CRLF (a bare LF was found)');
    if (buf[i + 1] !== LF) return bad('a CR not followed by LF');
    if (line === '') {
      if (pos === 0) return bad('an empty line where a header was expected');
      break;
    }
    if (colon < 0) return bad(`a header line without a colon (${show(line)})`);
    if (name === '') return bad(`a header line without a name (${show(line)})`);
    const value = line.slice(colon + 1).trim();
    const key = name.toLowerCase();
    if (key === 'content-length') {
      if (length !== undefined) return bad('two Content-Length headers');
      length = value;
    } else if (key === 'content-type') {
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(value)?.[1]?.toLowerCase();
      if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return bad(`charset ${show(charset)} (only utf-8 is read)`);
    }
    pos = i + 2;
  }
  if (length === undefined) return bad('no Content-Length header');
  if (!/^[0-9]+$/.test(length)) return bad(`Content-Length must be a whole number of bytes, got ${show(length)}`);
  const n = Number(length);
  if (n > maxFrameBytes) {
    const limit = maxFrameBytes >= 2 ** 20 ? `${maxFrameBytes / 2 ** 20} MiB` : `${maxFrameBytes} bytes`;
    return { kind: 'bad', reason: `a frame of ${length} bytes is over the limit of ${limit}; its bytes are skipped` };
  }
  return { kind: 'ok', end: pos + 2, length: n };
}

function show(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

/** Where the next `Content-Length:` (any case) starts at or after `from`, or -1. */
function indexOfContentLength(buf: Buffer, from: number): number {
  const first = CONTENT_LENGTH[0]!;
  for (let i = from; i + CONTENT_LENGTH.length <= buf.length; i++) {
    if ((buf[i]! | 0x20) !== first) continue;
    let j = 1;
    while (j < CONTENT_LENGTH.length && (buf[i + j]! | 0x20) === CONTENT_LENGTH[j]!) j++;
    if (j === CONTENT_LENGTH.length) return i;
  }
  return -1;
}

// The JSON checker's states.
const enum S {
  /** A value is expected (top level, after `:` or after `,` in an array). */
  Value,
  /** After `[`: a value or `]`. */
  ValueOrEnd,
  /** After `{`: a key or `}`. */
  KeyOrEnd,
  /** After `,` in an object: a key. */
  Key,
  /** After a key: `:`. */
  Colon,
  /** After a value: `,` or the container's end; at the top level, only whitespace. */
  After,
  InString,
  Escape,
  Unicode,
  /** After `-`: a digit. */
  Minus,
  /** After a leading 0: `.`, `e` or the end of the number. */
  Zero,
  Int,
  /** After `.`: a digit. */
  Dot,
  Frac,
  /** After `e`: a sign or a digit. */
  Exp,
  /** After the exponent's sign: a digit. */
  ExpSign,
  ExpDigits,
  Literal,
}

/**
 * An incremental JSON syntax check (RFC 8259), fed bytes as they arrive: says at which byte the
 * input stopped being the start of a JSON text, and at the end whether it is a whole one.
 */
export class JsonChecker {
  private state = S.Value;
  /** Open containers: 1 for an object, 2 for an array. */
  private readonly stack: number[] = [];
  private stringIsKey = false;
  private unicodeLeft = 0;
  private literal = '';
  private literalAt = 0;
  private offset = 0;

  /** Checks bytes [start, end) of `buf`; returns why they are not JSON, or undefined. */
  feed(buf: Buffer, start: number, end: number): string | undefined {
    for (let i = start; i < end; i++, this.offset++) {
      const b = buf[i]!;
      const why = this.step(b);
      if (why !== undefined) return `${why} at byte ${this.offset}`;
    }
    return undefined;
  }

  /** After the last byte: undefined if the input was one whole JSON value. */
  end(): string | undefined {
    if (
      this.stack.length === 0 &&
      (this.state === S.After || this.state === S.Zero || this.state === S.Int || this.state === S.Frac || this.state === S.ExpDigits)
    )
      return undefined;
    return this.offset === 0 ? 'the body is empty' : `the body ends inside a JSON value (after ${this.offset} bytes)`;
  }

  private step(b: number): string | undefined {
    switch (this.state) {
      case S.InString:
        if (b === 0x22) return this.closeString();
        if (b === 0x5c) this.state = S.Escape;
        else if (b < 0x20) return 'a control character in a string';
        return undefined;
      case S.Escape:
        if (b === 0x75) {
          this.state = S.Unicode;
          this.unicodeLeft = 4;
        } else if ('"\\/bfnrt'.includes(String.fromCharCode(b))) this.state = S.InString;
        else return 'an unknown escape in a string';
        return undefined;
      case S.Unicode:
        if (!isHex(b)) return 'a \\u escape without four hex digits';
        if (--this.unicodeLeft === 0) this.state = S.InString;
        return undefined;
      case S.Literal:
        if (b !== this.literal.charCodeAt(this.literalAt)) return `not a JSON value (expected ${this.literal})`;
        if (++this.literalAt === this.literal.length) this.state = S.After;
        return undefined;
      case S.Minus:
        if (b === 0x30) this.state = S.Zero;
        else if (isDigit(b)) this.state = S.Int;
        else return 'a digit must follow -';
        return undefined;
      case S.Zero:
      case S.Int:
        if (isDigit(b) && this.state === S.Int) return undefined;
        if (b === 0x2e) this.state = S.Dot;
        else if (b === 0x65 || b === 0x45) this.state = S.Exp;
        else if (isDigit(b)) return 'a number with a leading zero';
        else return this.afterValue(b);
        return undefined;
      case S.Dot:
        if (!isDigit(b)) return 'a digit must follow the decimal point';
        this.state = S.Frac;
        return undefined;
      case S.Frac:
        if (isDigit(b)) return undefined;
        if (b === 0x65 || b === 0x45) this.state = S.Exp;
        else return this.afterValue(b);
        return undefined;
      case S.Exp:
        if (b === 0x2b || b === 0x2d) this.state = S.ExpSign;
        else if (isDigit(b)) this.state = S.ExpDigits;
        else return 'a digit must follow the exponent';
        return undefined;
      case S.ExpSign:
        if (!isDigit(b)) return 'a digit must follow the exponent';
        this.state = S.ExpDigits;
        return undefined;
      case S.ExpDigits:
        if (isDigit(b)) return undefined;
        return this.afterValue(b);
      default:
        break;
    }
    if (isSpace(b)) return undefined;
    switch (this.state) {
      case S.Value:
      case S.ValueOrEnd:
        if (this.state === S.ValueOrEnd && b === 0x5d) return this.close();
        return this.value(b);
      case S.KeyOrEnd:
      case S.Key:
        if (this.state === S.KeyOrEnd && b === 0x7d) return this.close();
        if (b !== 0x22) return 'an object key must be a string';
        this.state = S.InString;
        this.stringIsKey = true;
        return undefined;
      case S.Colon:
        if (b !== 0x3a) return 'a colon must follow an object key';
        this.state = S.Value;
        return undefined;
      case S.After:
        return this.afterValue(b);
      default:
        return 'unexpected input';
    }
  }

  /** The first byte of a value. */
  private value(b: number): string | undefined {
    switch (b) {
      case 0x7b:
      case 0x5b:
        if (this.stack.length >= MAX_JSON_DEPTH) return `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
        this.stack.push(b === 0x7b ? 1 : 2);
        this.state = b === 0x7b ? S.KeyOrEnd : S.ValueOrEnd;
        return undefined;
      case 0x22:
        this.state = S.InString;
        this.stringIsKey = false;
        return undefined;
      case 0x2d:
        this.state = S.Minus;
        return undefined;
      case 0x30:
        this.state = S.Zero;
        return undefined;
      case 0x74:
      case 0x66:
      case 0x6e:
        this.literal = b === 0x74 ? 'true' : b === 0x66 ? 'false' : 'null';
        this.literalAt = 1;
        this.state = S.Literal;
        return undefined;
      default:
        if (isDigit(b)) {
          this.state = S.Int;
          return undefined;
        }
        return 'not a JSON value';
    }
  }

  /** A byte after a complete value (a number's end is seen only here). */
  private afterValue(b: number): string | undefined {
    this.state = S.After;
    if (isSpace(b)) return undefined;
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) return 'more after the JSON value';
    if (b === 0x2c) {
      this.state = top === 1 ? S.Key : S.Value;
      return undefined;
    }
    if ((top === 1 && b === 0x7d) || (top === 2 && b === 0x5d)) return this.close();
    return top === 1 ? 'expected , or } in an object' : 'expected , or ] in an array';
  }

  private close(): undefined {
    this.stack.pop();
    this.state = S.After;
    return undefined;
  }

  private closeString(): undefined {
    this.state = this.stringIsKey ? S.Colon : S.After;
    return undefined;
  }
}

const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
