// Incremental detokenization for streaming generation. A token may end partway through a UTF-8
// character (emoji and CJK are often split over two or three byte tokens), so the decoder holds
// back incomplete bytes until the token that completes them arrives.

/** Yields the bytes one token id stands for, or undefined for an id that prints nothing. */
export type TokenBytes = (id: number) => Uint8Array | undefined;

export interface StreamDecoder {
  /** Returns the text that this token completes: possibly '', never half a character. */
  push(id: number): string;
  /** Returns what is still held back (as U+FFFD if the bytes never formed a character) and starts over. */
  flush(): string;
}

export function createStreamDecoder(bytesOf: TokenBytes): StreamDecoder {
  // TextDecoder's stream mode holds back an incomplete sequence and replaces invalid bytes exactly
  // as a one-shot decode of the same bytes would; ignoreBOM keeps a leading U+FEFF, as decode() does.
  const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  return {
    push(id) {
      const bytes = bytesOf(id);
      return bytes ? utf8.decode(bytes, { stream: true }) : '';
    },
    flush() {
      return utf8.decode();
    },
  };
}
