// Turning what the model generated into ghost text: the single- or multi-line policy, stop
// sequences, the end of the block by indentation, lines that repeat the document below, trailing
// whitespace, and the merge with the rest of the line. No vscode import.

import type { CursorContext } from './contextWindow.js';
import { type SuffixMerge, addsText, mergeWithLineSuffix } from './suffixMerge.js';

/** auto: several lines only when the cursor sits on a blank line; always: whenever nothing follows the cursor on its line; never: one line. */
export type MultilineMode = 'auto' | 'always' | 'never';

export interface InlinePolicy {
  multiline: MultilineMode;
  /** Most lines a multi-line completion keeps. */
  maxLines: number;
  /** The user's stop sequences (the completion ends before the first one). */
  stopSequences: readonly string[];
  /** Columns per tab when comparing indentation. */
  tabSize?: number;
}

/** Whether this cursor position gets a multi-line completion. Never with text right of the cursor. */
export function wantsMultiline(mode: MultilineMode, cursor: Pick<CursorContext, 'linePrefix' | 'lineSuffix'>): boolean {
  if (cursor.lineSuffix.trim() !== '') return false;
  if (mode === 'always') return true;
  if (mode === 'never') return false;
  return cursor.linePrefix.trim() === '';
}

/** Stop strings sent to the engine: a newline ends a single-line completion; a run of blank lines ends any. */
export function stopStringsFor(multiline: boolean, user: readonly string[]): string[] {
  const stops = multiline ? ['\n\n\n'] : ['\n'];
  for (const s of user) if (s !== '' && !stops.includes(s)) stops.push(s);
  return stops;
}

/** The text before the earliest stop string (engines keep the stop string in their output). */
export function cutAtStops(text: string, stops: readonly string[]): string {
  let end = text.length;
  for (const s of stops) {
    if (s === '') continue;
    const i = text.indexOf(s);
    if (i !== -1 && i < end) end = i;
  }
  return text.slice(0, end);
}

/** Indentation width of a line (tabs count `tabSize` columns). */
export function indentWidth(line: string, tabSize = 4): number {
  let w = 0;
  for (const ch of line) {
    if (ch === ' ') w++;
    else if (ch === '\t') w += tabSize - (w % tabSize);
    else break;
  }
  return w;
}

export interface BlockCut {
  /** The lines kept (the first continues the cursor's line). */
  lines: string[];
  /** Whether the block is known to have ended (a line left it, or maxLines was reached). */
  ended: boolean;
}

/**
 * Keeps the lines of a multi-line completion that belong to the cursor's block: a later line
 * indented less than the cursor's line ends it; at the outermost level (indentation 0) so does a
 * blank line (the end of a paragraph or of a top-level block). A last line still being generated
 * (no non-blank character yet) decides nothing.
 */
export function cutToBlock(text: string, linePrefix: string, maxLines: number, tabSize = 4): BlockCut {
  const lines = text.split('\n');
  const base = indentWidth(linePrefix, tabSize);
  const kept: string[] = [lines[0]!];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const last = i === lines.length - 1;
    if (line.trim() === '') {
      if (last) break; // may still grow
      if (base === 0) return { lines: kept, ended: true };
      kept.push(line);
      continue;
    }
    if (indentWidth(line, tabSize) < base) return { lines: kept, ended: true };
    kept.push(line);
  }
  // Blank lines kept tentatively inside an indented block do not count towards the limit's cut.
  if (kept.length > maxLines) return { lines: kept.slice(0, maxLines), ended: true };
  return { lines: kept, ended: kept.length === maxLines && lines.length > maxLines };
}

/** Drops completion lines from the first one that repeats the next non-blank line of the document. */
export function dropRepeatedLines(lines: string[], nextLines: readonly string[]): string[] {
  const next = nextLines.find((l) => l.trim() !== '')?.trim();
  if (next === undefined) return lines;
  for (let i = 1; i < lines.length; i++) {
    if (lines[i]!.trim() === next) return lines.slice(0, i);
  }
  return lines;
}

/**
 * While a multi-line completion streams in: true once it is known to be complete, so the request
 * can stop early instead of generating lines that would be cut.
 */
export function completionEnded(
  textSoFar: string,
  cursor: Pick<CursorContext, 'linePrefix'>,
  policy: InlinePolicy,
  multiline: boolean,
): boolean {
  const text = cutAtStops(textSoFar, stopStringsFor(multiline, policy.stopSequences));
  if (text.length < textSoFar.length) return true;
  if (!multiline) return false;
  return cutToBlock(text, cursor.linePrefix, policy.maxLines, policy.tabSize).ended;
}

/** A finished ghost-text suggestion: `text` replaces `replaceSuffix` characters after the cursor. */
export interface InlineSuggestion extends SuffixMerge {
  multiline: boolean;
}

/** From raw model output to what is shown, or undefined when nothing worth showing remains. */
export function finishCompletion(
  raw: string,
  cursor: CursorContext,
  policy: InlinePolicy,
  multiline: boolean,
): InlineSuggestion | undefined {
  let text = cutAtStops(raw, stopStringsFor(multiline, policy.stopSequences));
  // Mid-line after a space: the model's own leading space would double it.
  if (/[ \t]$/.test(cursor.linePrefix) && cursor.linePrefix.trim() !== '') text = text.replace(/^[ \t]+/, '');

  if (!multiline) {
    const line = text.split('\n', 1)[0]!.trimEnd();
    const merge = mergeWithLineSuffix(line, cursor.lineSuffix);
    if (!addsText(merge, cursor.lineSuffix)) return undefined;
    return { ...merge, multiline: false };
  }

  let lines = cutToBlock(text, cursor.linePrefix, policy.maxLines, policy.tabSize).lines;
  lines = dropRepeatedLines(lines, cursor.nextLines).map((l) => l.trimEnd());
  while (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  const joined = lines.join('\n');
  if (joined.trim() === '') return undefined;
  return { text: joined, replaceSuffix: 0, multiline: lines.length > 1 };
}
