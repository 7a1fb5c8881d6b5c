// Keeping ghost text from repeating what already follows the cursor. VS Code shows an item only
// if the text its range covers after the cursor is a subsequence of the item's text, and renders
// only the inserted characters; so when the model re-types the rest of the line (an auto-closed
// `)`, the end of a sentence), the item's range covers that rest and the ghost text shows only the
// new part. When the model's copy cannot be matched safely, the echo is trimmed instead.
// No vscode import.

/** What to show at the cursor: `text` replaces the `replaceSuffix` characters after the cursor. */
export interface SuffixMerge {
  text: string;
  replaceSuffix: number;
}

const OPENERS: Record<string, string> = { '(': ')', '[': ']', '{': '}' };
const CLOSERS = new Set(Object.values(OPENERS));

/** True when `text` opens no bracket it leaves open and closes none it did not open. */
export function isBalanced(text: string): boolean {
  const stack: string[] = [];
  for (const ch of text) {
    if (ch in OPENERS) stack.push(OPENERS[ch]!);
    else if (CLOSERS.has(ch) && stack.pop() !== ch) return false;
  }
  return stack.length === 0;
}

/** Index of the first closer in `text` that closes a bracket opened before it (i.e. before the cursor), or -1. */
export function firstOuterCloser(text: string): number {
  const stack: string[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch in OPENERS) stack.push(OPENERS[ch]!);
    else if (CLOSERS.has(ch)) {
      if (stack.length === 0) return i;
      if (stack.pop() !== ch) return i; // mismatched: treat as closing something outside
    }
  }
  return -1;
}

const PUNCTUATION_ONLY = /^[\s)\]}"'`;:,.>]+$/;

/**
 * Merges a single-line completion `completion` (the text the model wants at the cursor) with the
 * rest of the cursor's line `lineSuffix`:
 * 1. the model wrote the rest of the line itself, at a place where its brackets are balanced (so its
 *    copy closes what the user's copy closes): the range covers the rest and the text keeps it;
 * 2. the completion ends with the first characters of the rest (cut off by the token limit): those
 *    are replaced by the whole rest;
 * 3. the completion closes a bracket opened before the cursor that the rest of the line closes:
 *    it is cut before that closer (what follows it could not be shown without deleting text);
 * 4. otherwise the completion is inserted before the rest, unchanged.
 */
export function mergeWithLineSuffix(completion: string, lineSuffix: string): SuffixMerge {
  const rest = lineSuffix.trimEnd();
  if (rest === '' || completion === '') return { text: completion, replaceSuffix: 0 };

  // 1. A full copy of the rest, after a balanced stretch.
  for (let p = completion.indexOf(rest); p !== -1; p = completion.indexOf(rest, p + 1)) {
    if (isBalanced(completion.slice(0, p))) return { text: completion, replaceSuffix: rest.length };
  }

  // 2. The completion ends with the start of the rest.
  for (let k = Math.min(rest.length - 1, completion.length); k >= 1; k--) {
    const head = rest.slice(0, k);
    if (!completion.endsWith(head)) continue;
    const before = completion.slice(0, completion.length - k);
    if (!isBalanced(before)) continue;
    if (k >= 3 || PUNCTUATION_ONLY.test(head)) return { text: before + rest, replaceSuffix: rest.length };
  }

  // 3. The model closes an outer bracket the line already closes: keep what comes before it.
  const outer = firstOuterCloser(completion);
  if (outer !== -1 && rest.includes(completion[outer]!)) {
    return { text: completion.slice(0, outer).trimEnd(), replaceSuffix: 0 };
  }

  return { text: completion, replaceSuffix: 0 };
}

/** Whether a merge adds anything visible (the replaced characters are a subsequence of its text). */
export function addsText(merge: SuffixMerge, lineSuffix: string): boolean {
  const visible = (s: string) => s.replace(/\s+/g, '').length;
  return visible(merge.text) > visible(lineSuffix.slice(0, merge.replaceSuffix));
}
