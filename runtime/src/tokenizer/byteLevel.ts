// GPT-2's byte-level alphabet: every byte 0..255 stands for one printable character in vocab.json
// and merges.txt. Decoding maps token characters back to bytes here, in TypeScript, so that
// decode stays synchronous (the Rust `tokenizers` binding only decodes asynchronously).

/** BYTE_TO_CHAR[b] is the character that stands for byte b in byte-level BPE tokens. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

// Every alphabet character is below U+0144, so a flat table beats a Map on the decode hot path.
const CHAR_TO_BYTE = new Int16Array(0x144).fill(-1);
BYTE_TO_CHAR.forEach((ch, byte) => (CHAR_TO_BYTE[ch.charCodeAt(0)] = byte));

const utf8 = new TextEncoder();

function buildByteToChar(): string[] {
  // Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, U+00AD...)
  // are shifted to U+0100 and up, in byte order, so no token contains whitespace.
  const chars: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || byte >= 0xae;
    chars.push(String.fromCharCode(printable ? byte : 0x100 + shifted++));
  }
  return chars;
}

/**
 * The bytes a token stands for. Like the ByteLevel decoder in Hugging Face `tokenizers`, a token
 * with any character outside the alphabet (an added token such as "<my token>") is taken as its
 * own UTF-8 text instead.
 */
export function tokenBytes(token: string): Uint8Array {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i);
    const byte = code < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[code]! : -1;
    if (byte < 0) return utf8.encode(token);
    bytes[i] = byte;
  }
  return bytes;
}
