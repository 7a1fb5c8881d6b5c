// What the model sees of a document at the cursor: the text before it, bounded in characters (the
// runtime bounds it again in tokens), and what lies after it, which OPT cannot condition on (it has
// no fill-in-the-middle) but which the client uses to avoid repeating it. No vscode import.

/** The cursor's surroundings, read from the document by the provider. */
export interface CursorContext {
  /** Text before the cursor, clipped to the configured window (see clipPrefix). */
  prefix: string;
  /** Text before the cursor on its line. */
  linePrefix: string;
  /** Text after the cursor on its line. */
  lineSuffix: string;
  /** A few lines below the cursor's line, for dropping completions that repeat them. */
  nextLines: string[];
}

/**
 * The last `maxChars` characters of `text`, starting at a line start when one is near (within a
 * quarter of the window) or else at a word start, so the prompt does not open mid-word.
 */
export function clipPrefix(text: string, maxChars: number): string {
  if (maxChars <= 0) return '';
  if (text.length <= maxChars) return text;
  const cut = text.length - maxChars;
  const slack = Math.max(1, Math.floor(maxChars / 4));
  const newline = text.indexOf('\n', cut);
  if (newline !== -1 && newline + 1 - cut <= slack) return text.slice(newline + 1);
  const space = text.slice(cut, cut + slack).search(/\s/);
  if (space !== -1) return text.slice(cut + space + 1);
  return text.slice(cut);
}

/** Reads the cursor context from plain text split at the cursor (the provider passes document text). */
export function cursorContext(before: string, after: string, options: { maxPrefixChars: number; nextLineCount?: number }): CursorContext {
  const lineStart = before.lastIndexOf('\n') + 1;
  const lineEnd = after.indexOf('\n');
  const lineSuffix = lineEnd === -1 ? after : after.slice(0, lineEnd);
  const rest = lineEnd === -1 ? '' : after.slice(lineEnd + 1);
  const nextLines = rest === '' ? [] : rest.split('\n', options.nextLineCount ?? 4).map(stripCr);
  return {
    prefix: clipPrefix(before, options.maxPrefixChars),
    linePrefix: stripCr(before.slice(lineStart)),
    lineSuffix: stripCr(lineSuffix),
    nextLines,
  };
}

const stripCr = (s: string): string => (s.endsWith('\r') ? s.slice(0, -1) : s);
