// Between the document and the model's offsets. The selection is sent with plain \n line breaks
// (CRLF files too: the tokenizer would otherwise see a stray \r per line), and the answer's
// character offsets into that text are mapped back to offsets into the selection as the document
// holds it, which VS Code's offsetAt/positionAt count the same way (UTF-16 units, \r\n as two).
// No vscode import.

export interface ModelText {
  /** The text sent to the model. */
  text: string;
  /** An offset into `text` → the offset into the original text (a \n that was \r\n maps past its \r only when it is included). */
  toSource(offset: number): number;
}

export function toModelText(source: string): ModelText {
  // Model-text positions of the \n whose \r was dropped, ascending.
  const dropped: number[] = [];
  let text = '';
  let from = 0;
  for (let i = source.indexOf('\r\n'); i !== -1; i = source.indexOf('\r\n', i + 2)) {
    text += source.slice(from, i);
    dropped.push(text.length);
    from = i + 1; // keep the \n
  }
  text += source.slice(from);
  return {
    text,
    toSource(offset: number): number {
      // Every dropped \r before this offset shifts it by one. A span that ends just before a \n
      // ends before its \r too; one that starts at a \n starts at its \r.
      let lo = 0;
      let hi = dropped.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (dropped[mid]! < offset) lo = mid + 1;
        else hi = mid;
      }
      return offset + lo;
    },
  };
}

/**
 * Checks a span the runtime returned against the text it was given (integers, start ≤ end, inside
 * the text) and narrows it to its non-blank part: BPE tokens carry their leading space, so a
 * token-aligned span can start with one. Undefined when it is invalid or blank.
 */
export function cleanSpan(text: string, start: number, end: number): { start: number; end: number } | undefined {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > text.length || start >= end) return undefined;
  while (start < end && /\s/.test(text[start]!)) start++;
  while (end > start && /\s/.test(text[end - 1]!)) end--;
  return start < end ? { start, end } : undefined;
}

/** Where a span of the model text lies in the document: document offsets, given the selection's start offset. */
export function spanInDocument(
  model: ModelText,
  selectionStart: number,
  start: number,
  end: number,
): { start: number; end: number } | undefined {
  const span = cleanSpan(model.text, start, end);
  if (!span) return undefined;
  return { start: selectionStart + model.toSource(span.start), end: selectionStart + model.toSource(span.end) };
}
